"""Planning an ingest: finding and opening the scenes, and the grid they go onto.

A bad scene (unreadable, a polarisation missing) goes to the report's ``failed`` list and one
outside the date range or the grid to ``excluded``, so one broken download does not stop a
season's ingest.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from seaice_dask.config import PipelineConfig
from seaice_dask.errors import CubeError, SeaIceError
from seaice_dask.geocode import TiePoints, footprint_bounds, union_bounds
from seaice_dask.grid import Grid
from seaice_dask.ingest.report import IngestReport, _fail

log = logging.getLogger(__name__)


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


def _open_products(paths: Sequence[Path], cfg: PipelineConfig, report: IngestReport) -> list[Any]:
    """Open and check every scene; bad ones go to ``report.failed``, filtered ones to ``excluded``.

    Every copy is returned: duplicates are resolved by name in :mod:`~seaice_dask.ingest.passes`.
    """
    from seaice_dask.safe import open_safe

    pols = [p.upper() for p in cfg.preprocess.polarisations]
    products = []
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
        products.append(product)
    return sorted(products, key=lambda p: (p.start_time, p.name))


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
