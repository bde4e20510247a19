"""Production inference against its reference (scikit-learn), the compiled-artefact cache, model
selection and sampled evaluation (``seaice_dask.learn.inference``, ``train``, ``evaluate``)."""

from __future__ import annotations

import pickle
import shutil
import warnings

import numpy as np
import pytest
import skops.io as sio
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from seaice_dask.config import PipelineConfig
from seaice_dask.cube import open_cube
from seaice_dask.errors import ModelError
from seaice_dask.learn import evaluate, predict, train
from seaice_dask.learn.evaluate import predict_rows
from seaice_dask.learn.inference import (
    DenseNetwork,
    ModelRef,
    artefact_path,
    compile_model,
    model_key,
    production_model,
    resolve,
)
from seaice_dask.learn.models import fit_learner
from seaice_dask.learn.persist import save_model
from seaice_dask.learn.predict import checked_model_ref
from seaice_dask.learn.samples import draw_samples
from seaice_dask.learn.synthetic import make_synthetic_cube
from seaice_dask.learn.train import select_model

INPUTS = ["glcm_hh", "glcm_hv", "sigma0_hh", "sigma0_hv", "incidence"]


def _assert_matches_reference(production, reference, X):
    """Issue 12's contract: probabilities within 1e-5, identical argmax."""
    p_fast = production.predict_proba(X)
    p_ref = reference.predict_proba(X)
    np.testing.assert_allclose(p_fast, p_ref, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(p_fast, axis=1), np.argmax(p_ref, axis=1))


def _mlp(X, y, hidden=(16, 8), activation="relu", seed=0) -> Pipeline:
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation=activation, max_iter=60, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 60 iterations: irrelevant here
        return Pipeline([("scale", StandardScaler()), ("clf", clf)]).fit(X, y)


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    path = tmp_path_factory.mktemp("inference") / "cube.zarr"
    make_synthetic_cube(path, n_times=6, size=48, chunk=24, seed=3)
    return path


@pytest.fixture(scope="module")
def cube_sample(cube):
    ds = open_cube(cube)
    return draw_samples(ds, INPUTS, range(6), cap_per_class=2000, n_classes=4, seed=0)


# ------------------------------------------------------------------- against the reference
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic"])
def test_dense_network_matches_scikit_learn_on_random_inputs(activation):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 13)) * rng.uniform(0.1, 30, 13) + rng.normal(0, 20, 13)
    y = (X[:, 0] + X[:, 3] * 0.1 > 0).astype(int) + 2 * (X[:, 5] > X[:, 5].mean())
    model = _mlp(X, y, activation=activation)
    network = compile_model(model)
    assert isinstance(network, DenseNetwork)
    wide = rng.normal(size=(100_000, 13)) * rng.uniform(0.1, 60, 13) + rng.normal(0, 20, 13)
    _assert_matches_reference(network, model, wide.astype(np.float32))


def test_dense_network_binary_model():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 5))
    model = _mlp(X, (X[:, 0] > 0).astype(int))
    _assert_matches_reference(compile_model(model), model, rng.normal(size=(20_000, 5)))


def test_near_ties_are_decided_in_double_precision():
    """Rows within 1e-5 of the decision boundary, where float32 alone could flip the argmax."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 4))
    model = _mlp(X, (X[:, 0] + X[:, 1] > 0).astype(int) + 2 * (X[:, 2] > 0))
    network = compile_model(model)
    first = model.predict(X[:1])[0]
    a, b = X[0], next(x for x in X if model.predict(x[None])[0] != first)
    ties = []
    for _ in range(300):  # bisect towards the boundary, then keep the points just short of it
        lo, hi = a.copy(), b.copy()
        for _ in range(28):
            mid = (lo + hi) / 2
            (lo if model.predict(mid[None])[0] == first else hi)[:] = mid
        ties += [lo, hi]
        b = b + rng.normal(0, 0.3, b.size)
    ties = np.array(ties)
    top2 = np.sort(model.predict_proba(ties), axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    ties = ties[(gap > 1e-12) & (gap < 1e-5)]  # below float32 resolution, above float64 noise
    assert len(ties) >= 100
    _assert_matches_reference(network, model, ties)


@pytest.mark.parametrize("learner", ["mlp", "rf", "sgd"])
def test_production_path_matches_reference_on_cube_inputs(learner, cube_sample, tmp_path):
    model = fit_learner(learner, cube_sample.X, cube_sample.y, [0, 1, 2, 3], seed=0)
    path = save_model(model, tmp_path / f"{learner}.skops", learner=learner,
                      feature_names=cube_sample.feature_names, classes=[0, 1, 2, 3])
    production = production_model(path)
    assert isinstance(production, DenseNetwork) == (learner == "mlp")
    _assert_matches_reference(production, model, cube_sample.X)
    # as train measures it, from the model in memory (its artefact built from it, not the file)
    artefact_path(path, model_key(path)).unlink(missing_ok=True)
    from_memory = production_model(path, fitted=model)
    np.testing.assert_array_equal(from_memory.predict_proba(cube_sample.X), production.predict_proba(cube_sample.X))
    # and the class maps' block code gives the reference's classes
    np.testing.assert_array_equal(
        predict_rows(ModelRef.of(path), cube_sample.X, np.arange(4)), model.predict(cube_sample.X)
    )


# ---------------------------------------------------------------------- artefact and errors
def _save_mlp(path, seed, sample):
    model = fit_learner("mlp", sample.X, sample.y, [0, 1, 2, 3], seed=seed)
    return save_model(model, path, learner="mlp", feature_names=sample.feature_names, classes=[0, 1, 2, 3])


def test_changed_model_invalidates_the_compiled_artefact(cube_sample, tmp_path):
    path = _save_mlp(tmp_path / "mlp.skops", 0, cube_sample)
    first = production_model(path)
    key = model_key(path)
    assert artefact_path(path, key).is_file()
    _save_mlp(path, 1, cube_sample)  # retrained: same name, other weights
    new_key = model_key(path)
    assert new_key != key
    second = production_model(path)
    assert artefact_path(path, new_key).is_file() and not artefact_path(path, key).exists()
    assert not np.allclose(first.weights[0], second.weights[0])
    reference = sio.load(path, trusted=sio.get_untrusted_types(file=path))["model"]
    _assert_matches_reference(second, reference, cube_sample.X)
    # a missing or damaged artefact is rebuilt
    artefact_path(path, new_key).unlink()
    production_model(path)
    assert artefact_path(path, new_key).is_file()
    artefact_path(path, new_key).write_bytes(b"not an npz")
    _assert_matches_reference(production_model(path), reference, cube_sample.X)


def test_worker_cache_loads_each_model_once(cube_sample, tmp_path):
    path = _save_mlp(tmp_path / "mlp.skops", 0, cube_sample)
    ref = ModelRef.of(path)
    assert resolve(ref) is resolve(ref)
    assert len(pickle.dumps(ref)) < 500  # what a task carries


def test_corrupt_or_foreign_model_file_is_a_model_error(cube_sample, tmp_path):
    corrupt = tmp_path / "corrupt.skops"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="corrupt.skops"):
        checked_model_ref(corrupt, cube_sample.feature_names)
    with pytest.raises(ModelError, match="corrupt.skops"):
        production_model(corrupt)
    foreign = tmp_path / "foreign.skops"
    sio.dump({"weights": np.ones(3)}, foreign)
    with pytest.raises(ModelError, match="foreign.skops.*not a seaice-dask model"):
        production_model(foreign)
    with pytest.raises(ModelError, match="missing.skops"):
        ModelRef.of(tmp_path / "missing.skops")


# ------------------------------------------------------------------------------- selection
def test_select_model_by_accuracy_or_most_accurate_fast_learner():
    scores = {"rf": {"overall_accuracy": 0.873, "kappa": 0.8}, "mlp": {"overall_accuracy": 0.850, "kappa": 0.79},
              "sgd": {"overall_accuracy": 0.70, "kappa": 0.6}, "hgb": {"overall_accuracy": 0.873, "kappa": 0.81}}
    speed = {"rf": 9e4, "mlp": 2e6, "sgd": 2e7, "hgb": 8e4}
    assert select_model(scores, speed, "accuracy", 1e6) == "hgb"  # kappa breaks the tie
    assert select_model(scores, speed, "balanced", 1e6) == "mlp"
    assert select_model(scores, speed, "balanced", 1e8) == "hgb"  # none that fast: most accurate


# ------------------------------------------------------------------------------- evaluation
def _config(workdir, **model) -> PipelineConfig:
    return PipelineConfig.model_validate({"paths": {"workdir": str(workdir)}, "model": model}).resolve(workdir)


def test_evaluate_on_whole_test_set_sample_equals_full_maps(cube, tmp_path):
    shutil.copytree(cube, tmp_path / "cube.zarr")
    cfg = _config(tmp_path, learners=["gnb", "mlp", "rf"], cap_per_class=300, select="accuracy")
    report = train(cfg, progress=False)
    assert set(report.predict_px_per_s) == {"gnb", "mlp", "rf"}
    predict(cfg, progress=False)
    cfg.model.eval_sample_per_class = None  # the sample is every test pixel
    sampled = evaluate(cfg, progress=False, figures=False)
    assert sampled.method[report.best] == "stored class maps"
    assert all(m.startswith("stratified sample") for k, m in sampled.method.items() if k != report.best)
    cfg.model.eval_full_maps = True
    full = evaluate(cfg, progress=False, figures=False)
    assert set(full.method.values()) <= {"stored class maps", "full maps"}
    for learner in report.models:
        assert sampled.scores[learner]["labels"] == full.scores[learner]["labels"], learner
    # a small sample estimates the same scores (stratified weights), close to the full maps
    cfg.model.eval_full_maps = False
    cfg.model.eval_sample_per_class = 200
    small = evaluate(cfg, progress=False, figures=False)
    for learner in report.models:
        a = small.scores[learner]["labels"]["overall"]
        b = full.scores[learner]["labels"]["overall"]
        assert abs(a["n"] - b["n"]) <= 4  # class totals are exact; rounding only
        assert abs(a["overall_accuracy"] - b["overall_accuracy"]) < 0.06, learner


def test_stale_class_maps_are_not_scored(cube, tmp_path):
    """After retraining, the stored maps belong to the old model: the chosen one is re-classified."""
    shutil.copytree(cube, tmp_path / "cube.zarr")
    cfg = _config(tmp_path, learners=["mlp"], cap_per_class=300)
    train(cfg, progress=False)
    predict(cfg, progress=False)
    assert evaluate(cfg, progress=False, figures=False).method["mlp"] == "stored class maps"
    cfg.model.seed = 5
    train(cfg, progress=False)
    assert evaluate(cfg, progress=False, figures=False).method["mlp"] == "full maps"


def test_model_refuses_a_cube_made_with_other_corrections(cube, tmp_path):
    from seaice_dask.cube import set_cube_attrs

    shutil.copytree(cube, tmp_path / "cube.zarr")
    cfg = _config(tmp_path, learners=["gnb"], cap_per_class=100)
    train(cfg, progress=False)
    set_cube_attrs(cfg.paths.store, textural_noise=True)  # as if ingested with the correction on
    with pytest.raises(ModelError, match="gnb.skops") as err:
        predict(cfg, progress=False)
    assert ("trained on inputs made with textural noise off, incidence correction none; this cube's were made "
            "with textural noise on, incidence correction none. Retrain") in str(err.value)
    assert "preprocess.textural_noise: false, preprocess.incidence.correction: none" in str(err.value)
    with pytest.raises(ModelError, match="gnb.skops"):
        evaluate(cfg, progress=False, figures=False)


def test_probabilities_are_stored_as_percent_and_read_as_probabilities(cube, tmp_path):
    """``proba`` is packed as uint8 percent (CF scale 0.01, fill 255): the stored value is the
    model's probability rounded to a percent, xarray reads it back as a probability, and the
    class is the argmax before the rounding."""
    import zarr

    from seaice_dask.learn.persist import load_model
    from seaice_dask.learn.predict import PROBA_FILL, best_model_path, predict_dataset

    shutil.copytree(cube, tmp_path / "cube.zarr")
    cfg = _config(tmp_path, learners=["gnb"], cap_per_class=300)
    train(cfg, progress=False)
    predict(cfg, progress=False)
    stored = zarr.open_group(cfg.paths.store, mode="r")["proba"]
    assert stored.dtype == np.uint8 and stored.fill_value == PROBA_FILL
    ds = open_cube(cfg.paths.store)
    model, meta = load_model(best_model_path(cfg.paths.models))
    want = predict_dataset(ds, model, INPUTS, meta["classes"]).compute()
    percent = np.where(np.isnan(want["proba"].values), PROBA_FILL, np.rint(want["proba"].values * 100)).astype(np.uint8)
    np.testing.assert_array_equal(stored[:], percent)
    got = ds["proba"].values
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want["proba"].values))
    np.testing.assert_allclose(got, want["proba"].values, atol=0.005 + 1e-7)
    np.testing.assert_array_equal(ds["class"].values, want["class"].values)
