"""Compile the Numba signatures that only the tests use, in parallel, into Numba's on-disk cache.

The GLCM arithmetic tests run the kernel with float64 output (to compare at 1e-9), once with int16
and once with int32 pair codes (200 grey levels); ``python -m seaice_dask.warmup`` compiles only the
pipeline's float32 signature. Compiling one GLCM signature takes about 20 s of one core; inside the
suite the two compile one after the other, here (``make test``, once per kernel edit) side by side.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

#: Grey levels of the test signatures: int16 pair codes (2·L² < 2**15), int32 ones.
LEVELS = (8, 200)


def _glcm_float64(levels: int) -> float:
    from seaice_dask.features.kernels import glcm_levels, max_pairs_per_group
    from seaice_dask.features.reference import ALL_FEATURES, FEATURE_CODES, make_layout

    start = time.perf_counter()
    layout = make_layout((1,), (0, 90), "standard", True)
    codes = np.array([FEATURE_CODES[f] for f in ALL_FEATURES], dtype=np.int64)
    q = np.arange(36, dtype=np.int16).reshape(6, 6) % levels
    glcm_levels(q, half=1, levels=levels, layout=layout, feature_codes=codes, snap=False,
                max_pairs=max_pairs_per_group(3, layout), dtype=np.float64)  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    # spawned, as in seaice_dask.warmup: compiling is single-threaded, one process per signature
    with ProcessPoolExecutor(len(LEVELS), mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds = list(pool.map(_glcm_float64, LEVELS))
    detail = ", ".join(f"{levels} levels {s:.1f} s" for levels, s in zip(LEVELS, seconds, strict=True))
    print(f"the tests' float64 GLCM kernels compiled or loaded from the cache ({detail})")


if __name__ == "__main__":
    main()
