"""Charts → the cube's ``labels``: for each scene, the chart valid at its acquisition time."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from rich.progress import track

from seaice_dask.charts.rasterize import rasterize_labels, select_chart
from seaice_dask.charts.read import chart_date, chart_id, prepare_chart, read_chart
from seaice_dask.charts.schemes import UNLABELLED, classify_chart, get_scheme
from seaice_dask.config import ChartsConfig, PipelineConfig
from seaice_dask.coverage import step_blocks, step_windows
from seaice_dask.cube import (
    StoreLike,
    cube_grid,
    cube_store,
    ensure_variable,
    mark_done,
    open_cube,
    set_slice_coord,
    write_slice,
)
from seaice_dask.errors import ChartError
from seaice_dask.grid import Grid

log = logging.getLogger(__name__)

STAGE = "labels"


def load_chart(
    path: str | Path, grid: Grid, cfg: ChartsConfig | None = None, *, aoi: shapely.Geometry | None = None
) -> gpd.GeoDataFrame:
    """Read, repair, clip and reproject one chart onto ``grid`` and classify its polygons.

    The frame keeps the SIGRID-3 columns and adds ``label``, ``share``, ``ct_percent`` and
    ``problems`` (see :func:`~seaice_dask.charts.schemes.classify_chart`).
    """
    cfg = cfg or ChartsConfig()
    chart = prepare_chart(read_chart(path, crs=cfg.crs), grid, aoi=aoi, source=path)
    classes = classify_chart(
        chart.drop(columns=chart.geometry.name),
        cfg.scheme,
        dominance=cfg.dominance,
        water_ct_max=cfg.water_ct_max,
        source=path,
    )
    return chart.join(classes)


def chart_labels(
    path: str | Path, grid: Grid, cfg: ChartsConfig | None = None, *, aoi: shapely.Geometry | None = None
) -> xr.DataArray:
    """The (y, x) int8 label map of one chart on ``grid`` (−1 unlabelled), CRS written."""
    cfg = cfg or ChartsConfig()
    chart = load_chart(path, grid, cfg, aoi=aoi)
    labels = rasterize_labels(chart, grid, erosion_m=cfg.erosion_m, scheme=get_scheme(cfg.scheme))
    return labels.assign_attrs(chart_id=chart_id(path), chart_date=str(chart_date(path, cfg.dates)))


def write_labels(
    store: StoreLike,
    chart_paths: Sequence[Path],
    cfg: ChartsConfig,
    *,
    aoi: shapely.Geometry | None = None,
    progress: bool = True,
) -> None:
    """Write ``labels`` (int8, −1 unlabelled) for every time slice of the cube at ``store``.

    Each slice gets the chart nearest to its acquisition time within ``cfg.max_days`` (none:
    all −1, chart id ``""``), rasterised onto the cube's grid; ``chart_id`` and ``chart_date``
    are stored per slice and ``done_labels`` is set last. Re-running rewrites the same values.
    """
    ds = open_cube(store)
    grid = cube_grid(ds)
    times = pd.to_datetime(ds["time"].values)
    chart_paths = [Path(p) for p in chart_paths]
    dates: list[dt.date] = [chart_date(p, cfg.dates) for p in chart_paths]
    scheme = get_scheme(cfg.scheme)
    ensure_variable(
        store,
        "labels",
        dtype="int8",
        fill_value=UNLABELLED,
        attrs={
            "long_name": "ice chart class, -1 unlabelled",
            "scheme": scheme.name,
            "flag_values": [UNLABELLED, *scheme.classes],
            "flag_meanings": " ".join(["unlabelled", *(n.replace(" ", "_") for n in scheme.classes.values())]),
            "dominance": cfg.dominance,
            "water_ct_max_percent": cfg.water_ct_max,
            "erosion_m": cfg.erosion_m,
        },
    )
    windows, blocks = step_windows(ds), step_blocks(ds)
    cached: tuple[int, gpd.GeoDataFrame] | None = None  # scenes come in time order: keep the last chart
    for t, when in track(list(enumerate(times)), description="charts → labels", disable=not progress):
        index = select_chart(dates, when, cfg.max_days)
        window = windows[t]
        if index is None:
            log.warning("%s: no chart within %g days of %s; slice %d left unlabelled", store, cfg.max_days, when, t)
            set_slice_coord(store, "chart_id", t, "")
            set_slice_coord(store, "chart_date", t, np.datetime64("NaT", "ns"))
        else:
            if window is not None and (cached is None or cached[0] != index):  # read and classified on the whole grid once
                cached = (index, load_chart(chart_paths[index], grid, cfg, aoi=aoi))
            set_slice_coord(store, "chart_id", t, chart_id(chart_paths[index]))
            set_slice_coord(store, "chart_date", t, np.datetime64(dates[index], "ns"))
        if window is not None:  # burnt onto the time step's window, written on its covered blocks
            part = grid.window(*window)
            labels = (np.full(part.shape, UNLABELLED, dtype=np.int8) if index is None else
                      rasterize_labels(cached[1], part, erosion_m=cfg.erosion_m, scheme=scheme).values)
            write_slice(store, "labels", t, labels, window=window, blocks=blocks[t])
        mark_done(store, STAGE, t)


def find_charts(patterns: Sequence[str | Path]) -> list[Path]:
    """Chart files matching glob ``patterns`` (absolute), sorted, duplicates removed."""
    found: set[Path] = set()
    for pattern in patterns:
        pattern = Path(pattern)
        found.update(Path(pattern.anchor).glob(str(pattern.relative_to(pattern.anchor))))
    if not found:
        raise ChartError(f"no chart files match {[str(p) for p in patterns]}")
    return sorted(found)


def write_labels_from_config(cfg: PipelineConfig, *, progress: bool = True) -> list[Path]:
    """``seaice-dask charts``: label the cube at ``paths.store`` from the charts in ``paths.charts``.

    Returns the chart files found.
    """
    charts = find_charts([cfg.path(pattern) for pattern in cfg.paths.charts])
    write_labels(cube_store(cfg), charts, cfg.charts, progress=progress)
    return charts
