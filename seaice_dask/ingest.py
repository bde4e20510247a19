"""Ingest Sentinel-1 scenes into the Zarr cube: calibrate, denoise, geocode, write, flag.

One time slice per scene (its acquisition start). For every scene not yet flagged
``done_ingest``: sigma0 per polarisation (dB), incidence angle and the ``valid`` mask are
geocoded onto the cube's grid and region-written, and only then is the slice flagged. A crash
(or SIGKILL) therefore never leaves a slice that looks finished; re-running rewrites the
unflagged slices with the same bytes and skips the flagged ones.

Bad scenes (unreadable zip, missing polarisation, no overlap with the grid, a read error while
computing) are skipped with a warning and listed in :class:`IngestReport`, so one broken
download does not stop a season's ingest; the caller decides whether that is an error
(``IngestReport.ok``). A scene whose slot was created but whose write failed stays unflagged and
is retried by the next run.

Radiometric corrections (``preprocess.incidence``, ``preprocess.textural_noise``) are applied in
radar geometry by :func:`~seaice_dask.geocode.geocode_product`. A cube holds one correction: it is
recorded in the cube's attrs (``incidence_correction``, ``textural_noise``) before the first
slice is written, reused on resume and when scenes are added, and a config asking for another is
a CubeError naming both settings, as is another ``preprocess.denoise``
(:mod:`seaice_dask.preprocess.radiometry`). Estimated slopes come from a pre-pass over decimated
samples of every scene of the run (:func:`estimate_season_slopes`), so the first run should hold
the whole season.

Variables (see ``DESIGN.md``): ``sigma0_<pol>`` dB float32 (NaN outside the footprint),
``incidence`` degrees float32, ``valid`` bool (every polarisation finite), and the static
``land`` (y, x) bool, re-burnt on every run from ``paths.land`` (cheap, idempotent, and it
follows a changed land file or buffer).
"""

from __future__ import annotations

import glob
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd

from seaice_dask import cube
from seaice_dask.config import PipelineConfig
from seaice_dask.errors import ConfigError, CubeError, SeaIceError
from seaice_dask.geocode import TiePoints, footprint_bounds, geocode_product, union_bounds
from seaice_dask.grid import Grid
from seaice_dask.landmask import land_mask
from seaice_dask.preprocess.incidence import ATTR as INCIDENCE_ATTR
from seaice_dask.preprocess.incidence import (
    IncidenceCorrection,
    check_compatible,
    concat_samples,
    estimate_slopes,
    scene_samples,
)
from seaice_dask.preprocess.radiometry import Radiometry, check_cube_radiometry

log = logging.getLogger(__name__)

STAGE = "ingest"
#: Per-scene metadata stored as coordinates along ``time``.
SCENE_COORDS = ("product_id", "mission", "ipf_version", "relative_orbit", "denoise")
#: Grid resolution (m) of the land mask and chart labels looked up by the incidence pre-pass.
PREPASS_RESOLUTION_M = 1000.0


@dataclass
class IngestReport:
    """What one ingest run did: scene names per outcome and the store written."""

    store: cube.StoreLike
    ingested: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the cube
    excluded: list[str] = field(default_factory=list)  # outside the date range or the grid
    failed: dict[str, str] = field(default_factory=dict)  # path or name → reason
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        return (
            f"{self.store}: {len(self.ingested)} ingested, {len(self.skipped)} already present, "
            f"{len(self.excluded)} excluded, {len(self.failed)} failed ({self.seconds:.1f} s)"
        )


def find_scenes(cfg: PipelineConfig) -> list[Path | str]:
    """Scene paths matching ``paths.scenes`` (globs relative to ``paths.workdir``, or ``s3://``
    URL globs read in place), sorted."""
    found: set[Path | str] = set()
    for pattern in cfg.paths.scenes:
        if pattern.startswith("s3://"):
            from seaice_dask.safe.objectstore import list_remote

            found.update(list_remote(pattern))
        else:
            found.update(Path(p) for p in glob.glob(str(cfg.path(pattern))))
    return sorted(found, key=str)


def _utc_us(value: Any) -> np.datetime64:
    """Acquisition time as naive-UTC microseconds (the cube's time resolution)."""
    return pd.Timestamp(value).as_unit("us").to_datetime64()


def _open_products(paths: Sequence[Path], cfg: PipelineConfig, report: IngestReport) -> list[Any]:
    """Open and check every scene; bad ones go to ``report.failed``, filtered ones to ``excluded``."""
    from seaice_dask.safe import open_safe

    pols = [p.upper() for p in cfg.preprocess.polarisations]
    products: dict[np.datetime64, Any] = {}
    for path in paths:
        try:
            product = open_safe(path)
        except SeaIceError as exc:
            _fail(report, str(path), str(exc))
            continue
        missing = [p for p in pols if p not in product.polarisations]
        if missing:
            _fail(report, str(path), f"{path}: polarisation(s) {', '.join(missing)} missing "
                  f"(product has {', '.join(product.polarisations)})")
            continue
        day = pd.Timestamp(product.start_time).date()
        if (cfg.dates.start and day < cfg.dates.start) or (cfg.dates.end and day > cfg.dates.end):
            report.excluded.append(product.name)
            continue
        when = _utc_us(product.start_time)
        if when in products:  # the same acquisition as a SAFE folder and a zip
            log.info("%s: same acquisition as %s, ignored", path, products[when].path)
            continue
        products[when] = product
    return [products[t] for t in sorted(products)]


def _fail(report: IngestReport, key: str, message: str) -> None:
    report.failed[key] = message
    warnings.warn(f"skipping scene: {message}", stacklevel=3)


def plan_grid(cfg: PipelineConfig, products: Sequence[Any]) -> Grid:
    """The grid of a new cube: from ``grid.bounds``, or the union of the scene footprints."""
    if cfg.grid.bounds is not None:
        return cfg.grid.to_grid()
    if not products:
        raise CubeError("grid.bounds is null and there are no scenes to take the grid from")
    bounds = union_bounds([footprint_bounds(TiePoints.from_product(p), cfg.grid.crs) for p in products])
    return Grid.from_bounds(cfg.grid.crs, bounds, cfg.grid.resolution_m)


def _overlaps(product: Any, grid: Grid) -> bool:
    xmin, ymin, xmax, ymax = footprint_bounds(TiePoints.from_product(product), grid.crs)
    return xmin < grid.xmax and xmax > grid.xmin and ymin < grid.ymax and ymax > grid.ymin


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


def _scene_samples(path: Path, pols: list[str], coarse: Grid, land: np.ndarray, labels: np.ndarray | None):
    from seaice_dask.safe import open_safe

    return scene_samples(open_safe(path), pols, coarse, land, labels)


def _chart_maps(cfg: PipelineConfig, products: Sequence[Any], coarse: Grid) -> list[np.ndarray | None]:
    """Chart labels (coarse grid) valid at each scene, None where no chart is near enough."""
    # the charts stage runs after ingest; the pre-pass only borrows its rasteriser
    from seaice_dask.charts.labels import chart_labels
    from seaice_dask.charts.rasterize import select_chart
    from seaice_dask.charts.read import chart_date

    charts = sorted({Path(p) for pattern in cfg.paths.charts for p in glob.glob(str(cfg.path(pattern)))})
    try:
        dates = [chart_date(p, cfg.charts.dates) for p in charts]
    except SeaIceError as exc:
        log.warning("incidence pre-pass without charts: %s", exc)
        return [None] * len(products)
    cache: dict[int, np.ndarray] = {}
    out = []
    for product in products:
        index = select_chart(dates, pd.Timestamp(product.start_time), cfg.charts.max_days) if charts else None
        if index is not None and index not in cache:
            try:
                cache[index] = chart_labels(charts[index], coarse, cfg.charts).values
            except SeaIceError as exc:
                log.warning("incidence pre-pass: chart %s unusable (%s)", charts[index], exc)
                cache[index] = None
        out.append(None if index is None else cache[index])
    return out


def resolve_incidence(cfg: PipelineConfig, store: cube.StoreLike, products: Sequence[Any], grid: Grid) -> IncidenceCorrection:
    """The incidence correction of this cube, recorded in its attrs before any slice is written.

    A cube keeps one correction: a recorded one is reused (resume, new scenes) when the config
    asks for the same method and reference (and, if given, the same slopes); anything else is a
    CubeError. Estimated slopes come from a pre-pass over decimated radar samples of all
    ``products`` (:mod:`seaice_dask.preprocess.incidence`) with the charts' ice classes when
    charts are available.
    """
    inc, pols = cfg.preprocess.incidence, [p.lower() for p in cfg.preprocess.polarisations]
    attrs = cube.cube_attrs(store)
    recorded = IncidenceCorrection.from_attrs(attrs.get(INCIDENCE_ATTR)) if INCIDENCE_ATTR in attrs else None
    finished = cube.done(store, STAGE)
    if recorded is None and finished.any():
        recorded = IncidenceCorrection()  # ingested before corrections were recorded: none
    if recorded is not None:  # another denoising, textural noise or method: refused, both named
        denoise = cube.open_cube(store)["denoise"].values[finished]
        check_cube_radiometry(Radiometry.of_attrs(attrs, denoise), Radiometry.of_config(cfg.preprocess), store)
    if inc.correction == "none":
        wanted = IncidenceCorrection()
    elif inc.correction == "class" and inc.slopes_db_per_deg is not None:
        raise ConfigError("preprocess.incidence.slopes_db_per_deg is for correction: linear; "
                          "correction: class estimates its per-class slopes")
    elif inc.slopes_db_per_deg is not None:
        missing = [p for p in pols if p not in inc.slopes_db_per_deg]
        if missing:
            raise ConfigError(f"preprocess.incidence.slopes_db_per_deg lacks {missing}")
        wanted = IncidenceCorrection("linear", inc.reference_deg, {p: inc.slopes_db_per_deg[p] for p in pols}, "config")
    elif recorded is not None:
        wanted = recorded  # the season's estimate, made once (same method and reference: checked above)
    else:
        wanted = estimate_season_slopes(cfg, products, grid)
    if recorded is not None:
        check_compatible(recorded, wanted, store)
    cube.set_cube_attrs(store, **{INCIDENCE_ATTR: wanted.to_attrs(), "textural_noise": cfg.preprocess.textural_noise})
    return wanted


def estimate_season_slopes(cfg: PipelineConfig, products: Sequence[Any], grid: Grid) -> IncidenceCorrection:
    """Season correction (``linear`` slopes or ``class`` model) from decimated samples of every
    scene, one dask task per scene."""
    pols = [p.upper() for p in cfg.preprocess.polarisations]
    coarse = Grid.from_bounds(grid.crs, grid.bounds, max(grid.resolution, PREPASS_RESOLUTION_M))
    land = land_mask(coarse, cfg.paths.land, buffer_m=cfg.preprocess.land_buffer_m).values
    charts = _chart_maps(cfg, products, coarse)
    tasks = [dask.delayed(_scene_samples, pure=True)(p.path, pols, coarse, land, c) for p, c in zip(products, charts)]
    parts = dask.compute(*tasks)
    if any(c is None for c in charts):  # unlabelled scenes: labels only where a chart is
        parts = [p if "labels" in p else {**p, "labels": np.full(p["incidence"].shape, -1)} for p in parts]
    inc = cfg.preprocess.incidence
    correction = estimate_slopes(concat_samples(parts), pols, inc.reference_deg, inc.correction)
    log.info("incidence slopes (dB/deg) from %d scenes: %s", len(products), correction.to_attrs())
    return correction


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


def ingest(
    cfg: PipelineConfig, scene_paths: Sequence[Path] | None = None, *, progress: bool = True
) -> IngestReport:
    """Add every scene of the config (or ``scene_paths``) to the cube ``paths.store``.

    Incremental and resumable: scenes already flagged are skipped, new ones get new time slots.
    Runs on the current dask scheduler (open a cluster with :mod:`seaice_dask.cluster` first to
    use one). Returns an :class:`IngestReport`; bad scenes are listed, not raised.
    """
    started = time.perf_counter()
    store = cube.cube_store(cfg)
    report = IngestReport(store=store)
    paths = list(scene_paths) if scene_paths is not None else find_scenes(cfg)
    if not paths:
        raise CubeError(f"no scenes found (paths.scenes: {cfg.paths.scenes} in {cfg.paths.workdir})")
    products = _open_products(paths, cfg, report)
    if not products and not cube.cube_exists(store):
        report.seconds = time.perf_counter() - started
        return report
    grid, products = _prepare_store(store, cfg, products, report)
    index = _time_index(store)
    finished = cube.done(store, STAGE)
    todo = []
    for product in products:
        t = index[_utc_us(product.start_time)]
        if finished[t]:
            report.skipped.append(product.name)
        else:
            todo.append((t, product))
    if todo or INCIDENCE_ATTR in cube.cube_attrs(store):  # a changed config is refused even with nothing to do
        incidence = resolve_incidence(cfg, store, products, grid)
    if todo:
        _declare_variables(store, cfg.preprocess.polarisations, cfg.preprocess.denoise)
        cube.write_slice(store, "land", None,
                         land_mask(grid, cfg.paths.land, buffer_m=cfg.preprocess.land_buffer_m, chunk=cfg.grid.chunk))
    bar = _progress(todo, progress)
    for t, product in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(product.name[:32])
        try:
            ingest_scene(store, t, product, grid, cfg, incidence)
        except SeaIceError as exc:
            _fail(report, str(product.path), str(exc))
            continue
        except (OSError, RuntimeError, ValueError) as exc:  # GDAL/rasterio read errors while computing
            _fail(report, str(product.path), f"{product.path}: {type(exc).__name__}: {exc}")
            continue
        report.ingested.append(product.name)
    report.seconds = time.perf_counter() - started
    log.info(report.summary())
    return report


def _progress(items: list, enabled: bool):
    if not enabled or not items:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="ingest", unit="scene")


def validate_ingest(store: cube.StoreLike) -> list[str]:
    """Problems in a cube: :func:`seaice_dask.cube.validate_cube` plus the ingest variables.

    For every flagged slice: the sigma0 variables exist, ``valid`` equals "every sigma0 finite",
    some pixel is valid, and the scene metadata is filled in. Reads the flagged slices.
    """
    problems = cube.validate_cube(store)
    if problems and any("not a seaice-dask cube" in p or "no cube here" in p for p in problems):
        return problems
    ds = cube.open_cube(store)
    flags = cube.done(store, STAGE)
    sigma = [v for v in ds.data_vars if str(v).startswith("sigma0_")]
    if flags.any() and not sigma:
        return problems + ["slices are flagged ingested but there is no sigma0 variable"]
    for name in ("incidence", "valid", "land"):
        if flags.any() and name not in ds:
            problems.append(f"slices are flagged ingested but {name!r} is missing")
    for t in np.flatnonzero(flags):
        label = f"slice {t} ({pd.Timestamp(ds.time.values[t])})"
        for name in SCENE_COORDS:
            if name in ds.coords and str(ds[name].values[t]) in ("", "nan"):
                problems.append(f"{label}: {name} is empty")
        if "valid" not in ds:
            continue
        finite = np.logical_and.reduce([np.isfinite(ds[v].isel(time=t)) for v in sigma])
        valid = ds["valid"].isel(time=t)
        mismatch, n_valid = dask.compute((finite != valid).sum(), valid.sum())
        if int(mismatch):
            problems.append(f"{label}: valid differs from finite sigma0 at {int(mismatch)} pixels")
        if not int(n_valid):
            problems.append(f"{label}: flagged ingested but has no valid pixel")
    return problems
