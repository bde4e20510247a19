"""Radar geometry ``(line, sample)`` → the common map grid ``(y, x)`` by backward mapping.

Every output pixel centre (x, y) of the grid is mapped to a fractional radar position
(line, sample) and the radar image is sampled there. The inverse map is a thin-plate spline
(Duchon 1977; Bookstein 1989) fitted from the product's geolocation tie points projected into
the grid CRS to their (line, sample): it passes exactly through the tie points and is smooth
between them. GDAL's default order-2 polynomial GCP fit is ~200 m off on EW scenes; its
``tps=True`` transformer is the same spline and is what the tests compare against.

Evaluating the spline at every output pixel costs O(pixels × tie points), so it is evaluated on
a lattice fixed in the grid's CRS (every 2.56 km on an 80 m grid) and interpolated bicubically in
between (the map is smooth at the scale of a tie-point cell, ~20 km; the tests bound the error).
Fixed in the CRS, the lattice makes a pixel's value independent of the grid's extent and
chunking: a region's grid and the default grid agree exactly where they overlap.

Geocoding is chunk-wise: for each output chunk the bounding box of its (line, sample) map is
found when the graph is built (the spline on the chunk's edges), and one task per chunk takes
the radar blocks that window overlaps, maps and samples; chunks off the footprint are NaN without
reading.
Multilooking (a block mean in linear power) is done once per radar block, before sampling.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask._task_spec import DataNode, Task, TaskRef
from dask.highlevelgraph import HighLevelGraph
from pyproj import CRS, Transformer
from scipy.interpolate import RBFInterpolator, RectBivariateSpline

from seaice_dask.errors import ProductError
from seaice_dask.grid import Grid, chunk_sizes

if TYPE_CHECKING:
    from seaice_dask.preprocess.incidence import IncidenceCorrection

Resampling = Literal["bilinear", "average"]

#: Extra full-resolution radar pixels read around each chunk's window.
_WINDOW_PAD = 4
#: Exact spline evaluations are spaced h = sqrt(LATTICE_SCALE_M × resolution) metres apart
#: (2.56 km on an 80 m grid). Bicubic interpolation between them errs by ~1 m on EW and IW
#: scenes at that spacing, growing faster than h², so h ∝ sqrt(resolution) keeps the error a
#: small fraction of an output pixel (< 0.05, see the tests) at any resolution while coarse
#: grids evaluate the spline on fewer points.
LATTICE_SCALE_M = 81920.0


def _stride(grid: Grid) -> int:
    """Grid pixels between exact spline evaluations."""
    return max(1, int(math.sqrt(LATTICE_SCALE_M / grid.resolution)))


@dataclass(frozen=True)
class TiePoints:
    """Geolocation tie points of one product: radar position and WGS84 position, 1-D each."""

    line: np.ndarray
    sample: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    #: Radar image shape (lines, samples) at full resolution.
    shape: tuple[int, int]

    @classmethod
    def from_product(cls, product: Any, pol: str | None = None) -> TiePoints:
        """Tie points of an opened product (``seaice_dask.safe.open_safe``)."""
        pol = pol or product.polarisations[0]
        return cls.from_dataset(product.geolocation_grid(pol), product.shape)

    @classmethod
    def from_dataset(cls, geolocation: xr.Dataset, shape: tuple[int, int]) -> TiePoints:
        """Read tie points from a geolocation-grid Dataset.

        Accepts both layouts in use: a 2-D grid with ``line``/``pixel`` dimension coordinates
        and ``latitude``/``longitude`` variables, or 1-D point lists holding ``line`` and
        ``pixel`` (or ``sample``) as variables.
        """
        lat = geolocation["latitude"]
        lon = geolocation["longitude"]
        col = "pixel" if "pixel" in geolocation.variables else "sample"
        if lat.ndim == 2:
            lat, line, sample = xr.broadcast(lat, geolocation["line"], geolocation[col])
        else:
            line, sample = geolocation["line"], geolocation[col]
        return cls(
            line=np.asarray(line, dtype=np.float64).ravel(),
            sample=np.asarray(sample, dtype=np.float64).ravel(),
            latitude=np.asarray(lat, dtype=np.float64).ravel(),
            longitude=np.asarray(lon, dtype=np.float64).ravel(),
            shape=(int(shape[0]), int(shape[1])),
        )

    def projected(self, crs: str) -> tuple[np.ndarray, np.ndarray]:
        """Tie point positions (x, y) in metres of ``crs``."""
        to_grid = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_user_input(crs), always_xy=True)
        x, y = to_grid.transform(self.longitude, self.latitude)
        return np.asarray(x), np.asarray(y)


class InverseMap:
    """Thin-plate spline from grid coordinates (x, y) in metres to radar (line, sample).

    Coordinates are centred and scaled before fitting, for conditioning only (the spline with
    its affine term is invariant to that). The object is small and pickles into dask tasks.
    """

    def __init__(self, tie_points: TiePoints, crs: str):
        if len(tie_points.line) < 4:
            raise ProductError(f"need at least 4 geolocation tie points, got {len(tie_points.line)}")
        self.crs = str(crs)
        self.radar_shape = tie_points.shape
        x, y = tie_points.projected(self.crs)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ProductError(f"tie points cannot be projected into {self.crs}")
        # what makes two maps the same, for dask's graph keys: the tie points and the CRS
        self._token = dask.base.tokenize(tie_points.line, tie_points.sample, tie_points.latitude,
                                         tie_points.longitude, tie_points.shape, self.crs)
        self._offset = np.array([x.mean(), y.mean()])
        self._scale = float(max(x.std(), y.std(), 1.0))
        self._spline = RBFInterpolator(
            self._normalise(x, y),
            np.column_stack([tie_points.line, tie_points.sample]),
            kernel="thin_plate_spline",
            smoothing=0.0,
            degree=1,
        )

    def __dask_tokenize__(self) -> str:
        return self._token

    def _normalise(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (np.column_stack([np.ravel(x), np.ravel(y)]) - self._offset) / self._scale

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(line, sample) at grid positions ``x``, ``y`` (same shape, metres)."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        out = self._spline(self._normalise(x, y))
        return out[:, 0].reshape(x.shape), out[:, 1].reshape(x.shape)


def _lattice(start: int, stop: int, stride: int) -> np.ndarray:
    """Pixel indices ``start, start+stride, …`` always ending with ``stop - 1``."""
    idx = np.arange(start, stop, stride)
    return idx if idx[-1] == stop - 1 else np.append(idx, stop - 1)


#: Knot intervals per side of a lattice tile (:func:`_chunk_map`).
TILE_KNOTS = 16


def _tile_spans(start: int, stop: int, tile: int) -> list[tuple[int, int, int]]:
    """``start:stop`` (pixel indices counted from the CRS origin) cut at multiples of ``tile``:
    (tile start, span start, span stop) for each piece."""
    spans = []
    while start < stop:
        origin = start // tile * tile
        end = min(stop, origin + tile)
        spans.append((origin, start, end))
        start = end
    return spans


def _chunk_map(
    inverse: InverseMap, grid: Grid, rows: slice, cols: slice, stride: int, supersample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(line, sample) for the grid pixels ``rows × cols``: spline on a lattice, bicubic between.

    The lattice is fixed in the grid's CRS: tiles of ``TILE_KNOTS × stride`` pixels counted from
    the CRS origin, each with its own interpolating spline through knots every ``stride``
    pixels, one knot beyond each side (pixels are interpolated, never extrapolated). So a pixel's
    position depends on where it lies in the CRS, not on the grid's extent or chunking: grids of
    any extent on one pixel lattice map their common pixels identically. With ``supersample``
    k > 1 each output pixel is split into k × k sub-pixels and the result has shape
    (k·rows, k·cols).
    """
    res = grid.resolution
    # the grid's first pixel counted from the CRS origin (whole on a lattice-aligned grid)
    row_origin, col_origin = -grid.ymax / res, grid.xmin / res
    row0, col0 = math.floor(row_origin), math.floor(col_origin)
    tile = TILE_KNOTS * stride
    k = supersample
    sub = (np.arange(k) + 0.5) / k - 0.5
    knots = stride * np.arange(-1, TILE_KNOTS + 2, dtype=np.float64)  # tile-relative
    line = np.empty((k * (rows.stop - rows.start), k * (cols.stop - cols.start)))
    sample = np.empty_like(line)
    for tr, r0, r1 in _tile_spans(rows.start + row0, rows.stop + row0, tile):
        at_r = (np.arange(r0 - tr, r1 - tr)[:, None] + (row_origin - row0) + sub[None, :]).ravel()
        out_r = slice(k * (r0 - row0 - rows.start), k * (r1 - row0 - rows.start))
        for tc, c0, c1 in _tile_spans(cols.start + col0, cols.stop + col0, tile):
            at_c = (np.arange(c0 - tc, c1 - tc)[:, None] + (col_origin - col0) + sub[None, :]).ravel()
            out_c = slice(k * (c0 - col0 - cols.start), k * (c1 - col0 - cols.start))
            # knot centres in CRS metres: exact multiples of res / 2, whatever the grid
            yy, xx = np.meshgrid(-(tr + knots + 0.5) * res, (tc + knots + 0.5) * res, indexing="ij")
            for target, v in zip((line, sample), inverse(xx, yy), strict=True):
                target[out_r, out_c] = RectBivariateSpline(knots, knots, v, kx=3, ky=3, s=0)(at_r, at_c)
    return line, sample


def radar_to_grid_map(
    tie_points: TiePoints, grid: Grid, *, chunk: int = 512
) -> tuple[da.Array, da.Array]:
    """Lazy (line, sample) positions of every grid pixel centre, as (y, x) dask arrays."""
    inverse = InverseMap(tie_points, grid.crs)
    stride = _stride(grid)
    ny, nx = grid.shape
    chunks = (chunk_sizes(ny, chunk), chunk_sizes(nx, chunk))

    def block(block_info: dict | None = None) -> np.ndarray:
        (r0, r1), (c0, c1) = block_info[None]["array-location"][-2:]
        line, sample = _chunk_map(inverse, grid, slice(r0, r1), slice(c0, c1), stride)
        return np.stack([line, sample])

    both = da.map_blocks(
        block, chunks=((2,), *chunks), dtype=np.float64, meta=np.empty((0, 0, 0), np.float64)
    )
    return both[0], both[1]


def _bilinear_weights(shape: tuple[int, int], line: np.ndarray, sample: np.ndarray, dtype=np.float32):
    """Flat indices of the 4 neighbours and the 2 weights for bilinear sampling of ``shape``
    at fractional (line, sample), clamped into the image. Computed once, applied per variable."""
    n, m = shape
    line = np.clip(line, 0, n - 1)
    sample = np.clip(sample, 0, m - 1)
    l0 = np.minimum(line.astype(np.intp), max(n - 2, 0))
    s0 = np.minimum(sample.astype(np.intp), max(m - 2, 0))
    wl = (line - l0).astype(dtype, copy=False)
    ws = (sample - s0).astype(dtype, copy=False)
    i00 = l0 * m + s0
    i01 = i00 + (1 if m > 1 else 0)
    i10 = i00 + (m if n > 1 else 0)
    return i00, i01, i10, i10 + (i01 - i00), wl, ws


def _bilinear_apply(image: np.ndarray, weights) -> np.ndarray:
    i00, i01, i10, i11, wl, ws = weights
    flat = image.ravel()
    top = flat.take(i00)
    top += (flat.take(i01) - top) * ws
    bottom = flat.take(i10)
    bottom += (flat.take(i11) - bottom) * ws
    return top + (bottom - top) * wl


def _bilinear(image: np.ndarray, line: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Sample ``image`` at fractional (line, sample); positions are clamped into the image."""
    return _bilinear_apply(image, _bilinear_weights(image.shape, line, sample, image.dtype))


def multilook(image: np.ndarray, looks: int) -> np.ndarray:
    """Block mean over ``looks × looks`` pixels (trailing partial blocks dropped), float32.

    Average linear power, never dB: the mean of dB values is biased low. NaN in a block makes
    the block NaN (no-data borders stay no-data).
    """
    if looks == 1:
        return np.asarray(image, dtype=np.float32)
    n, m = image.shape[0] // looks, image.shape[1] // looks
    total = np.zeros((n, m), dtype=np.float32)
    for i in range(looks):  # strided adds: much faster than a reshape + mean over two axes
        for j in range(looks):
            total += image[i : n * looks : looks, j : m * looks : looks]
    total /= looks * looks
    return total


def multilook_lazy(array: da.Array, looks: int) -> da.Array:
    """:func:`multilook` of a dask array, block by block (each radar pixel averaged once).

    Chunks are first made multiples of ``looks`` (all but the last), so block-wise averaging
    equals averaging the whole image.
    """
    if looks == 1:
        return array.astype(np.float32)
    sizes = tuple(max(looks, c[0] // looks * looks) for c in array.chunks)
    array = array.rechunk(sizes)
    chunks = tuple(tuple(c // looks for c in axis) for axis in array.chunks)
    return array.map_blocks(multilook, looks, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), np.float32))


def _sample_windows(
    line: np.ndarray,
    sample: np.ndarray,
    *windows: np.ndarray,
    origin: tuple[int, int],
    looks: int,
    ml_shape: tuple[int, int],
    supersample: int,
) -> np.ndarray:
    """Sample multilooked radar windows (same extent, one per variable) at full-resolution
    (line, sample) positions → (n_windows, y, x).

    ``origin`` is the windows' first multilooked (line, sample); ``ml_shape`` the shape of the
    whole multilooked image, which defines the footprint (NaN outside it).
    """
    # multilooked pixel i has its centre at full-resolution position i·L + (L − 1)/2
    q_line = (line - (looks - 1) / 2) / looks
    q_sample = (sample - (looks - 1) / 2) / looks
    inside = (
        (q_line >= -0.5) & (q_line <= ml_shape[0] - 0.5)
        & (q_sample >= -0.5) & (q_sample <= ml_shape[1] - 0.5)
    )
    # only the footprint's pixels are sampled (a chunk at a swath's edge is partly outside):
    # elementwise arithmetic, so each pixel's value is the same as in a whole-chunk evaluation
    every = bool(inside.all())
    at = (slice(None),) if every else inside
    weights = _bilinear_weights(windows[0].shape, q_line[at] - origin[0], q_sample[at] - origin[1])
    out = []
    for window in windows:
        values = np.full(line.shape, np.nan, dtype=np.float32)
        values[at] = _bilinear_apply(np.asarray(window, dtype=np.float32), weights)
        out.append(_box_mean(values, supersample) if supersample > 1 else values)
    return np.stack(out)


def _box_mean(values: np.ndarray, k: int) -> np.ndarray:
    """Mean of the finite values of each k × k block (NaN where none)."""
    ny, nx = values.shape[0] // k, values.shape[1] // k
    values = values.reshape(ny, k, nx, k)
    count = np.isfinite(values).sum(axis=(1, 3))
    total = np.nansum(values, axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def geocode(
    radar: xr.DataArray,
    inverse: InverseMap,
    grid: Grid,
    *,
    multilook: int = 2,
    resampling: Resampling = "bilinear",
    chunk: int = 512,
    name: str | None = None,
) -> xr.DataArray:
    """Place a radar-geometry array (line, sample) in linear units onto ``grid`` → (y, x).

    The radar array is multilooked by ``multilook`` × ``multilook`` (block mean), then sampled
    at each grid pixel: ``bilinear`` at the pixel centre, or ``average``, the mean over k × k
    bilinear samples spread over the pixel (k ≈ grid pixel / multilooked pixel, at least 2),
    for grids coarser than the radar. NaN outside the footprint. Lazy: each output chunk reads
    only the radar window it covers. Pass linear power (sigma0) or angles, never dB.
    """
    key = name or radar.name or "data"
    return geocode_arrays({key: radar}, inverse, grid, multilook=multilook, resampling=resampling, chunk=chunk)[key]


def geocode_arrays(
    radars: Mapping[str, xr.DataArray],
    inverse: InverseMap,
    grid: Grid,
    *,
    multilook: int = 2,
    resampling: Resampling = "bilinear",
    chunk: int = 512,
    window: tuple[slice, slice] | None = None,
    blocks: np.ndarray | None = None,
) -> dict[str, xr.DataArray]:
    """:func:`geocode` for several arrays of one product: each chunk's map is computed once.
    (To correct the multilooked arrays before resampling, see :func:`multilooked_radars` and
    :func:`resample_multilooked`.) ``window`` (rows,
    cols of ``grid``, starting on chunk boundaries; :mod:`seaice_dask.coverage`): only that part
    of the grid, pixel for pixel as in the whole grid. ``blocks`` (bool per chunk of the window):
    chunks flagged False are off the footprint, NaN without a look at the radar geometry."""
    for radar in radars.values():
        if radar.dims != ("line", "sample"):
            raise ValueError(f"expected dims ('line', 'sample'), got {radar.dims}")
        if tuple(radar.shape) != tuple(inverse.radar_shape):
            raise ValueError(f"radar shape {radar.shape} differs from the tie points' {inverse.radar_shape}")
    looks = int(multilook)
    if looks < 1:
        raise ValueError(f"multilook must be >= 1, got {multilook}")
    data = {
        name: multilook_lazy(r.data if isinstance(r.data, da.Array) else da.from_array(r.data, chunks=2048), looks)
        for name, r in radars.items()
    }
    return resample_multilooked(data, inverse, grid, multilook=looks, resampling=resampling, chunk=chunk,
                                window=window, blocks=blocks, attrs={name: r.attrs for name, r in radars.items()})


def resample_multilooked(
    data: Mapping[str, da.Array],
    inverse: InverseMap,
    grid: Grid,
    *,
    multilook: int = 2,
    resampling: Resampling = "bilinear",
    chunk: int = 512,
    window: tuple[slice, slice] | None = None,
    blocks: np.ndarray | None = None,
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
    db: Sequence[str] = (),
    valid: Sequence[str] = (),
) -> dict[str, xr.DataArray]:
    """The resampling half of :func:`geocode_arrays`: radar arrays already multilooked by
    ``multilook`` (by name, each ``inverse.radar_shape // multilook``) onto ``grid`` (its
    ``window``, and of that only the chunks flagged in ``blocks``); ``attrs`` by name are kept on
    the outputs. ``db``: names returned as 10·log10 (NaN where ≤ 0); ``valid``: if given, a bool
    output ``valid``, finite in every one of these names.

    One task per output chunk (:func:`_resample_block`) takes the multilooked blocks its radar
    window overlaps, maps the chunk's pixels, samples every array and converts: slicing and
    merging the windows as dask operations took a dozen small tasks per chunk, whose scheduling
    cost more than the sampling.
    """
    if resampling not in ("bilinear", "average"):
        raise ValueError(f"resampling must be 'bilinear' or 'average', got {resampling!r}")
    looks = int(multilook)
    n_lines, n_samples = inverse.radar_shape
    ml_shape = (n_lines // looks, n_samples // looks)
    k = 1 if resampling == "bilinear" else _supersample_factor(inverse, grid, looks)
    stride = _stride(grid)
    names = list(data)
    arrays = [a if isinstance(a, da.Array) else da.asarray(a) for a in data.values()]
    edges = [[np.cumsum((0, *c)) for c in a.chunks] for a in arrays]
    convert = _Conversion(tuple(names.index(n) for n in db), tuple(names.index(n) for n in valid))
    channels = len(names) + bool(valid)

    ny, nx = grid.shape
    rows_in, cols_in = window or (slice(0, ny), slice(0, nx))
    row_chunks = chunk_sizes(rows_in.stop - rows_in.start, chunk)
    col_chunks = chunk_sizes(cols_in.stop - cols_in.start, chunk)
    token = dask.base.tokenize(arrays, inverse, grid, looks, k, chunk, rows_in, cols_in, blocks, convert)
    name, shared = f"resample-{token}", f"resample-inverse-{token}"
    dsk: dict[Any, Any] = {shared: DataNode(shared, (inverse, grid))}
    r0 = rows_in.start
    for by, h in enumerate(row_chunks):
        c0 = cols_in.start
        for bx, w in enumerate(col_chunks):
            key = (name, 0, by, bx)
            rows, cols = slice(r0, r0 + h), slice(c0, c0 + w)
            off = blocks is not None and not blocks[by, bx]
            radar_window = None if off else _window(inverse, grid, rows, cols, stride, looks, ml_shape)
            if radar_window is None:
                dsk[key] = Task(key, _empty_block, (channels, h, w), convert)
            else:
                sources, refs = [], []
                (lo_l, hi_l), (lo_s, hi_s) = radar_window
                for array, (el, es) in zip(arrays, edges):
                    i0, i1 = np.searchsorted(el, lo_l, "right") - 1, np.searchsorted(el, hi_l, "left")
                    j0, j1 = np.searchsorted(es, lo_s, "right") - 1, np.searchsorted(es, hi_s, "left")
                    sources.append((tuple(int(v) for v in el[i0:i1]), tuple(int(v) for v in es[j0:j1])))
                    refs.extend(TaskRef((array.name, i, j)) for i in range(i0, i1) for j in range(j0, j1))
                spec = _BlockSpec(rows, cols, stride, k, radar_window, looks, ml_shape, tuple(sources), convert)
                dsk[key] = Task(key, _resample_block, TaskRef(shared), spec, *refs)
            c0 += w
        r0 += h
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=arrays)
    stacked = da.Array(graph, name, ((channels,), row_chunks, col_chunks), meta=np.empty((0, 0, 0), np.float32))
    out = {}
    target = grid.window(rows_in, cols_in)
    for i, key in enumerate(names):
        kept = {**(attrs or {}).get(key, {}), "multilook": looks, "resampling": resampling}
        if key in db:
            kept["units"] = "dB"
        out[key] = target.wrap(stacked[i], name=key, attrs=kept)
    if valid:
        out["valid"] = target.wrap(stacked[-1].astype(bool), name="valid", attrs={})
    return out


@dataclass(frozen=True)
class _Conversion:
    """Channels of a resampled block converted to dB, and those whose finiteness makes ``valid``
    (an extra last channel, 1 or 0; none if empty)."""

    db: tuple[int, ...]
    valid: tuple[int, ...]


@dataclass(frozen=True)
class _BlockSpec:
    """What :func:`_resample_block` does for one output chunk: its grid ``rows`` × ``cols``, the
    lattice ``stride``, super-sampling ``k``, the multilooked radar ``window`` ((l0, l1), (s0,
    s1)) and image shape, and per array the first line and sample of each block it is given."""

    rows: slice
    cols: slice
    stride: int
    k: int
    window: tuple[tuple[int, int], tuple[int, int]]
    looks: int
    ml_shape: tuple[int, int]
    sources: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    convert: _Conversion


def _assemble(pieces: Sequence[np.ndarray], starts: tuple[tuple[int, ...], tuple[int, ...]],
              window: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """The ``window`` ((l0, l1), (s0, s1)) of an array from the blocks covering it (row-major,
    each starting at ``starts``' lines × samples)."""
    (l0, l1), (s0, s1) = window
    (lines, samples) = starts
    if len(pieces) == 1:
        return pieces[0][l0 - lines[0] : l1 - lines[0], s0 - samples[0] : s1 - samples[0]]
    out = np.empty((l1 - l0, s1 - s0), pieces[0].dtype)
    for n, piece in enumerate(pieces):
        pl, ps = lines[n // len(samples)], samples[n % len(samples)]
        a0, a1 = max(l0, pl), min(l1, pl + piece.shape[0])
        b0, b1 = max(s0, ps), min(s1, ps + piece.shape[1])
        out[a0 - l0 : a1 - l0, b0 - s0 : b1 - s0] = piece[a0 - pl : a1 - pl, b0 - ps : b1 - ps]
    return out


def _resample_block(shared: tuple[InverseMap, Grid], spec: _BlockSpec, *pieces: np.ndarray) -> np.ndarray:
    """One output chunk of :func:`resample_multilooked` → (channels, h, w) float32: the chunk's
    (line, sample) map, each array's radar window from its ``pieces``, bilinear samples, then
    the dB and ``valid`` conversions of ``spec.convert``."""
    inverse, grid = shared
    line, sample = _chunk_map(inverse, grid, spec.rows, spec.cols, spec.stride, supersample=spec.k)
    windows, at = [], 0
    for starts in spec.sources:
        n = len(starts[0]) * len(starts[1])
        windows.append(_assemble(pieces[at : at + n], starts, spec.window))
        at += n
    origin = (spec.window[0][0], spec.window[1][0])
    out = _sample_windows(line, sample, *windows, origin=origin, looks=spec.looks, ml_shape=spec.ml_shape,
                          supersample=spec.k)
    return _converted(out, spec.convert)


def _converted(values: np.ndarray, convert: _Conversion) -> np.ndarray:
    """``values`` (channels, h, w) with ``convert.db`` channels in dB and the ``valid`` channel added."""
    for i in convert.db:
        with np.errstate(invalid="ignore", divide="ignore"):
            values[i] = np.float32(10.0) * np.log10(np.where(values[i] > 0, values[i], np.float32(np.nan)))
    if not convert.valid:
        return values
    valid = np.logical_and.reduce([np.isfinite(values[i]) for i in convert.valid])
    return np.concatenate([values, valid[None].astype(np.float32)])


def _empty_block(shape: tuple[int, int, int], convert: _Conversion) -> np.ndarray:
    """An output chunk off the footprint: NaN, and ``valid`` 0."""
    out = np.full(shape, np.nan, np.float32)
    if convert.valid:
        out[-1] = 0.0
    return out


def _supersample_factor(inverse: InverseMap, grid: Grid, looks: int) -> int:
    """Sub-pixels per axis so that sub-pixel spacing ≤ one multilooked radar pixel."""
    x0 = (grid.xmin + grid.xmax) / 2
    y0 = (grid.ymin + grid.ymax) / 2
    r = grid.resolution
    line, sample = inverse(np.array([x0, x0 + r, x0]), np.array([y0, y0, y0 + r]))
    step = max(np.hypot(line[1] - line[0], sample[1] - sample[0]),
               np.hypot(line[2] - line[0], sample[2] - sample[0])) / looks
    return int(max(2, min(8, np.ceil(step))))


def _window(inverse, grid, rows, cols, stride, looks, ml_shape):
    """Multilooked radar window ((l0, l1), (s0, s1)) an output chunk needs; None if off the scene."""
    line, sample = _edge_map(inverse, grid, rows, cols, stride)
    # padded for bilinear neighbours and spline/lattice slack
    pad = 1 + _WINDOW_PAD // looks + 1
    lo_l = int(np.floor((line.min() - (looks - 1) / 2) / looks)) - pad
    hi_l = int(np.ceil((line.max() - (looks - 1) / 2) / looks)) + pad + 1
    lo_s = int(np.floor((sample.min() - (looks - 1) / 2) / looks)) - pad
    hi_s = int(np.ceil((sample.max() - (looks - 1) / 2) / looks)) + pad + 1
    lo_l, lo_s = max(lo_l, 0), max(lo_s, 0)
    hi_l, hi_s = min(hi_l, ml_shape[0]), min(hi_s, ml_shape[1])
    if hi_l <= lo_l or hi_s <= lo_s:
        return None
    return (lo_l, hi_l), (lo_s, hi_s)


def _edge_map(inverse: InverseMap, grid: Grid, rows: slice, cols: slice, stride: int):
    """(line, sample) on the chunk's outer edges (its window's bounding box), lattice-spaced.

    The map is a smooth bijection near the footprint, so the image of a chunk is bounded by
    the image of its edges; ±1 pixel covers half-pixel and super-sampling offsets.
    """
    r = _lattice(max(rows.start - 1, 0), min(rows.stop + 1, grid.shape[0]), stride)
    c = _lattice(max(cols.start - 1, 0), min(cols.stop + 1, grid.shape[1]), stride)
    rr = np.concatenate([r, r, np.full(len(c), r[0]), np.full(len(c), r[-1])])
    cc = np.concatenate([np.full(len(r), c[0]), np.full(len(r), c[-1]), c, c])
    res = grid.resolution
    return inverse(grid.xmin + (cc + 0.5) * res, grid.ymax - (rr + 0.5) * res)


#: Side (radar pixels) of the chunks :func:`geocode_product` reads a product in.
RADAR_CHUNK = 2048


def _polarisations(product: Any, polarisations: Sequence[str]) -> list[str]:
    """``polarisations`` upper-case; ProductError naming the product if it lacks one."""
    missing = [p for p in polarisations if p.upper() not in product.polarisations]
    if missing:
        raise ProductError(
            f"polarisation(s) {', '.join(missing)} missing (product has {', '.join(product.polarisations)})",
            product.path,
        )
    return [p.upper() for p in polarisations]


def multilooked_radars(
    product: Any,
    polarisations: Sequence[str] = ("HH", "HV"),
    *,
    denoise: str = "esa",
    multilook: int = 2,
    radar_chunks: int = RADAR_CHUNK,
    textural_noise: bool = False,
    first_line: int = 0,
    noise_scalings: Mapping[str, Any] | None = None,
    neighbours: tuple[Any, Any] | None = None,
) -> dict[str, da.Array]:
    """Linear σ0 of each polarisation (upper-case names) and ``incidence`` of ``product`` in
    radar geometry from line ``first_line`` on, multilooked (lazy float32): what
    :func:`geocode_product` corrects and resamples (its keywords). Separate so that the slices
    of a pass can be corrected as one image first
    (:func:`~seaice_dask.preprocess.incidence.correct_pass`)."""
    from seaice_dask.preprocess import incidence_angle, sigma0, sigma0_textural

    pols = _polarisations(product, polarisations)
    chunks = (radar_chunks, radar_chunks)
    radars = {}
    for pol in pols:
        scaling = (noise_scalings or {}).get(pol)
        if textural_noise and pol in ("HV", "VH") and denoise not in (None, "none"):
            radar = sigma0_textural(product, pol, denoise, chunks, scaling=scaling,
                                    neighbours=neighbours or (None, None))
        else:
            radar = sigma0(product, pol, denoise=denoise, db=False, chunks=chunks, scaling=scaling)
        radars[pol] = radar
    radars["incidence"] = incidence_angle(product, pols[0], chunks=chunks)
    return {name: multilook_lazy(radar.data[first_line:], int(multilook)) for name, radar in radars.items()}


def geocode_product(
    product: Any,
    grid: Grid,
    *,
    polarisations: Sequence[str] = ("HH", "HV"),
    denoise: str = "esa",
    multilook: int = 2,
    resampling: Resampling = "bilinear",
    chunk: int = 512,
    radar_chunks: int = RADAR_CHUNK,
    incidence_correction: IncidenceCorrection | None = None,
    textural_noise: bool = False,
    first_line: int = 0,
    tie_points: TiePoints | None = None,
    window: tuple[slice, slice] | None = None,
    blocks: np.ndarray | None = None,
    noise_scalings: Mapping[str, Any] | None = None,
    neighbours: tuple[Any, Any] | None = None,
    multilooked: Mapping[str, da.Array] | None = None,
) -> xr.Dataset:
    """Calibrated, denoised sigma0 and incidence of one product on ``grid`` (lazy).

    Returns ``sigma0_<pol>`` (dB, float32) for each of ``polarisations``, ``incidence``
    (degrees, float32) and ``valid`` (every sigma0 finite: inside the footprint, positive
    power). One inverse map (the geolocation grid is shared by the polarisations) serves all.

    Radiometric corrections, in radar geometry: ``textural_noise`` rescales the cross-polarised
    channel's speckle after noise subtraction, before multilooking
    (:mod:`seaice_dask.preprocess.textural`); an
    :class:`~seaice_dask.preprocess.incidence.IncidenceCorrection` brings the multilooked σ0 to its
    reference angle before resampling (:func:`~seaice_dask.preprocess.incidence.correct_multilooked`).

    Slices of one pass: ``first_line`` leaves out the radar lines before it, so that the multilook
    windows fall on the same line pairs as in the whole pass; ``tie_points`` (default: the
    product's own) may be the whole pass's in this product's line numbers, so that neighbouring
    slices share one inverse map and meet without a gap; ``noise_scalings`` (per polarisation,
    ``denoise="nersc"``) the pass's noise scaling (:func:`~seaice_dask.preprocess.nersc.noise_scaling`
    of its slices), so that the slices are denoised alike; ``neighbours`` where the pass's lines
    beyond the product are (:meth:`~seaice_dask.ingest.passes.Pass.neighbour_lines`), so that the
    textural correction's local means reach across the slice boundary; ``multilooked``: this
    product's :func:`multilooked_radars`, already corrected with the rest of its pass
    (:func:`~seaice_dask.preprocess.incidence.correct_pass`), resampled as they are instead of
    computed here (the radiometric keywords then only label the outputs). ``window``, ``blocks``:
    only that part of the grid, only those of its chunks (:func:`geocode_arrays`).
    """
    from seaice_dask.preprocess.incidence import IncidenceCorrection, cell_pixels, correct_multilooked

    pols = _polarisations(product, polarisations)
    if tie_points is None:
        tie_points = TiePoints.from_product(product, pols[0])
    if first_line:
        n_lines, n_samples = tie_points.shape
        tie_points = replace(tie_points, line=tie_points.line - first_line, shape=(n_lines - first_line, n_samples))
    inverse = InverseMap(tie_points, grid.crs)
    correction = incidence_correction or IncidenceCorrection()
    if multilooked is None:
        ml = multilooked_radars(product, pols, denoise=denoise, multilook=multilook, radar_chunks=radar_chunks,
                                textural_noise=textural_noise, first_line=first_line, noise_scalings=noise_scalings,
                                neighbours=neighbours)
        cell = cell_pixels(product.pixel_spacing[0] * multilook)
        multilooked = {**ml, **correct_multilooked({p: ml[p] for p in pols}, ml["incidence"], correction, cell)}
    ml_shape = tuple(n // int(multilook) for n in inverse.radar_shape)
    if any(tuple(multilooked[name].shape) != ml_shape for name in (*pols, "incidence")):
        raise ValueError(f"multilooked arrays of {product.name} are not {ml_shape}")
    mapped = resample_multilooked(multilooked, inverse, grid, multilook=multilook, resampling=resampling,
                                  chunk=chunk, window=window, blocks=blocks, db=pols, valid=pols)
    out: dict[str, xr.DataArray] = {}
    for pol in pols:
        db = mapped[pol]
        db.attrs = {"long_name": f"sigma0 {pol}", "units": "dB", "polarisation": pol, "denoise": denoise,
                    "grid_mapping": "spatial_ref", "textural_noise": str(bool(textural_noise and pol in ("HV", "VH"))),
                    "incidence_correction": json.dumps(correction.to_attrs())}
        out[f"sigma0_{pol.lower()}"] = db.rename(f"sigma0_{pol.lower()}")
    theta = mapped["incidence"]
    theta.attrs = {"long_name": "incidence angle", "units": "degree", "grid_mapping": "spatial_ref"}
    out["incidence"] = theta
    out["valid"] = mapped["valid"].assign_attrs(long_name="valid backscatter in every polarisation")
    return xr.Dataset(out, attrs={"product_id": product.name})


def footprint_bounds(tie_points: TiePoints, crs: str) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a product's tie points in ``crs`` metres."""
    x, y = tie_points.projected(crs)
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def union_bounds(bounds: Sequence[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    """Smallest box containing every ``(xmin, ymin, xmax, ymax)``."""
    b = np.asarray(bounds, dtype=np.float64)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())
