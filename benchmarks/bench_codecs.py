"""Codecs of the cube's gridded variables: write and read speed and size, side by side.

Chunks of a real cube (for example the demo's, ``demo-output/cube.zarr``) are written to and read
from an in-memory Zarr store with each codec, on one thread, so that only the codec differs. The
cube's codec (``seaice_dask.cube.GRID_COMPRESSOR``) was chosen from this table; the numbers are in
``benchmarks/README.md``.

    python -m benchmarks.bench_codecs --cube demo-output/cube.zarr
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from benchmarks.common import write_results

CODECS: dict[str, Any] = {
    "zstd default level (before)": ZstdCodec(level=0),
    "zstd 1": ZstdCodec(level=1),
    "blosc shuffle + zstd 1 (now)": BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"),
    "blosc shuffle + zstd 3": BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    "blosc shuffle + lz4": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "blosc bitshuffle + lz4": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
}
#: Variables measured, and how many leading time steps of each.
VARIABLES = ("sigma0_hh", "glcm_hh", "proba")


def _stored_bytes(store: zarr.storage.MemoryStore) -> int:
    return sum(len(v.to_bytes()) for k, v in store._store_dict.items() if not k.endswith("zarr.json"))


def measure(data: np.ndarray, chunks: tuple[int, ...], codec: Any, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` write and read speed (MB/s of raw data) and the stored size ratio."""
    store = zarr.storage.MemoryStore()
    array = zarr.create_array(store, shape=data.shape, chunks=chunks, dtype=data.dtype,
                              fill_value=np.nan, compressors=[codec])  # fmt: skip
    write = read = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        array[...] = data
        write = min(write, time.perf_counter() - start)
        start = time.perf_counter()
        np.asarray(array[...])
        read = min(read, time.perf_counter() - start)
    return {"write_mb_s": data.nbytes / write / 1e6, "read_mb_s": data.nbytes / read / 1e6,
            "size_ratio": _stored_bytes(store) / data.nbytes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", default="demo-output/cube.zarr", help="a cube written by the pipeline")
    parser.add_argument("--times", type=int, default=4, help="time steps read from each variable")
    args, _ = parser.parse_known_args()
    if not Path(args.cube).exists():
        raise SystemExit(f"{args.cube}: no cube (run `make demo`, or pass --cube)")
    zarr.config.set({"threading.max_workers": 1})
    group = zarr.open_group(args.cube, mode="r")
    rows = []
    for name in (v for v in VARIABLES if v in group):
        data = np.asarray(group[name][: args.times])
        chunks = (1, *group[name].chunks[1:])
        for label, codec in CODECS.items():
            rows.append({"variable": name, "MB": round(data.nbytes / 1e6, 1), "codec": label,
                         **{k: round(v, 3) for k, v in measure(data, chunks, codec).items()}})  # fmt: skip
    write_results("codecs", rows, cube=args.cube)


if __name__ == "__main__":
    main()
