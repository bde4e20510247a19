"""The archive query built from the config: dates, relative orbit, mode, GRD classes and the AOI.

The AOI is ``download.aoi`` (WKT or GeoJSON, lon/lat) or, by default, the grid's extent
transformed to lon/lat (densified, since a projected rectangle is curved in lon/lat).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import shapely
from pyproj import Transformer
from shapely.geometry import shape
from shapely.geometry.polygon import orient

from seaice_dask.config import PipelineConfig
from seaice_dask.errors import ConfigError
from seaice_dask.grid import Grid


@dataclass(frozen=True)
class SearchQuery:
    """What to look for: acquisitions starting in ``[start, end]`` (days, inclusive)."""

    start: dt.date
    end: dt.date
    aoi: shapely.Polygon  # lon/lat
    relative_orbit: int | None = None
    mode: str = "EW"
    products: tuple[str, ...] = ("GRDM", "GRDH")

    @property
    def product_types(self) -> tuple[str, ...]:
        """ESA product types, e.g. ``EW_GRDM_1S``."""
        return tuple(f"{self.mode}_{p}_1S" for p in self.products)


def parse_aoi(text: str) -> shapely.Polygon:
    """A lon/lat polygon from WKT or GeoJSON (geometry, Feature or FeatureCollection).

    Anything but a single polygon is replaced by its convex hull, which archives accept.
    """
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            if data.get("type") == "FeatureCollection":
                geom = shapely.union_all([shape(f["geometry"]) for f in data["features"]])
            else:
                geom = shape(data.get("geometry", data))
        else:
            geom = shapely.from_wkt(text)
    except (ValueError, KeyError, TypeError, shapely.errors.GEOSException) as exc:
        raise ConfigError(f"download.aoi is neither WKT nor GeoJSON: {exc}") from None
    if geom.is_empty:
        raise ConfigError("download.aoi is empty")
    if not isinstance(geom, shapely.Polygon):
        geom = geom.convex_hull
    lon_min, lat_min, lon_max, lat_max = geom.bounds
    if lon_min < -180 or lon_max > 180 or lat_min < -90 or lat_max > 90:
        raise ConfigError(f"download.aoi must be in lon/lat degrees, got bounds {geom.bounds}")
    return orient(geom)


def grid_aoi(grid: Grid, points_per_side: int = 4) -> shapely.Polygon:
    """The grid's outer boundary in lon/lat, ``points_per_side`` vertices per edge."""
    ring = shapely.box(*grid.bounds).exterior
    ring = shapely.segmentize(ring, ring.length / (4 * points_per_side))
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(*ring.xy)
    return orient(shapely.Polygon(zip(lon, lat)))


def query_from_config(cfg: PipelineConfig) -> SearchQuery:
    """The query of ``cfg``'s ``dates`` and ``download`` sections (dates are required)."""
    if cfg.dates.start is None or cfg.dates.end is None:
        raise ConfigError("dates.start and dates.end are needed to search an archive")
    if cfg.dates.end < cfg.dates.start:
        raise ConfigError(f"dates.end {cfg.dates.end} is before dates.start {cfg.dates.start}")
    d = cfg.download
    aoi = parse_aoi(d.aoi) if d.aoi else grid_aoi(cfg.grid.to_grid())
    return SearchQuery(
        start=cfg.dates.start, end=cfg.dates.end, aoi=aoi, relative_orbit=d.relative_orbit,
        mode=d.mode, products=tuple(dict.fromkeys(d.product)),
    )


def polygon_wkt(polygon: shapely.Polygon, digits: int = 4) -> str:
    """``POLYGON((lon lat, …))`` with a fixed number of decimals (short, reproducible URLs)."""
    coords = ",".join(f"{x:.{digits}f} {y:.{digits}f}" for x, y in polygon.exterior.coords)
    return f"POLYGON(({coords}))"


def _utc(day: dt.date) -> str:
    return f"{day:%Y-%m-%d}T00:00:00.000Z"


def cdse_filter(query: SearchQuery) -> str:
    """The OData ``$filter`` of the CDSE catalogue for ``query``."""
    types = " or ".join(
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
        f"att/OData.CSC.StringAttribute/Value eq '{t}')"
        for t in query.product_types
    )
    clauses = ["Collection/Name eq 'SENTINEL-1'", f"({types})" if len(query.product_types) > 1 else types]
    if query.relative_orbit is not None:
        clauses.append(
            "Attributes/OData.CSC.IntegerAttribute/any(att:att/Name eq 'relativeOrbitNumber' and "
            f"att/OData.CSC.IntegerAttribute/Value eq {query.relative_orbit})"
        )
    clauses += [
        f"ContentDate/Start ge {_utc(query.start)}",
        f"ContentDate/Start lt {_utc(query.end + dt.timedelta(days=1))}",
        f"OData.CSC.Intersects(area=geography'SRID=4326;{polygon_wkt(query.aoi)}')",
    ]
    return " and ".join(clauses)
