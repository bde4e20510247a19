"""Compile every Numba kernel once, on tiny inputs, into Numba's on-disk cache.

The kernels are ``cache=True``: compiled on first use, then loaded by every later process (Dask
workers included) from ``__pycache__`` beside their module (or ``NUMBA_CACHE_DIR``). Without a
warm cache a first run spends minutes of its ingest and features stages compiling, once in every
worker, behind a progress bar that does not say so. ``make test`` and ``make bench`` run
``python -m seaice_dask.warmup`` once first, ``seaice-dask demo`` while it simulates its scenes
(:func:`in_background`); on a warm cache it takes seconds.

Each kernel is reached through the wrapper the pipeline calls, which fixes the argument types,
so the signatures compiled here are the ones a run loads. The GLCM sweep has two compilations,
with and without the maximum probability (:func:`~seaice_dask.features.kernels.sweep_variant`);
``make`` compiles both, the demo only the one its features need. The kernels compile in
parallel processes: compiling is single-threaded.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np


#: The GLCM sweep's two compilations, each reached by one set of features (features that need no
#: counts, such as contrast alone, run the first with its count tables off).
GLCM_VARIANTS: dict[str, tuple[str, ...]] = {"counts": ("ASM",), "max": ("max_prob",)}


def glcm_variant(features: Sequence[str]) -> str:
    """The name (in :data:`GLCM_VARIANTS`) of the compilation ``features`` need."""
    from seaice_dask.features.kernels import sweep_variant
    from seaice_dask.features.reference import FEATURE_CODES

    def need_max(names: Sequence[str]) -> bool:
        return sweep_variant(np.array([FEATURE_CODES[f] for f in names]))[1]

    return next(v for v, names in GLCM_VARIANTS.items() if need_max(names) == need_max(features))


def _glcm(variant: str) -> None:
    """One GLCM sweep of :data:`GLCM_VARIANTS`: float32 output, int16 pair codes."""
    from seaice_dask.features.kernels import glcm_levels, max_pairs_per_group
    from seaice_dask.features.reference import FEATURE_CODES, make_layout

    window, levels = 3, 4
    layout = make_layout((1,), (0, 90), "standard", True)
    codes = np.array([FEATURE_CODES[f] for f in GLCM_VARIANTS[variant]], dtype=np.int64)
    q = np.arange(36, dtype=np.int16).reshape(6, 6) % levels
    glcm_levels(q, half=window // 2, levels=levels, layout=layout, feature_codes=codes, snap=False,
                max_pairs=max_pairs_per_group(window, layout))  # fmt: skip


def _textural() -> None:
    """The textural noise correction of the NERSC denoising."""
    from seaice_dask.preprocess.textural import textural_noise_block

    sigma0 = np.full((8, 8), 0.01, np.float32)
    textural_noise_block(sigma0, np.full((8, 8), 0.001, np.float32))


def _nersc() -> None:
    """The NERSC noise scaling's block sums and the denoising of every σ0 block."""
    from seaice_dask.preprocess.nersc import _sums_kernel, denoised_power

    dn, ones = np.ones((2, 2), np.uint16), np.ones((2, 2))
    _sums_kernel(dn, ones, ones, np.zeros((2, 2), np.int8), 0, 1, np.zeros((4, 1)))
    denoised_power(dn, ones, ones, None, (), np.arange(2), np.arange(2))


def _incidence() -> None:
    """The class-aware incidence correction: per-cell sums, each cell's component, per-pixel factors."""
    from seaice_dask.preprocess.incidence import ClassModel, _cell_mean, slope_exponents

    _cell_mean(np.ones((2, 4, 4), np.float32), 2)
    ones = np.ones((1, 2))
    ClassModel(("hh", "hv"), np.ones(1), ones, ones, ones).most_probable(np.ones((3, 2)), np.ones(3))
    slope_exponents(np.ones((2, 2, 2), np.float32), np.ones((4, 4), np.float32), 2, 30.0)


def _simulator() -> None:
    """The simulator's scene renderer and its truth lattice interpolation (``make demo``)."""
    from seaice_dask.grid import Grid
    from seaice_dask.simulate.backscatter import render_dn
    from seaice_dask.simulate.truth import _Lattice

    ones = np.ones((4, 4), np.float32)
    render_dn(np.zeros((4, 4), np.int8), 30 * ones, ones, (ones,) * 4, "HH", ones, ones, ones)
    grid = Grid.from_bounds("EPSG:32626", (0.0, 0.0, 40_000.0, 40_000.0), 10_000.0)
    lattice = _Lattice.for_grid(grid)
    lattice.to_grid(np.zeros(lattice.shape), grid)


#: The kernels to compile by name, the GLCM sweeps first, as they take longest; then in the order
#: a first run needs them (``seaice-dask demo`` simulates, then ingests).
KERNELS: dict[str, Callable[[], None]] = {
    **{f"glcm {v}": functools.partial(_glcm, v) for v in GLCM_VARIANTS},
    "simulator": _simulator,
    "nersc": _nersc,
    "textural": _textural,
    "incidence": _incidence,
}


def _timed(name: str) -> float:
    start = time.perf_counter()
    KERNELS[name]()
    return time.perf_counter() - start


def warmup(processes: int | None = None, features: Sequence[str] | None = None,
           skip: Sequence[str] = ()) -> dict[str, float]:
    """Compile (or load from the cache) the kernels of :data:`KERNELS`, the GLCM sweep only for
    ``features`` if given, none of ``skip``; returns seconds per kernel."""
    sweeps = list(GLCM_VARIANTS) if features is None else [glcm_variant(features)]
    names = [f"glcm {v}" for v in sweeps] + [n for n in KERNELS if not n.startswith("glcm ") and n not in skip]
    processes = processes or min(len(names), os.cpu_count() or 1)
    # spawned: a forked child of a process that ran a parallel kernel would inherit OpenMP's threads
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip(names, pool.map(_timed, names), strict=True))


@contextlib.contextmanager
def in_background(features: Sequence[str]) -> Iterator[None]:
    """Compile the kernels a run of GLCM ``features`` needs in other processes while the body runs
    (a first run's simulation and ingest), and wait for them when it ends: compiling then costs a
    first run little time. The GLCM sweep compiles alone in one process; the small kernels, which
    ingest needs, in the other, done within seconds. Not the simulator's: the body simulates
    first, and its processes compile those on first use before this one could."""
    logging.getLogger(__name__).info("compiling the Numba kernels (first run only) in the background")
    compiling = subprocess.Popen([sys.executable, "-m", "seaice_dask.warmup", "--features", ",".join(features),
                                  "--skip", "simulator"])
    try:
        yield
    finally:
        compiling.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Compile the Numba kernels into their on-disk cache.")
    parser.add_argument("--features", help="GLCM features (comma-separated): only their sweep (default: all)")
    parser.add_argument("--skip", default="", help=f"kernels not to compile (comma-separated, of: {', '.join(KERNELS)})")
    args = parser.parse_args()
    start = time.perf_counter()
    seconds = warmup(features=args.features.split(",") if args.features else None, skip=args.skip.split(","))
    detail = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
    print(f"Numba kernels compiled or loaded from the cache in {time.perf_counter() - start:.1f} s ({detail})")


if __name__ == "__main__":
    main()
