"""Scores: overall accuracy, Cohen's kappa, per-class precision/recall/F1, confusion matrices.

Everything derives from confusion matrices counted per date on the workers (one ``bincount``
per block, summed), so scoring a whole season never gathers pixels. Sums of per-date matrices
give the scores per month and overall.

* overall accuracy ``OA = trace(C) / N``;
* Cohen's kappa ``κ = (OA − p_e) / (1 − p_e)`` with ``p_e = Σ_k r_k c_k / N²`` (row and column
  sums; Cohen 1960);
* per class ``precision = C_kk / c_k``, ``recall = C_kk / r_k``, ``F1 = 2PR / (P + R)`` (0 when
  undefined, as scikit-learn's ``zero_division=0``).

References: chart ``labels`` of the cube (what operational services have) and, for simulated
data, the simulator's ``truth_class`` in ``truth.zarr`` (same grid and times as the scenes).
"""

from __future__ import annotations

import json
import time as clock
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from seaice_dask.config import PipelineConfig
from seaice_dask.cube import cube_grid, open_cube
from seaice_dask.errors import CubeError
from seaice_dask.learn._compute import compute
from seaice_dask.learn.persist import load_model
from seaice_dask.learn.predict import CLASS_VAR, REPORT_NAME, predict_dataset, smoothing_pixels
from seaice_dask.learn.samples import COLUMN_DIM, feature_stack, split_dates, usable_mask

TRUTH_STORE = "truth.zarr"
TRUTH_VAR = "truth_class"


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (rows: reference, columns: predicted); pairs with a negative id are skipped."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    ok = (y_true >= 0) & (y_pred >= 0) & (y_true < n_classes) & (y_pred < n_classes)
    codes = y_true[ok] * n_classes + y_pred[ok]
    return np.bincount(codes, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores(cm: np.ndarray, class_names: list[str] | None = None) -> dict[str, Any]:
    """Overall accuracy, kappa and per-class precision/recall/F1/support from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    names = class_names or [str(i) for i in range(k)]
    n = cm.sum()
    rows, cols, diag = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    oa = diag.sum() / n if n else float("nan")
    pe = (rows * cols).sum() / n**2 if n else float("nan")
    kappa = (oa - pe) / (1 - pe) if n and pe < 1 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cols > 0, diag / cols, 0.0)
        recall = np.where(rows > 0, diag / rows, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "n": int(n),
        "overall_accuracy": float(oa),
        "kappa": float(kappa),
        "per_class": {
            names[i]: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(rows[i])}
            for i in range(k)
        },
        "confusion": cm.astype(np.int64).tolist(),
    }


def _block_counts(reference: np.ndarray, predicted: np.ndarray, usable: np.ndarray, n_classes: int) -> np.ndarray:
    ref = reference.astype(np.int64)
    pred = predicted.astype(np.int64)
    ok = usable & (ref >= 0) & (pred >= 0) & (ref < n_classes) & (pred < n_classes)
    counts = np.bincount((ref * n_classes + pred)[ok], minlength=n_classes * n_classes)
    return counts.reshape(1, 1, 1, -1)


def confusion_per_date(
    reference: xr.DataArray, predicted: xr.DataArray, usable: xr.DataArray, n_classes: int
) -> da.Array:
    """Lazy confusion matrices ``(time, K, K)`` of two (time, y, x) class arrays where ``usable``."""
    reference, predicted, usable = xr.unify_chunks(
        reference.reset_coords(drop=True), predicted.reset_coords(drop=True), usable.reset_coords(drop=True)
    )
    ref = reference.transpose("time", "y", "x").data
    counts = da.map_blocks(
        _block_counts, ref, predicted.transpose("time", "y", "x").data, usable.transpose("time", "y", "x").data,
        n_classes=n_classes, new_axis=3, dtype=np.int64,
        chunks=(ref.chunks[0], (1,) * ref.numblocks[1], (1,) * ref.numblocks[2], (n_classes * n_classes,)),
    )
    return counts.sum(axis=(1, 2)).reshape(-1, n_classes, n_classes)


def open_truth(path: str | Path, ds: xr.Dataset) -> xr.DataArray:
    """The simulator's ``truth_class`` at the cube's dates, checked against the cube's grid."""
    path = Path(path)
    try:
        truth = xr.open_zarr(path, consolidated=False, chunks={})[TRUTH_VAR]
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise CubeError(f"cannot read {TRUTH_VAR}: {exc}", path) from exc
    if truth.sizes.get("y") != ds.sizes["y"] or truth.sizes.get("x") != ds.sizes["x"]:
        raise CubeError(f"{TRUTH_VAR} grid {truth.sizes} differs from the cube's", path)
    try:
        truth = truth.sel(time=ds["time"].values)
    except KeyError as exc:
        raise CubeError(f"{TRUTH_VAR} lacks some of the cube's dates: {exc}", path) from exc
    return truth.assign_coords(time=ds["time"].values, y=ds["y"].values, x=ds["x"].values)


def summarise(per_date: np.ndarray, stamps: pd.DatetimeIndex, names: list[str]) -> dict[str, Any]:
    """Scores overall, per scene (ISO date) and per month (``YYYY-MM``) from (time, K, K) counts."""
    months = stamps.strftime("%Y-%m")
    return {
        "overall": scores(per_date.sum(axis=0), names),
        "per_scene": {s.isoformat(): scores(cm, names) for s, cm in zip(stamps, per_date, strict=True)},
        "per_month": {m: scores(per_date[months == m].sum(axis=0), names) for m in sorted(set(months))},
    }


@dataclass
class EvalReport:
    """Scores per model and reference (``labels``, ``truth``); files written."""

    test_dates: list[str]
    scores: dict[str, dict[str, Any]]
    best: str
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self, reference: str = "truth") -> dict[str, dict[str, float]]:
        """``{model: {overall_accuracy, kappa}}`` against ``reference`` (``labels`` if no truth)."""
        out = {}
        for model, by_ref in self.scores.items():
            ref = by_ref.get(reference) or by_ref["labels"]
            out[model] = {k: ref["overall"][k] for k in ("overall_accuracy", "kappa")}
        return out


def evaluate(
    cfg: PipelineConfig,
    *,
    client: Any = None,
    progress: bool = True,
    truth_path: str | Path | None = None,
    figures: bool = True,
) -> EvalReport:
    """Score every trained model on the test dates against chart labels and (if any) the truth.

    Test dates come from the last ``train`` run; with ``validation: random`` every date is
    scored (optimistic: training pixels are included). Writes ``scores.json`` and figures to
    ``cfg.paths.reports``.
    """
    from seaice_dask import report as rep

    start = clock.perf_counter()
    ds = open_cube(cfg.paths.store)
    train_report = json.loads((Path(cfg.paths.models) / REPORT_NAME).read_text()) if (
        Path(cfg.paths.models) / REPORT_NAME).is_file() else None
    if train_report is None:
        raise CubeError("no train_report.json (run `seaice-dask train` first)", cfg.paths.models)
    if cfg.model.validation == "random":
        warnings.warn("validation=random: scoring every date, training pixels included (optimistic)", UserWarning, stacklevel=2)
        test_idx = np.arange(ds.sizes["time"])
    else:
        test_idx = np.asarray(train_report.get("test_index") or split_dates(ds["time"].values, cfg.model.test_fraction)[1])
    test = ds.isel(time=test_idx)
    stamps = pd.DatetimeIndex(test["time"].values)
    classes = train_report["classes"]
    names = train_report["class_names"]
    k = len(classes)
    usable = usable_mask(test)
    truth_path = Path(truth_path) if truth_path else Path(cfg.paths.workdir) / TRUTH_STORE
    references = {"labels": test["labels"]}
    if truth_path.exists():
        references["truth"] = open_truth(truth_path, ds).isel(time=test_idx)
    inputs = list(cfg.model.inputs)
    columns = [str(c) for c in feature_stack(test, inputs)[COLUMN_DIM].values]
    smooth_px = smoothing_pixels(cfg.model.smoothing_m, cube_grid(ds).resolution)
    lazy: dict[tuple[str, str], da.Array] = {}
    for learner, file in train_report["models"].items():
        model, _ = load_model(Path(cfg.paths.models) / file, feature_names=columns)
        predicted = predict_dataset(test, model, inputs, classes, smooth_px=smooth_px)[CLASS_VAR]
        for ref_name, ref in references.items():
            lazy[learner, ref_name] = confusion_per_date(ref, predicted, usable, k)
    keys = list(lazy)
    (counts,) = compute([lazy[key] for key in keys], client=client, progress=progress)
    results: dict[str, dict[str, Any]] = {}
    for (learner, ref_name), per_date in zip(keys, counts, strict=True):
        results.setdefault(learner, {})[ref_name] = summarise(np.asarray(per_date), stamps, names)
    primary = "truth" if "truth" in references else "labels"
    best = max(results, key=lambda m: (results[m][primary]["overall"]["overall_accuracy"], results[m][primary]["overall"]["kappa"]))
    report = EvalReport([s.isoformat() for s in stamps], results, best)
    out = Path(cfg.paths.reports)
    if figures:
        report.files.append(str(rep.plot_scores(report.table(primary), out / "scores.png", title=f"test dates, against {primary}")))
        report.files.append(str(rep.plot_confusion(
            np.asarray(results[best][primary]["overall"]["confusion"]), out / f"confusion_{best}.png",
            title=f"{best} against {primary}", class_names=names,
        )))
        monthly = {m: {mo: s["overall_accuracy"] for mo, s in r[primary]["per_month"].items()} for m, r in results.items()}
        report.files.append(str(rep.plot_monthly(monthly, out / "accuracy_per_month.png", metric="overall accuracy")))
        if CLASS_VAR in ds.data_vars:
            grid = cube_grid(ds)
            for t, stamp in zip(test_idx[:4], stamps[:4], strict=False):
                cls = np.asarray(ds[CLASS_VAR].isel(time=int(t)).values)
                report.files.append(str(rep.plot_class_map(
                    cls, grid, out / f"class_{stamp.strftime('%Y%m%dT%H%M%S')}.png",
                    title=f"{stamp:%Y-%m-%d %H:%M} UTC", class_names=names,
                )))
    report.seconds = clock.perf_counter() - start
    report.files.append(str(rep.write_json(report.to_dict(), out / "scores.json")))
    return report
