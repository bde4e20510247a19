"""Checking an ingested cube."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

from seaice_dask import coverage, cube
from seaice_dask.ingest.writer import SCENE_COORDS, STAGE


def validate_ingest(store: cube.StoreLike) -> list[str]:
    """Problems in a cube: :func:`seaice_dask.cube.validate_cube` plus the ingest variables.

    For every flagged slice: the sigma0 variables exist, ``valid`` equals "every sigma0 finite",
    some pixel is valid where the coverage index lists data, and the scene metadata is filled in. Reads the flagged slices.
    """
    problems = cube.validate_cube(store)
    if problems and any("not a seaice-dask cube" in p or "no cube here" in p for p in problems):
        return problems
    ds = cube.open_cube(store)
    flags = cube.done(store, STAGE)
    sigma = [v for v in ds.data_vars if str(v).startswith("sigma0_")]
    if flags.any() and not sigma:
        return problems + ["slices are flagged ingested but there is no sigma0 variable"]
    for name in ("incidence", "valid", "land"):
        if flags.any() and name not in ds:
            problems.append(f"slices are flagged ingested but {name!r} is missing")
    windows = coverage.step_windows(ds)
    for t in np.flatnonzero(flags):
        label = f"slice {t} ({pd.Timestamp(ds.time.values[t])})"
        for name in SCENE_COORDS:
            if name in ds.coords and str(ds[name].values[t]) in ("", "nan"):
                problems.append(f"{label}: {name} is empty")
        if "valid" not in ds or windows[t] is None:  # a step covering nothing holds nothing to check
            continue
        step = coverage.crop(ds.isel(time=t), windows[t])
        finite = np.logical_and.reduce([np.isfinite(step[v]) for v in sigma])
        mismatch, n_valid = dask.compute((finite != step["valid"]).sum(), step["valid"].sum())
        if int(mismatch):
            problems.append(f"{label}: valid differs from finite sigma0 at {int(mismatch)} pixels")
        if not int(n_valid):
            problems.append(f"{label}: its coverage index lists blocks with data, but it has no valid pixel")
    return problems
