"""Write GLCM features of the cube's sigma0 into the cube: ``glcm_<pol>`` (time, feature, y, x).

Only each time step's covered blocks are read, computed and written (:mod:`seaice_dask.coverage`).
Resumable: a time slice is computed when its ingest is done and its ``glcm_<pol>`` flag is not;
the flag is set after the slice is written, so an interrupted run redoes at most the two slices
in flight. Each slice is computed chunk by chunk where it is written (the active dask scheduler,
e.g. the cluster's client). Changing the GLCM parameters of an existing variable is refused rather
than mixing two definitions in one variable.

The features are stored as float16 (:data:`TEXTURE_DTYPE`), half the bytes of float32 and 0.41×
its compressed size on full scenes: rounding to float16 changes a value by at most 2⁻¹¹ of
itself (4.9e-4; by at most 3e-8 below 6.1e-5), far below the texture's own sampling noise over
an 11-pixel window. Every feature fits float16's range for up to 256 grey levels (the largest,
contrast, is at most (levels − 1)² = 65025 < 65504). A cube written before keeps its float32
features. Models see the stored values (read as float32), in training and in prediction alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from dask.delayed import Delayed

from seaice_dask.config import FeaturesConfig
from seaice_dask.coverage import crop, step_blocks, step_windows
from seaice_dask.cube import StoreLike, compute_in_order, done, ensure_variable, mark_done, open_cube, slice_writes
from seaice_dask.errors import ConfigError, CubeError
from seaice_dask.features.glcm import feature_names, glcm

log = logging.getLogger(__name__)

#: Stored dtype of the texture features (see the module doc for the error bound).
TEXTURE_DTYPE = "float16"
#: Completion flag of the ingest stage (written by :mod:`seaice_dask.ingest`).
INGEST_STAGE = "ingest"
#: Flag set once every requested polarisation of a slice has its features.
FEATURES_STAGE = "features"


def _parameters(cfg: FeaturesConfig, pol: str) -> dict:
    """The GLCM arguments for one polarisation, as stored in the variable's attributes."""
    vmin, vmax = cfg.ranges_db.get(pol, (None, None))
    if cfg.quantizer == "linear" and vmin is None:
        raise ConfigError(
            f"features.ranges_db has no dB range for polarisation {pol!r} (needed by the linear quantizer)"
        )
    return {
        "window": cfg.window,
        "levels": cfg.levels,
        "distances": [int(d) for d in cfg.distances],
        "angles": [int(a) for a in cfg.angles],
        "features": list(cfg.features),
        "quantizer": cfg.quantizer,
        "mode": cfg.mode,
        "vmin": None if vmin is None else float(vmin),
        "vmax": None if vmax is None else float(vmax),
    }


def _check_existing(ds, name: str, params: dict, store: StoreLike) -> None:
    if name not in ds:
        return
    stored = {k: ds[name].attrs.get(f"glcm_{k}") for k in params}
    stored = {k: (list(v) if isinstance(v, (list, tuple, np.ndarray)) else v) for k, v in stored.items()}
    changed = {k: (stored[k], v) for k, v in params.items() if stored[k] != v}
    if changed:
        detail = ", ".join(f"{k}: stored {old!r}, config {new!r}" for k, (old, new) in changed.items())
        raise CubeError(
            f"{name} was computed with other GLCM parameters ({detail}); restore the config or delete {name}",
            store,
        )


def _progress(items: Sequence[int], enabled: bool, desc: str):
    if not enabled or len(items) == 0:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="scene")


def write_glcm_features(
    store: StoreLike, cfg: FeaturesConfig, *, pols: Sequence[str] = ("hh", "hv"), progress: bool = True,
    client: Any = None,
) -> list[str]:
    """Compute ``glcm_<pol>`` for every ingested slice that lacks it; returns the variable names.

    Input ``sigma0_<pol>`` in dB (NaN = no-data); quantisation range ``cfg.ranges_db[pol]``,
    the same for every scene. Raises :class:`CubeError` if a polarisation was not ingested or the
    stored features were computed with other parameters. With a ``client``, the next slice is
    computing while one is written (:func:`~seaice_dask.cube.compute_in_order`).
    """
    ds = open_cube(store)
    ingested = done(store, INGEST_STAGE)
    windows, blocks = step_windows(ds), step_blocks(ds)
    names = []
    for pol in (p.lower() for p in pols):
        source, name = f"sigma0_{pol}", f"glcm_{pol}"
        if source not in ds:
            raise CubeError(f"no variable {source!r} to compute texture from (ingest {pol.upper()} first)", store)
        params = _parameters(cfg, pol)
        _check_existing(ds, name, params, store)
        attrs = {f"glcm_{k}": v for k, v in params.items() if v is not None}
        attrs.update(long_name=f"GLCM texture features of sigma0 {pol.upper()}", units="1")
        ensure_variable(
            store, name, dtype=TEXTURE_DTYPE, fill_value=np.nan, attrs=attrs,
            extra_dims={"feature": feature_names(cfg.features, cfg.distances)},
        )  # fmt: skip
        todo = [int(t) for t in np.flatnonzero(ingested & ~done(store, name))]
        log.info("%s: %d of %d time slices to compute", name, len(todo), ingested.sum())

        def writes(t: int) -> Delayed | None:  # called within this iteration: the loop's names hold
            window = windows[t]
            if window is None:
                return None
            # the halo beyond the window holds no data: as in the whole grid
            features = glcm(
                crop(ds[source].isel(time=t), window),
                window=cfg.window, levels=cfg.levels, distances=cfg.distances, angles=cfg.angles,
                features=cfg.features, vmin=params["vmin"], vmax=params["vmax"],
                quantizer=cfg.quantizer, mode=cfg.mode, blocks=blocks[t],
            )  # fmt: skip
            return slice_writes(store, t, {name: features}, window=window, blocks=blocks[t])

        compute_in_order(_progress(todo, progress, name), writes, lambda t: mark_done(store, name, t), client=client)
        names.append(name)
    complete = ingested & ~done(store, FEATURES_STAGE)
    for name in names:
        complete &= done(store, name)
    for t in np.flatnonzero(complete):
        mark_done(store, FEATURES_STAGE, int(t))
    return names
