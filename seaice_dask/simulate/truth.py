"""The simulator's ground truth: which surface is where, on a map grid, on any date of a season.

The scene is the Denmark Strait (default grid), October → March, following
``simulator-reference.md``: ice exported from the Fram Strait drifts south-west along Greenland in
the East Greenland Current; new ice forms at an edge that advances from the Greenland coast
towards Iceland; ice ages into first-year ice; multi-year floes drift along the coast.

Model (all lengths in km, times in days; every random draw comes from ``seed``):

* ``d`` = distance to the Greenland coast (the largest land polygon near the grid) minus a smooth
  random meander field (correlation length 40 km, sd 30 km).
* The ice edge is at ``edge(t) = D0 + (D1 - D0) · s(t)^0.8`` with ``s`` the season fraction from
  15 September to 31 March; a point freezes when the edge passes it, so its ice age is
  ``t - t_freeze(d)`` (points inside ``D0`` froze before the season started).
* Ice younger than ~28 days (± a smooth 7-day field) is young ice, older ice first-year ice;
  refreezing leads (zero crossings of a slowly rotating random field) are young ice/nilas.
* Multi-year floes are random star-shaped polygons (radius lognormal, median 2.5 km) drifting
  south-west at 15 km/day through a long periodic stream, denser near Greenland.
* Sub-classes for the forward model: calm/windy water (from a smooth per-date wind field,
  threshold 5 m/s), nilas vs young ice, level vs deformed first-year ice, multi-year ice.

Everything is defined on a coarse 2 km lattice and interpolated onto the target grid, so the same
seed draws the same geography on an 80 m or a 1 km grid. A simulation on any grid (``domain``)
renders its scenes and writes its truth and charts on one lattice, the domain plus 300 km, so
that scenes reaching beyond the domain see the same geography as its truth.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum
from functools import lru_cache
from collections.abc import Iterable, Sequence

import numba
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from pyproj import CRS

from seaice_dask.grid import DENMARK_STRAIT_BOUNDS, Grid, default_grid

#: sod4 class ids and names (DESIGN.md); −1 marks land.
SOD4_NAMES: dict[int, str] = {0: "open_water", 1: "young_ice", 2: "first_year_ice", 3: "multi_year_ice"}
LAND = -1


class Surface(IntEnum):
    """Fine surface types the forward model renders; :data:`SURFACE_TO_SOD4` maps them to sod4."""

    LAND = -1
    WATER_CALM = 0
    WATER_WINDY = 1
    NILAS = 2
    YOUNG_ICE = 3
    LEVEL_FYI = 4
    DEFORMED_FYI = 5
    MULTIYEAR_ICE = 6


#: sod4 id of each surface (index = surface id); land stays −1.
SURFACE_TO_SOD4 = np.array([0, 0, 1, 1, 2, 2, 3], dtype=np.int8)

_LATTICE_KM = 2.0  # spacing of the lattice the random fields live on
_MARGIN_KM = 20.0
_D0_KM, _D1_KM = 90.0, 230.0  # ice-edge distance from Greenland at season start / end
_YOUNG_DAYS = 50.0  # ice younger than this is young ice
_DRIFT_KM_PER_DAY = 15.0
_STREAM_KM = 3000.0  # length of the periodic floe stream (floes re-enter after 200 days)
_WIND_CALM_M_S = 5.0
_WORLD_CRS = "EPSG:32626"
_WORLD_PAD_M = 300_000.0  # also the lattice's margin around a simulation's domain


def season_start(date: dt.date | dt.datetime | np.datetime64 | str) -> pd.Timestamp:
    """15 September of the ice season ``date`` belongs to (seasons run September → August)."""
    t = pd.Timestamp(date)
    year = t.year if t.month >= 9 else t.year - 1
    return pd.Timestamp(year=year, month=9, day=15)


def _season_days(date) -> tuple[float, float]:
    """(days since season start, season length in days to 31 March)."""
    t0 = season_start(date)
    t = pd.Timestamp(date).tz_localize(None) if pd.Timestamp(date).tzinfo else pd.Timestamp(date)
    length = (pd.Timestamp(year=t0.year + 1, month=3, day=31) - t0) / pd.Timedelta(days=1)
    return (t - t0) / pd.Timedelta(days=1), float(length)


# --------------------------------------------------------------------------------------------
# Smooth random fields on a lattice, interpolated onto a grid


class _Lattice:
    """Regular km lattice the random fields live on; fields are interpolated bilinearly.

    The lattice is anchored to a fixed box (the default grid's bounds plus 300 km, in that CRS),
    so any grid inside the box, at any resolution or extent, sees the same geography; grids
    rendered for one simulation also share its ``domain`` plus 300 km.
    """

    def __init__(self, bounds: tuple[float, float, float, float]):
        step = _LATTICE_KM * 1000.0
        xmin, ymin, xmax, ymax = (np.floor(b / step) * step if i < 2 else np.ceil(b / step) * step
                                  for i, b in enumerate(bounds))
        self.x = np.arange(xmin, xmax + step, step)
        self.y = np.arange(ymax, ymin - step, -step)  # north first, like grids
        self.shape = (self.y.size, self.x.size)
        self.centre = ((xmin + xmax) / 2, (ymin + ymax) / 2)

    @classmethod
    def for_grid(cls, grid: Grid, domain: Grid | None = None) -> "_Lattice":
        m = _MARGIN_KM * 1000.0
        b = (grid.xmin - m, grid.ymin - m, grid.xmax + m, grid.ymax + m)
        if domain is not None:
            if CRS.from_user_input(domain.crs) != CRS.from_user_input(grid.crs):
                raise ValueError(f"truth on a {grid.crs} grid for a simulation on {domain.crs}: reproject its truth instead")
            p = _WORLD_PAD_M
            d = (domain.xmin - p, domain.ymin - p, domain.xmax + p, domain.ymax + p)
            b = (min(b[0], d[0]), min(b[1], d[1]), max(b[2], d[2]), max(b[3], d[3]))
        if CRS.from_user_input(grid.crs) == CRS.from_user_input(_WORLD_CRS):
            w = tuple(v + d for v, d in zip(DENMARK_STRAIT_BOUNDS, (-_WORLD_PAD_M, -_WORLD_PAD_M, _WORLD_PAD_M, _WORLD_PAD_M)))
            b = (min(b[0], w[0]), min(b[1], w[1]), max(b[2], w[2]), max(b[3], w[3]))
        return cls(b)

    def gaussian_field(self, rng: np.random.Generator, length_km: float) -> np.ndarray:
        """Unit-variance Gaussian random field with a Gaussian covariance of ``length_km``.

        White noise filtered in the Fourier domain by exp(-(k·L)²/4) (periodic, then the margin
        absorbs the wrap-around), normalised to mean 0 and sd 1.
        """
        ny, nx = self.shape
        pad_y, pad_x = ny + 2 * int(length_km / _LATTICE_KM), nx + 2 * int(length_km / _LATTICE_KM)
        noise = rng.standard_normal((pad_y, pad_x))
        ky = np.fft.fftfreq(pad_y, d=_LATTICE_KM)[:, None] * 2 * np.pi
        kx = np.fft.rfftfreq(pad_x, d=_LATTICE_KM)[None, :] * 2 * np.pi
        spectrum = np.fft.rfft2(noise) * np.exp(-((ky**2 + kx**2) * length_km**2) / 4.0)
        field = np.fft.irfft2(spectrum, s=(pad_y, pad_x))[:ny, :nx]
        return (field - field.mean()) / field.std()

    def _weights(self, grid: Grid):
        fy = (self.y[0] - grid.y) / (_LATTICE_KM * 1000.0)
        fx = (grid.x - self.x[0]) / (_LATTICE_KM * 1000.0)
        iy = np.clip(np.floor(fy).astype(np.intp), 0, self.shape[0] - 2)
        ix = np.clip(np.floor(fx).astype(np.intp), 0, self.shape[1] - 2)
        return iy, (fy - iy).astype(np.float32), ix, (fx - ix).astype(np.float32)

    def to_grid(self, field: np.ndarray, grid: Grid) -> np.ndarray:
        """Bilinear interpolation of a lattice field onto the pixel centres of ``grid`` (float32)."""
        iy, wy, ix, wx = self._weights(grid)
        out = np.empty(grid.shape, np.float32)
        _bilinear_kernel(np.ascontiguousarray(field, dtype=np.float32), iy, wy, ix, wx, out)
        return out

    def to_grid_reference(self, field: np.ndarray, grid: Grid) -> np.ndarray:
        """NumPy reference of :meth:`to_grid`."""
        iy, wy, ix, wx = self._weights(grid)
        f = field.astype(np.float32)
        rows = f[iy] * (1 - wy[:, None]) + f[iy + 1] * wy[:, None]
        return rows[:, ix] * (1 - wx[None, :]) + rows[:, ix + 1] * wx[None, :]


@numba.njit(parallel=True, cache=True)
def _bilinear_kernel(field, iy, wy, ix, wx, out):  # pragma: no cover - compiled
    for i in numba.prange(out.shape[0]):
        a, b = iy[i], wy[i]
        for j in range(out.shape[1]):
            c, d = ix[j], wx[j]
            top = field[a, c] * (1 - d) + field[a, c + 1] * d
            bottom = field[a + 1, c] * (1 - d) + field[a + 1, c + 1] * d
            out[i, j] = top * (1 - b) + bottom * b


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([seed, *tags])


@lru_cache(maxsize=8)
def _land_shapes(grid: Grid) -> tuple[list, object]:
    """Shipped land polygons around ``grid`` in its CRS: (all, the largest: the coast the ice grows from)."""
    from seaice_dask.landmask import land_polygons

    land = land_polygons(grid, densify=False)  # the vertices as shipped: the geography of every release
    if land.empty:
        return [], None
    return list(land.values), land.values[int(np.argmax(land.area.to_numpy()))]


def land_mask(grid: Grid) -> np.ndarray:
    """Boolean (y, x) land mask of ``grid`` from :data:`seaice_dask.data.LAND_POLYGONS`."""
    from rasterio.features import rasterize

    shapes, _ = _land_shapes(grid)
    if not shapes:
        return np.zeros(grid.shape, bool)
    return rasterize(
        ((s, 1) for s in shapes), out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8"
    ).astype(bool)


def _static_fields(grid: Grid, seed: int, domain: Grid | None = None) -> dict:
    """Date-independent lattice fields of one seed for a grid (see :func:`_lattice_fields`)."""
    lat = _Lattice.for_grid(grid, domain)
    return _lattice_fields(grid.crs, (lat.x[0], lat.y[-1], lat.x[-1], lat.y[0]), seed)


@lru_cache(maxsize=8)
def _lattice_fields(crs: str, bounds: tuple[float, float, float, float], seed: int) -> dict:
    """Coast distance (km) and the random fields of one seed on the lattice covering ``bounds``."""
    from rasterio.features import rasterize
    from scipy.ndimage import distance_transform_edt

    lat = _Lattice(bounds)
    step = _LATTICE_KM * 1000.0
    lattice_grid = Grid(crs, lat.x[0] - step / 2, lat.y[-1] - step / 2, lat.x[-1] + step / 2, lat.y[0] + step / 2, step)
    _, greenland = _land_shapes(lattice_grid)
    on_greenland = np.zeros(lat.shape, np.uint8)
    if greenland is not None:
        on_greenland = rasterize([(greenland, 1)], out_shape=lat.shape, transform=lattice_grid.transform, fill=0, dtype="uint8")
    if on_greenland.any():
        coast_km = distance_transform_edt(on_greenland == 0) * _LATTICE_KM
    else:  # a grid far from Greenland: the edge runs from the grid's north-west corner
        yy, xx = np.meshgrid(np.arange(lat.shape[0]), np.arange(lat.shape[1]), indexing="ij")
        coast_km = (yy + xx) * _LATTICE_KM / np.sqrt(2)
    rng = _rng(seed, 1)
    return {
        "lattice": lat,
        "coast_km": coast_km,
        "meander": lat.gaussian_field(rng, 40.0),
        "age_jitter": lat.gaussian_field(rng, 12.0),
        "deformed": lat.gaussian_field(rng, 8.0),
        "nilas": lat.gaussian_field(rng, 6.0),
        "lead_a": lat.gaussian_field(rng, 15.0),
        "lead_b": lat.gaussian_field(rng, 15.0),
    }


def _floes(seed: int, n: int = 24000) -> dict[str, np.ndarray]:
    """The multi-year floe population of a seed: stream position, cross offset, radius, shape."""
    rng = _rng(seed, 2)
    return {
        "along_km": rng.uniform(0, _STREAM_KM, n),
        "across_km": rng.uniform(-260, 260, n),
        "radius_km": np.exp(rng.normal(np.log(2.8), 0.55, n)),
        "max_coast_km": rng.exponential(150.0, n),
        "rotation": rng.uniform(0, 2 * np.pi, n),
        "lobes": rng.normal(0, 0.12, (n, 16)),
    }


def _floe_rings(grid: Grid, seed: int, days: float, domain: Grid | None = None):
    """Closed rings (n, 17, 2) of the floes inside the grid on season day ``days``, drifted
    south-west, with their centres and how far from the coast each may drift."""
    f = _floes(seed)
    cx, cy = _static_fields(grid, seed, domain)["lattice"].centre
    down = np.array([-1.0, -1.0]) / np.sqrt(2)  # south-west, along the East Greenland Current
    across = np.array([-down[1], down[0]])
    along = (f["along_km"] + _DRIFT_KM_PER_DAY * days) % _STREAM_KM - _STREAM_KM / 2
    px = cx + 1000 * (along * down[0] + f["across_km"] * across[0])
    py = cy + 1000 * (along * down[1] + f["across_km"] * across[1])
    r = f["radius_km"] * 1000
    inside = (
        (px + r > grid.xmin) & (px - r < grid.xmax) & (py + r > grid.ymin) & (py - r < grid.ymax)
    )
    idx = np.flatnonzero(inside)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)[None, :] + f["rotation"][idx, None]
    radius = r[idx, None] * np.exp(f["lobes"][idx])
    ring = np.stack(
        [px[idx, None] + radius * np.cos(angles), py[idx, None] + radius * np.sin(angles)], axis=-1
    )
    closed = np.concatenate([ring, ring[:, :1]], axis=1)
    return closed, px[idx], py[idx], f["max_coast_km"][idx]


def _wind_speed(grid: Grid, seed: int, date, domain: Grid | None = None) -> np.ndarray:
    """Smooth 10 m wind speed (m/s) on the lattice for one date: mean 7, sd 3, 80 km scale."""
    lat: _Lattice = _static_fields(grid, seed, domain)["lattice"]
    day = int(pd.Timestamp(date).toordinal())
    return np.clip(7.0 + 3.0 * lat.gaussian_field(_rng(seed, 3, day), 80.0), 0.5, 20.0)


# --------------------------------------------------------------------------------------------
# Public API


def truth_fields(
    grid: Grid | None = None,
    date: dt.date | dt.datetime | np.datetime64 | str = "2021-01-15",
    seed: int = 0,
    domain: Grid | None = None,
) -> xr.Dataset:
    """The truth on ``grid`` at ``date``: ``truth_class`` (sod4, −1 land), ``surface``, ``wind_speed``.

    ``surface`` holds :class:`Surface` ids for the forward model; ``wind_speed`` (m/s) modulates
    open-water backscatter. All three are (y, x) on the grid with its CRS. ``domain``: the
    simulation's grid, whose lattice every grid rendered for it shares (its scenes, truth, charts).
    """
    grid = grid or default_grid()
    static = _static_fields(grid, seed, domain)
    lat: _Lattice = static["lattice"]
    days, length = _season_days(date)

    d_km = lat.to_grid(static["coast_km"] - 30.0 * static["meander"], grid)
    edge_km = _D0_KM + (_D1_KM - _D0_KM) * np.clip(days / length, 0, 1) ** 0.8
    ice = d_km <= edge_km
    frac = np.clip((d_km - _D0_KM) / (_D1_KM - _D0_KM), 0, None) ** (1 / 0.8)
    freeze_day = np.where(d_km <= _D0_KM, -25.0, frac * length)
    age_days = days - freeze_day + 10.0 * lat.to_grid(static["age_jitter"], grid)

    phase = 2 * np.pi * days / 60.0  # the lead pattern turns over in about two months
    lead_field = lat.to_grid(np.cos(phase) * static["lead_a"] + np.sin(phase) * static["lead_b"], grid)
    lead = np.abs(lead_field) < 0.12
    nilas = (np.abs(lead_field) < 0.03) | (lat.to_grid(static["nilas"], grid) > 1.0) & (age_days < 10)

    surface = np.full(grid.shape, Surface.LEVEL_FYI, dtype=np.int8)
    surface[lat.to_grid(static["deformed"], grid) > 0.65] = Surface.DEFORMED_FYI
    young = (age_days < _YOUNG_DAYS) | lead
    surface[young] = Surface.YOUNG_ICE
    surface[young & nilas] = Surface.NILAS

    rings, px, py, max_coast = _floe_rings(grid, seed, days, domain)
    if len(rings):
        from rasterio.features import rasterize

        keep = _coast_distance_at(grid, static, px, py) < max_coast
        if keep.any():  # GeoJSON of the kept floes only: listing every vertex is the slow part
            polygons = ({"type": "Polygon", "coordinates": [r]} for r in rings[keep].tolist())
            floes = rasterize(
                ((p, 1) for p in polygons), out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8"
            ).astype(bool)
            surface[floes & ice] = Surface.MULTIYEAR_ICE

    wind = lat.to_grid(_wind_speed(grid, seed, date, domain), grid)
    water = ~ice
    surface[water] = np.where(wind[water] < _WIND_CALM_M_S, Surface.WATER_CALM, Surface.WATER_WINDY)
    land = land_mask(grid)
    surface[land] = Surface.LAND

    truth = np.where(land, np.int8(LAND), SURFACE_TO_SOD4[np.clip(surface, 0, None)]).astype(np.int8)
    stamp = pd.Timestamp(date)
    time = np.datetime64(stamp.tz_convert(None) if stamp.tzinfo else stamp, "ns")
    dims = ("y", "x")
    ds = xr.Dataset(
        {
            "truth_class": (dims, truth, {
                "long_name": "true sea-ice class (sod4)",
                "flag_values": [-1, 0, 1, 2, 3],
                "flag_meanings": "land open_water young_ice first_year_ice multi_year_ice",
            }),
            "surface": (dims, surface, {
                "long_name": "simulated surface type",
                "flag_values": [int(s) for s in Surface],
                "flag_meanings": " ".join(s.name.lower() for s in Surface),
            }),
            "wind_speed": (dims, wind, {"long_name": "10 m wind speed", "units": "m s-1"}),
        },
        coords={**grid.coords(), "time": time},
        attrs={"seed": seed},
    )
    # in place: rioxarray's default deep copy would duplicate every full-size field
    return ds.rio.write_crs(grid.crs, inplace=True).rio.write_coordinate_system(inplace=True)


def _coast_distance_at(grid: Grid, static: dict, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Distance to Greenland (km) at points, bilinear on the lattice."""
    lat: _Lattice = static["lattice"]
    fy = np.clip((lat.y[0] - py) / (_LATTICE_KM * 1000.0), 0, lat.shape[0] - 1.001)
    fx = np.clip((px - lat.x[0]) / (_LATTICE_KM * 1000.0), 0, lat.shape[1] - 1.001)
    iy, ix = fy.astype(int), fx.astype(int)
    wy, wx = fy - iy, fx - ix
    c = static["coast_km"]
    return (
        c[iy, ix] * (1 - wy) * (1 - wx)
        + c[iy + 1, ix] * wy * (1 - wx)
        + c[iy, ix + 1] * (1 - wy) * wx
        + c[iy + 1, ix + 1] * wy * wx
    )


def truth_map(grid: Grid | None = None, date="2021-01-15", seed: int = 0, domain: Grid | None = None) -> xr.DataArray:
    """(y, x) int8 sod4 truth on ``grid`` at ``date``: 0 water, 1 young, 2 first-year, 3 old ice, −1 land."""
    return truth_fields(grid, date, seed, domain)["truth_class"]


def weekly_truth(
    grid: Grid | None = None, dates: Iterable | None = None, seed: int = 0, domain: Grid | None = None
) -> xr.DataArray:
    """Stack :func:`truth_map` over ``dates`` into a (time, y, x) int8 DataArray with CRS.

    ``dates`` default to the Mondays from 5 October 2020 to 22 March 2021 (the weekly charts).
    """
    grid = grid or default_grid()
    dates = list(dates) if dates is not None else list(pd.date_range("2020-10-05", "2021-03-22", freq="7D"))
    maps = [truth_map(grid, d, seed, domain) for d in dates]
    from seaice_dask.grid import write_crs

    return write_crs(xr.concat(maps, dim="time").rename("truth_class"), grid.crs)


def class_fractions(truth: xr.DataArray) -> dict[str, float]:
    """Share of each sod4 class among the non-land pixels."""
    values = np.asarray(truth)
    water_area = np.count_nonzero(values >= 0)
    return {name: float(np.count_nonzero(values == k) / max(water_area, 1)) for k, name in SOD4_NAMES.items()}


__all__: Sequence[str] = [
    "LAND",
    "SOD4_NAMES",
    "SURFACE_TO_SOD4",
    "Surface",
    "class_fractions",
    "land_mask",
    "season_start",
    "truth_fields",
    "truth_map",
    "weekly_truth",
]
