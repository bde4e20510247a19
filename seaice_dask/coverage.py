"""The cube's coverage index: which grid blocks of each time step hold data, and the windows
every stage works in.

A pass covers a swath about 400 km wide; a region's grid can be many times larger, and passes
of different tracks cover different parts of it. Ingest records, per time step, which blocks
(the cube's ``chunk`` × ``chunk`` tiles) hold a valid pixel (:func:`~seaice_dask.cube.write_coverage`).
Every later stage takes a time step's window (:func:`step_windows`), the chunk-aligned bounding box of its
covered blocks, and computes, reads and writes only inside it; inside, kernels return the fill
value at once on blocks without data. Chunks never written stay absent in the store (Zarr reads
them as the fill value), so the store's bytes follow the footprints, and a stage's cost follows
the pass, not the grid.

A cube written before the index has none: every block of it counts as covered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from seaice_dask.grid import Grid

#: (rows, cols) of the grid, starts on block boundaries.
Window = tuple[slice, slice]


def block_counts(shape: tuple[int, int], chunk: int) -> tuple[int, int]:
    """Blocks of ``chunk`` × ``chunk`` pixels along y and x of a grid of ``shape``."""
    return math.ceil(shape[0] / chunk), math.ceil(shape[1] / chunk)


def covered_blocks(valid: Any, chunk: int) -> np.ndarray:
    """Per block of ``valid`` (y, x; bool, NumPy or dask chunked by ``chunk``): any valid pixel?"""
    if isinstance(valid, da.Array):
        valid = valid.rechunk(chunk)
        flags = valid.map_blocks(lambda b: np.array([[b.any()]]), chunks=(1, 1), dtype=bool)
        return np.asarray(flags.compute())
    ny, nx = block_counts(valid.shape, chunk)
    padded = np.zeros((ny * chunk, nx * chunk), dtype=bool)
    padded[: valid.shape[0], : valid.shape[1]] = valid
    return padded.reshape(ny, chunk, nx, chunk).any(axis=(1, 3))


def blocks_window(covered: np.ndarray, chunk: int, shape: tuple[int, int]) -> Window | None:
    """The grid window (pixels) spanned by the covered blocks; None when nothing is covered."""
    rows, cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(int(rows[0]) * chunk, min(int(rows[-1] + 1) * chunk, shape[0])),
            slice(int(cols[0]) * chunk, min(int(cols[-1] + 1) * chunk, shape[1])))


def window_blocks(window: Window, chunk: int) -> tuple[slice, slice]:
    """Block indices (y, x) of a grid window."""
    return tuple(slice(w.start // chunk, math.ceil(w.stop / chunk)) for w in window)  # type: ignore[return-value]


def step_windows(ds: Any) -> list[Window | None]:
    """Each time step's window (None: it covers nothing) of a cube dataset (``open_cube``, or a
    selection of its dates), from its coverage index; the whole grid without one."""
    from seaice_dask.cube import COVERAGE_VAR

    shape = (ds.sizes["y"], ds.sizes["x"])
    if COVERAGE_VAR not in ds:
        return [(slice(0, shape[0]), slice(0, shape[1]))] * ds.sizes["time"]
    index = ds[COVERAGE_VAR]
    chunk = int(index.attrs["block_size_px"])
    return [blocks_window(covered, chunk, shape) for covered in np.asarray(index.values, dtype=bool)]


def covered_block_list(ds: Any, t: int, numblocks: tuple[int, int]) -> list[tuple[int, int]]:
    """Blocks (by, bx) of date ``t`` holding data, for arrays of ``ds`` chunked in ``numblocks``
    blocks: the index's when it has the same blocks, otherwise every block."""
    from seaice_dask.cube import COVERAGE_VAR

    every = [(by, bx) for by in range(numblocks[0]) for bx in range(numblocks[1])]
    if COVERAGE_VAR not in ds or tuple(ds[COVERAGE_VAR].shape[1:]) != tuple(numblocks):
        return every
    covered = np.asarray(ds[COVERAGE_VAR].isel(time=t).values, dtype=bool)
    return [(by, bx) for by, bx in every if covered[by, bx]]


def bounds_window(bounds: Sequence[float], grid: Grid, chunk: int, margin_px: int = 2) -> Window | None:
    """The blocks of ``grid`` that map-coordinate ``bounds`` (xmin, ymin, xmax, ymax; e.g. a
    footprint's) touch, widened by ``margin_px``; None when they miss the grid."""
    xmin, ymin, xmax, ymax = bounds
    r = grid.resolution
    ny, nx = grid.shape
    c0 = max(int(math.floor((xmin - grid.xmin) / r)) - margin_px, 0)
    c1 = min(int(math.ceil((xmax - grid.xmin) / r)) + margin_px, nx)
    r0 = max(int(math.floor((grid.ymax - ymax) / r)) - margin_px, 0)
    r1 = min(int(math.ceil((grid.ymax - ymin) / r)) + margin_px, ny)
    if r1 <= r0 or c1 <= c0:
        return None
    return (slice(r0 // chunk * chunk, min(math.ceil(r1 / chunk) * chunk, ny)),
            slice(c0 // chunk * chunk, min(math.ceil(c1 / chunk) * chunk, nx)))


def crop(obj: Any, window: Window) -> Any:
    """``obj`` (xarray, dims ``y``/``x``) inside ``window``."""
    return obj.isel(y=window[0], x=window[1])
