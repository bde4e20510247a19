"""What an archive search returns: one record per product, and the listing written by ``--list``."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from shapely.geometry import mapping


@dataclass(frozen=True)
class RemoteProduct:
    """A product in an online archive and where its bytes come from."""

    id: str  # the provider's identifier (CDSE UUID, ASF granule name)
    name: str  # product name without .SAFE
    start_time: dt.datetime  # UTC
    url: str  # download URL of the zipped SAFE product
    relative_orbit: int | None = None
    size: int | None = None  # bytes
    online: bool = True  # False: in a long-term archive, must be ordered first
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm (upper case) → hex digest
    footprint: shapely.Geometry | None = None  # lon/lat
    s3_path: str | None = None  # CDSE eodata object path

    @property
    def file_name(self) -> str:
        return f"{self.name}.zip"

    @property
    def s3_url(self) -> str | None:
        """Where CDSE's ``eodata`` bucket keeps the SAFE folder (``paths.scenes`` reads it in place)."""
        return f"s3://eodata/{self.s3_path.removeprefix('/eodata/')}" if self.s3_path else None


_COLUMNS = ("name", "start_time", "relative_orbit", "size_bytes", "online", "id", "s3_path")


def _row(p: RemoteProduct) -> dict[str, object]:
    return {
        "name": p.name, "start_time": p.start_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "relative_orbit": p.relative_orbit, "size_bytes": p.size, "online": p.online, "id": p.id,
        "s3_path": p.s3_path,
    }


def write_listing(products: Sequence[RemoteProduct], stem: Path) -> tuple[Path, Path]:
    """Write ``stem.csv`` (one row per product) and ``stem.geojson`` (footprints); atomic."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, geojson_path = stem.with_suffix(".csv"), stem.with_suffix(".geojson")
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(_row(p) for p in products)
    tmp.replace(csv_path)
    features = [
        {"type": "Feature", "id": p.id, "properties": _row(p),
         "geometry": mapping(p.footprint) if p.footprint is not None else None}
        for p in products
    ]
    tmp = geojson_path.with_name(geojson_path.name + ".tmp")
    tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1))
    tmp.replace(geojson_path)
    return csv_path, geojson_path


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
