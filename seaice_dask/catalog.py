"""Find Sentinel-1 products in local archives (folders of SAFE directories and zips).

Operational archives keep years of scenes on a shared file system; this selects the ones a
pipeline needs by date, relative orbit, mode and area, reading only each product's manifest and
annotation (never pixels).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon, box

from seaice_dask.errors import ProductError
from seaice_dask.safe import open_safe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneRecord:
    """One product found in an archive."""

    path: Path
    name: str
    mission: str
    mode: str
    start_time: np.datetime64
    relative_orbit: int
    pass_direction: str
    polarisations: tuple[str, ...]
    footprint: Polygon


def _candidates(roots: Iterable[Path]) -> list[Path]:
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if root.suffix == ".zip" or (root / "manifest.safe").is_file():
            found.add(root)
            continue
        found.update(root.rglob("S1*.zip"))
        # SAFE folders, also the AWS open-data layout whose folder has no .SAFE suffix
        found.update(manifest.parent for manifest in root.rglob("manifest.safe"))
    return sorted(found)


def search_local(
    roots: Sequence[str | Path],
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    relative_orbit: int | None = None,
    mode: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
) -> list[SceneRecord]:
    """Products below ``roots`` acquired in ``[start, end]`` whose footprint meets ``bbox``.

    ``bbox`` is (lon_min, lat_min, lon_max, lat_max). Unreadable products are skipped with a
    warning naming the file, so one corrupt download does not hide the rest of an archive.
    """
    area = box(*bbox) if bbox else None
    records = []
    for path in _candidates(Path(r) for r in roots):
        try:
            product = open_safe(path)
        except ProductError as exc:
            log.warning("skipped: %s", exc)
            continue
        day = product.start_time.astype("datetime64[D]").astype(dt.date)
        if (start and day < start) or (end and day > end):
            continue
        if relative_orbit is not None and product.relative_orbit != relative_orbit:
            continue
        if mode and product.mode != mode.upper():
            continue
        footprint = product.footprint()
        if area is not None and not footprint.intersects(area):
            continue
        records.append(
            SceneRecord(
                path=path,
                name=product.name,
                mission=product.mission,
                mode=product.mode,
                start_time=product.start_time,
                relative_orbit=product.relative_orbit,
                pass_direction=product.pass_direction,
                polarisations=tuple(product.polarisations),
                footprint=footprint,
            )
        )
    return sorted(records, key=lambda r: r.start_time)
