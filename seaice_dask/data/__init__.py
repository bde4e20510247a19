"""Small data files shipped with the package.

``LAND_POLYGONS``: Natural Earth 1:50m land v4.1.0 (public domain), clipped to 60–75°N,
45°W–10°W (Greenland, Iceland, Jan Mayen around the Denmark Strait), WGS84 GeoJSON. It is the
default land mask of the pipeline (``paths.land: null``) and the land of the simulator's truth.
Outside this box it contains no land: pass your own polygons (``paths.land``) for other regions.

``STAC_SCHEMAS``: JSON schemas of the STAC extensions our catalogue uses, so that STAC records
validate offline (``stac-schemas/projection-v2.0.0.json``: the STAC Projection Extension
v2.0.0, github.com/stac-extensions/projection, Apache-2.0). The core STAC and GeoJSON schemas
ship with pystac.
"""

from __future__ import annotations

from pathlib import Path

#: Land polygons (EPSG:4326) around the Denmark Strait; read with geopandas/pyogrio.
LAND_POLYGONS: Path = Path(__file__).with_name("land_denmark_strait.geojson")

#: (lon_min, lat_min, lon_max, lat_max) of the area ``LAND_POLYGONS`` covers.
LAND_POLYGONS_BOUNDS: tuple[float, float, float, float] = (-45.0, 60.0, -10.0, 75.0)

#: Schema URI → local copy of that JSON schema.
STAC_SCHEMAS: dict[str, Path] = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json":
        Path(__file__).parent / "stac-schemas" / "projection-v2.0.0.json",
}

__all__ = ["LAND_POLYGONS", "LAND_POLYGONS_BOUNDS", "STAC_SCHEMAS"]
