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

Evaluation never classifies the season again: the model that ``predict`` applied is scored from
the stored ``class`` maps; the other learners on a stratified sample of test pixels (at most
``model.eval_sample_per_class`` per class, rows weighted by class totals / sampled counts, which
estimates the full-map confusion matrix without bias; :func:`sampled_confusion`). Sampled scores
are per pixel: contextual smoothing (``model.smoothing_m``) needs whole maps, so it applies to
the stored maps only. ``model.eval_full_maps`` classifies the full test maps for every learner.
"""

from __future__ import annotations

import json
import time as clock
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from seaice_dask.config import PipelineConfig
from seaice_dask.coverage import Window, crop, keep_blocks, step_blocks, step_windows
from seaice_dask.cube import StoreLike, cube_grid, cube_store, done, open_cube
from seaice_dask.errors import CubeError
from seaice_dask.learn._compute import compute
from seaice_dask.learn.card import add_monthly_scores
from seaice_dask.learn.inference import ModelRef
from seaice_dask.learn.persist import radiometry_of
from seaice_dask.learn.predict import (
    CLASS_VAR, MODEL_KEY_COORD, REPORT_NAME, checked_model_ref, predict_block, predict_dataset, smoothing_pixels,
)
from seaice_dask.learn.predict import STAGE as PREDICT_STAGE
from seaice_dask.learn.samples import Sample, feature_names, split_dates, stratified_samples, usable_mask

TRUTH_STORE = "truth.zarr"
TRUTH_VAR = "truth_class"
#: Rows per task when the learners classify the stratified sample: a forest takes seconds for
#: 10⁵ rows, so the tasks of all learners spread over the workers.
EVAL_CHUNK_ROWS = 50_000


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
    reference: xr.DataArray, predicted: xr.DataArray, usable: xr.DataArray, n_classes: int,
    blocks: np.ndarray | None = None,
) -> da.Array:
    """Lazy confusion matrices ``(time, K, K)`` of two (time, y, x) class arrays where ``usable``;
    spatial blocks flagged False in ``blocks`` (:mod:`seaice_dask.coverage`) hold no data and are
    not read."""
    reference, predicted, usable = xr.unify_chunks(
        reference.reset_coords(drop=True), predicted.reset_coords(drop=True), usable.reset_coords(drop=True)
    )
    ref = keep_blocks(reference.transpose("time", "y", "x").data, blocks, np.int8(-1))
    counts = da.map_blocks(
        _block_counts, ref, keep_blocks(predicted.transpose("time", "y", "x").data, blocks, np.int8(-1)),
        keep_blocks(usable.transpose("time", "y", "x").data, blocks, False),
        n_classes=n_classes, new_axis=3, dtype=np.int64,
        chunks=(ref.chunks[0], (1,) * ref.numblocks[1], (1,) * ref.numblocks[2], (n_classes * n_classes,)),
    )
    return counts.sum(axis=(1, 2)).reshape(-1, n_classes, n_classes)


def windowed_confusion(
    reference: xr.DataArray, predicted: Callable[[int], xr.DataArray], usable: xr.DataArray,
    windows: Sequence[Window | None], n_classes: int, blocks: Sequence[np.ndarray | None] | None = None,
) -> da.Array:
    """:func:`confusion_per_date` with each date read on its window of covered blocks only
    (:mod:`seaice_dask.coverage`: ``windows`` and their ``blocks``); ``predicted(i)``: the class
    map (time, y, x) of date ``i`` on its window."""
    parts = []
    for i, window in enumerate(windows):
        if window is None:
            parts.append(da.zeros((1, n_classes, n_classes), dtype=np.int64))
            continue
        parts.append(confusion_per_date(crop(reference.isel(time=[i]), window), predicted(i),
                                        crop(usable.isel(time=[i]), window), n_classes,
                                        None if blocks is None else blocks[i]))
    return da.concatenate(parts)


def open_truth(path: str | Path, ds: xr.Dataset) -> xr.DataArray:
    """The simulator's ``truth_class`` at the cube's dates, checked against the cube's grid."""
    path = Path(path)
    try:
        truth = xr.open_zarr(path, consolidated=False, chunks={})[TRUTH_VAR]
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise CubeError(f"cannot read {TRUTH_VAR}: {exc}", path) from exc
    if truth.sizes.get("y") != ds.sizes["y"] or truth.sizes.get("x") != ds.sizes["x"]:
        # another extent on the same pixel lattice (a larger region): the truth where it exists
        step = float(abs(ds["x"].values[1] - ds["x"].values[0])) / 4
        truth = truth.reindex(y=ds["y"].values, x=ds["x"].values, method="nearest", tolerance=step, fill_value=-1)
    try:
        # a pass is stamped with its data-take segment start, a fraction of a second from the
        # simulator's first-line time: the truth of the same pass is the nearest within a minute
        truth = truth.sel(time=ds["time"].values, method="nearest", tolerance=np.timedelta64(60, "s"))
    except KeyError as exc:
        raise CubeError(f"{TRUTH_VAR} lacks some of the cube's dates: {exc}", path) from exc
    return truth.assign_coords(time=ds["time"].values, y=ds["y"].values, x=ds["x"].values)


def summarise(per_date: np.ndarray, stamps: pd.DatetimeIndex, names: list[str],
              orbits: Sequence[str] | None = None) -> dict[str, Any]:
    """Scores overall, per scene (ISO date), per month (``YYYY-MM``) and, given each date's
    orbit (e.g. ``"24 DESCENDING"``), per relative orbit, from (time, K, K) counts."""
    months = stamps.strftime("%Y-%m")
    out = {
        "overall": scores(per_date.sum(axis=0), names),
        "per_scene": {s.isoformat(): scores(cm, names) for s, cm in zip(stamps, per_date, strict=True)},
        "per_month": {m: scores(per_date[months == m].sum(axis=0), names) for m in sorted(set(months))},
    }
    if orbits is not None:
        orbit_of = np.asarray(orbits)
        out["per_orbit"] = {o: scores(per_date[orbit_of == o].sum(axis=0), names) for o in sorted(set(orbits))}
    return out


def date_orbits(ds: xr.Dataset) -> list[str] | None:
    """Each time step's relative orbit and direction (``"24 DESCENDING"``), where the cube has them."""
    if "relative_orbit" not in ds.coords:
        return None
    directions = ds["pass_direction"].values if "pass_direction" in ds.coords else [""] * ds.sizes["time"]
    return [f"{int(o)} {d}".strip() for o, d in zip(ds["relative_orbit"].values, directions, strict=True)]


def sampled_confusion(
    sample: Sample, predicted: np.ndarray, totals: np.ndarray, time_index: Sequence[int], n_classes: int
) -> np.ndarray:
    """Estimated full-map confusion matrices ``(date, K, K)`` from a stratified sample.

    Row ``k`` (reference class) of the sample is weighted by ``totals[k] / n_k``, its sampling
    fraction's inverse; rounded to whole pixels. With the whole test set as the sample every
    weight is 1 and the result is exact.
    """
    y = sample.y.astype(np.int64)
    sampled = np.bincount(y, minlength=n_classes)
    weights = np.divide(totals, sampled, out=np.zeros(n_classes), where=sampled > 0)
    pred = np.asarray(predicted, dtype=np.int64)
    ok = (pred >= 0) & (pred < n_classes)
    out = np.zeros((len(time_index), n_classes, n_classes))
    for i, t in enumerate(time_index):
        rows = ok & (sample.time_index == t)
        out[i] = np.bincount(
            y[rows] * n_classes + pred[rows], weights=weights[y[rows]], minlength=n_classes * n_classes
        ).reshape(n_classes, n_classes)
    return np.rint(out).astype(np.int64)


def predict_rows(model: Any, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class of each row of ``X`` (n, n_inputs), by the same code as the class maps."""
    block = np.ascontiguousarray(X.T)[None, :, None, :]
    usable = np.ones((1, 1, 1, X.shape[0]), dtype=bool)
    return predict_block(block, usable, model, classes)[0, classes.size, 0].astype(np.int64)


def _stored_maps_current(ds: xr.Dataset, store: StoreLike, test_idx: np.ndarray, ref: ModelRef) -> bool:
    """Did ``predict`` write ``class`` on every test date with this very model file?"""
    if CLASS_VAR not in ds.data_vars or MODEL_KEY_COORD not in ds.coords:
        return False
    keys = ds[MODEL_KEY_COORD].values[test_idx]
    return bool(done(store, PREDICT_STAGE)[test_idx].all() and (keys == ref.key).all())


@dataclass
class EvalReport:
    """Scores per model and reference (``labels``, ``truth``); files written."""

    test_dates: list[str]
    scores: dict[str, dict[str, Any]]
    best: str
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    method: dict[str, str] = field(default_factory=dict)
    #: wall time of the parts: ``stored_maps`` and ``sample`` (reading test dates), ``classify_sample``
    #: (the sampled learners, a fixed number of pixels), ``figures`` (incl. ≤ 4 class-map plots)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    #: per chart class on the first test date, as stored: HH slope (dB/deg) and near − far
    #: difference (dB), HV local std (dB) per incidence band (:func:`diagnostics.radiometry_by_class`)
    radiometry: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self, reference: str = "truth") -> dict[str, dict[str, float]]:
        """``{model: {overall_accuracy, kappa}}`` against ``reference`` (``labels`` if no truth)."""
        out = {}
        for model, by_ref in self.scores.items():
            ref = by_ref.get(reference) or by_ref["labels"]
            out[model] = {k: ref["overall"][k] for k in ("overall_accuracy", "kappa")}
        return out


def _radiometry_figures(ds: xr.Dataset, labels: xr.DataArray, t: int, classes: np.ndarray, names: list[str],
                        out: Path, files: list[str]) -> dict[str, Any]:
    """HH against incidence and HV texture per subswath for each chart class on date ``t``, as the
    cube stores them (with its radiometric corrections, named in the panel titles); their numbers."""
    from seaice_dask import diagnostics as dg

    pols = [p for p in (("hh", "hv"), ("vv", "vh")) if {f"sigma0_{p[0]}", f"sigma0_{p[1]}"} <= set(ds.data_vars)]
    if not pols:  # a single-polarisation cube: no cross-pol texture to check
        return {}
    stats = dg.radiometry_by_class(ds, labels, t, dict(zip(classes.tolist(), names)), pols[0])
    if not stats:
        return {}
    radiometry = radiometry_of(ds.attrs)
    case = f"{pd.Timestamp(ds['time'].values[t]):%Y-%m-%d}, incidence {radiometry['incidence_correction']['method']}, " \
           f"textural noise {'on' if radiometry['textural_noise'] else 'off'}"
    co, cross = (p.upper() for p in pols[0])
    files.append(str(dg.plot_incidence_dependence({case: {n: s["hh_profile"] for n, s in stats.items()}},
                                                  out / "radiometry_copol_incidence.png", pol=co)))
    files.append(str(dg.plot_texture_by_subswath({case: {n: s["hv_local_std_db_by_band"] for n, s in stats.items()}},
                                                 out / "radiometry_crosspol_texture.png", pol=cross)))
    return {n: {k: v for k, v in s.items() if k != "hh_profile"} for n, s in stats.items()}


def _map_figures(ds: xr.Dataset, test: xr.Dataset, labels: xr.DataArray, test_idx: np.ndarray,
                 stamps: pd.DatetimeIndex, windows: list[Any], classes: np.ndarray, names: list[str],
                 out: Path) -> tuple[dict[str, Any], list[str]]:
    """The radiometry figures of the first test date and the class maps of the first four: their
    numbers and files."""
    from seaice_dask import report as rep

    files: list[str] = []
    radiometry = _radiometry_figures(ds, labels, int(test_idx[0]), classes, names, out, files)
    if CLASS_VAR in ds.data_vars:
        grid = cube_grid(ds)
        for i, stamp in enumerate(stamps[:4]):
            if windows[i] is None:
                continue
            cls = np.asarray(crop(test[CLASS_VAR].isel(time=i), windows[i]).values)
            files.append(str(rep.plot_class_map(
                cls, grid.window(*windows[i]), out / f"class_{stamp.strftime('%Y%m%dT%H%M%S')}.png",
                title=f"{stamp:%Y-%m-%d %H:%M} UTC", class_names=names,
            )))
    return radiometry, files


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
    scored (optimistic: training pixels are included). The model that ``predict`` applied is
    scored on its stored maps, the others on a stratified sample (module docs). Writes
    ``scores.json`` and figures to ``cfg.paths.reports``.
    """
    from seaice_dask import report as rep

    start = clock.perf_counter()
    store = cube_store(cfg)
    ds = open_cube(store)
    models_dir = Path(cfg.paths.models)
    if not (models_dir / REPORT_NAME).is_file():
        raise CubeError("no train_report.json (run `seaice-dask train` first)", models_dir)
    train_report = json.loads((models_dir / REPORT_NAME).read_text())
    if cfg.model.validation == "random":
        warnings.warn("validation=random: scoring every date, training pixels included (optimistic)", UserWarning, stacklevel=2)
        test_idx = np.arange(ds.sizes["time"])
    else:
        test_idx = np.asarray(train_report.get("test_index") or split_dates(ds["time"].values, cfg.model.test_fraction, date_orbits(ds))[1])
    test = ds.isel(time=test_idx)
    stamps = pd.DatetimeIndex(test["time"].values)
    classes = np.asarray(sorted(train_report["classes"]))
    names = train_report["class_names"]
    k = len(classes)
    usable = usable_mask(test)
    truth_path = Path(truth_path) if truth_path else Path(cfg.paths.workdir) / TRUTH_STORE
    season_refs = {"labels": ds["labels"]}  # every date: samples are drawn from the cube as stored
    if truth_path.exists():
        season_refs["truth"] = open_truth(truth_path, ds)
    references = {name: ref.isel(time=test_idx) for name, ref in season_refs.items()}
    inputs = list(cfg.model.inputs)
    columns = feature_names(test, inputs)
    smooth_px = smoothing_pixels(cfg.model.smoothing_m, cube_grid(ds).resolution)
    radiometry = radiometry_of(ds.attrs)
    refs = {learner: checked_model_ref(models_dir / file, columns, radiometry)[0]
            for learner, file in train_report["models"].items()}
    chosen = train_report["best"]
    method = {}
    lazy: dict[tuple[str, str], da.Array] = {}
    windows, blocks = step_windows(test), step_blocks(test)
    for learner, ref in refs.items():
        if learner == chosen and _stored_maps_current(ds, store, test_idx, ref):
            def predicted(i: int) -> xr.DataArray:
                return crop(test[CLASS_VAR].isel(time=[i]), windows[i])
            method[learner] = "stored class maps"
        elif learner == chosen or cfg.model.eval_full_maps:
            def predicted(i: int, ref=ref) -> xr.DataArray:
                return predict_dataset(crop(test.isel(time=[i]), windows[i]), ref, inputs, classes,
                                       smooth_px=smooth_px, blocks=blocks[i])[CLASS_VAR]
            method[learner] = "full maps"
        else:
            continue
        for ref_name, reference in references.items():
            lazy[learner, ref_name] = windowed_confusion(reference, predicted, usable, windows, k, blocks)
    out = Path(cfg.paths.reports)
    keys = list(lazy)
    phases = {}
    # the radiometry and class-map figures need only the cube: drawn in a thread of their own while
    # the scores are computed on the workers (this thread then only waits; the figures are
    # separate matplotlib Figures, never pyplot)
    drawing = ThreadPoolExecutor(1)
    drawn = drawing.submit(_map_figures, ds, test, season_refs["labels"], test_idx, stamps, windows, classes, names,
                           out) if figures else None  # fmt: skip
    try:
        tick = clock.perf_counter()
        (counts,) = compute([lazy[key] for key in keys], client=client, progress=progress)
        phases["stored_maps"], tick = clock.perf_counter() - tick, clock.perf_counter()
        per_date = {key: np.asarray(c) for key, c in zip(keys, counts, strict=True)}
        sampled = [learner for learner in refs if learner not in method]
        if sampled:
            per_class = cfg.model.eval_sample_per_class
            run = lambda graph: compute(graph, client=client, progress=progress)  # noqa: E731
            refs_sampled = stratified_samples(
                ds, inputs, test_idx, {n: r.reset_coords(drop=True) for n, r in season_refs.items()},
                per_class=per_class, n_classes=k, seed=cfg.model.seed, compute=run,
            )
            phases["sample"], tick = clock.perf_counter() - tick, clock.perf_counter()
            # the references' samples share most pixels: classify each distinct pixel once
            pixel_keys = np.concatenate([sample.key for sample, _ in refs_sampled.values()])
            _, first, where = np.unique(pixel_keys, return_index=True, return_inverse=True)
            X_all = np.concatenate([sample.X for sample, _ in refs_sampled.values()])[first]
            if client is not None:  # learners and row chunks in parallel on the workers, each chunk sent once
                chunks = client.scatter(np.array_split(X_all, max(1, -(-len(X_all) // EVAL_CHUNK_ROWS))))
                futures = [[client.submit(predict_rows, refs[m], X, classes, pure=False) for X in chunks] for m in sampled]
                predicted = [np.concatenate(parts) for parts in client.gather(futures)]
            else:
                predicted = [predict_rows(refs[m], X_all, classes) for m in sampled]
            offsets = np.cumsum([0] + [len(sample) for sample, _ in refs_sampled.values()])
            for learner, classes_of_pixels in zip(sampled, predicted, strict=True):
                for i, (ref_name, (sample, totals)) in enumerate(refs_sampled.items()):
                    rows = classes_of_pixels[where[offsets[i]:offsets[i + 1]]]
                    per_date[learner, ref_name] = sampled_confusion(sample, rows, totals, test_idx, k)
            for learner in sampled:
                method[learner] = f"stratified sample, ≤ {per_class} px per class, per pixel"
            phases["classify_sample"], tick = clock.perf_counter() - tick, clock.perf_counter()
        results: dict[str, dict[str, Any]] = {}
        orbits = date_orbits(test)
        for (learner, ref_name), matrices in sorted(per_date.items()):
            results.setdefault(learner, {})[ref_name] = summarise(matrices, stamps, names, orbits)
        primary = "truth" if "truth" in references else "labels"
        best = max(results, key=lambda m: (results[m][primary]["overall"]["overall_accuracy"], results[m][primary]["overall"]["kappa"]))
        report = EvalReport([s.isoformat() for s in stamps], results, best, method=method, phase_seconds=phases)
        if figures:  # one thread draws at a time: matplotlib's artists are not thread-safe
            report.radiometry, map_files = drawn.result()
            report.files.append(str(rep.plot_scores(report.table(primary), out / "scores.png", title=f"test dates, against {primary}")))
            report.files.append(str(rep.plot_confusion(
                np.asarray(results[best][primary]["overall"]["confusion"]), out / f"confusion_{best}.png",
                title=f"{best} against {primary}", class_names=names,
            )))
            monthly = {m: {mo: s["overall_accuracy"] for mo, s in r[primary]["per_month"].items()} for m, r in results.items()}
            report.files.append(str(rep.plot_monthly(monthly, out / "accuracy_per_month.png", metric="overall accuracy")))
            report.files += map_files
    finally:
        drawing.shutdown()
    phases["figures"] = clock.perf_counter() - tick
    if train_report.get("best") in results:  # the model card of the model `predict` uses
        add_monthly_scores(cfg.paths.models, train_report["best"], results[train_report["best"]][primary]["per_month"], primary)
    report.seconds = clock.perf_counter() - start
    report.files.append(str(rep.write_json(report.to_dict(), out / "scores.json")))
    return report
