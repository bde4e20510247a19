"""GLCM texture features of a map array: quantise globally, then the Numba kernel per dask block.

``glcm(sigma0_hv_db)`` returns a lazy ``(feature, y, x)`` float32 DataArray with the input's
coordinates, CRS and attributes. Quantisation is one rule for the whole scene (a fixed dB range,
or equal-probability levels from one global histogram), never per chunk; each block is computed
with a halo of ``window // 2`` pixels (pairs are counted inside the window only, scikit-image's
semantics, so nothing further away can matter) and NaN beyond the image edge. The result is
bit-identical for every chunking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr

from seaice_dask.coverage import keep_blocks
from seaice_dask.errors import ConfigError
from seaice_dask.features.kernels import glcm_levels, max_pairs_per_group
from seaice_dask.features.reference import ALL_FEATURES, FEATURE_CODES, MODES, Layout, make_layout
from seaice_dask.halo import overlap

#: Bins of the global histogram behind ``quantizer="equalprob"``.
EQUALPROB_BINS = 4096

__all__ = ["ALL_FEATURES", "equalprob_edges", "feature_names", "glcm", "quantize"]


def feature_names(features: Sequence[str], distances: Sequence[int]) -> list[str]:
    """Names along the ``feature`` axis of angle-averaged output: ``contrast`` for one distance,
    ``contrast_d1, …, contrast_d2, …`` (distance-major) for several."""
    if len(distances) == 1:
        return list(features)
    return [f"{f}_d{int(d)}" for d in distances for f in features]


def _check(window: int, levels: int, distances: Sequence[int], angles: Sequence[float],
           features: Sequence[str], quantizer: str, mode: str, average_angles: bool) -> None:  # fmt: skip
    if window < 3 or window % 2 == 0:
        raise ConfigError(f"GLCM window must be odd and >= 3, got {window}")
    if not 2 <= levels <= 256:
        raise ConfigError(f"GLCM levels must be within 2..256, got {levels}")
    if not distances or any(int(d) < 1 or int(d) >= window for d in distances):
        raise ConfigError(f"GLCM distances must be within 1..window-1 ({window - 1}), got {list(distances)}")
    if len(set(distances)) != len(distances) or len(set(angles)) != len(angles) or not angles:
        raise ConfigError(f"GLCM distances/angles must be non-empty and distinct: {distances}, {angles}")
    unknown = [f for f in features if f not in FEATURE_CODES]
    if unknown or not features or len(set(features)) != len(features):
        raise ConfigError(f"unknown or repeated GLCM features {unknown or list(features)}; choose from {ALL_FEATURES}")
    if quantizer not in ("linear", "equalprob"):
        raise ConfigError(f"GLCM quantizer must be 'linear' or 'equalprob', got {quantizer!r}")
    if mode not in MODES:
        raise ConfigError(f"GLCM mode must be one of {MODES}, got {mode!r}")
    if mode == "snap" and not average_angles:
        raise ConfigError("GLCM mode 'snap' pools all angles into one matrix: average_angles must be True")
    if mode == "snap" and any(a not in (0, 45, 90, 135) for a in angles):
        raise ConfigError(f"GLCM mode 'snap' supports the angles 0, 45, 90, 135, not {list(angles)}")


def _global_range(data) -> tuple[float, float]:
    """Finite minimum and maximum of the whole array (one pass over dask input)."""
    xp = da if isinstance(data, da.Array) else np
    lo, hi = da.compute(xp.nanmin(data), xp.nanmax(data))
    return float(lo), float(hi)


def equalprob_edges(data, levels: int, vmin: float, vmax: float) -> np.ndarray:
    """``levels − 1`` inner bin edges giving each level about the same number of finite pixels.

    One global histogram (``EQUALPROB_BINS`` bins over ``vmin … vmax``, values outside clipped
    into the end bins) is computed first; edges sit where its cumulative share crosses k/levels.
    """
    xp = da if isinstance(data, da.Array) else np
    hist, bin_edges = xp.histogram(xp.clip(data, vmin, vmax), bins=EQUALPROB_BINS, range=(vmin, vmax))
    hist = np.asarray(da.compute(hist)[0], dtype=np.float64)
    if hist.sum() == 0:
        return np.linspace(vmin, vmax, levels + 1)[1:-1]
    cdf = np.cumsum(hist) / hist.sum()
    targets = np.arange(1, levels) / levels
    return np.asarray(bin_edges)[1:][np.searchsorted(cdf, targets, side="left")]


def quantize(
    data, levels: int, *, vmin: float, vmax: float, edges: np.ndarray | None = None
):
    """Grey levels ``0 … levels−1`` (int16, −1 where not finite) of a NumPy or dask array.

    Linear: ``floor((v − vmin) / (vmax − vmin) · levels)`` clipped to the level range (values
    outside ``vmin … vmax`` go to the end levels); with ``edges``: the bin of ``v`` among them.
    """

    def block(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        if edges is None:
            scaled = np.floor((np.where(finite, values, vmin) - vmin) / (vmax - vmin) * levels)
            q = np.clip(scaled, 0, levels - 1)
        else:
            q = np.searchsorted(edges, np.where(finite, values, vmin), side="right")
        return np.where(finite, q, -1).astype(np.int16)

    if isinstance(data, da.Array):
        return data.map_blocks(block, dtype=np.int16, meta=np.empty((0, 0), dtype=np.int16))
    return block(data)


#: Output rows per strip of a block only partly holding data (:func:`_block_kernel`).
STRIP_ROWS = 128


def _block_kernel(q_block: np.ndarray, *, half: int, levels: int, layout: Layout,
                  feature_codes: np.ndarray, snap: bool, max_pairs: int) -> np.ndarray:  # fmt: skip
    """The kernel on one block with its halo, only where windows can hold data.

    Why: the kernel costs the same on no-data as on data, and at a swath's tilted edge a block
    is partly empty. Such a block is cut into strips of :data:`STRIP_ROWS` rows, each reduced
    to the columns whose windows reach a valid pixel; everything else is NaN, as the kernel
    would give (no valid pair in the window). A pixel's result depends only on its window
    (:mod:`~seaice_dask.features.kernels`), so this is bit-identical to the whole block.
    """
    kwargs = dict(half=half, levels=levels, layout=layout, feature_codes=feature_codes, snap=snap,
                  max_pairs=max_pairs)  # fmt: skip
    ny, nx = q_block.shape[0] - 2 * half, q_block.shape[1] - 2 * half
    out = np.full((len(feature_codes), layout.n_slots, ny, nx), np.nan, dtype=np.float32)
    strips = _data_strips(q_block >= 0, half)
    whole = (ny + 2 * half) * (nx + 2 * half)
    if sum((r1 - r0 + 2 * half) * (c1 - c0 + 2 * half) for r0, r1, c0, c1 in strips) > 0.9 * whole:
        return glcm_levels(q_block, **kwargs)  # (nearly) full: one call
    for r0, r1, c0, c1 in strips:
        out[..., r0:r1, c0:c1] = glcm_levels(q_block[r0 : r1 + 2 * half, c0 : c1 + 2 * half], **kwargs)
    return out


def _data_strips(has_data: np.ndarray, half: int) -> list[tuple[int, int, int, int]]:
    """Output rows and columns (r0, r1, c0, c1) of the strips of a padded block whose windows
    reach a pixel of ``has_data``; strips without any are left out."""
    ny, nx = has_data.shape[0] - 2 * half, has_data.shape[1] - 2 * half
    rows_with = has_data.any(axis=1)
    strips = []
    for r0 in range(0, ny, STRIP_ROWS):
        r1 = min(r0 + STRIP_ROWS, ny)
        if not rows_with[r0 : r1 + 2 * half].any():
            continue
        cols = np.flatnonzero(has_data[r0 : r1 + 2 * half].any(axis=0))
        # input column j is in the windows of output columns j − 2·half … j
        strips.append((r0, r1, max(int(cols[0]) - 2 * half, 0), min(int(cols[-1]) + 1, nx)))
    return strips


def _merge_small_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """``chunks`` with every chunk smaller than ``minimum`` merged into its neighbour, so that a
    grid leaving a sliver (501 rows in chunks of 250) keeps its chunking instead of being cut
    into halo-sized pieces."""
    merged: list[int] = []
    for size in chunks:
        if merged and (size < minimum or merged[-1] < minimum):
            merged[-1] += size
        else:
            merged.append(size)
    return tuple(merged)


def glcm(
    da_in: xr.DataArray,
    *,
    window: int = 11,
    levels: int = 32,
    distances: Sequence[int] = (1,),
    angles: Sequence[float] = (0, 45, 90, 135),
    features: Sequence[str] = ALL_FEATURES,
    vmin: float | None = None,
    vmax: float | None = None,
    quantizer: Literal["linear", "equalprob"] = "linear",
    average_angles: bool = True,
    mode: Literal["standard", "snap"] = "standard",
    blocks: np.ndarray | None = None,
) -> xr.DataArray:
    """GLCM texture features of a ``(y, x)`` array (e.g. sigma0 in dB; NaN = no-data).

    Returns float32 ``(feature, y, x)``; with several distances the feature names get a ``_d<d>``
    suffix; with ``average_angles=False``, ``(feature, distance, angle, y, x)``. ``vmin``/``vmax``
    fix the quantisation range (pass the same range for every scene of a polarisation, e.g.
    −35…−5 dB for HV); when missing they are the array's finite min/max (computed now).
    Dask-backed input gives dask-backed output; NumPy input is computed at once. ``blocks``
    (bool per dask block of the input, :mod:`seaice_dask.coverage`): blocks flagged False are
    taken as no-data and never read; their halos give the others no-data.
    Definitions: :mod:`seaice_dask.features.reference`.
    """
    features = tuple(features)
    distances = tuple(int(d) for d in distances)
    angles = tuple(angles)
    _check(window, levels, distances, angles, features, quantizer, mode, average_angles)
    if da_in.ndim != 2:
        raise ConfigError(f"glcm expects a 2-D (y, x) array, got dims {da_in.dims}")
    data = da_in.data
    if isinstance(data, da.Array):
        data = keep_blocks(data, blocks, np.nan)
    if vmin is None or vmax is None:
        lo, hi = _global_range(data)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    if not (np.isfinite(vmin) and np.isfinite(vmax) and vmax > vmin):
        raise ConfigError(f"GLCM quantisation range is empty or not finite: {vmin} … {vmax}")
    edges = equalprob_edges(data, levels, vmin, vmax) if quantizer == "equalprob" else None
    q = quantize(data, levels, vmin=vmin, vmax=vmax, edges=edges)

    layout = make_layout(distances, angles, mode, average_angles)
    half = window // 2
    codes = np.array([FEATURE_CODES[f] for f in features], dtype=np.int64)
    kwargs = dict(half=half, levels=levels, layout=layout, feature_codes=codes,
                  snap=mode == "snap", max_pairs=max_pairs_per_group(window, layout))  # fmt: skip
    lead = (len(features), layout.n_slots)
    if isinstance(q, da.Array):
        q = keep_blocks(q, blocks, np.int16(-1))
        if min(min(c) for c in q.chunks) < half:  # the halo comes from the next block only
            q = q.rechunk(tuple(_merge_small_chunks(c, half) for c in q.chunks))
        values = da.map_blocks(
            _block_kernel, overlap(q, {0: half, 1: half}, np.int16(-1)),
            new_axis=[0, 1], chunks=(*((n,) for n in lead), *q.chunks),
            dtype=np.float32, meta=np.empty((0, 0, 0, 0), dtype=np.float32), **kwargs,
        )  # fmt: skip
    else:
        values = _block_kernel(np.pad(q, half, constant_values=-1), **kwargs)

    ydim, xdim = da_in.dims
    spatial = {k: v for k, v in da_in.coords.items() if set(v.dims) <= {ydim, xdim}}
    if average_angles or mode == "snap":
        names = feature_names(features, distances)
        # (feature, distance) → distance-major feature axis, matching the names
        values = values.transpose(1, 0, 2, 3).reshape((len(names), *values.shape[2:]))
        dims = ("feature", ydim, xdim)
        coords = {"feature": list(names), **spatial}
    else:
        values = values.reshape((len(features), len(distances), len(angles), *values.shape[2:]))
        dims = ("feature", "distance", "angle", ydim, xdim)
        coords = {"feature": list(features), "distance": list(distances), "angle": list(angles), **spatial}
    attrs = {k: v for k, v in da_in.attrs.items() if k not in ("units", "long_name", "standard_name")}
    attrs.update(
        long_name="GLCM texture features",
        units="1",
        glcm_window=window,
        glcm_levels=levels,
        glcm_distances=list(distances),
        glcm_angles=[float(a) for a in angles],
        glcm_mode=mode,
        glcm_quantizer=quantizer,
        glcm_vmin=float(vmin),
        glcm_vmax=float(vmax),
        glcm_source=str(da_in.name) if da_in.name is not None else "",
    )
    name = f"glcm_{da_in.name}" if da_in.name is not None else "glcm"
    return xr.DataArray(values, dims=dims, coords=coords, attrs=attrs, name=name)
