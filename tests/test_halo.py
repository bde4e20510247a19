"""Blocks with halos in one task each, against dask's own overlap."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from dask.utils import key_split

from seaice_dask.halo import overlap, trim


@pytest.mark.parametrize("boundary", [np.nan, -1, "none"])
@pytest.mark.parametrize("shape,chunks,depth", [
    ((23, 31), ((5, 8, 10), (7, 7, 7, 10)), {0: 3, 1: 5}),
    ((2, 17, 12), ((2,), (9, 8), (4, 4, 4)), {1: 2, 2: 4}),
    ((9, 14), ((9,), (14,)), {0: 2, 1: 2}),
])
def test_overlap_equals_dasks(shape, chunks, depth, boundary):
    values = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    array = da.from_array(values, chunks=chunks)
    ours = overlap(array, depth, None if boundary == "none" else boundary)
    theirs = da.overlap.overlap(array, depth={a: depth.get(a, 0) for a in range(array.ndim)},
                                boundary={a: boundary for a in range(array.ndim)})
    assert ours.chunks == theirs.chunks
    with dask.config.set(scheduler="sync"):
        for index in np.ndindex(*ours.numblocks):
            np.testing.assert_array_equal(ours.blocks[index].compute(), theirs.blocks[index].compute())
    # one task per block, and nothing else
    layer = dict(ours.__dask_graph__().layers[ours.name])
    assert len(layer) == np.prod(ours.numblocks) and {key_split(k) for k in layer} == {"halo"}


def test_overlap_refuses_chunks_smaller_than_the_depth():
    with pytest.raises(ValueError, match="smaller than the depth"):
        overlap(da.zeros((10,), chunks=(8, 2)), {0: 3}, 0)


def test_trim_removes_the_halo():
    block = np.arange(7 * 9).reshape(7, 9)
    np.testing.assert_array_equal(trim(block, (2, 3)), block[2:5, 3:6])
    # no boundary: the first row of blocks has no halo above, the last column none to the right
    edge = {"chunk-location": (0, 2), "num-chunks": (3, 3)}
    np.testing.assert_array_equal(trim(block, (2, 3), edge), block[:5, 3:])
