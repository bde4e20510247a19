"""Land mask on the grid from land polygons (GSHHG, Natural Earth or any polygon file).

Polygons are densified and cut in their own CRS (lon/lat) well beyond the grid's area, reprojected
to the grid CRS and clipped to the grid there (so a pixel's land does not depend on the grid's
extent), optionally grown by a buffer in metres (to keep coastal pixels, with their mixed and
bright returns, out of training), then burnt chunk by chunk: a pixel is land when its centre
lies in a polygon (GDAL's rasterisation rule, ``all_touched=False``).
"""

from __future__ import annotations

import math
from pathlib import Path

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pyogrio
import rasterio.features
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer

from seaice_dask.errors import ConfigError
from seaice_dask.grid import Grid


#: Longest polygon edge (degrees) taken into the grid CRS without intermediate vertices.
_DENSIFY_DEG = 0.25
#: Extra lon/lat clipping margin when edges are not densified: the straight clip edges, bent
#: into chords by the projection, then stay this far (less their sag) from the grid.
_UNDENSIFIED_MARGIN_M = 100_000.0
#: Degrees beyond the grid's area where densified polygons are cut in lon/lat (the cut's new
#: edges, one densified edge long, stay this far from the grid).
_CLIP_MARGIN_DEG = 1.0


def default_land_path() -> Path:
    """The land polygons shipped with the package (Natural Earth 1:50m north of 45°N)."""
    from seaice_dask.data import LAND_POLYGONS

    return LAND_POLYGONS


def land_extent(path: str | Path) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) where ``path`` vouches for land and sea.

    The shipped file covers 45–90°N (:data:`seaice_dask.data.LAND_POLYGONS_BOUNDS`), beyond
    its northernmost land. Any other file covers the extent of its polygons, the only area
    where an absent polygon can be told from an absent file, or the globe when its polygons go
    round it (GSHHG, Natural Earth: no land beyond their northernmost coast is ocean).
    """
    from seaice_dask.data import LAND_POLYGONS, LAND_POLYGONS_BOUNDS

    if Path(path).resolve() == LAND_POLYGONS.resolve():
        return LAND_POLYGONS_BOUNDS
    extent = tuple(float(v) for v in pyogrio.read_info(path, force_total_bounds=True)["total_bounds"])
    if extent[2] - extent[0] >= 359.0:
        return (-180.0, -90.0, 180.0, 90.0)
    return extent


def _check_extent(grid: Grid, bbox: tuple[float, float, float, float], extent: tuple, path: Path) -> None:
    """Refuse a grid whose area (lon/lat ``bbox``) leaves the land file's ``extent``: no land
    there would read as open sea."""
    tol = 1e-9
    inside = (bbox[0] >= extent[0] - tol and bbox[1] >= extent[1] - tol
              and bbox[2] <= extent[2] + tol and bbox[3] <= extent[3] + tol)
    if not inside:
        raise ConfigError(
            f"the grid ({grid.crs}, bounds {tuple(round(v) for v in grid.bounds)}, {grid.resolution:g} m) covers "
            f"lon {bbox[0]:.2f}…{bbox[2]:.2f}, lat {bbox[1]:.2f}…{bbox[3]:.2f}, beyond the land polygons' extent "
            f"lon {extent[0]:.2f}…{extent[2]:.2f}, lat {extent[1]:.2f}…{extent[3]:.2f}: give a land file "
            "covering the grid (paths.land)",
            path,
        )


def _area_in_lonlat(grid: Grid, margin_m: float) -> tuple[float, float, float, float]:
    """(lon_min, lat_min, lon_max, lat_max) covering the grid plus ``margin_m``.

    The grid's outline is densified before transforming; a pole inside the grid or an outline
    crossing the antimeridian widens the box to all longitudes.
    """
    box = shapely.box(*grid.bounds).buffer(margin_m, join_style="mitre")
    outline = shapely.segmentize(box, max(grid.resolution, box.length / 1024))
    x, y = np.asarray(outline.exterior.coords).T
    to_lonlat = Transformer.from_crs(CRS.from_user_input(grid.crs), CRS.from_epsg(4326), always_xy=True)
    lon, lat = to_lonlat.transform(x, y)
    lat_min, lat_max = float(np.min(lat)), float(np.max(lat))
    from_lonlat = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_user_input(grid.crs), always_xy=True)
    poles = from_lonlat.transform([0.0, 0.0], [90.0, -90.0])
    north, south = (box.contains(shapely.Point(px, py)) for px, py in zip(*poles))
    lat_max = 90.0 if north else lat_max
    lat_min = -90.0 if south else lat_min
    crosses = np.abs(np.diff(lon)).max() > 180.0
    if north or south or crosses:
        return -180.0, lat_min, 180.0, lat_max
    return float(np.min(lon)), lat_min, float(np.max(lon)), lat_max


def _whole_degrees(bbox: tuple[float, float, float, float], margin: float) -> tuple[float, float, float, float]:
    """``bbox`` (lon/lat) widened by ``margin`` degrees and out to whole degrees, within the globe."""
    return (max(math.floor(bbox[0] - margin), -180.0), max(math.floor(bbox[1] - margin), -90.0),
            min(math.ceil(bbox[2] + margin), 180.0), min(math.ceil(bbox[3] + margin), 90.0))


def land_polygons(
    grid: Grid, path: str | Path | None = None, *, buffer_m: float = 0.0, densify: bool = True
) -> gpd.GeoSeries:
    """Land polygons of ``path`` (default: the shipped file) in the grid CRS, clipped to the grid.

    ``buffer_m`` > 0 grows the land by that many metres. A grid (grown by the buffer) that leaves
    the file's :func:`land_extent` is refused with a :class:`ConfigError`. ``densify=False``
    keeps the file's vertices (edges become straight on the map), as the simulator's truth does.
    """
    path = Path(path) if path is not None else default_land_path()
    if not path.exists():
        raise ConfigError("land polygon file not found (paths.land)", path)
    if buffer_m < 0:
        raise ConfigError(f"land buffer must be >= 0 metres, got {buffer_m}")
    try:
        info = pyogrio.read_info(path)
        src_crs = CRS.from_user_input(info["crs"] or "EPSG:4326")
        if not src_crs.is_geographic:
            raise ConfigError(f"land polygons must be in geographic lon/lat, got {src_crs.name}", path)
        _check_extent(grid, _area_in_lonlat(grid, margin_m=buffer_m), land_extent(path), path)
        margin = buffer_m + 2 * grid.resolution + (0.0 if densify else _UNDENSIFIED_MARGIN_M)
        bbox = _area_in_lonlat(grid, margin_m=margin)
        frame = gpd.read_file(path, bbox=bbox)
    except ConfigError:
        raise
    except Exception as exc:  # pyogrio/GDAL raise several types
        raise ConfigError(f"cannot read land polygons: {exc}", path) from exc
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    geoms = frame.geometry.values
    if densify:
        # densified before clipping, and clipped in lon/lat only far beyond the grid (on whole
        # degrees), then on the map: every edge near the grid is the same whatever the grid's
        # extent, so grids of different extents on one lattice get the same land where they overlap
        geoms = shapely.segmentize(shapely.make_valid(geoms), _DENSIFY_DEG)
        bbox = _whole_degrees(bbox, _CLIP_MARGIN_DEG)
    geoms = shapely.make_valid(shapely.clip_by_rect(geoms, *bbox))
    if densify:  # the clip's new edges (long and straight in lon/lat) bend on the map
        geoms = shapely.segmentize(geoms, _DENSIFY_DEG)
    land = gpd.GeoSeries(geoms, crs=frame.crs)
    land = land[~land.is_empty & land.geom_type.isin(["Polygon", "MultiPolygon", "GeometryCollection"])]
    land = land.to_crs(grid.crs)
    land = gpd.GeoSeries(shapely.make_valid(land.values), crs=grid.crs)
    if buffer_m > 0:
        land = land.buffer(buffer_m)
    area = shapely.box(*grid.bounds).buffer(2 * grid.resolution, join_style="mitre")
    land = gpd.GeoSeries(shapely.intersection(land.values, area), crs=grid.crs)
    return land[~land.is_empty].reset_index(drop=True)


def _burn(shapes: list, shape: tuple[int, int], transform: Affine) -> np.ndarray:
    return rasterio.features.rasterize(
        ((g, 1) for g in shapes), out_shape=shape, transform=transform, fill=0, dtype="uint8"
    ).astype(bool)


def land_mask(
    grid: Grid, path: str | Path | None = None, *, buffer_m: float = 0.0, chunk: int = 512
) -> xr.DataArray:
    """Lazy boolean land mask (y, x) on ``grid``; each chunk burns only the polygons it meets."""
    land = land_polygons(grid, path, buffer_m=buffer_m)
    geoms = land.values
    tree = shapely.STRtree(geoms)
    ny, nx = grid.shape
    r = grid.resolution
    rows = []
    for r0 in range(0, ny, chunk):
        row = []
        for c0 in range(0, nx, chunk):
            h, w = min(chunk, ny - r0), min(chunk, nx - c0)
            x0, y1 = grid.xmin + c0 * r, grid.ymax - r0 * r
            box = shapely.box(x0, y1 - h * r, x0 + w * r, y1)
            hits = tree.query(box, predicate="intersects")
            if len(hits) == 0:
                row.append(da.zeros((h, w), dtype=bool, chunks=(h, w)))
                continue
            shapes = list(shapely.intersection(geoms[np.sort(hits)], box.buffer(r)))
            task = dask.delayed(_burn, pure=True)(shapes, (h, w), Affine(r, 0.0, x0, 0.0, -r, y1))
            row.append(da.from_delayed(task, shape=(h, w), dtype=bool, meta=np.empty((0, 0), bool)))
        rows.append(row)
    attrs = {
        "long_name": "land",
        "source": str(Path(path) if path is not None else default_land_path().name),
        "buffer_m": float(buffer_m),
        "flag_values": [0, 1],
        "flag_meanings": "sea land",
    }
    return grid.wrap(da.block(rows), name="land", attrs=attrs)
