"""Blocks with halos from their neighbours, one task per block.

``dask.array.overlap.overlap`` (and ``map_overlap``, which calls it) cuts every neighbour's edge
out as a task of its own and concatenates them in another: up to nine slicing tasks and a merge
per 2-D block. On the pipeline's grids those small tasks outnumbered the real work (1,300 of
2,600 tasks to ingest one scene), and each costs the scheduler and the workers about as much as
a kernel call on a small block. :func:`overlap` returns the same array, each block built by one
task from its neighbours' blocks.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import Task, TaskRef
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph


@dataclass(frozen=True)
class _Placement:
    """Where each neighbour's part goes in a block with its halo: ``shape``, ``fill`` (None:
    every element comes from a neighbour), per neighbour (destination, source) slices."""

    shape: tuple[int, ...]
    fill: Any
    parts: tuple[tuple[tuple[slice, ...], tuple[slice, ...]], ...]


def _with_halo(placement: _Placement, *pieces: np.ndarray) -> np.ndarray:
    """One block with its halo from its neighbours' ``pieces`` (in ``placement.parts`` order)."""
    dtype = pieces[0].dtype
    out = np.empty(placement.shape, dtype) if placement.fill is None else np.full(placement.shape, placement.fill, dtype)
    for (dest, src), piece in zip(placement.parts, pieces, strict=True):
        out[dest] = piece[src]
    return out


def _axis_parts(i: int, n: int, size: int, depth: int, pad: bool) -> list[tuple[int, slice, slice]]:
    """Along one axis, for block ``i`` of ``n`` (``size`` long): (neighbour offset, destination,
    source) of its lower halo, itself and its upper halo; a halo beyond the array is left to the
    fill (``pad``) or left out."""
    low = depth if (i > 0 or pad) else 0
    parts = [(0, slice(low, low + size), slice(None))]
    if depth and i > 0:
        parts.insert(0, (-1, slice(0, depth), slice(-depth, None)))
    if depth and i < n - 1:
        parts.append((1, slice(low + size, low + size + depth), slice(0, depth)))
    return parts


def overlap(array: da.Array, depth: Mapping[int, int], boundary: Any = None) -> da.Array:
    """``array`` with every block extended by ``depth[axis]`` elements on both sides along each
    axis, taken from the neighbouring blocks; beyond the array's edges the constant ``boundary``,
    or (None) no extension there. The same array as ``dask.array.overlap.overlap(array, depth,
    boundary)`` with a constant boundary or ``"none"``, one task per block (module doc)."""
    depth = {axis: int(depth.get(axis, 0)) for axis in range(array.ndim)}
    for axis, d in depth.items():
        if d and min(array.chunks[axis]) < d:
            raise ValueError(f"chunks {array.chunks[axis]} of axis {axis} are smaller than the depth {d}")
    pad = boundary is not None
    fill = None if not pad else np.asarray(boundary, dtype=array.dtype)[()]
    name = "halo-" + tokenize(array, depth, boundary)
    numblocks = array.numblocks
    chunks = tuple(
        tuple(c + depth[a] * ((i > 0 or pad) + (i < len(cs) - 1 or pad)) for i, c in enumerate(cs))
        for a, cs in enumerate(array.chunks)
    )
    dsk: dict[Any, Any] = {}
    for index in np.ndindex(*numblocks):
        per_axis = [_axis_parts(i, numblocks[a], array.chunks[a][i], depth[a], pad) for a, i in enumerate(index)]
        shape = tuple(cs[i] for cs, i in zip(chunks, index))
        refs, parts = [], []
        for combo in itertools.product(*per_axis):
            refs.append(TaskRef((array.name, *(i + off for i, (off, _, _) in zip(index, combo)))))
            parts.append((tuple(dest for _, dest, _ in combo), tuple(src for _, _, src in combo)))
        # with a boundary, a block at the array's edge has halo elements no neighbour fills
        covered = not pad or all(len(p) == 3 for a, p in enumerate(per_axis) if depth[a])
        key = (name, *index)
        dsk[key] = Task(key, _with_halo, _Placement(shape, None if covered else fill, tuple(parts)), *refs)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[array])
    return da.Array(graph, name, chunks, meta=array._meta)


def trim(block: np.ndarray, depth: Sequence[int], block_info: Mapping[str, Any] | None = None) -> np.ndarray:
    """``block`` without the halo :func:`overlap` added: ``depth[axis]`` elements on both sides of
    each axis. ``block_info`` (dask's for the block, ``block_info[None]`` in ``map_blocks``): the
    array was overlapped with no boundary, so blocks at its edges have no halo on that side."""
    index = []
    for axis, d in enumerate(depth):
        low = high = d
        if block_info is not None:
            i, n = block_info["chunk-location"][axis], block_info["num-chunks"][axis]
            low, high = (d if i > 0 else 0), (d if i < n - 1 else 0)
        index.append(slice(low, block.shape[axis] - high))
    return block[tuple(index)]
