"""Ingest Sentinel-1 scenes into the Zarr cube: calibrate, denoise, geocode, write, flag.

One time step per pass (:mod:`~seaice_dask.ingest.passes`: its slices mosaicked, stamped with
the data-take segment start), or per product with ``preprocess.assemble_passes: false``. For
every pass not yet flagged ``done_ingest``: sigma0 per polarisation (dB), incidence angle and
the ``valid`` mask are geocoded onto the cube's grid and region-written, and only then is the
step flagged. A crash (or SIGKILL) therefore never leaves a step that looks finished;
re-running rewrites the unflagged steps with the same bytes and skips the flagged ones. A slice
arriving after its pass was ingested rewrites that step in place and clears the later stages'
flags of it, so they recompute it.

Bad scenes (unreadable zip, missing polarisation, no overlap with the grid, a read error while
computing) are skipped with a warning and listed in :class:`IngestReport`, so one broken
download does not stop a season's ingest; the caller decides whether that is an error
(``IngestReport.ok``). A scene whose slot was created but whose write failed stays unflagged and
is retried by the next run.

Radiometric corrections (``preprocess.incidence``, ``preprocess.textural_noise``) are applied in
radar geometry by :func:`~seaice_dask.geocode.geocode_product`. A cube holds one correction: it is
recorded in the cube's attrs (``incidence_correction``, ``textural_noise``) before the first
slice is written, reused on resume and when scenes are added, and a config asking for another is
a CubeError. Estimated slopes come from a pre-pass over decimated samples of every scene of the
run (:func:`estimate_season_slopes`), so the first run should hold the whole season.

Variables (see ``DESIGN.md``): ``sigma0_<pol>`` dB float32 (NaN outside the footprint),
``incidence`` degrees float32, ``valid`` bool (every polarisation finite), and the static
``land`` (y, x) bool, re-burnt on every run from ``paths.land`` (cheap, idempotent, and it
follows a changed land file or buffer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seaice_dask import coverage, cube
from seaice_dask.config import PipelineConfig
from seaice_dask.errors import CubeError, SeaIceError
from seaice_dask.grid import Grid
from seaice_dask.ingest.passes import Pass, group_passes, prefer_resolution, unique_products
from seaice_dask.ingest.plan import _open_products, find_scenes
from seaice_dask.ingest.prepass import resolve_incidence
from seaice_dask.ingest.report import IngestReport, _fail
from seaice_dask.ingest.writer import _declare_variables, footprint_blocks, ingest_pass, prepare_store
from seaice_dask.landmask import land_mask
from seaice_dask.preprocess.incidence import ATTR as INCIDENCE_ATTR
from seaice_dask.preprocess.incidence import IncidenceCorrection

log = logging.getLogger(__name__)


def ingest(
    cfg: PipelineConfig, scene_paths: Sequence[Path] | None = None, *, progress: bool = True,
    incidence: IncidenceCorrection | None = None,
) -> IngestReport:
    """Add every scene of the config (or ``scene_paths``) to the cube ``paths.store``.

    Incremental and resumable: passes already flagged are skipped, new ones get new time slots,
    late slices rewrite their pass's slot.
    Runs on the current dask scheduler (open a cluster with :mod:`seaice_dask.cluster` first to
    use one). Returns an :class:`IngestReport`; bad scenes are listed, not raised.
    ``incidence``: a fixed incidence correction (a trained model's) instead of the config's.
    """
    started = time.perf_counter()
    store = cube.cube_store(cfg)
    report = IngestReport(store=store)
    paths = list(scene_paths) if scene_paths is not None else find_scenes(cfg)
    if not paths:
        raise CubeError(f"no scenes found (paths.scenes: {cfg.paths.scenes} in {cfg.paths.workdir})")
    products = _open_products(paths, cfg, report)
    products = prefer_resolution(unique_products(products), cfg.download.product)
    passes, refused = group_passes(products, assemble=cfg.preprocess.assemble_passes)
    for product, reason in refused.items():
        _fail(report, str(product.path), reason)
    if not passes and not cube.cube_exists(store):
        report.seconds = time.perf_counter() - started
        return report
    grid, todo, finished = prepare_store(store, cfg, passes, report)
    report.skipped.extend(name for p in finished for name in p.names)
    if todo or INCIDENCE_ATTR in cube.cube_attrs(store):  # a changed config is refused even with nothing to do
        products = [q for p in [*finished, *(s.pass_ for s in todo)] for q in p.products]
        incidence = resolve_incidence(cfg, store, sorted(products, key=lambda q: q.start_time), grid, fixed=incidence)
    if todo:
        _declare_variables(store, cfg.preprocess.polarisations, cfg.preprocess.denoise)
        cube.write_slice(store, "land", None,
                         land_mask(grid, cfg.paths.land, buffer_m=cfg.preprocess.land_buffer_m, chunk=cfg.grid.chunk),
                         blocks=_land_blocks(store, [s.pass_ for s in todo], grid, cfg))
    bar = _progress(todo, progress)
    for step in bar:
        names = step.pass_.names
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(names[0][:32])
        where = ", ".join(str(q.path) for q in step.pass_.products)
        try:
            ingest_pass(store, step, grid, cfg, incidence)
        except SeaIceError as exc:
            _fail(report, where, str(exc))
            continue
        except (OSError, RuntimeError, ValueError) as exc:  # GDAL/rasterio read errors while computing
            _fail(report, where, f"{where}: {type(exc).__name__}: {exc}")
            continue
        report.ingested.extend(names)
    report.seconds = time.perf_counter() - started
    log.info(report.summary())
    return report


def _land_blocks(store: cube.StoreLike, passes: Sequence[Pass], grid: Grid, cfg: PipelineConfig) -> np.ndarray:
    """The blocks that need land: those of the grid any time step covers or a pass to ingest
    reaches (land is static; elsewhere no stage looks at it)."""
    chunk, pol = cfg.grid.chunk, cfg.preprocess.polarisations[0].upper()
    blocks = np.zeros(coverage.block_counts(grid.shape, chunk), dtype=bool)
    stored = cube.read_coverage(store)
    if stored is not None and stored.shape[1:] == blocks.shape:
        blocks |= stored.any(axis=0)
    for p in passes:
        blocks |= footprint_blocks(p.tie_points(pol)[0], grid, chunk)
    return blocks


def _progress(items: list, enabled: bool):
    if not enabled or not items:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="ingest", unit="pass")
