"""Checking an ingested cube."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd

from seaice_dask import cube
from seaice_dask.ingest.writer import SCENE_COORDS, STAGE


def validate_ingest(store: cube.StoreLike) -> list[str]:
    """Problems in a cube: :func:`seaice_dask.cube.validate_cube` plus the ingest variables.

    For every flagged slice: the sigma0 variables exist, ``valid`` equals "every sigma0 finite",
    some pixel is valid, and the scene metadata is filled in. Reads the flagged slices.
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
    for t in np.flatnonzero(flags):
        label = f"slice {t} ({pd.Timestamp(ds.time.values[t])})"
        for name in SCENE_COORDS:
            if name in ds.coords and str(ds[name].values[t]) in ("", "nan"):
                problems.append(f"{label}: {name} is empty")
        if "valid" not in ds:
            continue
        finite = np.logical_and.reduce([np.isfinite(ds[v].isel(time=t)) for v in sigma])
        valid = ds["valid"].isel(time=t)
        mismatch, n_valid = dask.compute((finite != valid).sum(), valid.sum())
        if int(mismatch):
            problems.append(f"{label}: valid differs from finite sigma0 at {int(mismatch)} pixels")
        if not int(n_valid):
            problems.append(f"{label}: flagged ingested but has no valid pixel")
    return problems
