"""A small synthetic labelled cube (and its truth) for tests, benchmarks and examples.

Not the physical simulator (``seaice_dask.simulate``): a fast stand-in with the cube's layout.
A class map of floes (Voronoi cells) drifting over time → per-class sigma0 (HH, HV) with the
incidence-angle slopes and spreads of Lohse et al. 2024 (``simulator-reference``), speckle
(1.36 dB, EW GRDM), class-dependent stand-in texture features; chart labels are the truth
degraded like an ice chart (8 × 8-pixel "polygons" labelled with their majority class, some
left unlabelled, some mislabelled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from seaice_dask.cube import create_cube, ensure_variable, mark_done, write_slice
from seaice_dask.grid import Grid

#: Per class (water, young, first-year, old): HH at 30°, HH slope, HV at 30°, HV slope, spread (dB).
SIGMA0_MODEL = np.array([
    [-24.8, -0.289, -32.9, -0.133, 1.5],
    [-11.9, -0.133, -27.1, -0.044, 0.9],
    [-15.6, -0.333, -30.7, -0.275, 1.1],
    [-10.3, -0.160, -19.5, -0.100, 1.0],
])
SPECKLE_DB = 1.36
GLCM_FEATURES = ("contrast", "homogeneity", "ASM", "correlation", "entropy")
#: Stand-in texture means per class and feature (relative units) and their spread.
GLCM_MEANS = np.array([
    [2.9, 0.55, 0.23, 0.30, 5.0],
    [3.4, 0.50, 0.20, 0.40, 5.3],
    [3.0, 0.58, 0.25, 0.35, 4.9],
    [4.4, 0.45, 0.18, 0.55, 5.7],
])
GLCM_SPREAD = np.array([0.5, 0.05, 0.03, 0.08, 0.3])


def _class_map(rng: np.random.Generator, shape: tuple[int, int], centres: np.ndarray, kinds: np.ndarray, shift: float) -> np.ndarray:
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    pos = centres + np.array([shift, 0.5 * shift])
    d = (yy[..., None] - pos[:, 0]) ** 2 + (xx[..., None] - pos[:, 1]) ** 2
    return kinds[np.argmin(d, axis=-1)].astype(np.int8)


def make_synthetic_cube(
    path: str | Path,
    *,
    n_times: int = 12,
    size: int = 96,
    chunk: int = 48,
    seed: int = 0,
    label_error: float = 0.05,
    start: str = "2020-10-05",
    end: str = "2021-03-22",
) -> Path:
    """Write a cube at ``path`` and ``truth.zarr`` beside it; returns the truth path."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    grid = Grid.from_bounds("EPSG:32626", (400_000.0, 7_400_000.0, 400_000.0 + 80 * size, 7_400_000.0 + 80 * size), 80.0)
    times = pd.date_range(start, end, periods=n_times).round("s") + pd.Timedelta(hours=8, minutes=31)
    create_cube(path, grid, times.values, {"product_id": [f"SYNTH_{i:03d}" for i in range(n_times)]}, chunk=chunk)
    ny, nx = grid.shape
    for name, dtype, fill in (("sigma0_hh", "float32", np.nan), ("sigma0_hv", "float32", np.nan),
                              ("incidence", "float32", np.nan), ("valid", "bool", False), ("labels", "int8", -1)):
        ensure_variable(path, name, dtype=dtype, fill_value=fill)
    ensure_variable(path, "land", dtype="bool", fill_value=False, static=True)
    for pol in ("hh", "hv"):
        ensure_variable(path, f"glcm_{pol}", dtype="float32", fill_value=np.nan, extra_dims={"feature": list(GLCM_FEATURES)})
    yy, xx = np.mgrid[0:ny, 0:nx]
    land = (xx + yy) < size // 5  # a coast in one corner
    write_slice(path, "land", None, land)
    n_floes = max(8, size // 6)
    centres = rng.uniform(0, size, size=(n_floes, 2))
    kinds = np.resize(np.arange(4), n_floes)
    rng.shuffle(kinds)
    truth = np.empty((n_times, ny, nx), dtype=np.int8)
    for t in range(n_times):
        cls = _class_map(rng, (ny, nx), centres, kinds, shift=2.0 * t)
        truth[t] = np.where(land, -1, cls)
        theta = np.broadcast_to(np.linspace(20.0, 45.0, nx, dtype=np.float32), (ny, nx))
        p = SIGMA0_MODEL[cls]
        hh = p[..., 0] + p[..., 1] * (theta - 30) + rng.normal(0, 1, (ny, nx)) * np.hypot(p[..., 4], SPECKLE_DB)
        hv = p[..., 2] + p[..., 3] * (theta - 30) + rng.normal(0, 1, (ny, nx)) * np.hypot(p[..., 4], SPECKLE_DB)
        valid = np.ones((ny, nx), dtype=bool)
        valid[:, : 1 + (t % 3) * 2] = False  # swath edge moves between passes
        write_slice(path, "sigma0_hh", t, np.where(valid, hh, np.nan).astype(np.float32))
        write_slice(path, "sigma0_hv", t, np.where(valid, hv, np.nan).astype(np.float32))
        write_slice(path, "incidence", t, theta)
        write_slice(path, "valid", t, valid)
        for pol in ("hh", "hv"):
            glcm = GLCM_MEANS[cls].transpose(2, 0, 1) + rng.normal(0, 1, (len(GLCM_FEATURES), ny, nx)) * GLCM_SPREAD[:, None, None]
            write_slice(path, f"glcm_{pol}", t, glcm.astype(np.float32))
        write_slice(path, "labels", t, _chart_labels(rng, truth[t], label_error))
        for stage in ("ingest", "features", "charts"):
            mark_done(path, stage, t)
    truth_path = path.with_name("truth.zarr")
    xr.Dataset(
        {"truth_class": (("time", "y", "x"), truth)},
        coords={"time": times.values, **grid.coords()},
    ).to_zarr(truth_path, mode="w", zarr_format=3, consolidated=False)
    return truth_path


def _chart_labels(rng: np.random.Generator, truth: np.ndarray, error: float, block: int = 8) -> np.ndarray:
    """Majority class per ``block``² polygon; 10 % unlabelled, ``error`` mislabelled, land −1."""
    ny, nx = truth.shape
    labels = np.full_like(truth, -1)
    for y0 in range(0, ny, block):
        for x0 in range(0, nx, block):
            cell = truth[y0 : y0 + block, x0 : x0 + block]
            sea = cell[cell >= 0]
            if sea.size == 0 or rng.random() < 0.10:
                continue
            major = np.bincount(sea, minlength=4).argmax()
            if rng.random() < error:
                major = rng.integers(0, 4)
            labels[y0 : y0 + block, x0 : x0 + block] = np.where(cell >= 0, major, -1)
    return labels
