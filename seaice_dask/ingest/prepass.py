"""The incidence-correction pre-pass: one correction per cube, estimated once per season.

Estimated slopes come from decimated radar samples of every scene of the run, labelled with
the charts' ice classes where a chart is near enough in time.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd

from seaice_dask import cube
from seaice_dask.config import PipelineConfig
from seaice_dask.errors import ConfigError, CubeError, SeaIceError
from seaice_dask.geocode import TiePoints, footprint_bounds, union_bounds
from seaice_dask.grid import Grid
from seaice_dask.ingest.writer import STAGE
from seaice_dask.landmask import land_mask
from seaice_dask.preprocess.radiometry import Radiometry, check_cube_radiometry
from seaice_dask.preprocess.incidence import ATTR as INCIDENCE_ATTR
from seaice_dask.preprocess.incidence import (
    IncidenceCorrection,
    check_compatible,
    concat_samples,
    estimate_slopes,
    scene_samples,
)

log = logging.getLogger(__name__)

#: Grid resolution (m) of the land mask and chart labels looked up by the incidence pre-pass.
PREPASS_RESOLUTION_M = 1000.0


def _scene_samples(path: Path, pols: list[str], coarse: Grid, land: np.ndarray,
                   labels: tuple[np.ndarray | None, str] | None) -> dict[str, np.ndarray]:
    from seaice_dask.safe import open_safe

    return scene_samples(open_safe(path), pols, coarse, land, None if labels is None else labels[0])


def _chart_labels(path: Path, coarse: Grid, charts_cfg: Any) -> tuple[np.ndarray | None, str]:
    """One chart's labels on the coarse grid, or None and why the chart is unusable (the error
    names the chart)."""
    # the charts stage runs after ingest; the pre-pass only borrows its rasteriser
    from seaice_dask.charts.labels import chart_labels

    try:
        return chart_labels(path, coarse, charts_cfg).values, ""
    except SeaIceError as exc:
        return None, str(exc) if exc.path else f"{path}: {exc}"


def _chart_maps(cfg: PipelineConfig, products: Sequence[Any], coarse: Grid) -> list[Any]:
    """Per scene, a task giving the chart labels (coarse grid) valid at the scene, as
    :func:`_chart_labels`; None where no chart is near enough. One task per chart, rasterised on
    the workers side by side with the scenes' samples."""
    from seaice_dask.charts.rasterize import select_chart
    from seaice_dask.charts.read import chart_date

    charts = sorted({Path(p) for pattern in cfg.paths.charts for p in glob.glob(str(cfg.path(pattern)))})
    try:
        dates = [chart_date(p, cfg.charts.dates) for p in charts]
    except SeaIceError as exc:
        log.warning("incidence pre-pass without charts: %s", exc)
        return [None] * len(products)
    tasks: dict[int, Any] = {}
    out = []
    for product in products:
        index = select_chart(dates, pd.Timestamp(product.start_time), cfg.charts.max_days) if charts else None
        if index is not None and index not in tasks:
            tasks[index] = dask.delayed(_chart_labels, pure=True)(charts[index], coarse, cfg.charts)
        out.append(None if index is None else tasks[index])
    return out


def resolve_incidence(cfg: PipelineConfig, store: cube.StoreLike, products: Sequence[Any], grid: Grid,
                      fixed: IncidenceCorrection | None = None) -> IncidenceCorrection:
    """The incidence correction of this cube, recorded in its attrs before any slice is written.

    ``fixed``: a correction made elsewhere (a trained model's), used as is and never re-estimated.

    A cube keeps one correction: a recorded one is reused (resume, new scenes) when the config
    asks for the same denoising, textural noise, method and reference (and, if given, the same
    slopes); anything else is a CubeError naming both settings
    (:mod:`seaice_dask.preprocess.radiometry`). Estimated slopes come from a pre-pass over decimated radar samples of all
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
    if fixed is not None:
        wanted = fixed
    elif inc.correction == "none":
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
        # applied as recorded (parameters rounded in the attrs): a resumed ingest, or a model's
        # `classify` of a new scene, then corrects exactly as the first run did
        wanted = IncidenceCorrection.from_attrs(estimate_season_slopes(cfg, products, grid).to_attrs())
    if recorded is not None:
        check_compatible(recorded, wanted, store)
    cube.set_cube_attrs(store, **{INCIDENCE_ATTR: wanted.to_attrs(), "textural_noise": cfg.preprocess.textural_noise})
    return wanted


def prepass_grid(grid: Grid, products: Sequence[Any]) -> Grid:
    """The grid the pre-pass looks land and chart classes up on: the scenes' footprints at
    ≥ 1 km, on a lattice fixed in the grid's CRS (multiples of the resolution).

    Every sample of every scene counts, inside the cube's grid or not, so the estimate does not
    depend on the grid's extent: a 4× grid and the default grid correct alike.
    """
    bounds = union_bounds([footprint_bounds(TiePoints.from_product(p), grid.crs) for p in products])
    return Grid.from_bounds(grid.crs, bounds, max(grid.resolution, PREPASS_RESOLUTION_M))


def estimate_season_slopes(cfg: PipelineConfig, products: Sequence[Any], grid: Grid) -> IncidenceCorrection:
    """Season correction (``linear`` slopes or ``class`` model) from decimated samples of every
    scene, one dask task per scene."""
    pols = [p.upper() for p in cfg.preprocess.polarisations]
    coarse = prepass_grid(grid, products)
    try:
        land = land_mask(coarse, cfg.paths.land, buffer_m=cfg.preprocess.land_buffer_m).values
    except ConfigError as exc:  # a regional land file: the scenes reach beyond it, not only the grid
        raise ConfigError(f"the incidence pre-pass looks land up over the scenes' whole footprints: {exc}") from exc
    charts = _chart_maps(cfg, products, coarse)
    tasks = [dask.delayed(_scene_samples, pure=True)(p.path, pols, coarse, land, c) for p, c in zip(products, charts)]
    parts, labels = dask.compute(tasks, charts)
    for problem in dict.fromkeys(c[1] for c in labels if c is not None and c[0] is None):
        log.warning("incidence pre-pass: chart unusable (%s)", problem)
    if any(c is None or c[0] is None for c in labels):  # unlabelled scenes: labels only where a chart is
        parts = [p if "labels" in p else {**p, "labels": np.full(p["incidence"].shape, -1)} for p in parts]
    inc = cfg.preprocess.incidence
    correction = estimate_slopes(concat_samples(parts), pols, inc.reference_deg, inc.correction)
    attrs = correction.to_attrs()
    log.info("incidence correction %s from %d scenes (%s): common slopes %s dB/deg, %d components",
             attrs.get("method"), len(products), attrs.get("source"), attrs.get("slopes_db_per_deg"),
             len(attrs.get("components", [])))
    log.debug("incidence correction: %s", attrs)
    return correction
