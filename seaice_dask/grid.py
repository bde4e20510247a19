"""The common map grid every scene, chart, feature and prediction is placed on.

A grid is a north-up raster: a CRS, bounds snapped to a whole number of pixels and a square
pixel size in metres. Pixel centres are the coordinates (``x`` increasing, ``y`` decreasing),
as rioxarray expects.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

from seaice_dask.errors import ConfigError

#: Denmark Strait between Greenland and Iceland, EPSG:32626 (UTM 26N), 400 km × 400 km.
DENMARK_STRAIT_BOUNDS = (300_000.0, 7_250_000.0, 700_000.0, 7_650_000.0)


@dataclass(frozen=True)
class Grid:
    """North-up map grid: ``crs``, outer ``bounds`` (xmin, ymin, xmax, ymax) and ``resolution``."""

    crs: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    resolution: float

    def __post_init__(self) -> None:
        if self.resolution <= 0:
            raise ConfigError(f"grid resolution must be positive, got {self.resolution}")
        if self.xmax <= self.xmin or self.ymax <= self.ymin:
            raise ConfigError(f"grid bounds are empty: {self.bounds}")
        try:
            crs = CRS.from_user_input(self.crs)
        except Exception as exc:  # pyproj raises several types
            raise ConfigError(f"unknown grid CRS {self.crs!r}: {exc}") from exc
        if not crs.is_projected:
            raise ConfigError(f"grid CRS {self.crs!r} must be projected (metres)")

    @classmethod
    def from_bounds(
        cls, crs: str, bounds: tuple[float, float, float, float], resolution: float
    ) -> Grid:
        """Grid covering ``bounds``, snapped outwards to multiples of ``resolution``."""
        xmin, ymin, xmax, ymax = bounds
        r = float(resolution)
        return cls(
            crs=str(crs),
            xmin=math.floor(xmin / r) * r,
            ymin=math.floor(ymin / r) * r,
            xmax=math.ceil(xmax / r) * r,
            ymax=math.ceil(ymax / r) * r,
            resolution=r,
        )

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return (
            round((self.ymax - self.ymin) / self.resolution),
            round((self.xmax - self.xmin) / self.resolution),
        )

    @property
    def transform(self) -> Affine:
        return Affine(self.resolution, 0.0, self.xmin, 0.0, -self.resolution, self.ymax)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates in metres."""
        return self.xmin + (np.arange(self.shape[1]) + 0.5) * self.resolution

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates in metres, north first."""
        return self.ymax - (np.arange(self.shape[0]) + 0.5) * self.resolution

    def window(self, rows: slice, cols: slice) -> Grid:
        """The part of this grid at pixel ``rows × cols`` (same lattice and CRS)."""
        ny, nx = self.shape
        r0, r1, _ = rows.indices(ny)
        c0, c1, _ = cols.indices(nx)
        if r1 <= r0 or c1 <= c0:
            raise ConfigError(f"empty window rows {rows}, cols {cols} of a {ny} × {nx} grid")
        r = self.resolution
        return replace(self, xmin=self.xmin + c0 * r, xmax=self.xmin + c1 * r,
                       ymin=self.ymax - r1 * r, ymax=self.ymax - r0 * r)

    def to_attrs(self) -> dict[str, Any]:
        """Plain dict, stored in the cube's attributes and in model metadata."""
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Grid:
        return cls(**{k: attrs[k] for k in ("crs", "xmin", "ymin", "xmax", "ymax", "resolution")})

    def coords(self) -> dict[str, xr.DataArray]:
        """CF-annotated ``y``/``x`` coordinates."""
        attrs = {"units": "m", "axis": None}
        return {
            "y": xr.DataArray(
                self.y, dims="y", attrs={**attrs, "axis": "Y", "standard_name": "projection_y_coordinate"}
            ),
            "x": xr.DataArray(
                self.x, dims="x", attrs={**attrs, "axis": "X", "standard_name": "projection_x_coordinate"}
            ),
        }

    def wrap(self, data: Any, name: str | None = None, attrs: dict | None = None) -> xr.DataArray:
        """Wrap a (y, x) NumPy or dask array as a DataArray on this grid with its CRS written."""
        if tuple(data.shape[-2:]) != self.shape:
            raise ValueError(f"array shape {data.shape} does not end with grid shape {self.shape}")
        dims = tuple(f"dim_{i}" for i in range(data.ndim - 2)) + ("y", "x")
        da = xr.DataArray(data, dims=dims, coords=self.coords(), name=name, attrs=attrs or {})
        return write_crs(da, self.crs)


def chunk_sizes(n: int, chunk: int) -> tuple[int, ...]:
    """Sizes of the chunks of ``chunk`` pixels along an axis of ``n`` (the last one shorter)."""
    return tuple(min(chunk, n - s) for s in range(0, n, chunk))


def write_crs(obj: xr.DataArray | xr.Dataset, crs: str) -> Any:
    """Attach the CRS as rioxarray's ``spatial_ref`` coordinate (CF grid mapping)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    return obj.rio.write_crs(crs).rio.write_coordinate_system()


def default_grid(resolution: float = 80.0) -> Grid:
    """The Denmark Strait grid of the training exercise: EPSG:32626 at ``resolution`` metres."""
    return Grid.from_bounds("EPSG:32626", DENMARK_STRAIT_BOUNDS, resolution)
