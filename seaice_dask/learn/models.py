"""Classifiers: incremental learners trained block by block on the cluster, batch learners on a sample.

Every fitted model is a scikit-learn :class:`~sklearn.pipeline.Pipeline` ``scale → clf`` so that
prediction, persistence and evaluation treat all learners alike.

* Incremental (``sgd``, ``mlp``, ``gnb``): the training sample is cut into row blocks (a dask
  array); a :class:`~sklearn.preprocessing.StandardScaler` is fitted with ``partial_fit`` block
  by block (a chain of tasks, :func:`partial_fit_blocks`), then dask-ml's
  :class:`~dask_ml.wrappers.Incremental` fits the classifier with ``partial_fit`` block by
  block, one task per block on the cluster, for a few epochs (blocks in a seeded random order). Memory per task is one block, whatever the size of
  the training set.
* Batch (``rf`` as in Park et al. 2020, ``hgb``, ``svm`` with an RBF kernel): fitted in one task
  on a capped random subset of the sample (SVC is quadratic in the number of rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
from dask_ml.wrappers import Incremental
from sklearn.base import BaseEstimator, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from seaice_dask.errors import ConfigError, ModelError

INCREMENTAL = ("sgd", "mlp", "gnb")
BATCH = ("rf", "hgb", "svm")
LEARNERS = INCREMENTAL + BATCH

#: Passes over the training blocks per incremental learner (GaussianNB is exact after one).
EPOCHS = {"sgd": 10, "mlp": 30, "gnb": 1}
#: Rows per training block for incremental learners.
BLOCK_ROWS = 4096
#: Largest sample a batch learner is fitted on.
BATCH_MAX_ROWS = {"rf": 200_000, "hgb": 500_000, "svm": 6_000}


def make_estimator(name: str, seed: int = 0) -> BaseEstimator:
    """The unfitted classifier of learner ``name`` (single-threaded: parallelism is dask's)."""
    if name == "sgd":
        return SGDClassifier(loss="log_loss", alpha=1e-4, learning_rate="optimal", random_state=seed)
    if name == "mlp":
        return MLPClassifier(hidden_layer_sizes=(32, 16), alpha=1e-4, learning_rate_init=1e-3, random_state=seed)
    if name == "gnb":
        return GaussianNB()
    if name == "rf":
        return RandomForestClassifier(n_estimators=100, min_samples_leaf=10, n_jobs=1, random_state=seed)
    if name == "hgb":
        return HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=seed)
    if name == "svm":
        # Platt-scaled probabilities, fitted on held-out folds (SVC(probability=True) is deprecated)
        return CalibratedClassifierCV(SVC(kernel="rbf", C=10.0, gamma="scale"), cv=3, ensemble=False)
    raise ConfigError(f"unknown learner {name!r}; choose from {', '.join(LEARNERS)}")


def _blocks(X: np.ndarray, y: np.ndarray, block_rows: int) -> tuple[da.Array, da.Array]:
    if y.size == 0:
        raise ModelError("the training sample is empty: no labelled, valid pixels in the training dates")
    return da.from_array(X, chunks=(block_rows, -1)), da.from_array(y, chunks=(block_rows,))


def _partial_fit(estimator: BaseEstimator, X: np.ndarray) -> BaseEstimator:
    return estimator.partial_fit(X)


def partial_fit_blocks(estimator: BaseEstimator, X: da.Array) -> BaseEstimator:
    """Fit an unsupervised ``estimator`` (e.g. a scaler) with ``partial_fit`` over ``X``'s row blocks.

    The blocks are visited in order by a chain of tasks, each receiving the estimator from the
    previous one, so only one block is in a worker's memory at a time. dask-ml's
    ``Incremental`` insists on a scoring method, which transformers lack, hence this loop.
    """
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    step = dask.delayed(_partial_fit, pure=True)
    fitted = clone(estimator)
    for block in X.to_delayed()[:, 0]:
        fitted = step(fitted, block)
    return dask.compute(fitted)[0]


def epoch_block_order(n_blocks: int, epochs: int, seed: int) -> list[int]:
    """The row blocks visited by ``epochs`` passes, each in its own seeded random order: epoch
    ``e`` shuffles as dask-ml's ``Incremental(shuffle_blocks=True, random_state=seed + e)``."""
    order: list[int] = []
    for epoch in range(epochs):
        blocks = list(range(n_blocks))
        np.random.RandomState(seed + epoch).shuffle(blocks)
        order += blocks
    return order


def fit_incremental(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    classes: Sequence[int],
    *,
    seed: int = 0,
    epochs: int | None = None,
    block_rows: int = BLOCK_ROWS,
) -> Pipeline:
    """Fit scaler and classifier with ``partial_fit`` over row blocks (runs on the active scheduler)."""
    if name not in INCREMENTAL:
        raise ConfigError(f"{name!r} is not an incremental learner ({', '.join(INCREMENTAL)})")
    Xd, yd = _blocks(X, y, block_rows)
    scaler = partial_fit_blocks(StandardScaler(), Xd)
    Xs = Xd.map_blocks(scaler.transform, dtype=np.float64)
    # every epoch in one graph: the blocks in each epoch's order, one after the other (a round
    # trip to the scheduler per epoch cost more than the epoch's arithmetic on small samples)
    order = epoch_block_order(Xd.numblocks[0], epochs or EPOCHS[name], seed)
    model = Incremental(make_estimator(name, seed), shuffle_blocks=False)
    model.fit(da.concatenate([Xs.blocks[i] for i in order]), da.concatenate([yd.blocks[i] for i in order]),
              classes=np.asarray(classes))
    return Pipeline([("scale", scaler), ("clf", model.estimator_)])


def fit_batch(name: str, X: np.ndarray, y: np.ndarray, *, seed: int = 0, max_rows: int | None = None) -> Pipeline:
    """Fit scaler and classifier in memory on at most ``max_rows`` randomly chosen rows."""
    if name not in BATCH:
        raise ConfigError(f"{name!r} is not a batch learner ({', '.join(BATCH)})")
    if y.size == 0:
        raise ModelError("the training sample is empty: no labelled, valid pixels in the training dates")
    limit = max_rows or BATCH_MAX_ROWS[name]
    if y.size > limit:
        rows = np.sort(np.random.default_rng(seed).choice(y.size, limit, replace=False))
        X, y = X[rows], y[rows]
    with threadpool_limits(1):  # one thread per dask task; OpenMP oversubscription is very slow
        return Pipeline([("scale", StandardScaler()), ("clf", clone(make_estimator(name, seed)))]).fit(X, y)


def fit_learner(
    name: str, X: np.ndarray, y: np.ndarray, classes: Sequence[int], *, seed: int = 0, client=None
) -> Pipeline:
    """Fit learner ``name``: incremental ones block by block, batch ones in one cluster task."""
    if name in INCREMENTAL:
        return fit_incremental(name, X, y, classes, seed=seed)
    if client is not None:
        return client.submit(fit_batch, name, X, y, seed=seed, pure=False).result()
    return fit_batch(name, X, y, seed=seed)
