"""Production inference: fitted pipelines compiled to compact arrays, loaded once per worker.

A random forest of 100 trees holds tens of MB of nodes, and its ``predict_proba`` is bound by
memory access (about 100 k px/s per thread); a full EW scene at 80 m has about 20 M usable
pixels. A dense network of the same accuracy is a few kB of weights and runs as matrix
products. This module turns a fitted ``Pipeline(scale → MLPClassifier)`` into a
:class:`DenseNetwork`:

* the scaler is folded into the first layer: ``((x − μ)/σ)·W + b = x·(W/σ) + (b − (μ/σ)·W)``;
* layers run in float32 on batches of pixels (``h = relu(Wᵀ·h + b)``, softmax at the end, as
  scikit-learn's ``MLPClassifier._forward_pass``);
* rows whose two largest float32 probabilities are closer than :data:`MARGIN` are recomputed in
  float64, so the argmax equals the float64 reference (scikit-learn) and probabilities agree to
  float32 rounding (< 1e-5; pinned by the tests).

Other learners run through scikit-learn (their reference implementation) unchanged.

The compiled arrays are a cached artefact next to the model file (``.<model>.<key>.npz``, no
pickle), keyed by the SHA-256 of the model file and :data:`FORMAT`: a retrained model gets a
new key, a missing artefact is rebuilt. Workers receive a :class:`ModelRef` (a path and a key,
a few bytes in the task graph) and load the model once per process (:func:`resolve`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seaice_dask.errors import ModelError
from seaice_dask.learn.persist import load_model

FORMAT = "dense-network/1"
#: Rows whose top-two float32 probabilities differ by less than this are recomputed in float64.
MARGIN = 1e-4
#: Pixels per matrix product: hidden layers of a few dozen units stay in the CPU cache.
BATCH = 8192
_ACTIVATIONS = ("relu", "identity", "tanh", "logistic")


def _activate(name: str, h: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(h, 0, out=h)
    if name == "tanh":
        return np.tanh(h, out=h)
    if name == "logistic":
        return np.reciprocal(1 + np.exp(-h, out=h), out=h)
    return h


@dataclass(frozen=True)
class DenseNetwork:
    """A feed-forward classifier as arrays: ``weights[i]`` (n_in, n_out), ``biases[i]`` (n_out,).

    The first layer includes the input scaling. ``predict_proba`` takes raw model inputs.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activation: str
    classes_: np.ndarray

    def _forward(self, X: np.ndarray, dtype: type) -> np.ndarray:
        """Probabilities ``(n_classes, n)`` of the columns of ``X`` ``(n_inputs, n)``.

        Pixels are columns so that every step, the softmax included, runs along contiguous rows.
        """
        h = np.asarray(X, dtype=dtype)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = w.T.astype(dtype) @ h
            h += b.astype(dtype)[:, None]
            if i < last:
                _activate(self.activation, h)
        if h.shape[0] == 1:  # binary: logistic output, as scikit-learn
            p = 1 / (1 + np.exp(-h[0]))
            return np.stack([1 - p, p])
        h -= h.max(axis=0)
        np.exp(h, out=h)
        h /= h.sum(axis=0)
        return h

    def predict_proba_columns(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n_classes, n)`` (float64) of the columns of ``X`` ``(n_inputs, n)``.

        Computed in float32 in batches of :data:`BATCH` pixels (the hidden layers stay in cache);
        columns whose two largest probabilities differ by less than :data:`MARGIN` are
        recomputed in float64.
        """
        n = X.shape[1]
        out = np.empty((self.classes_.size, n), dtype=np.float64)
        for start in range(0, n, BATCH):
            out[:, start:start + BATCH] = self._forward(X[:, start:start + BATCH], np.float32)
        if n and out.shape[0] > 1:
            first = np.max(out, axis=0)
            second = np.full(n, -np.inf)
            seen = np.zeros(n, dtype=bool)
            for row in out:  # largest of the others: the first maximum is skipped once
                top = (row == first) & ~seen
                seen |= top
                np.maximum(second, np.where(top, -np.inf, row), out=second)
            close = np.flatnonzero(first - second < MARGIN)
            if close.size:
                out[:, close] = self._forward(X[:, close], np.float64)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` of the rows of ``X``, as scikit-learn's."""
        return self.predict_proba_columns(np.asarray(X).T).T

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"format": np.array(FORMAT), "activation": np.array(self.activation), "classes": self.classes_}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Any) -> DenseNetwork:
        if str(arrays["format"]) != FORMAT:
            raise ValueError(f"format {arrays['format']} is not {FORMAT}")
        n = sum(1 for k in arrays if k.startswith("w"))
        return cls(
            tuple(np.asarray(arrays[f"w{i}"]) for i in range(n)),
            tuple(np.asarray(arrays[f"b{i}"]) for i in range(n)),
            str(arrays["activation"]),
            np.asarray(arrays["classes"]),
        )


def compile_model(model: Any) -> DenseNetwork | None:
    """The :class:`DenseNetwork` of a fitted ``Pipeline(scale → MLPClassifier)``; None for others."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    scaler, clf = model.steps[0][1], model.steps[1][1]
    if not (isinstance(scaler, StandardScaler) and isinstance(clf, MLPClassifier)):
        return None
    if clf.activation not in _ACTIVATIONS or clf.out_activation_ not in ("softmax", "logistic"):
        return None
    mean = scaler.mean_ if scaler.with_mean else np.zeros(scaler.n_features_in_)
    scale = scaler.scale_ if scaler.with_std else np.ones(scaler.n_features_in_)
    w0 = clf.coefs_[0] / scale[:, None]
    b0 = clf.intercepts_[0] - (mean / scale) @ clf.coefs_[0]
    weights = (w0, *clf.coefs_[1:])
    biases = (b0, *clf.intercepts_[1:])
    return DenseNetwork(
        tuple(np.asarray(w, np.float64) for w in weights),
        tuple(np.asarray(b, np.float64) for b in biases),
        clf.activation,
        np.asarray(clf.classes_),
    )


def model_key(path: str | Path) -> str:
    """SHA-256 of the model file and the compiled format: changes whenever either changes."""
    digest = hashlib.sha256(FORMAT.encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


def artefact_path(path: str | Path, key: str) -> Path:
    path = Path(path)
    return path.with_name(f".{path.stem}.{key}.npz")


def _write_artefact(network: DenseNetwork, path: Path, key: str) -> None:
    """Write the artefact atomically and drop those of earlier versions of the model."""
    target = artefact_path(path, key)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **network.to_arrays())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.stem}.*.npz"):
        if stale != target:
            stale.unlink(missing_ok=True)


def production_model(path: str | Path, key: str | None = None, fitted: Any = None) -> Any:
    """What prediction runs for the model file ``path``: its compiled artefact when the model
    compiles (built and cached on first use), else the fitted scikit-learn pipeline.

    ``fitted``: the model ``path`` was just written from (``train``), used instead of reading it
    back."""
    path = Path(path)
    key = key or model_key(path)
    target = artefact_path(path, key)
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as arrays:
                return DenseNetwork.from_arrays(arrays)
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign: rebuild below
    model = fitted if fitted is not None else load_model(path)[0]
    network = compile_model(model)
    if network is None:
        return model
    _write_artefact(network, path, key)
    return network


@dataclass(frozen=True)
class ModelRef:
    """A model file and its key: what prediction tasks carry instead of the model itself."""

    path: str
    key: str

    @classmethod
    def of(cls, path: str | Path) -> ModelRef:
        path = Path(path).resolve()
        if not path.is_file():
            raise ModelError("model file not found (run `seaice-dask train` first)", path)
        return cls(str(path), model_key(path))


_CACHE: dict[ModelRef, Any] = {}
_LOCK = threading.Lock()


def resolve(ref: ModelRef | Any) -> Any:
    """The production model of ``ref``, loaded once per process (a worker's model cache).

    Anything that is not a :class:`ModelRef` (an in-memory model) is returned unchanged.
    """
    if not isinstance(ref, ModelRef):
        return ref
    with _LOCK:
        model = _CACHE.get(ref)
        if model is None:
            if len(_CACHE) >= 8:  # a worker sees a handful of models per run
                _CACHE.clear()
            model = _CACHE[ref] = production_model(ref.path, ref.key)
    return model
