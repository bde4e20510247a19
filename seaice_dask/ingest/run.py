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
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import dask
import numpy as np

from seaice_dask import coverage, cube
from seaice_dask.coverage import Window
from seaice_dask.config import PipelineConfig
from seaice_dask.errors import CubeError, SeaIceError
from seaice_dask.grid import Grid
from seaice_dask.ingest.passes import Pass, Step, group_passes, prefer_resolution, unique_products
from seaice_dask.ingest.plan import _open_products, find_scenes
from seaice_dask.ingest.prepass import resolve_incidence
from seaice_dask.ingest.report import IngestReport, _fail
from seaice_dask.ingest.writer import _declare_variables, finish_pass, footprint_blocks, pass_writes, prepare_store
from seaice_dask.landmask import land_mask
from seaice_dask.preprocess.incidence import ATTR as INCIDENCE_ATTR
from seaice_dask.preprocess.incidence import IncidenceCorrection

log = logging.getLogger(__name__)
T = TypeVar("T")


def ingest(
    cfg: PipelineConfig, scene_paths: Sequence[Path] | None = None, *, progress: bool = True,
    incidence: IncidenceCorrection | None = None, client: Any = None,
) -> IngestReport:
    """Add every scene of the config (or ``scene_paths``) to the cube ``paths.store``.

    Incremental and resumable: passes already flagged are skipped, new ones get new time slots,
    late slices rewrite their pass's slot.
    Runs on the current dask scheduler (open a cluster with :mod:`seaice_dask.cluster` first to
    use one). Returns an :class:`IngestReport`; bad scenes are listed, not raised.
    ``incidence``: a fixed incidence correction (a trained model's) instead of the config's.
    With a ``client`` (a distributed cluster's), the next pass computes while one is finished
    (:data:`AHEAD`); a pass's time step is flagged only after its data and metadata are written.
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
    # (step, window, its writes computing): the passes in flight, finished in order
    pending: deque[tuple[Step, Window | None, Any]] = deque()
    for step in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(step.pass_.names[0][:32])
        begun = _guarded(report, step, partial(_start, store, step, grid, cfg, incidence, client))
        if begun is not None:
            pending.append((step, *begun))
        while len(pending) > (AHEAD if client is not None else 0):
            _finish(store, grid, cfg, report, client, *pending.popleft())
    while pending:
        _finish(store, grid, cfg, report, client, *pending.popleft())
    report.seconds = time.perf_counter() - started
    log.info(report.summary())
    return report


#: Passes computing while the client finishes an earlier one (with a client): one pass's graph
#: has long serial stretches (reading, the incidence correction of the pass as one image) and the
#: client builds the next graph and writes metadata between passes, so alone it leaves workers idle.
AHEAD = 1


def _start(store: cube.StoreLike, step: Step, grid: Grid, cfg: PipelineConfig,
           incidence: IncidenceCorrection | None, client: Any) -> tuple[Window | None, Any]:
    """The window of a pass and its writes started (:func:`pass_writes`): a future with a
    ``client``, computed here without one (None: nothing to write)."""
    window, writes = pass_writes(store, step, grid, cfg, incidence)
    if writes is None:
        return window, None
    return window, client.compute(writes) if client is not None else dask.compute(writes)[0]


def _finish(store: cube.StoreLike, grid: Grid, cfg: PipelineConfig, report: IngestReport, client: Any,
            step: Step, window: Window | None, started: Any) -> None:
    """Wait for a pass's writes, then record its coverage and coordinates and flag it done
    (:func:`finish_pass`); a failure goes to ``report``, its slot stays unflagged."""
    def finish() -> bool:
        flags = client.gather(started) if client is not None and started is not None else started
        finish_pass(store, step, grid, cfg, window, flags)
        return True

    if _guarded(report, step, finish):
        report.ingested.extend(step.pass_.names)


def _guarded(report: IngestReport, step: Step, call: Callable[[], T]) -> T | None:
    """``call()``, or None with the pass listed as failed in ``report`` if it raised a pipeline
    error or a read error (one broken scene does not stop the run)."""
    where = ", ".join(str(q.path) for q in step.pass_.products)
    try:
        return call()
    except SeaIceError as exc:
        _fail(report, where, str(exc))
    except (OSError, RuntimeError, ValueError) as exc:  # GDAL/rasterio read errors while computing
        _fail(report, where, f"{where}: {type(exc).__name__}: {exc}")
    return None


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
