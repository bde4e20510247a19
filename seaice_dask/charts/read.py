"""Read SIGRID-3 ice charts (zipped or plain shapefiles, GeoPackages), date them, and bring
them onto the grid: repair invalid geometries, clip to the area of interest, reproject.

The ice services publish weekly charts as zipped shapefiles (US National Ice Center
``nic_arctic_YYYYMMDD_pl_a.zip``, older ``arcticYYMMDD.zip``; Canadian Ice Service
``cis_SGRDR<region>_YYYYMMDDT…``). Analysts used to clip them, fix geometries with a zero
buffer and reproject them by hand; :func:`prepare_chart` does the same with ``make_valid``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from pyproj import CRS

from seaice_dask.errors import ChartError
from seaice_dask.grid import Grid

log = logging.getLogger(__name__)

#: File-name patterns of the ice services: (regex with one date group, strptime format).
DATE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"nic_arctic_(\d{8})", re.IGNORECASE), "%Y%m%d"),
    (re.compile(r"cis_SGRD[A-Z]*_(\d{8})T", re.IGNORECASE), "%Y%m%d"),
    (re.compile(r"^arctic(\d{6})(?!\d)", re.IGNORECASE), "%y%m%d"),
    (re.compile(r"(?<!\d)(\d{8})(?!\d)"), "%Y%m%d"),
)


def chart_id(path: str | Path) -> str:
    """The chart's identifier: its file name without extension(s)."""
    name = Path(path).name
    return name[: -len(".shp.zip")] if name.lower().endswith(".shp.zip") else Path(name).stem


def chart_date(path: str | Path, dates: Mapping[str, dt.date] | None = None) -> dt.date:
    """Valid date of a chart: from ``dates`` (keyed by file name or id), else from the name."""
    path = Path(path)
    for key in (path.name, chart_id(path), str(path)):
        if dates and key in dates:
            return dates[key]
    for pattern, fmt in DATE_PATTERNS:
        match = pattern.search(path.name)
        if match:
            try:
                return dt.datetime.strptime(match.group(1), fmt).date()
            except ValueError:
                continue
    raise ChartError(
        "no chart date in the file name (expected nic_arctic_YYYYMMDD…, arcticYYMMDD… or "
        "cis_SGRD…_YYYYMMDDT…); give it in charts.dates",
        path,
    )


def _dataset_name(path: Path) -> tuple[str, str | None]:
    """GDAL name of the vector data set inside ``path`` and the layer to read."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".shp")]
        except zipfile.BadZipFile as exc:
            raise ChartError(f"not a valid zip archive: {exc}", path) from exc
        if not members:
            raise ChartError("the zip archive holds no shapefile (.shp)", path)
        polygons = [m for m in members if "_pl" in m.lower()] or members
        return f"/vsizip/{path}/{polygons[0]}", None
    if suffix in (".shp", ".gpkg", ".geojson", ".json", ".fgb"):
        return str(path), None
    raise ChartError("unsupported chart format (use .zip, .shp or .gpkg)", path)


def read_chart(path: str | Path, *, crs: str | None = None) -> gpd.GeoDataFrame:
    """Read a chart's polygons and attributes; column names upper-case.

    ``crs`` is used when the file has none (a shapefile without ``.prj``); a file without CRS
    and no ``crs`` given raises :class:`ChartError`.
    """
    path = Path(path)
    if not path.exists():
        raise ChartError("chart file not found", path)
    name, layer = _dataset_name(path)
    if path.suffix.lower() == ".gpkg":
        layers = pyogrio.list_layers(name)
        polygonal = [row[0] for row in layers if "polygon" in str(row[1]).lower()]
        layer = polygonal[0] if polygonal else layers[0][0]
    try:
        chart = gpd.read_file(name, layer=layer, engine="pyogrio")
    except Exception as exc:  # GDAL raises several types
        raise ChartError(f"cannot read the chart: {exc}", path) from exc
    if chart.crs is None:
        if crs is None:
            raise ChartError("the chart has no CRS (missing .prj?); set charts.crs", path)
        chart = chart.set_crs(CRS.from_user_input(crs))
    chart.columns = [c if c == chart.geometry.name else str(c).upper() for c in chart.columns]
    if "POLY_TYPE" not in chart.columns and not any(c in chart.columns for c in ("CT", "SA")):
        raise ChartError("no SIGRID-3 attributes (POLY_TYPE, CT, SA …) in the chart", path)
    return chart


def repair_geometries(chart: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, int]:
    """Make every geometry valid (``shapely.make_valid``), keeping its polygonal part.

    Returns the repaired chart and the number of geometries that were invalid.
    """
    geoms = chart.geometry.values
    invalid = ~shapely.is_valid(geoms) & ~shapely.is_missing(geoms)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid])
        geoms = geoms.copy()
        geoms[invalid] = [_polygonal(g) for g in fixed]
        chart = chart.set_geometry(gpd.GeoSeries(geoms, index=chart.index, crs=chart.crs))
    return chart, int(invalid.sum())


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygons of a (possibly mixed) geometry as one (Multi)Polygon."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return shapely.Polygon()
    return parts[0] if len(parts) == 1 else shapely.union_all(parts)


def aoi_polygon(grid: Grid, aoi: shapely.Geometry | None = None) -> shapely.Geometry:
    """The area of interest in the grid CRS: ``aoi`` if given, else the grid's extent."""
    return aoi if aoi is not None else shapely.box(*grid.bounds)


def prepare_chart(
    chart: gpd.GeoDataFrame,
    grid: Grid,
    *,
    aoi: shapely.Geometry | None = None,
    source: str | Path | None = None,
) -> gpd.GeoDataFrame:
    """Repair, clip to ``aoi`` (grid CRS; default the grid extent) and reproject to the grid.

    The AOI is densified before it is taken into the chart's CRS, so its straight edges stay
    straight on the grid; polygons outside it are dropped. No overlap raises :class:`ChartError`.
    """
    chart, n_invalid = repair_geometries(chart)
    if n_invalid:
        log.info("%s: repaired %d invalid geometries", source or "chart", n_invalid)
    area = aoi_polygon(grid, aoi)
    step = max(grid.resolution, (area.length / 4) / 256)
    area_chart = gpd.GeoSeries([shapely.segmentize(area, step)], crs=grid.crs).to_crs(chart.crs)
    area_chart = shapely.make_valid(area_chart.iloc[0])
    hits = chart.sindex.query(area_chart, predicate="intersects")
    clipped = chart.iloc[np.sort(hits)]
    geoms = [_polygonal(g) for g in shapely.intersection(clipped.geometry.values, area_chart)]
    clipped = clipped.set_geometry(gpd.GeoSeries(geoms, index=clipped.index, crs=chart.crs))
    clipped = clipped[~clipped.geometry.is_empty]
    if clipped.empty:
        bounds = tuple(round(b) for b in area.bounds)
        raise ChartError(f"the chart does not overlap the area of interest {bounds} ({grid.crs})", source)
    clipped = clipped.to_crs(grid.crs)
    clipped, _ = repair_geometries(clipped)
    return clipped
