"""Optional ESA SNAP engine: the same preprocessing as a SNAP GPT graph, for users who have SNAP.

The graph mirrors the native chain (``preprocess.engine: snap`` in the config):
Read → ThermalNoiseRemoval → Calibration (sigma0, linear) → Multilook → Terrain-Correction onto
the cube's grid (map projection = the grid CRS as WKT, pixel spacing = grid resolution, pixel
edges aligned on the grid's origin, sea *not* masked) → Write (GeoTIFF). The output is then
placed on the grid window (pixels already aligned, so nearest-neighbour placement moves
nothing) and converted to the cube's variables.

SNAP is not a dependency: :func:`find_gpt` looks for ``gpt`` (``$SNAP_GPT``, then ``PATH``) and
every runner raises :class:`~seaice_dask.errors.EngineUnavailableError` when it is missing.
Parameter names follow the SNAP operator help (S1TBX ``ThermalNoiseRemoval``, ``Calibration``,
``Multilook``, ``Terrain-Correction``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import rasterio
import xarray as xr
from pyproj import CRS
from rasterio.warp import Resampling, reproject

from seaice_dask.errors import ConfigError, EngineUnavailableError, ProductError
from seaice_dask.grid import Grid

#: DEM for Terrain-Correction: GETASSE30 is global (SRTM stops at 60°N, where the sea ice is).
DEFAULT_DEM = "GETASSE30"
_RESAMPLING = {"bilinear": "BILINEAR_INTERPOLATION", "nearest": "NEAREST_NEIGHBOUR"}


def _node(graph: ET.Element, node_id: str, operator: str, source: str | None, params: dict) -> None:
    node = ET.SubElement(graph, "node", id=node_id)
    ET.SubElement(node, "operator").text = operator
    sources = ET.SubElement(node, "sources")
    if source is not None:
        ET.SubElement(sources, "sourceProduct", refid=source)
    parameters = ET.SubElement(node, "parameters", {"class": "com.bc.ceres.binding.dom.XppDomElement"})
    for key, value in params.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        ET.SubElement(parameters, key).text = "" if value is None else str(value)


def _read_target(product_path: str | Path) -> str:
    path = Path(product_path)
    """SNAP reads a SAFE folder through its manifest, a zip directly."""
    return str(path / "manifest.safe") if path.is_dir() or path.suffix.upper() == ".SAFE" else str(path)


def snap_graph(
    product_path: str | Path,
    output: str | Path,
    grid: Grid,
    *,
    polarisations: Sequence[str] = ("HH", "HV"),
    denoise: str = "esa",
    multilook: int = 2,
    resampling: str = "bilinear",
    dem: str = DEFAULT_DEM,
) -> str:
    """The GPT graph XML that preprocesses one product onto ``grid``, as a string."""
    if resampling not in _RESAMPLING:
        raise ConfigError(f"the SNAP engine resamples with {sorted(_RESAMPLING)}, not {resampling!r}")
    if multilook < 1:
        raise ConfigError(f"multilook must be >= 1, got {multilook}")
    pols = ",".join(p.upper() for p in polarisations)
    graph = ET.Element("graph", id="seaice-dask")
    ET.SubElement(graph, "version").text = "1.0"
    _node(graph, "Read", "Read", None, {"file": _read_target(product_path), "formatName": "SENTINEL-1"})
    source = "Read"
    if denoise == "esa":
        _node(graph, "ThermalNoiseRemoval", "ThermalNoiseRemoval", source, {
            "selectedPolarisations": pols, "removeThermalNoise": True, "reIntroduceThermalNoise": False,
        })
        source = "ThermalNoiseRemoval"
    elif denoise != "none":
        raise ConfigError(f"the SNAP engine supports denoise 'esa' or 'none', not {denoise!r}")
    _node(graph, "Calibration", "Calibration", source, {
        "selectedPolarisations": pols, "outputImageInComplex": False, "outputImageScaleInDb": False,
        "outputSigmaBand": True, "outputGammaBand": False, "outputBetaBand": False,
    })
    source = "Calibration"
    if multilook > 1:
        _node(graph, "Multilook", "Multilook", source, {
            "nRgLooks": multilook, "nAzLooks": multilook, "outputIntensity": True, "grSquarePixel": False,
        })
        source = "Multilook"
    _node(graph, "Terrain-Correction", "Terrain-Correction", source, {
        "demName": dem,
        "demResamplingMethod": "BILINEAR_INTERPOLATION",
        "imgResamplingMethod": _RESAMPLING[resampling],
        "pixelSpacingInMeter": float(grid.resolution),
        "mapProjection": CRS.from_user_input(grid.crs).to_wkt(),
        "alignToStandardGrid": True,
        "standardGridOriginX": float(grid.xmin),
        "standardGridOriginY": float(grid.ymax),
        "nodataValueAtSea": False,
        "saveDEM": False,
        "saveLatLon": False,
        "saveIncidenceAngleFromEllipsoid": True,
        "saveSelectedSourceBand": True,
        "outputComplex": False,
    })
    _node(graph, "Write", "Write", "Terrain-Correction", {"file": str(output), "formatName": "GeoTIFF-BigTIFF"})
    ET.indent(graph)
    return ET.tostring(graph, encoding="unicode")


def find_gpt() -> str | None:
    """Path of SNAP's ``gpt`` (``$SNAP_GPT`` or ``PATH``), or ``None``."""
    candidate = os.environ.get("SNAP_GPT")
    if candidate and Path(candidate).is_file():
        return candidate
    return shutil.which("gpt")


def run_snap(
    product_path: str | Path,
    grid: Grid,
    output: str | Path,
    *,
    timeout_s: float = 3600.0,
    **graph_options,
) -> Path:
    """Run the graph with ``gpt``; the GeoTIFF appears at ``output`` only when SNAP succeeded."""
    gpt = find_gpt()
    if gpt is None:
        raise EngineUnavailableError(
            "ESA SNAP's `gpt` was not found (install SNAP with the Sentinel-1 toolbox and put gpt on "
            "PATH or set SNAP_GPT), or use preprocess.engine: native"
        )
    output = Path(output)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".snap-") as tmp:
        partial = Path(tmp) / output.name
        graph_file = Path(tmp) / "graph.xml"
        graph_file.write_text(snap_graph(product_path, partial, grid, **graph_options))
        try:
            done = subprocess.run([gpt, str(graph_file)], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise ProductError(f"SNAP gpt did not finish within {timeout_s:.0f} s", product_path) from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
            raise ProductError(f"SNAP gpt failed ({done.returncode}): {' | '.join(tail)}", product_path)
        written = partial if partial.exists() else partial.with_suffix(".tif")
        if not written.exists():
            raise ProductError("SNAP gpt reported success but wrote no output", product_path)
        written.replace(output)
    return output


def snap_geocode_product(
    product_path: str | Path,
    grid: Grid,
    *,
    polarisations: Sequence[str] = ("HH", "HV"),
    workdir: str | Path | None = None,
    **graph_options,
) -> xr.Dataset:
    """Like :func:`seaice_dask.geocode.geocode_product`, computed by SNAP (eager, in memory).

    SNAP writes the bands in product order: ``Sigma0_<pol>`` per polarisation, then
    ``incidenceAngleFromEllipsoid``.
    """
    pols = [p.upper() for p in polarisations]
    with tempfile.TemporaryDirectory(dir=workdir, prefix="seaice-snap-") as tmp:
        tif = run_snap(product_path, grid, Path(tmp) / "scene.tif", polarisations=pols, **graph_options)
        with rasterio.open(tif) as src:
            if src.count != len(pols) + 1:
                raise ProductError(f"SNAP output has {src.count} bands, expected {len(pols) + 1}", tif)
            bands = []
            for i in range(1, src.count + 1):
                out = np.full(grid.shape, np.nan, dtype=np.float32)
                reproject(
                    rasterio.band(src, i), out, dst_transform=grid.transform, dst_crs=grid.crs,
                    dst_nodata=np.nan, resampling=Resampling.nearest,
                )
                bands.append(out)
    variables: dict[str, xr.DataArray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for pol, band in zip(pols, bands):
            db = np.where(band > 0, 10.0 * np.log10(band), np.nan).astype(np.float32)
            variables[f"sigma0_{pol.lower()}"] = grid.wrap(db, attrs={"units": "dB", "polarisation": pol, "engine": "snap"})
    variables["incidence"] = grid.wrap(bands[-1], attrs={"units": "degree", "engine": "snap"})
    valid = np.logical_and.reduce([np.isfinite(variables[f"sigma0_{p.lower()}"].values) for p in pols])
    variables["valid"] = grid.wrap(valid)
    return xr.Dataset(variables, attrs={"engine": "snap"})
