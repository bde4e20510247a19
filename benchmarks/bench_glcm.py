"""GLCM texture throughput: fast Numba kernel vs NumPy reference vs scikit-image's per-window loop.

Window 11, 32 levels, 4 angles averaged, distance 1, with the 5 default features (contrast,
homogeneity, ASM, correlation, entropy) and with all 10. The fast kernel runs through
``glcm()`` on a dask array (threaded scheduler, 1 and 2 threads; quantisation and halo
exchange included; blocks stored into one preallocated array, as the features stage writes
them into the cube) and alone on one 1024 × 1024 block; the reference and
scikit-image (``graycomatrix`` + ``graycoprops`` per pixel) run on a sub-window, one thread.

Two speeds per row: ``px/s`` (wall clock) and ``px/s/core`` (pixels per CPU-second of this
process, which stays meaningful when other jobs share the machine). Targets (issue 5):
≥ 3 M px/s per core with 5 features, ≥ 2 M px/s per core with 10, ≥ 1000× scikit-image.

Before and after, side by side: the kernel alone on one 1024 × 1024 block, today's against the
kernel module of git revision ``--baseline`` (imported from a copy of that file, in this process),
on a block full of data, one half covered (a slanted swath edge) and one without data (a block
the features stage does not even schedule), with their outputs checked bit-identical. Targets
(the compute-limit item): ≥ 5 M px/s per core with the 5 features on the full block; the
half-covered block at about half its cost.

    python -m benchmarks.bench_glcm [--size 2048] [--chunk 512] [--repeat 5] [--baseline 711fdf5]
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from skimage.feature import graycomatrix, graycoprops

from benchmarks.common import write_results
from seaice_dask.features import ALL_FEATURES, glcm
from seaice_dask.features.glcm import quantize
from seaice_dask.features.kernels import glcm_levels, max_pairs_per_group
from seaice_dask.features.reference import FEATURE_CODES, glcm_reference, make_layout

WINDOW, LEVELS, ANGLES, VMIN, VMAX = 11, 32, (0, 45, 90, 135), -35.0, -5.0
FIVE = ("contrast", "homogeneity", "ASM", "correlation", "entropy")
#: The kernel before its sweep learned lanes, packed increments and to skip windows without data.
BASELINE = "711fdf5"


def scene(size: int, seed: int = 0) -> np.ndarray:
    """Speckled dB image: smooth regions of different backscatter, gamma speckle (ENL 4), 3 % NaN."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    mean_db = -20 + 6 * np.sin(xx / 97.0) * np.cos(yy / 71.0)
    linear = 10 ** (mean_db / 10) * rng.gamma(4.0, 0.25, (size, size))
    db = 10 * np.log10(linear)
    db[rng.random((size, size)) < 0.03] = np.nan
    return db.astype(np.float32)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(fn, n_pixels: int, repeat: int) -> tuple[float, float]:
    """Best wall-clock px/s and the px per CPU-second of that run."""
    best = (0.0, 0.0)
    for _ in range(repeat):
        cpu, wall = cpu_seconds(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        if n_pixels / wall > best[0]:
            best = (n_pixels / wall, n_pixels / max(cpu, 1e-9))
    return best


def baseline_kernel(rev: str):
    """``glcm_levels`` of ``seaice_dask/features/kernels.py`` at git revision ``rev``, imported
    from a copy of that file (kept, so that Numba's cache serves later runs); None without git."""
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(["git", "show", f"{rev}:seaice_dask/features/kernels.py"], cwd=root,
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"no baseline kernel at {rev!r} ({error}): before/after rows left out")
        return None
    path = Path(tempfile.gettempdir()) / f"seaice-glcm-baseline-{rev}" / "glcm_kernels_baseline.py"
    path.parent.mkdir(exist_ok=True)
    if not path.exists() or path.read_text() != source:
        path.write_text(source)
    name = f"glcm_kernels_baseline_{rev}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Numba compiles the sweep's variants later, by module name
    spec.loader.exec_module(module)
    return module.glcm_levels


def kernel_blocks(db: np.ndarray) -> dict[str, np.ndarray]:
    """Padded 1024 × 1024 blocks of levels: full of data, half covered (no data beyond a slanted
    swath edge), without data."""
    block = quantize(db[:1024, :1024], LEVELS, vmin=VMIN, vmax=VMAX)
    yy, xx = np.mgrid[0 : block.shape[0], 0 : block.shape[1]]
    half = np.where(xx < 0.25 * block.shape[1] + 0.5 * yy, -1, block).astype(np.int16)
    pad = WINDOW // 2
    return {name: np.pad(b, pad, constant_values=-1) for name, b in
            (("full", block), ("half covered", half), ("no data", np.full_like(block, -1)))}  # fmt: skip


def before_after(db: np.ndarray, rev: str, repeat: int) -> list[dict]:
    """The kernel alone on each of :func:`kernel_blocks`, baseline and today's, 5 and 10 features."""
    old = baseline_kernel(rev)
    if old is None:
        return []
    layout = make_layout([1], ANGLES, "standard", True)
    rows = []
    for features in (FIVE, ALL_FEATURES):
        codes = np.array([FEATURE_CODES[f] for f in features])
        for case, block in kernel_blocks(db).items():
            pixels = (block.shape[0] - WINDOW + 1) * (block.shape[1] - WINDOW + 1)
            speed, outputs = {}, {}
            for name, kernel in (("before", old), ("after", glcm_levels)):
                def run(kernel=kernel, name=name):
                    outputs[name] = kernel(block, half=WINDOW // 2, levels=LEVELS, layout=layout, feature_codes=codes,
                                           snap=False, max_pairs=max_pairs_per_group(WINDOW, layout))  # fmt: skip
                run()  # compile or load from the cache
                speed[name] = measure(run, pixels, repeat)[1]
            if not np.array_equal(outputs["before"], outputs["after"], equal_nan=True):
                raise AssertionError(f"{case}, {len(features)} features: outputs differ from {rev}")
            if case == "full":  # the first block: the others' cost is relative to it
                full = dict(speed)
            rows.append({"features": len(features), "block": case, "baseline": rev,
                         "before M px/s/core": speed["before"] / 1e6, "after M px/s/core": speed["after"] / 1e6,
                         "after / before": speed["after"] / speed["before"],
                         "cost / full block, before": full["before"] / speed["before"],
                         "cost / full block, after": full["after"] / speed["after"],
                         "identical": True})  # fmt: skip
    return rows


def skimage_loop(db: np.ndarray, features) -> np.ndarray:
    """scikit-image per pixel: one window, graycomatrix over 4 angles, graycoprops, mean."""
    q = quantize(db, LEVELS, vmin=VMIN, vmax=VMAX)
    half = WINDOW // 2
    q = np.pad(q, half, constant_values=-1)
    out = np.zeros((len(features), *db.shape))
    angles = np.deg2rad(ANGLES)
    for y in range(db.shape[0]):
        for x in range(db.shape[1]):
            win = q[y : y + WINDOW, x : x + WINDOW]
            win = np.where(win < 0, LEVELS, win).astype(np.uint8)  # no-data on an extra level, dropped
            p = graycomatrix(win, [1], angles, levels=LEVELS + 1, symmetric=True)[:LEVELS, :LEVELS]
            p = p / np.maximum(p.sum(axis=(0, 1), keepdims=True), 1)
            for f, name in enumerate(features):
                values = p.max(axis=(0, 1)) if name == "max_prob" else graycoprops(p, name)
                out[f, y, x] = values.mean()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="side of the square test scene (pixels)")
    parser.add_argument("--chunk", type=int, default=512, help="dask chunk side")
    parser.add_argument("--sub", type=int, default=32, help="side of the sub-window for the slow methods")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; the fastest is kept")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the kernel to compare against")
    parser.add_argument("--only-kernel", action="store_true", help="only the before/after rows of the kernel alone")
    args = parser.parse_args(argv)

    db = scene(args.size)
    image = xr.DataArray(db, dims=("y", "x")).chunk({"y": args.chunk, "x": args.chunk})
    sub = db[: args.sub, : args.sub]
    layout = make_layout([1], ANGLES, "standard", True)
    glcm(image[:64, :64], window=WINDOW, levels=LEVELS, vmin=VMIN, vmax=VMAX).compute()  # compile / load cache

    comparison = before_after(db, args.baseline, args.repeat)
    rows = []
    for features in (FIVE, ALL_FEATURES) if not args.only_kernel else ():
        n_feat = len(features)
        lazy = glcm(image, window=WINDOW, levels=LEVELS, angles=ANGLES, features=features, vmin=VMIN, vmax=VMAX)
        fast = {}
        target = np.empty(lazy.shape, dtype=lazy.dtype)  # written block by block, as the cube is
        for threads in (1, 2):
            px, px_core = measure(
                lambda t=threads: da.store(lazy.data, target, lock=False, scheduler="threads", num_workers=t),
                db.size, args.repeat,
            )
            fast[threads] = px_core
            rows.append({"features": n_feat, "method": "fast kernel (dask)", "threads": threads,
                         "pixels": db.size, "px/s": px, "px/s/core": px_core})  # fmt: skip
        block = np.pad(quantize(db[:1024, :1024], LEVELS, vmin=VMIN, vmax=VMAX), WINDOW // 2, constant_values=-1)
        codes = np.array([FEATURE_CODES[f] for f in features])
        px, px_core = measure(
            lambda: glcm_levels(block, half=WINDOW // 2, levels=LEVELS, layout=layout, feature_codes=codes,
                                snap=False, max_pairs=max_pairs_per_group(WINDOW, layout)),
            (block.shape[0] - WINDOW + 1) ** 2, args.repeat,
        )  # fmt: skip
        rows.append({"features": n_feat, "method": "kernel alone (1 block)", "threads": 1,
                     "pixels": (block.shape[0] - WINDOW + 1) ** 2, "px/s": px, "px/s/core": px_core})  # fmt: skip
        q_sub = quantize(sub, LEVELS, vmin=VMIN, vmax=VMAX)
        px, px_core = measure(
            lambda: glcm_reference(q_sub, window=WINDOW, levels=LEVELS, layout=layout, features=features),
            sub.size, 1,
        )  # fmt: skip
        rows.append({"features": n_feat, "method": "NumPy reference", "threads": 1, "pixels": sub.size,
                     "px/s": px, "px/s/core": px_core})  # fmt: skip
        px, px_core = measure(lambda: skimage_loop(sub, features), sub.size, 1)
        rows.append({"features": n_feat, "method": "scikit-image loop", "threads": 1, "pixels": sub.size,
                     "px/s": px, "px/s/core": px_core})  # fmt: skip
        for row in rows[-5:]:
            row["× scikit-image (per core)"] = row["px/s/core"] / px_core
    write_results("bench_glcm_before_after", comparison, window=WINDOW, levels=LEVELS, angles=list(ANGLES),
                  distance=1, block=1024, repeat=args.repeat)  # fmt: skip
    if args.only_kernel:
        return
    write_results(
        "bench_glcm", rows, window=WINDOW, levels=LEVELS, angles=list(ANGLES), distance=1,
        size=args.size, chunk=args.chunk, sub_window=args.sub,
    )  # fmt: skip


if __name__ == "__main__":
    main()
