"""The cube's coverage index: which grid blocks of each time step hold data, and the windows
every stage works in.

A pass covers a swath about 400 km wide; a region's grid can be many times larger, and passes
of different tracks cover different parts of it. Ingest records, per time step, which blocks
(the cube's ``chunk`` × ``chunk`` tiles) hold a valid pixel (:func:`~seaice_dask.cube.write_coverage`).
Every later stage takes a time step's window (:func:`step_windows`), the chunk-aligned bounding box of its
covered blocks, and inside it only the covered blocks (:func:`step_blocks`): a swath is a tilted
strip, so its bounding box holds many blocks it misses. Blocks without data enter a stage's graph
as constants (:func:`keep_blocks`: nothing is read, and a covered neighbour's halo sees the fill
value, as it would read it), and only covered blocks are computed and written
(:func:`~seaice_dask.cube.write_slice` with ``blocks``). Chunks never written stay absent in the
store (Zarr reads them as the fill value), so the store's bytes follow the footprints, and a
stage's cost follows the pass, not the grid.

A cube written before the index has none: every block of it counts as covered.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import Alias, Task
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

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


def step_blocks(ds: Any) -> list[np.ndarray | None]:
    """Per time step, which blocks of its window (:func:`step_windows`) hold data (bool,
    block rows × block columns; None: it covers nothing); all of them without an index."""
    from seaice_dask.cube import COVERAGE_VAR

    windows = step_windows(ds)
    if COVERAGE_VAR not in ds:
        chunk = int(ds.attrs.get("chunk", max(ds.sizes["y"], ds.sizes["x"])))
        return [np.ones([s.stop - s.start for s in window_blocks(w, chunk)], dtype=bool) for w in windows]
    index = np.asarray(ds[COVERAGE_VAR].values, dtype=bool)
    chunk = int(ds[COVERAGE_VAR].attrs["block_size_px"])
    return [None if w is None else index[(t, *window_blocks(w, chunk))] for t, w in enumerate(windows)]


def keep_blocks(array: da.Array, blocks: np.ndarray | None, fill: Any) -> da.Array:
    """``array`` (…, y, x; chunked like its window's blocks) with the blocks where ``blocks`` is
    False replaced by constants ``fill``: their tasks depend on nothing, so whatever produced
    them (reads, kernels) leaves the graph, and a neighbour's halo gets the fill value.

    Unchanged when ``blocks`` is None or does not match the array's blocks (a rechunked array).
    """
    if blocks is None or tuple(array.numblocks[-2:]) != tuple(blocks.shape) or blocks.all():
        return array
    name = "keep-blocks-" + tokenize(array, blocks, fill)
    dsk: dict[tuple, Any] = {}
    for index in np.ndindex(*array.numblocks):
        key = (name, *index)
        if blocks[index[-2:]]:
            dsk[key] = Alias(key, (array.name, *index))
        else:
            shape = tuple(c[i] for c, i in zip(array.chunks, index))
            dsk[key] = Task(key, np.full, shape, fill, array.dtype)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[array])
    return da.Array(graph, name, array.chunks, meta=array._meta)


def covered_block_list(ds: Any, t: int, numblocks: tuple[int, int]) -> list[tuple[int, int]]:
    """Blocks (by, bx) of date ``t`` holding data, for arrays of ``ds`` chunked in ``numblocks``
    blocks: the index's when it has the same blocks, otherwise every block."""
    from seaice_dask.cube import COVERAGE_VAR

    every = [(by, bx) for by in range(numblocks[0]) for bx in range(numblocks[1])]
    if COVERAGE_VAR not in ds or tuple(ds[COVERAGE_VAR].shape[1:]) != tuple(numblocks):
        return every
    covered = np.asarray(ds[COVERAGE_VAR].isel(time=t).values, dtype=bool)
    return [(by, bx) for by, bx in every if covered[by, bx]]


def footprint_blocks(x: np.ndarray, y: np.ndarray, grid: Grid, chunk: int, margin_px: int = 2) -> np.ndarray:
    """Blocks of ``grid`` (bool, block rows × columns) that a footprint reaches: the convex hull
    of its tie points ``x``, ``y`` (grid CRS metres), widened by ``margin_px``.

    Why not the bounding box: a swath is a tilted strip, and its box holds many blocks it misses.
    A swath is convex (its edges are nearly straight between tie points, bending by metres over
    the tens of kilometres between them), so no pixel of it lies beyond the margin.
    """
    import shapely

    hull = shapely.MultiPoint(np.column_stack([x, y])).convex_hull.buffer(margin_px * grid.resolution)
    ny, nx = block_counts(grid.shape, chunk)
    span = chunk * grid.resolution
    by, bx = np.mgrid[0:ny, 0:nx]
    boxes = shapely.box(grid.xmin + bx * span, np.maximum(grid.ymax - (by + 1) * span, grid.ymin),
                        np.minimum(grid.xmin + (bx + 1) * span, grid.xmax), grid.ymax - by * span)
    return shapely.intersects(hull, boxes)


def crop(obj: Any, window: Window) -> Any:
    """``obj`` (xarray, dims ``y``/``x``) inside ``window``."""
    return obj.isel(y=window[0], x=window[1])
