"""Writing passes into the cube: the variables, the time slots, and one time step per pass.

A step is flagged ``done_ingest`` only after all its variables are written, so a crash never
leaves a step that looks finished.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.delayed import Delayed

from seaice_dask import coverage, cube
from seaice_dask.coverage import Window
from seaice_dask.config import PipelineConfig
from seaice_dask.errors import ConfigError, CubeError
from seaice_dask.geocode import RADAR_CHUNK, TiePoints, geocode_product
from seaice_dask.grid import Grid
from seaice_dask.ingest.passes import Pass, Step, assign_steps, mosaic, stored_names
from seaice_dask.ingest.plan import _overlaps, plan_grid
from seaice_dask.ingest.report import IngestReport, _fail
from seaice_dask.preprocess.incidence import IncidenceCorrection

log = logging.getLogger(__name__)

STAGE = "ingest"
#: Per-time-step metadata stored as coordinates along ``time`` (checked by validate_ingest).
SCENE_COORDS = ("product_id", "mission", "ipf_version", "relative_orbit", "denoise")
#: All of them: cubes made before pass assembly lack the last two on their older steps.
PASS_COORDS = (*SCENE_COORDS, "absolute_orbit", "pass_direction")


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


def _on_grid(passes: list[Pass], grid: Grid, report: IngestReport) -> list[Pass]:
    """The passes reduced to their products overlapping ``grid`` (others excluded with a warning)."""
    kept = []
    for p in passes:
        products = []
        for product in p.products:
            if _overlaps(product, grid):
                products.append(product)
            else:
                log.warning("%s: footprint does not overlap the grid, excluded", product.path)
                report.excluded.append(product.name)
        if products:
            kept.append(replace(p, products=tuple(products)))
    return kept


def prepare_store(store: cube.StoreLike, cfg: PipelineConfig, passes: list[Pass],
                  report: IngestReport) -> tuple[Grid, list[Step], list[Pass]]:
    """Create the cube or add time slots for new passes; returns its grid, the steps to write
    (each with its slot) and the passes already in the cube. Refused products go to ``report``."""
    exists = cube.cube_exists(store)
    if exists:
        grid = cube.cube_grid(store)
        if cfg.grid.bounds is not None and cfg.grid.to_grid() != grid:
            raise CubeError(f"the cube's grid {grid} differs from the config's {cfg.grid.to_grid()}", store)
    else:
        grid = plan_grid(cfg, [q for p in passes for q in p.products])
    passes = _on_grid(passes, grid, report)
    if exists:
        cube.finish_removal(store)  # a merge interrupted by a crash
        ds = cube.open_cube(store)
        ids = ds["product_id"].values if "product_id" in ds.coords else [""] * ds.sizes["time"]
        steps, finished, refused = assign_steps(passes, stored_names(ids), ds["time"].values, cube.done(store, STAGE),
                                                assemble=cfg.preprocess.assemble_passes)
        steps = _merge_steps(store, steps, ds["time"].values, Path(cfg.paths.reports))
    else:
        steps, finished, refused = [Step(p, None) for p in passes], [], {}
    for product, reason in refused.items():
        _fail(report, str(product.path), reason)
    stamps: dict[Any, Pass] = {}
    for s in [s for s in steps if s.t is None]:
        if s.pass_.time in stamps:  # two passes, one time stamp: a time step holds one pass
            for product in s.pass_.products:
                _fail(report, str(product.path), f"{product.path}: same time stamp {s.pass_.time} as "
                      f"{stamps[s.pass_.time].names[0]}, another pass; not ingested")
            steps.remove(s)
        else:
            stamps[s.pass_.time] = s.pass_
    new = list(stamps.values())
    coords = {k: [p.coords(cfg.preprocess.denoise)[k] for p in new] for k in PASS_COORDS}
    times = [p.time for p in new]
    if not exists:
        cube.create_cube(store, grid, times, coords, chunk=cfg.grid.chunk,
                         attrs={"title": f"{cfg.name} Sentinel-1 sea-ice cube"})
    elif times:
        cube.append_times(store, times, coords)
    index = {np.datetime64(t, "us"): i for i, t in enumerate(cube.open_cube(store)["time"].values)}
    steps = [s if s.t is not None else Step(s.pass_, index[s.pass_.time]) for s in steps]
    return grid, steps, finished


def _merge_steps(store: cube.StoreLike, steps: list[Step], times: Sequence[Any], reports: Path) -> list[Step]:
    """Remove the slots that merging steps absorb (their exported maps first, then the cube's
    slots: :func:`~seaice_dask.cube.remove_times`), and renumber the steps to the cube after it.

    Maps first: an interrupted merge leaves the absorbed slot's names in the cube, so the next run
    merges again (removing absent files is a no-op); the merged slot is rewritten by the caller.
    """
    from seaice_dask.export import remove_maps  # GIS libraries: only when a merge happens

    absorbed = sorted(t for s in steps for t in s.absorbs)
    if not absorbed:
        return steps
    for t in absorbed:
        removed = remove_maps(reports, times[t])
        log.info("merged the time step %s into its pass; removed %d map files", times[t], len(removed))
    moved = cube.remove_times(store, absorbed)
    return [replace(s, t=None if s.t is None else moved[s.t], absorbs=()) for s in steps]


def _noise_scalings(p: Pass, cfg: PipelineConfig) -> dict[str, Any] | None:
    """Per polarisation, the NERSC noise scaling of the pass, pooled over its slices (lazy);
    None where each product estimates its own (one product, or another denoising)."""
    if cfg.preprocess.denoise != "nersc" or len(p.products) == 1:
        return None
    from seaice_dask.preprocess.nersc import noise_scaling

    chunks = (RADAR_CHUNK, RADAR_CHUNK)  # geocode_product's reads: the sums share them
    return {pol.upper(): noise_scaling(p.products, pol.upper(), chunks) for pol in cfg.preprocess.polarisations}


def _neighbours(p: Pass, cfg: PipelineConfig) -> list[Any]:
    """Per slice, the lines of its neighbouring slices that the textural correction's local
    means reach (None: one product, or no textural correction)."""
    if not cfg.preprocess.textural_noise or len(p.products) == 1:
        return [None] * len(p.products)
    from seaice_dask.preprocess.textural import WINDOW

    return p.neighbour_lines(WINDOW // 2)


def _corrected_together(p: Pass, lines: Sequence[int], cfg: PipelineConfig, incidence: IncidenceCorrection | None,
                        scalings: dict[str, Any] | None, neighbours: Sequence[Any]) -> list[Any]:
    """Per slice, its multilooked σ0 and θ with the class-aware incidence correction applied to
    the pass as one image (:func:`~seaice_dask.preprocess.incidence.correct_pass`: the cells along
    a slice boundary are the whole pass's); None where each product is corrected on its own (one
    product, a per-pixel correction, or the SNAP engine, which refuses corrections)."""
    pre = cfg.preprocess
    if len(p.products) == 1 or incidence is None or incidence.method != "class" or pre.engine != "native":
        return [None] * len(p.products)
    from seaice_dask.geocode import multilooked_radars
    from seaice_dask.preprocess.incidence import cell_pixels, correct_pass

    pols = [pol.upper() for pol in pre.polarisations]
    parts = [multilooked_radars(q, pols, denoise=pre.denoise, multilook=pre.multilook, textural_noise=pre.textural_noise,
                                first_line=n, noise_scalings=scalings, neighbours=near)
             for q, n, near in zip(p.products, lines, neighbours)]
    cell = cell_pixels(p.products[0].pixel_spacing[0] * pre.multilook)
    corrected = correct_pass([{pol: m[pol] for pol in pols} for m in parts], [m["incidence"] for m in parts],
                             p.multilooked_rows(pre.multilook), incidence, cell)
    return [{**m, **c} for m, c in zip(parts, corrected)]


def footprint_blocks(tie_points: TiePoints, grid: Grid, chunk: int) -> np.ndarray:
    """The blocks of ``grid`` a pass's footprint (its ``tie_points``) reaches."""
    return coverage.footprint_blocks(*tie_points.projected(grid.crs), grid, chunk)


def _geocode(product: Any, first_line: int, tie_points: TiePoints, store: cube.StoreLike, grid: Grid,
             cfg: PipelineConfig, incidence: IncidenceCorrection | None, scalings: dict[str, Any] | None,
             neighbours: Any, window: Window, blocks: np.ndarray, multilooked: Any = None) -> Any:
    """One slice on the grid's ``window`` from radar line ``first_line`` on, mapped with its
    pass's ``tie_points``, denoised with its pass's noise ``scalings`` and textural-corrected with
    its ``neighbours``' lines (lazy with the native engine); ``multilooked``: its σ0 and θ already
    corrected with the pass (:func:`_corrected_together`); only the window's ``blocks`` its footprint
    reaches are computed."""
    pols = [p.upper() for p in cfg.preprocess.polarisations]
    pre = cfg.preprocess
    options = dict(polarisations=pols, denoise=pre.denoise, multilook=pre.multilook, resampling=pre.resampling)
    if pre.engine == "snap":
        from seaice_dask.preprocess.snap import snap_geocode_product

        if pre.textural_noise or pre.incidence.correction != "none":
            raise ConfigError("preprocess.incidence and textural_noise need engine: native")
        workdir = store.parent if isinstance(store, Path) else None  # SNAP writes local files
        return coverage.crop(snap_geocode_product(product.path, grid, workdir=workdir, **options), window)
    return geocode_product(product, grid, chunk=cfg.grid.chunk, incidence_correction=incidence,
                           textural_noise=pre.textural_noise, first_line=first_line, tie_points=tie_points,
                           noise_scalings=scalings, neighbours=neighbours, window=window, blocks=blocks,
                           multilooked=multilooked, **options)


def pass_writes(store: cube.StoreLike, step: Step, grid: Grid, cfg: PipelineConfig,
                incidence: IncidenceCorrection | None = None) -> tuple[Window | None, Delayed | None]:
    """The grid window of one pass and the lazy writes of its slices, geocoded and mosaicked, into
    slot ``step.t``: of the blocks its footprint reaches, those holding a valid pixel, and the
    Delayed computes to their flags (the window's blocks, for :func:`finish_pass`). (None, None):
    its footprint misses the grid. One computation writes the pass and learns what it covers, so
    the radar data is read once and the client does not wait on the workers in between.

    NERSC noise scaling (and with it the textural correction's noise field) is estimated once
    per pass from all its slices, the textural correction's local means near a slice boundary
    take in the neighbouring slice's lines, and the class-aware incidence correction takes the
    slices as one image, so slices meet without a radiometric step.

    Every stage's flag of the slot is cleared first, so a rewritten (late slice) or interrupted
    slot never looks finished and the later stages recompute it.
    """
    cube.clear_done(store, step.t)
    p = step.pass_
    lines, ties = p.first_lines(cfg.preprocess.multilook), p.tie_points(cfg.preprocess.polarisations[0].upper())
    chunk = cfg.grid.chunk
    # the pass's footprint (every slice's tie points hold the whole pass) bounds what is computed
    reached = footprint_blocks(ties[0], grid, chunk)
    window = coverage.blocks_window(reached, chunk, grid.shape)
    if window is None:
        return None, None
    scalings, neighbours = _noise_scalings(p, cfg), _neighbours(p, cfg)
    blocks = reached[coverage.window_blocks(window, chunk)]
    together = _corrected_together(p, lines, cfg, incidence, scalings, neighbours)
    ds = mosaic([_geocode(q, n, tie, store, grid, cfg, incidence, scalings, near, window, blocks, ml)
                 for q, n, tie, near, ml in zip(p.products, lines, ties, neighbours, together)])
    # the native engine leaves the blocks it does not reach empty; SNAP's output is not bounded by them
    candidates = blocks if cfg.preprocess.engine == "native" else None
    return window, cube.slice_writes(store, step.t, {str(n): ds[n] for n in ds.data_vars}, window, candidates,
                                     where="valid")


def finish_pass(store: cube.StoreLike, step: Step, grid: Grid, cfg: PipelineConfig, window: Window | None,
                flags: np.ndarray | None) -> None:
    """Record which blocks slot ``step.t`` covers (``flags``: those of ``window`` that
    :func:`pass_writes` wrote) and its pass's coordinates, then flag it done: last, once its data
    and metadata are complete, so an interrupted slot is rewritten by the next run."""
    chunk = cfg.grid.chunk
    covered = np.zeros(coverage.block_counts(grid.shape, chunk), dtype=bool)
    if window is not None:
        covered[coverage.window_blocks(window, chunk)] = flags
    if not covered.any():
        log.warning("%s: no valid pixel on the grid; the time step covers nothing", step.pass_.names[0])
    cube.write_coverage(store, step.t, covered)
    for name, value in step.pass_.coords(cfg.preprocess.denoise).items():
        cube.set_slice_coord(store, name, step.t, value)
    cube.mark_done(store, STAGE, step.t)


def ingest_pass(store: cube.StoreLike, step: Step, grid: Grid, cfg: PipelineConfig,
                incidence: IncidenceCorrection | None = None) -> None:
    """Geocode the slices of one pass, mosaic them and write slot ``step.t``; flag it done last
    (:func:`pass_writes`, then :func:`finish_pass`)."""
    window, writes = pass_writes(store, step, grid, cfg, incidence)
    finish_pass(store, step, grid, cfg, window, None if writes is None else dask.compute(writes)[0])
