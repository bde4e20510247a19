"""Small data files shipped with the package.

``LAND_POLYGONS``: Natural Earth 1:50m land v4.1.0 (naturalearthdata.com, public domain), every
polygon north of 45°N, clipped at 45°N, split into single polygons, coordinates rounded to 1e-7°,
WGS84 GeoJSON (438 polygons, 0.9 MB). It is the default land mask of the pipeline
(``paths.land: null``) and the land of the simulator's truth, for any grid north of 45°N: the
Arctic Ocean and its marginal seas. A grid reaching south of 45°N is refused
(:func:`seaice_dask.landmask.land_polygons`): pass your own polygons (``paths.land``) there.
Inside the former Denmark Strait box (60–75°N, 45–10°W) the polygons are the ones the package
shipped before, so the default grid's land is unchanged.

``STAC_SCHEMAS``: JSON schemas of the STAC extensions our catalogue uses, so that STAC records
validate offline (``stac-schemas/projection-v2.0.0.json``: the STAC Projection Extension
v2.0.0, github.com/stac-extensions/projection, Apache-2.0). The core STAC and GeoJSON schemas
ship with pystac.
"""

from __future__ import annotations

from pathlib import Path

#: Land polygons (EPSG:4326) north of 45°N; read with geopandas/pyogrio.
LAND_POLYGONS: Path = Path(__file__).with_name("land_arctic.geojson")

#: (lon_min, lat_min, lon_max, lat_max) of the area ``LAND_POLYGONS`` covers.
LAND_POLYGONS_BOUNDS: tuple[float, float, float, float] = (-180.0, 45.0, 180.0, 90.0)

#: Schema URI → local copy of that JSON schema.
STAC_SCHEMAS: dict[str, Path] = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json":
        Path(__file__).parent / "stac-schemas" / "projection-v2.0.0.json",
}

__all__ = ["LAND_POLYGONS", "LAND_POLYGONS_BOUNDS", "STAC_SCHEMAS"]
