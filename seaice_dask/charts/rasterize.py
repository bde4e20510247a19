"""Place classified chart polygons on the grid, and pick the chart valid for a scene."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import xarray as xr

from seaice_dask.charts.schemes import UNLABELLED, ClassScheme
from seaice_dask.grid import Grid


def rasterize_labels(
    chart: gpd.GeoDataFrame,
    grid: Grid,
    *,
    column: str = "label",
    erosion_m: float = 0.0,
    scheme: ClassScheme | None = None,
) -> xr.DataArray:
    """Burn ``chart[column]`` (class ids, −1 unlabelled) into an int8 ``labels`` map on ``grid``.

    Pixels whose centre falls in a labelled polygon get its class; all others −1. With
    ``erosion_m`` > 0 each class region (polygons of one class merged, so only edges between
    different classes, land or unlabelled polygons count) shrinks inwards by that many metres,
    keeping uncertain boundary pixels out of training.
    """
    labelled = chart[chart[column] != UNLABELLED]
    if erosion_m > 0 and not labelled.empty:
        labelled = labelled[[column, labelled.geometry.name]].dissolve(by=column, as_index=False)
        labelled = labelled.set_geometry(labelled.geometry.buffer(-erosion_m))
        labelled = labelled[~labelled.geometry.is_empty]
    shapes = [(g, int(v)) for g, v in zip(labelled.geometry.values, labelled[column], strict=True)]
    if shapes:
        burned = rasterio.features.rasterize(
            shapes, out_shape=grid.shape, transform=grid.transform, fill=UNLABELLED, dtype="int16"
        ).astype("int8")
    else:
        burned = np.full(grid.shape, UNLABELLED, dtype="int8")
    attrs: dict[str, Any] = {"long_name": "ice chart class, -1 unlabelled"}
    if scheme is not None:
        attrs.update(
            scheme=scheme.name,
            flag_values=[-1, *scheme.classes],
            flag_meanings=" ".join(["unlabelled", *(n.replace(" ", "_") for n in scheme.classes.values())]),
        )
    if erosion_m:
        attrs["erosion_m"] = float(erosion_m)
    return grid.wrap(burned, name="labels", attrs=attrs)


def select_chart(chart_dates: Sequence[dt.date], when: Any, max_days: float = 4.0) -> int | None:
    """Index of the chart nearest in time to ``when`` (a scene time), or ``None`` beyond ``max_days``.

    Charts are valid at noon UTC of their date; ties go to the earlier chart.
    """
    if not len(chart_dates):
        return None
    valid = pd.to_datetime([pd.Timestamp(d) + pd.Timedelta(hours=12) for d in chart_dates])
    gaps = np.abs((valid - pd.Timestamp(when)).total_seconds().to_numpy()) / 86400.0
    order = np.lexsort((valid.asi8, gaps))
    best = int(order[0])
    return best if gaps[best] <= max_days else None
