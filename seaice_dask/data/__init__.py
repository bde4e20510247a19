"""Small data files shipped with the package.

``LAND_POLYGONS``: Natural Earth 1:50m land v4.1.0 (public domain), clipped to 60–75°N,
45°W–10°W (Greenland, Iceland, Jan Mayen around the Denmark Strait), WGS84 GeoJSON. It is the
default land mask of the pipeline (``paths.land: null``) and the land of the simulator's truth.
Outside this box it contains no land: pass your own polygons (``paths.land``) for other regions.
"""

from __future__ import annotations

from pathlib import Path

#: Land polygons (EPSG:4326) around the Denmark Strait; read with geopandas/pyogrio.
LAND_POLYGONS: Path = Path(__file__).with_name("land_denmark_strait.geojson")

#: (lon_min, lat_min, lon_max, lat_max) of the area ``LAND_POLYGONS`` covers.
LAND_POLYGONS_BOUNDS: tuple[float, float, float, float] = (-45.0, 60.0, -10.0, 75.0)

__all__ = ["LAND_POLYGONS", "LAND_POLYGONS_BOUNDS"]
