"""Writing scenes into the cube: the variables, the time slots, and one slice per scene.

A slice is flagged ``done_ingest`` only after all its variables are written, so a crash never
leaves a slice that looks finished.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np

from seaice_dask import cube
from seaice_dask.config import PipelineConfig
from seaice_dask.errors import ConfigError, CubeError
from seaice_dask.geocode import geocode_product
from seaice_dask.grid import Grid
from seaice_dask.ingest.plan import _overlaps, _utc_us, plan_grid
from seaice_dask.ingest.report import IngestReport
from seaice_dask.preprocess.incidence import IncidenceCorrection

log = logging.getLogger(__name__)

STAGE = "ingest"
#: Per-scene metadata stored as coordinates along ``time``.
SCENE_COORDS = ("product_id", "mission", "ipf_version", "relative_orbit", "denoise")


def _scene_coords(products: Sequence[Any], denoise: str) -> dict[str, list]:
    return {
        "product_id": [p.name for p in products],
        "mission": [p.mission for p in products],
        "ipf_version": [str(p.ipf_version) for p in products],
        "relative_orbit": [int(p.relative_orbit) for p in products],
        "denoise": [denoise for _ in products],
    }


def _declare_variables(store: cube.StoreLike, pols: Sequence[str], denoise: str) -> None:
    f32 = dict(dtype="float32", fill_value=np.float32(np.nan))
    for pol in pols:
        cube.ensure_variable(
            store, f"sigma0_{pol.lower()}", **f32,
            attrs={"long_name": f"sigma0 {pol}", "units": "dB", "polarisation": pol, "denoise": denoise,
                   "standard_name": "surface_backwards_scattering_coefficient_of_radar_wave"},
        )
    cube.ensure_variable(store, "incidence", **f32, attrs={"long_name": "incidence angle", "units": "degree",
                                                          "standard_name": "angle_of_incidence"})
    cube.ensure_variable(store, "valid", dtype="bool", fill_value=False,
                         attrs={"long_name": "finite sigma0 in every polarisation"})
    cube.ensure_variable(store, "land", dtype="bool", fill_value=False, static=True,
                         attrs={"long_name": "land", "flag_values": [0, 1], "flag_meanings": "sea land"})


def _prepare_store(store: cube.StoreLike, cfg: PipelineConfig, products: list[Any], report: IngestReport) -> tuple[Grid, list[Any]]:
    """Create the cube or add time slots for new scenes; returns its grid and the scenes on it."""
    if cube.cube_exists(store):
        grid = cube.cube_grid(store)
        if cfg.grid.bounds is not None and cfg.grid.to_grid() != grid:
            raise CubeError(f"the cube's grid {grid} differs from the config's {cfg.grid.to_grid()}", store)
    else:
        grid = plan_grid(cfg, products)
    on_grid = []
    for product in products:
        if _overlaps(product, grid):
            on_grid.append(product)
        else:
            log.warning("%s: footprint does not overlap the grid, excluded", product.path)
            report.excluded.append(product.name)
    coords = _scene_coords(on_grid, cfg.preprocess.denoise)
    times = [_utc_us(p.start_time) for p in on_grid]
    if not cube.cube_exists(store):
        cube.create_cube(store, grid, times, coords, chunk=cfg.grid.chunk,
                         attrs={"title": f"{cfg.name} Sentinel-1 sea-ice cube"})
    elif times:
        cube.append_times(store, times, coords)
    return grid, on_grid


def _time_index(store: cube.StoreLike) -> dict[np.datetime64, int]:
    times = cube.open_cube(store)["time"].values
    return {np.datetime64(t, "us"): i for i, t in enumerate(times)}


def ingest_scene(store: cube.StoreLike, t: int, product: Any, grid: Grid, cfg: PipelineConfig,
                 incidence: IncidenceCorrection | None = None) -> None:
    """Geocode one scene and write it to slice ``t``; flag it done last."""
    pols = [p.upper() for p in cfg.preprocess.polarisations]
    pre = cfg.preprocess
    options = dict(polarisations=pols, denoise=pre.denoise, multilook=pre.multilook, resampling=pre.resampling)
    if pre.engine == "snap":
        from seaice_dask.preprocess.snap import snap_geocode_product

        if pre.textural_noise or pre.incidence.correction != "none":
            raise ConfigError("preprocess.incidence and textural_noise need engine: native")
        workdir = store.parent if isinstance(store, Path) else None  # SNAP writes local files
        ds = snap_geocode_product(product.path, grid, workdir=workdir, **options)
    else:
        ds = geocode_product(product, grid, chunk=cfg.grid.chunk, incidence_correction=incidence,
                             textural_noise=pre.textural_noise, **options)
        (ds,) = dask.persist(ds)  # one pass over the radar data for every variable
    for name in ds.data_vars:
        cube.write_slice(store, str(name), t, ds[name])
    for name, values in _scene_coords([product], pre.denoise).items():
        cube.set_slice_coord(store, name, t, values[0])
    cube.mark_done(store, STAGE, t)
