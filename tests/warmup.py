"""Compile the Numba signatures that only the tests use, in parallel, into Numba's on-disk cache.

The GLCM arithmetic tests run the kernel with float64 output (to compare at 1e-9), with int16 and
with int32 pair codes (200 grey levels), and with the increments of Q and E packed (small windows)
and not (window 25), always with every feature (the sweep that tracks the maximum);
``python -m seaice_dask.warmup`` compiles only the pipeline's float32 signatures. Compiling one
GLCM signature takes about 15 s of one core; inside the suite they compile one after the other,
here (``make test``, once per kernel edit) side by side.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

#: Grey levels and half windows of the test signatures: int16 pair codes (2·L² < 2**15) and int32
#: ones, with the increments of Q and E packed in one table (small windows) or not (window 25).
CASES = ((8, 1), (200, 1), (8, 12))


def _glcm_float64(case: tuple[int, int]) -> float:
    from seaice_dask.features.kernels import glcm_levels, max_pairs_per_group
    from seaice_dask.features.reference import ALL_FEATURES, FEATURE_CODES, make_layout

    levels, half = case
    start = time.perf_counter()
    layout = make_layout((1,), (0, 90), "standard", True)
    codes = np.array([FEATURE_CODES[f] for f in ALL_FEATURES], dtype=np.int64)
    side = 2 * half + 4
    q = np.arange(side * side, dtype=np.int16).reshape(side, side) % levels
    glcm_levels(q, half=half, levels=levels, layout=layout, feature_codes=codes, snap=False,
                max_pairs=max_pairs_per_group(2 * half + 1, layout), dtype=np.float64)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    # spawned, as in seaice_dask.warmup: compiling is single-threaded, one process per signature
    with ProcessPoolExecutor(len(CASES), mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds = list(pool.map(_glcm_float64, CASES))
    detail = ", ".join(f"{levels} levels, window {2 * half + 1}: {s:.1f} s"
                       for (levels, half), s in zip(CASES, seconds, strict=True))  # fmt: skip
    print(f"the tests' float64 GLCM kernels compiled or loaded from the cache ({detail})")


if __name__ == "__main__":
    main()
