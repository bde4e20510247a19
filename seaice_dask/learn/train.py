"""``train``: sample the labelled cube, fit every configured learner, score, save, pick the best."""

from __future__ import annotations

import re
import time as clock
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from seaice_dask.config import PipelineConfig
from seaice_dask.cube import cube_grid, cube_store, open_cube
from seaice_dask.errors import ConfigError
from seaice_dask.learn._compute import compute
from seaice_dask.learn.evaluate import confusion, date_orbits, scores
from seaice_dask.learn.card import write_model_card
from seaice_dask.learn.inference import production_model
from seaice_dask.learn.persist import SUFFIX, radiometry_of, save_model
from seaice_dask.learn.predict import REPORT_NAME
from seaice_dask.learn.samples import Sample, draw_sample_sets, draw_samples, random_split, split_dates
from seaice_dask.report import SOD4_CLASS_NAMES, write_json

#: Mode and resolution class in product ids (``S1A_EW_GRDM_1SDH_…``).
PRODUCT_KIND = re.compile(r"S1[A-D]_([A-Z]{2})_GRD([MHF])")

#: At most this many rows are timed per learner for its single-thread prediction throughput.
SPEED_ROWS = 50_000
#: Target CPU time of one timed run: slow learners are timed on fewer rows.
SPEED_SECONDS = 0.05


def class_ids(cfg: PipelineConfig) -> tuple[list[int], list[str]]:
    """Class ids and names of the configured chart scheme."""
    if cfg.charts.scheme == "sod4":
        return list(range(len(SOD4_CLASS_NAMES))), list(SOD4_CLASS_NAMES)
    raise ConfigError(f"charts.scheme {cfg.charts.scheme!r} is not supported by the classifiers yet")


@dataclass
class TrainReport:
    """What ``train`` did: samples, per-learner scores on the test sample, files, timings."""

    validation: str
    train_dates: list[str]
    test_dates: list[str]
    train_index: list[int]
    test_index: list[int]
    feature_names: list[str]
    classes: list[int]
    class_names: list[str]
    n_train: int
    n_test: int
    train_class_counts: list[int]
    models: dict[str, str] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    predict_px_per_s: dict[str, float] = field(default_factory=dict)
    sample_seconds: float = 0.0
    select: str = "accuracy"
    best: str = ""
    best_model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(values: np.ndarray) -> list[str]:
    return [t.isoformat() for t in pd.DatetimeIndex(values)]


def train(cfg: PipelineConfig, client: Any = None, *, progress: bool = True) -> TrainReport:
    """Train ``cfg.model.learners`` on the cube; models and ``train_report.json`` go to ``paths.models``.

    Samples: class-balanced (``model.balanced``), at most ``model.cap_per_class`` pixels per class
    spread over the training dates. Validation ``temporal`` holds out whole dates
    (:func:`~seaice_dask.learn.samples.split_dates`); ``random`` splits pixels (warns: optimistic).
    Each learner's single-thread prediction throughput (its production path, px/s) is measured
    next to its scores; ``best``, the model ``predict`` uses, is chosen by ``model.select``
    (:func:`select_model`).
    """
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    m = cfg.model
    classes, names = class_ids(cfg)
    ds = open_cube(cube_store(cfg))
    times = ds["time"].values
    run = lambda graph: compute(graph, client=client, progress=progress)  # noqa: E731
    start = clock.perf_counter()
    kw = {"n_classes": len(classes), "seed": m.seed, "compute": run}
    if m.validation == "temporal":
        train_idx, test_idx = split_dates(times, m.test_fraction, date_orbits(ds))
        console.print(f"sampling {len(train_idx)} training and {len(test_idx)} test dates")
        train_s, test_s = draw_sample_sets(ds, m.inputs, [(train_idx, m.balanced), (test_idx, False)],
                                           cap_per_class=m.cap_per_class, **kw)  # fmt: skip
    else:
        train_idx = test_idx = np.arange(times.size)
        console.print(f"sampling {times.size} dates (random pixel split)")
        both = draw_samples(ds, m.inputs, train_idx, cap_per_class=m.cap_per_class, balanced=m.balanced, **kw)
        train_s, test_s = random_split(both, m.test_fraction, m.seed)
    report = TrainReport(
        validation=m.validation, train_dates=_iso(times[train_idx]), test_dates=_iso(times[test_idx]),
        train_index=[int(i) for i in train_idx], test_index=[int(i) for i in test_idx],
        feature_names=train_s.feature_names, classes=classes, class_names=names,
        n_train=len(train_s), n_test=len(test_s), train_class_counts=train_s.class_counts(len(classes)).tolist(),
        sample_seconds=clock.perf_counter() - start,
    )
    console.print(f"sample: {len(train_s)} training pixels {report.train_class_counts}, {len(test_s)} test pixels")
    grid = cube_grid(ds).to_attrs()
    pipeline = pipeline_record(cfg, ds, train_s)
    models_dir = Path(cfg.paths.models)
    # here, not at the top: the learners' module imports scikit-learn's estimators and dask-ml
    # (seconds), which a worker that only samples the cube or applies a model never needs
    from seaice_dask.learn.models import fit_learner

    def fit(learner: str) -> tuple[Any, float]:
        t0 = clock.perf_counter()
        return fit_learner(learner, train_s.X, train_s.y, classes, seed=m.seed, client=client), clock.perf_counter() - t0

    # every learner at once: batch fits are one task each, incremental ones a chain of small
    # computations, so one alone leaves workers idle; each is scored and saved as it comes
    console.print(f"fitting {', '.join(m.learners)}")
    with ThreadPoolExecutor(max(len(m.learners), 1)) as pool:
        fitted = zip(m.learners, pool.map(fit, m.learners), strict=True)
        for learner, (model, report.fit_seconds[learner]) in fitted:
            report.scores[learner] = _score(model, test_s, len(classes), names)
            path = save_model(
                model, models_dir / f"{learner}{SUFFIX}", learner=learner, feature_names=train_s.feature_names,
                classes=classes, grid=grid, radiometry=radiometry_of(ds.attrs),
                extra={"train_dates": report.train_dates, "inputs": list(m.inputs), "validation": m.validation,
                       "pipeline": pipeline},
            )
            report.models[learner] = path.name
            report.predict_px_per_s[learner] = throughput(production_model(path, fitted=model), test_s.X if len(test_s) else train_s.X)
            s = report.scores[learner]
            console.print(
                f"{learner:4s} OA {s['overall_accuracy']:.3f}  kappa {s['kappa']:.3f}  "
                f"{report.predict_px_per_s[learner] / 1e6:.2f} M px/s per thread  (fit {report.fit_seconds[learner]:.1f} s)"
            )
    if not report.models:
        raise ConfigError("model.learners is empty")
    report.select = m.select
    report.best = select_model(report.scores, report.predict_px_per_s, m.select, m.select_min_px_per_s)
    report.best_model = report.models[report.best]
    console.print(f"chosen for prediction ({m.select}): {report.best}")
    write_json(report.to_dict(), models_dir / REPORT_NAME)
    write_model_card(models_dir, report, pipeline)
    return report


def pipeline_record(cfg: PipelineConfig, ds: Any, sample: Sample) -> dict[str, Any]:
    """How the training cube was made, as :mod:`seaice_dask.classify` needs it to make the same
    inputs from a new scene: the grid (bounds as built), preprocessing, GLCM settings, class
    scheme, smoothing, the products trained on and the incidence range seen in training."""
    grid = cube_grid(ds)
    ids = " ".join(str(v) for v in ds["product_id"].values) if "product_id" in ds.coords else ""
    kinds = sorted({f"{mode}_GRD{res}" for mode, res in PRODUCT_KIND.findall(ids)})
    column = sample.feature_names.index("incidence") if "incidence" in sample.feature_names else None
    angles = sample.X[:, column] if column is not None and len(sample) else np.array([])
    return {
        "grid": {**cfg.grid.model_dump(mode="json"), "crs": grid.crs, "bounds": list(grid.bounds),
                 "resolution_m": grid.resolution},
        "preprocess": cfg.preprocess.model_dump(mode="json"),
        "features": cfg.features.model_dump(mode="json"),
        "class_scheme": cfg.charts.scheme,
        "smoothing_m": cfg.model.smoothing_m,
        "products": kinds,
        "incidence_range_deg": [float(np.nanmin(angles)), float(np.nanmax(angles))] if angles.size else [None, None],
    }


def throughput(model: Any, X: np.ndarray, rows: int = SPEED_ROWS) -> float:
    """Pixels per second of ``model.predict_proba`` on one thread (best of 3 on at most ``rows``
    rows of ``X``), in the thread's CPU time: other processes on the machine do not count.

    A first run on 1000 rows (also the warm-up) sizes the timed runs to about
    :data:`SPEED_SECONDS` each, so a forest is not timed for seconds on 50 000 rows."""
    rows_X = np.resize(np.asarray(X, dtype=np.float32), (rows, X.shape[1]))
    with threadpool_limits(1):
        first = _timed(model.predict_proba, rows_X[:1000])
        n = int(np.clip(SPEED_SECONDS * 1000 / max(first, 1e-9), 1000, rows))
        best = min(_timed(model.predict_proba, rows_X[:n]) for _ in range(3))
    return n / best


def _timed(fn: Any, *args: Any) -> float:
    start = clock.thread_time()
    fn(*args)
    return clock.thread_time() - start


def select_model(
    scores: dict[str, dict[str, Any]], px_per_s: dict[str, float], how: str, min_px_per_s: float
) -> str:
    """The learner ``predict`` uses: the most accurate (overall accuracy, then kappa) of all
    (``accuracy``) or of those predicting at least ``min_px_per_s`` pixels per second on one
    thread (``balanced``; the most accurate of all when none is that fast).

    Fast and slow learners differ by orders of magnitude (a dense network ~ M px/s, a forest
    ~ 50 k px/s), so the choice does not depend on the noise of the speed measurement.
    """
    rank = lambda k: (scores[k]["overall_accuracy"], scores[k]["kappa"])  # noqa: E731
    fast = [k for k in scores if px_per_s[k] >= min_px_per_s]
    return max(fast if how == "balanced" and fast else scores, key=rank)


def _score(model: Any, sample: Sample, n_classes: int, names: list[str]) -> dict[str, Any]:
    if len(sample) == 0:
        return scores(np.zeros((n_classes, n_classes), dtype=np.int64), names)
    return scores(confusion(sample.y, model.predict(sample.X), n_classes), names)
