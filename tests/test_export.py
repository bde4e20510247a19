"""GIS outputs of ``seaice_dask.export``: what GDAL/rasterio, QGIS and a STAC validator see.

References: rasterio (GDAL) reading the files back, GDAL's own warp for the lon/lat bounds,
the STAC JSON schemas (pystac's core copies and the bundled extension schema, no network).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import pystac.validation
import pytest
import rasterio
from rasterio.warp import transform_bounds

from seaice_dask import report
from seaice_dask.charts.schemes import AI4ARCTIC, SOD4
from seaice_dask.config import PipelineConfig
from seaice_dask.cube import cube_grid, ensure_variable, mark_done, open_cube, write_slice
from seaice_dask.errors import CubeError
from seaice_dask.export import NODATA, ClassPalette, export_maps, stac_validator, write_class_cog, write_proba_cog, write_qml
from seaice_dask.grid import Grid
from seaice_dask.learn.synthetic import make_synthetic_cube

GRID = Grid.from_bounds("EPSG:32626", (400_000.0, 7_400_000.0, 440_000.0, 7_432_000.0), 80.0)  # 400 × 500


def _class_map(rng) -> np.ndarray:
    """2 × 2 blocks holding one class three times and another once, and a land corner (−1)."""
    ny, nx = GRID.shape
    major = rng.integers(0, 4, (ny // 2, nx // 2))
    cls = np.repeat(np.repeat(major, 2, 0), 2, 1)
    cls[::2, ::2] = (major + 1) % 4
    cls[:40, :60] = -1
    return cls.astype(np.int8), major


def test_palette_comes_from_the_chart_scheme():
    palette = ClassPalette.from_scheme("sod4")
    assert palette.values == (0, 1, 2, 3) and palette.names == tuple(SOD4.classes.values())
    assert palette.colours == report.SOD4_COLOURS  # one palette for figures and GIS files
    assert ClassPalette.from_scheme("ai4arctic", [0, 5]).names == (AI4ARCTIC.classes[0], AI4ARCTIC.classes[5])
    assert all(set(s.colours) == set(s.classes) for s in (SOD4, AI4ARCTIC))
    with pytest.raises(CubeError, match=r"\[7\]"):
        ClassPalette.from_scheme("sod4", [0, 7])


def test_class_cog_is_paletted_uint8_with_names_and_mode_overviews(tmp_path):
    rng = np.random.default_rng(0)
    cls, major = _class_map(rng)
    palette = ClassPalette.from_scheme("sod4")
    path = write_class_cog(cls, GRID, tmp_path / "maps" / "class.tif", palette, {"date": "2020-10-05"})
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.dtypes == ("uint8",) and src.nodata == NODATA
        assert src.crs.to_epsg() == 32626 and src.transform == GRID.transform
        np.testing.assert_array_equal(src.read(1), np.where(cls < 0, NODATA, cls.astype(int)))
        colours = src.colormap(1)
        for value, rgb in zip(palette.values, palette.rgb(), strict=True):
            assert colours[value] == (*rgb, 255)
        assert colours[NODATA][3] == 0  # transparent
        assert src.overviews(1) == [2]  # 500 px wide: one halving fits a 256-px tile
        overview = src.read(1, out_shape=(GRID.shape[0] // 2, GRID.shape[1] // 2))
        interior = overview[25:, 35:]  # away from the land corner: the block majority (mode)
        np.testing.assert_array_equal(interior, major[25:, 35:])
        assert src.tags()["date"] == "2020-10-05"
    aux = ET.parse(path.with_name("class.tif.aux.xml")).getroot()
    assert [c.text for c in aux.iter("Category")] == list(palette.names)
    rows = [[f.text for f in row.iter("F")] for row in aux.iter("Row")]
    assert rows[2] == ["2", "first-year ice", "255", "255", "0"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["class.tif", "class.tif.aux.xml"]  # no temp files
    if shutil.which("gdalinfo"):  # GDAL's own tool lists the class names
        info = subprocess.run(["gdalinfo", str(path)], capture_output=True, text=True, check=True).stdout
        assert "Categories:" in info and "3: old ice" in info and "ColorInterp=Palette" in info


def test_proba_cog_bands_are_named_and_scaled(tmp_path):
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(4), GRID.shape).transpose(2, 0, 1).astype(np.float32)
    proba[:, :10, :10] = np.nan
    palette = ClassPalette.from_scheme("sod4")
    path = write_proba_cog(proba, GRID, tmp_path / "proba.tif", palette)
    with rasterio.open(path) as src:
        assert src.count == 4 and src.dtypes == ("uint8",) * 4 and src.nodata == NODATA
        assert src.descriptions == tuple(f"probability of {n}" for n in palette.names)
        assert src.overviews(1) == [2]
        data = src.read()
        assert (data[:, :10, :10] == NODATA).all() and (data[:, 10:, 10:] <= 100).all()
        values = np.where(data == NODATA, np.nan, data * np.array(src.scales)[:, None, None])
        np.testing.assert_allclose(values, proba, atol=0.0051)
    with pytest.raises(CubeError, match="3 probability bands for 4 classes"):
        write_proba_cog(proba[:3], GRID, tmp_path / "bad.tif", palette)


def test_qml_is_a_paletted_style_with_class_names(tmp_path):
    palette = ClassPalette.from_scheme("ai4arctic")
    root = ET.parse(write_qml(tmp_path / "class.qml", palette)).getroot()
    (renderer,) = root.iter("rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(int(e.get("value")), e.get("label"), e.get("color")) for e in renderer.iter("paletteEntry")]
    assert entries == list(zip(palette.values, palette.names, palette.colours, strict=True))


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """A small cube whose ``class``/``proba`` are the truth (as a perfect model would write)."""
    work = tmp_path_factory.mktemp("export")
    store = work / "cube.zarr"
    truth_path = make_synthetic_cube(store, n_times=3, size=48, chunk=24, seed=2)
    truth = __import__("xarray").open_zarr(truth_path, consolidated=False)["truth_class"].values
    land = open_cube(store)["land"].values
    attrs = {"model": "rf.skops", "learner": "rf"}
    ensure_variable(store, "class", dtype="int8", fill_value=-1, attrs=attrs)
    ensure_variable(store, "proba", dtype="float32", fill_value=np.nan, extra_dims={"class_id": [0, 1, 2, 3]}, attrs=attrs)
    for t in range(3):
        cls = np.where(land, -1, truth[t]).astype(np.int8)
        proba = np.where(cls >= 0, np.eye(4, dtype=np.float32)[np.clip(cls, 0, 3)].transpose(2, 0, 1), np.nan)
        write_slice(store, "class", t, cls)
        write_slice(store, "proba", t, proba)
        if t < 2:  # the last date is not predicted yet: not exported
            mark_done(store, "predict", t)
    cfg = PipelineConfig.model_validate({"name": "test-run", "paths": {"workdir": str(work)}}).resolve(work)
    report.write_json({"test_dates": [], "scores": {}, "best": "rf"}, cfg.paths.reports / "scores.json")
    return cfg, export_maps(cfg)


def test_export_maps_writes_every_predicted_date(predicted):
    cfg, out = predicted
    ds = open_cube(cfg.paths.store)
    assert len(out.class_maps) == len(out.styles) == len(out.probabilities) == len(out.items) == 2
    for t, path in enumerate(out.class_maps):
        stamp = pd.Timestamp(ds["time"].values[t]).strftime("%Y%m%dT%H%M%S")
        assert Path(path).name == f"class_{stamp}.tif"
        assert Path(path).with_suffix(".qml").is_file()  # QGIS picks it up as the default style
        with rasterio.open(path) as src:
            expected = ds["class"].isel(time=t).values
            np.testing.assert_array_equal(src.read(1), np.where(expected < 0, NODATA, expected.astype(int)))
            assert src.tags()["learner"] == "rf"


def test_stac_items_and_collection_validate_offline(predicted):
    cfg, out = predicted
    validator = stac_validator()
    local = set(validator.schema_cache)
    collection = pystac.Collection.from_file(out.collection)
    items = list(collection.get_items())
    assert sorted(i.get_self_href() for i in items) == sorted(str(Path(p).resolve()) for p in out.items)
    ds = open_cube(cfg.paths.store)
    grid = cube_grid(ds)
    west, south, east, north = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds, densify_pts=51)
    for t, item in enumerate(sorted(items, key=lambda i: i.datetime)):
        schemas = pystac.validation.validate(item, validator=validator)
        assert "https://stac-extensions.github.io/projection/v2.0.0/schema.json" in schemas
        assert item.datetime == pd.Timestamp(ds["time"].values[t]).tz_localize("UTC")
        # the footprint of the map's data, inside the grid
        ring = np.array(item.geometry["coordinates"][0])
        assert ring[:, 0].min() >= west - 1e-6 and ring[:, 1].max() <= north + 1e-6
        assert item.bbox[0] >= west - 1e-6 and item.bbox[3] <= north + 1e-6
        proj = item.ext.proj
        with rasterio.open(item.assets["class_map"].get_absolute_href()) as src:
            assert proj.epsg == 32626 and proj.shape == list(src.shape) and proj.bbox == list(src.bounds)
            assert src.transform.a == grid.resolution and (src.bounds.left - grid.xmin) % grid.resolution == 0
        assert item.properties["seaice:learner"] == "rf" and item.properties["seaice:model"] == "rf.skops"
        assert set(item.assets) == {"class_map", "style", "categories", "probabilities"}
        for asset in item.assets.values():
            assert Path(asset.get_absolute_href()).is_file(), asset.href
        (scores,) = item.get_links("related")
        assert Path(scores.get_absolute_href()) == (cfg.paths.reports / "scores.json").resolve()
        raw = json.loads(Path(item.get_self_href()).read_text())
        assert all(not link["href"].startswith("/") for link in raw["links"])  # relative: the folder moves
    pystac.validation.validate(collection, validator=validator)
    assert collection.extent.temporal.intervals[0][0] == min(i.datetime for i in items)
    assert set(validator.schema_cache) == local  # nothing was fetched from the network
