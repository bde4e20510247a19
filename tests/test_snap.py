"""SNAP engine: the GPT graph (well formed, right parameters) and the run/read plumbing.

SNAP itself is not installed in CI: the run path is exercised with a stand-in ``gpt`` script
that writes what SNAP would (a GeoTIFF aligned on the grid), and the missing-SNAP error is checked.
"""

from __future__ import annotations

import stat
import sys
import textwrap

import numpy as np
import pytest
from defusedxml import ElementTree as SafeET
from pyproj import CRS

from seaice_dask.errors import ConfigError, EngineUnavailableError
from seaice_dask.grid import Grid, default_grid
from seaice_dask.preprocess.snap import find_gpt, run_snap, snap_geocode_product, snap_graph


@pytest.fixture
def grid() -> Grid:
    return default_grid(80.0)


def _nodes(xml: str) -> dict:
    root = SafeET.fromstring(xml)
    assert root.tag == "graph" and root.findtext("version") == "1.0"
    return {n.get("id"): n for n in root.findall("node")}


def test_graph_is_well_formed_with_grid_parameters(grid, tmp_path):
    xml = snap_graph(tmp_path / "S1A.SAFE", tmp_path / "out.tif", grid, polarisations=["hh", "hv"])
    nodes = _nodes(xml)
    assert list(nodes) == ["Read", "ThermalNoiseRemoval", "Calibration", "Multilook", "Terrain-Correction", "Write"]
    # each node reads the one before it
    order = list(nodes)
    for previous, node_id in zip(order, order[1:]):
        assert nodes[node_id].find("sources/sourceProduct").get("refid") == previous
    p = {k: n.find("parameters") for k, n in nodes.items()}
    assert p["Read"].findtext("file").endswith("manifest.safe")
    assert p["ThermalNoiseRemoval"].findtext("removeThermalNoise") == "true"
    assert p["Calibration"].findtext("selectedPolarisations") == "HH,HV"
    assert p["Calibration"].findtext("outputSigmaBand") == "true"
    assert p["Calibration"].findtext("outputImageScaleInDb") == "false"
    assert p["Multilook"].findtext("nRgLooks") == "2" and p["Multilook"].findtext("nAzLooks") == "2"
    tc = p["Terrain-Correction"]
    assert CRS.from_wkt(tc.findtext("mapProjection")) == CRS.from_epsg(32626)
    assert float(tc.findtext("pixelSpacingInMeter")) == 80.0
    assert tc.findtext("alignToStandardGrid") == "true"
    assert float(tc.findtext("standardGridOriginX")) == grid.xmin
    assert float(tc.findtext("standardGridOriginY")) == grid.ymax
    assert tc.findtext("nodataValueAtSea") == "false"  # sea ice lives at sea
    assert tc.findtext("imgResamplingMethod") == "BILINEAR_INTERPOLATION"
    assert tc.findtext("saveIncidenceAngleFromEllipsoid") == "true"
    assert p["Write"].findtext("file") == str(tmp_path / "out.tif")


def test_graph_options(grid, tmp_path):
    nodes = _nodes(snap_graph(tmp_path / "x.zip", tmp_path / "o.tif", grid, denoise="none", multilook=1))
    assert "ThermalNoiseRemoval" not in nodes and "Multilook" not in nodes
    assert nodes["Calibration"].find("sources/sourceProduct").get("refid") == "Read"
    assert nodes["Read"].find("parameters").findtext("file").endswith("x.zip")
    with pytest.raises(ConfigError, match="resample"):
        snap_graph(tmp_path / "x.zip", tmp_path / "o.tif", grid, resampling="average")


def test_missing_snap_is_a_clear_error(grid, tmp_path, monkeypatch):
    monkeypatch.delenv("SNAP_GPT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_gpt() is None
    with pytest.raises(EngineUnavailableError, match="gpt"):
        run_snap(tmp_path / "x.zip", grid, tmp_path / "o.tif")


FAKE_GPT = """\
#!{python}
# Stand-in for SNAP's gpt: writes a 3-band GeoTIFF (sigma0 HH, HV, incidence) aligned on the
# graph's standard grid, covering part of it, at the Write node's file.
import sys
import numpy as np
import rasterio
from affine import Affine
from defusedxml import ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
p = {{n.get("id"): n.find("parameters") for n in root.findall("node")}}
tc = p["Terrain-Correction"]
res = float(tc.findtext("pixelSpacingInMeter"))
x0 = float(tc.findtext("standardGridOriginX")) + 10 * res
y0 = float(tc.findtext("standardGridOriginY")) - 20 * res
data = np.stack([np.full((30, 40), 0.01, "float32"), np.full((30, 40), 0.001, "float32"),
                 np.full((30, 40), 35.0, "float32")])
data[:, 0, 0] = 0.0  # SNAP's no-data
with rasterio.open(p["Write"].findtext("file"), "w", driver="GTiff", width=40, height=30, count=3,
                   dtype="float32", crs=tc.findtext("mapProjection"),
                   transform=Affine(res, 0, x0, 0, -res, y0)) as dst:
    dst.write(data)
"""


def test_run_with_stand_in_gpt_places_output_on_grid(tmp_path, monkeypatch):
    grid = Grid.from_bounds("EPSG:32626", (300_000, 7_600_000, 308_000, 7_604_800), 80.0)  # 60 × 100
    gpt = tmp_path / "gpt"
    gpt.write_text(FAKE_GPT.format(python=sys.executable))
    gpt.chmod(gpt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("SNAP_GPT", str(gpt))
    ds = snap_geocode_product(tmp_path / "S1A.zip", grid, workdir=tmp_path)
    hh = ds["sigma0_hh"].values
    assert ds["sigma0_hh"].rio.crs.to_epsg() == 32626
    np.testing.assert_allclose(hh[20:50, 10:50][1:, 1:], -20.0, atol=1e-5)
    np.testing.assert_allclose(ds["sigma0_hv"].values[21:50, 11:50], -30.0, atol=1e-5)
    assert np.isnan(hh[20, 10])  # zero power is no data
    assert np.isnan(hh[:20]).all() and np.isnan(hh[:, 50:]).all()
    np.testing.assert_allclose(ds["incidence"].values[21:50, 11:50], 35.0)
    assert ds["valid"].values.sum() == 30 * 40 - 1
    assert not list(tmp_path.glob(".snap-*"))  # temporary graph folder cleaned up


def test_failing_gpt_reports_its_message(grid, tmp_path, monkeypatch):
    gpt = tmp_path / "gpt"
    gpt.write_text(textwrap.dedent("""\
        #!/bin/sh
        echo "Error: [NodeId: Read] cannot read product" >&2
        exit 1
        """))
    gpt.chmod(gpt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("SNAP_GPT", str(gpt))
    with pytest.raises(Exception, match="cannot read product") as info:
        run_snap(tmp_path / "x.zip", grid, tmp_path / "o.tif")
    assert "x.zip" in str(info.value)
    assert not (tmp_path / "o.tif").exists()
