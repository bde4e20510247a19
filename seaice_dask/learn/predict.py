"""Prediction over the whole cube: class maps and class probabilities, then GeoTIFFs per date.

The model is applied block by block (``dask.array.map_blocks`` over the ``(time, column, y, x)``
input stack), so every worker only ever holds one block of inputs. Tasks carry a
:class:`~seaice_dask.learn.inference.ModelRef` (path and key), and each worker loads the
production form of the model once (:mod:`seaice_dask.learn.inference`). Land, invalid and
non-finite pixels get class −1 and NaN probabilities. The class is the most probable one
(``argmax`` of ``predict_proba``), so ``class`` and ``proba`` always agree.

Cube variables written: ``class`` (time, y, x) int8, and ``proba`` (time, class_id, y, x)
stored as uint8 percent with CF packing (``scale_factor`` 0.01, ``_FillValue`` 255: xarray reads
probabilities, NaN where none), a quarter of float32's bytes and the precision of the exported
percent maps; ``class`` is decided before the rounding. A cube written before keeps float32
probabilities. The probability dimension is ``class_id``, not ``class``: xarray cannot hold a data
variable and a dimension coordinate of the same name.
"""

from __future__ import annotations

import json
import time as clock
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits

from seaice_dask.config import PipelineConfig
from seaice_dask.coverage import crop, keep_blocks, step_blocks, step_windows
from seaice_dask.cube import (
    compute_in_order, cube_grid, cube_store, done, ensure_variable, mark_done, open_cube, set_slice_coord, slice_writes,
)
from seaice_dask.errors import ModelError
from seaice_dask.halo import overlap, trim
from seaice_dask.learn.inference import ModelRef, resolve
from seaice_dask.learn.persist import load_model, radiometry_of
from seaice_dask.learn.samples import COLUMN_DIM, feature_stack, usable_mask

CLASS_VAR = "class"
PROBA_VAR = "proba"
PROBA_DIM = "class_id"
#: ``proba`` is stored as uint8 percent: stored value × 0.01 = probability, :data:`PROBA_FILL` none.
PROBA_SCALE = 0.01
PROBA_FILL = 255
STAGE = "predict"
REPORT_NAME = "train_report.json"
#: Per-date coordinate: key of the model file that wrote ``class`` (evaluate scores it from there).
MODEL_KEY_COORD = "class_model_key"


def predict_block(inputs: np.ndarray, usable: np.ndarray, model: Any, classes: np.ndarray) -> np.ndarray:
    """One block: inputs (1, n_col, by, bx), usable (1, 1, by, bx) → (1, K + 1, by, bx) float32.

    Channels 0…K−1 hold the probability of ``classes``; channel K the class id (−1 masked).
    ``model`` is a fitted model or a :class:`~seaice_dask.learn.inference.ModelRef`.
    """
    model = resolve(model)
    _, n_col, by, bx = inputs.shape
    n_classes = classes.size
    columns = inputs.reshape(n_col, -1)  # one column per pixel
    ok = usable.reshape(-1) & np.isfinite(columns).all(axis=0)
    out = np.full((n_classes + 1, by * bx), np.nan, dtype=np.float32)
    out[n_classes] = -1
    if ok.any():
        every = bool(ok.all())  # open-sea blocks: no masked copies
        pixels = columns if every else columns[:, ok]
        with threadpool_limits(1):  # dask runs blocks in parallel already
            if hasattr(model, "predict_proba_columns"):  # compiled: no transposed copies
                proba = model.predict_proba_columns(pixels)
            else:
                proba = model.predict_proba(pixels.T).T
        model_classes = np.asarray(model.classes_)
        target = out[:n_classes] if every else np.zeros((n_classes, proba.shape[1]), dtype=np.float32)
        target[np.searchsorted(classes, model_classes)] = proba
        decided = model_classes[first_argmax(proba)]
        if every:
            out[n_classes] = decided
        else:
            out[:n_classes, ok] = target
            out[n_classes, ok] = decided
    return out.reshape(1, n_classes + 1, by, bx)


def proba_percent(proba: np.ndarray) -> np.ndarray:
    """Probabilities (NaN: none) → uint8 percent (value × :data:`PROBA_SCALE`), :data:`PROBA_FILL` for
    NaN (uint8: already percent, as is)."""
    if np.asarray(proba).dtype == np.uint8:
        return np.asarray(proba)
    proba = np.asarray(proba, dtype=np.float32)
    percent = np.rint(proba * np.float32(1 / PROBA_SCALE))
    np.clip(percent, 0, 100, out=percent)  # NaN stays NaN
    percent[np.isnan(percent)] = PROBA_FILL
    return percent.astype(np.uint8)


def first_argmax(proba: np.ndarray) -> np.ndarray:
    """``np.argmax(proba, axis=0)`` for a few rows and many columns, row by row (several times
    faster than numpy's strided reduction; ties go to the first row, as ``argmax``)."""
    best = proba[0].copy()
    index = np.zeros(proba.shape[1], dtype=np.intp)
    for row in range(1, proba.shape[0]):
        better = proba[row] > best
        index[better] = row
        np.maximum(best, proba[row], out=best)
    return index


def smooth_probabilities(both: np.ndarray, size: int, classes: np.ndarray) -> np.ndarray:
    """Contextual classification: mean class probabilities over a ``size``×``size`` window.

    ``both`` is a block ``(time, K + 1, y, x)`` as made by :func:`predict_block`. Each usable
    pixel's probabilities become the mean over the usable pixels of its window (a normalised
    box filter, so land and no-data neither count nor leak in), and its class the argmax of the
    mean. This is the spatial regularisation ice analysts apply by eye: single-pixel decisions
    are dominated by speckle, while ice types form km-scale regions (Park et al. 2020 smooth
    the same way with a majority filter).
    """
    from scipy.ndimage import uniform_filter

    k = classes.size
    out = both.copy()
    for t in range(both.shape[0]):
        usable = both[t, k] >= 0
        weight = uniform_filter(usable.astype(np.float64), size, mode="constant")
        mean = np.stack([
            uniform_filter(np.where(usable, both[t, c], 0.0).astype(np.float64), size, mode="constant")
            for c in range(k)
        ])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean /= weight
        out[t, :k] = np.where(usable, mean, np.nan)
        out[t, k] = np.where(usable, classes[np.argmax(np.nan_to_num(mean, nan=-1.0), axis=0)], -1)
    return out


def smoothing_pixels(smoothing_m: float, resolution_m: float) -> int:
    """Odd window width (pixels) closest to ``smoothing_m`` metres; 1 means no smoothing."""
    n = int(round(smoothing_m / resolution_m))
    return max(1, n + 1 - n % 2)


def _smooth_block(both: np.ndarray, size: int, classes: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    """:func:`smooth_probabilities` of a block with a halo of ``size // 2`` towards its
    neighbours (none beyond the array's edges: the window there is normalised by what it holds),
    the halo trimmed."""
    half = size // 2
    return trim(smooth_probabilities(both, size, classes), (0, 0, half, half), block_info[None])


def predict_dataset(
    ds: xr.Dataset, model: Any, inputs: list[str], classes: list[int], *, smooth_px: int = 1,
    blocks: np.ndarray | None = None,
) -> xr.Dataset:
    """Lazy ``class`` and ``proba`` for every date of ``ds`` (dask in, dask out).

    ``smooth_px`` > 1 averages the probabilities over that window before the argmax
    (:func:`smooth_probabilities` on blocks with halos: results do not depend on chunking).
    ``blocks`` (bool per spatial dask block, :mod:`seaice_dask.coverage`): blocks flagged False
    hold no data; their inputs are not read (taken as unusable).
    """
    return predict_inputs(feature_stack(ds, inputs), usable_mask(ds), model, classes, smooth_px=smooth_px,
                          blocks=blocks)


def predict_inputs(
    stack: xr.DataArray, usable: xr.DataArray, model: Any, classes: list[int], *, smooth_px: int = 1,
    blocks: np.ndarray | None = None,
) -> xr.Dataset:
    """:func:`predict_dataset` of the model inputs ``stack`` (:func:`~seaice_dask.learn.samples.feature_stack`)
    and their ``usable`` mask; a part of the cube's stack, cut out of it, keeps the stack's one
    read task per block."""
    stack, usable = xr.unify_chunks(stack, usable)
    stack = stack.copy(data=keep_blocks(stack.data, blocks, np.float32(np.nan)))
    usable = usable.copy(data=keep_blocks(usable.data, blocks, False))
    classes_arr = np.asarray(sorted(classes))
    model_classes = getattr(model, "classes_", classes_arr)  # a ModelRef: checked by the caller
    if not np.isin(np.asarray(model_classes), classes_arr).all():
        raise ModelError(f"the model predicts classes {list(model_classes)} outside {list(classes_arr)}")
    k = classes_arr.size
    data = stack.data
    both = da.map_blocks(
        predict_block,
        data,
        usable.data[:, None],
        model=model,
        classes=classes_arr,
        dtype=np.float32,
        chunks=(data.chunks[0], (k + 1,), data.chunks[2], data.chunks[3]),
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
    )
    if smooth_px > 1:
        half = smooth_px // 2
        both = da.map_blocks(
            _smooth_block,
            overlap(both, {2: half, 3: half}),
            chunks=both.chunks,
            size=smooth_px,
            classes=classes_arr,
            dtype=np.float32,
            meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        )
    coords = {"time": stack["time"], "y": stack["y"], "x": stack["x"]}
    cls = xr.DataArray(both[:, k].astype(np.int8), dims=("time", "y", "x"), coords=coords)
    proba = xr.DataArray(
        both[:, :k], dims=("time", PROBA_DIM, "y", "x"), coords={**coords, PROBA_DIM: classes_arr}
    )
    cls.attrs, proba.attrs = map_attrs(classes_arr)
    return xr.Dataset({CLASS_VAR: cls, PROBA_VAR: proba})


def map_attrs(classes: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Attributes of ``class`` and ``proba``."""
    return ({"long_name": "predicted sea-ice class", "flag_values": np.asarray(classes).tolist(),
             "comment": "-1: land, invalid or missing inputs"},
            {"long_name": "class probability", "units": "1"})


def checked_model_ref(
    path: str | Path, feature_names: list[str], radiometry: dict[str, Any] | None = None
) -> tuple[ModelRef, dict[str, Any]]:
    """A :class:`ModelRef` for ``path`` after checking, here, that the file loads and fits the
    inputs (names and, when given, radiometric corrections: :func:`~seaice_dask.learn.persist.radiometry_of`)."""
    model, meta = load_model(path, feature_names=feature_names, radiometry=radiometry)
    if not np.isin(np.asarray(model.classes_), meta["classes"]).all():
        raise ModelError(f"the model predicts classes {list(model.classes_)} outside {meta['classes']}", path)
    return ModelRef.of(path), meta


def best_model_path(models_dir: str | Path) -> Path:
    """The model chosen by the last ``train`` run (its ``train_report.json``)."""
    report = Path(models_dir) / REPORT_NAME
    if not report.is_file():
        raise ModelError("no trained models here (run `seaice-dask train` first)", report)
    return Path(models_dir) / json.loads(report.read_text())["best_model"]


@dataclass
class PredictReport:
    model: str
    learner: str
    dates: list[str]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stale(ds: xr.Dataset, store: Any, key: str) -> list[int]:
    """Time steps without a class map from the model with ``key``: a map already written by
    the same model file is not computed again (resumed runs, ``classify`` adding scenes)."""
    finished = done(store, STAGE)
    keys = ds[MODEL_KEY_COORD].values if MODEL_KEY_COORD in ds.coords else np.full(finished.size, "")
    return [t for t in range(finished.size) if not (finished[t] and str(keys[t]) == key)]


def predict(
    cfg: PipelineConfig,
    model_path: str | Path | None = None,
    *,
    client: Any = None,
    progress: bool = True,
    times: list[int] | None = None,
) -> PredictReport:
    """Classify every date of the cube that lacks this model's map (or ``times``); write
    ``class`` and ``proba`` into it.

    Each date is computed on the workers, on its covered blocks only (:mod:`seaice_dask.coverage`),
    and written to the store by them (``class`` and ``proba`` from one computation); the next
    date is already computing while one is finishing. GIS files come from the ``export`` stage
    (:mod:`seaice_dask.export`).
    """
    from rich.progress import track

    start = clock.perf_counter()
    store = cube_store(cfg)
    ds = open_cube(store)
    model_path = Path(model_path) if model_path else best_model_path(cfg.paths.models)
    inputs = list(cfg.model.inputs)
    stack, usable = feature_stack(ds, inputs), usable_mask(ds)  # the cube's: one read task per block
    names = [str(c) for c in stack[COLUMN_DIM].values]
    ref, meta = checked_model_ref(model_path, names, radiometry_of(ds.attrs))
    classes = meta["classes"]
    grid = cube_grid(ds)
    smooth_px = smoothing_pixels(cfg.model.smoothing_m, grid.resolution)
    windows, blocks = step_windows(ds), step_blocks(ds)

    def writes(t: int) -> Any:  # one date's writes, on its covered blocks
        if windows[t] is None:
            return None
        sl = predict_inputs(crop(stack.isel(time=[t]), windows[t]), crop(usable.isel(time=[t]), windows[t]), ref,
                            classes, smooth_px=smooth_px, blocks=blocks[t]).isel(time=0)
        proba = sl[PROBA_VAR].data
        if packed:
            proba = proba.map_blocks(proba_percent, dtype=np.uint8)
        return slice_writes(store, t, {CLASS_VAR: sl[CLASS_VAR].data, PROBA_VAR: proba}, windows[t], blocks[t])

    class_attrs, proba_attrs = map_attrs(np.asarray(sorted(classes)))
    attrs = {"model": model_path.name, "learner": meta["learner"], "grid_mapping": "spatial_ref",
             "smoothing_window_px": smooth_px}
    ensure_variable(store, CLASS_VAR, dtype="int8", fill_value=-1, attrs={**class_attrs, **attrs})
    # a cube from before the packing keeps its float32 probabilities
    packed = ensure_variable(
        store, PROBA_VAR, dtype="uint8", fill_value=PROBA_FILL, scale_factor=PROBA_SCALE,
        attrs={**proba_attrs, **attrs}, extra_dims={PROBA_DIM: classes},
    ) == np.uint8
    indices = _stale(ds, store, ref.key) if times is None else list(times)
    stamps = pd.DatetimeIndex(ds["time"].values)
    report = PredictReport(str(model_path), meta["learner"], [])

    def finish(t: int) -> None:
        set_slice_coord(store, MODEL_KEY_COORD, t, ref.key)
        mark_done(store, STAGE, t)
        report.dates.append(stamps[t].isoformat())

    compute_in_order(track(indices, description="predict", disable=not progress, transient=True), writes, finish,
                     client=client)  # fmt: skip
    report.seconds = clock.perf_counter() - start
    return report
