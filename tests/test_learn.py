"""Sampling, models, persistence, prediction and scores of ``seaice_dask.learn``.

References are independent: scikit-learn's metrics for the scores, the cube's own values for
the samples, rasterio for the GeoTIFFs, the synthetic truth for the acceptance threshold.
"""

from __future__ import annotations

import json
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, precision_recall_fscore_support
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from seaice_dask.config import PipelineConfig
from seaice_dask.cube import open_cube
from seaice_dask.errors import ModelError
from seaice_dask.learn import evaluate, predict, train
from seaice_dask.learn.evaluate import confusion, confusion_per_date, scores
from seaice_dask.learn.models import LEARNERS, fit_learner, partial_fit_blocks
from seaice_dask.learn.persist import load_model, save_model
from seaice_dask.learn.predict import PROBA_DIM, predict_dataset, smooth_probabilities, smoothing_pixels
from seaice_dask.learn.samples import (
    draw_samples,
    feature_names,
    feature_stack,
    random_split,
    split_dates,
    usable_mask,
)
from seaice_dask.learn.synthetic import GLCM_FEATURES, make_synthetic_cube

INPUTS = ["glcm_hh", "glcm_hv", "sigma0_hh", "sigma0_hv", "incidence"]


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    path = tmp_path_factory.mktemp("learn") / "cube.zarr"
    make_synthetic_cube(path, n_times=6, size=48, chunk=24, seed=1)
    return path


def _config(workdir, **model) -> PipelineConfig:
    return PipelineConfig.model_validate({"paths": {"workdir": str(workdir)}, "model": model}).resolve(workdir)


# ---------------------------------------------------------------------------------- samples
def test_feature_stack_names_and_values(cube):
    ds = open_cube(cube)
    stack = feature_stack(ds, INPUTS)
    names = [f"glcm_{p}_{f}" for p in ("hh", "hv") for f in GLCM_FEATURES] + INPUTS[2:]
    assert feature_names(ds, INPUTS) == names
    assert stack.dims == ("time", "column", "y", "x") and isinstance(stack.data, da.Array)
    assert stack.dtype == np.float32
    np.testing.assert_array_equal(stack.sel(column="sigma0_hv").isel(time=2).values, ds["sigma0_hv"].isel(time=2).values)
    np.testing.assert_array_equal(
        stack.sel(column="glcm_hh_ASM").isel(time=1).values, ds["glcm_hh"].sel(feature="ASM").isel(time=1).values
    )


def test_split_dates_temporal():
    times = np.arange("2020-10-01", "2020-10-13", dtype="datetime64[D]")[::-1]  # unsorted input
    train_idx, test_idx = split_dates(times, 0.33)
    assert len(test_idx) == 4 and len(train_idx) == 8
    assert set(train_idx).isdisjoint(test_idx) and set(train_idx) | set(test_idx) == set(range(12))
    test_days = np.sort(times[test_idx])
    assert times.min() not in test_days and times.max() not in test_days  # spread, not one end
    assert np.all(np.diff(test_days).astype(int) >= 2)


def test_split_dates_within_each_orbit():
    """Two orbits whose passes alternate unevenly: every second date overall would hold out one
    orbit in autumn and the other in winter; within each orbit, both cover the season."""
    days = ["2020-10-05", "2020-10-09", "2020-11-28", "2020-12-02", "2021-01-25", "2021-01-27", "2021-03-20", "2021-03-22"]
    times = np.array(days, dtype="datetime64[D]")
    orbits = ["24 DESCENDING", "89 ASCENDING", "24 DESCENDING", "89 ASCENDING",
              "89 ASCENDING", "24 DESCENDING", "89 ASCENDING", "24 DESCENDING"]
    overall = split_dates(times, 0.5)[1]
    assert [orbits[i] for i in overall] == ["89 ASCENDING"] * 2 + ["24 DESCENDING"] * 2  # the confound
    train_idx, test_idx = split_dates(times, 0.5, orbits)
    assert set(train_idx).isdisjoint(test_idx) and set(train_idx) | set(test_idx) == set(range(8))
    for orbit in set(orbits):
        held = [times[i] for i in test_idx if orbits[i] == orbit]
        assert len(held) == 2 and min(held) < np.datetime64("2021-01-01") < max(held)
    assert list(split_dates(times, 0.5, ["24 DESCENDING"] * 8)[1]) == list(overall)  # one orbit: as before


def _candidates(ds, t):
    """All candidate rows of date t (labels >= 0, valid, not land, finite), as a set of tuples."""
    x = feature_stack(ds, INPUTS).isel(time=t).values.reshape(len(feature_names(ds, INPUTS)), -1).T
    lab = ds["labels"].isel(time=t).values.ravel()
    ok = usable_mask(ds).isel(time=t).values.ravel() & (lab >= 0) & np.isfinite(x).all(axis=1)
    return {(int(c), *row.tolist()) for c, row in zip(lab[ok], x[ok], strict=True)}, np.bincount(lab[ok], minlength=4)


def test_samples_stratified_capped_and_drawn_from_candidates(cube):
    ds = open_cube(cube)
    dates = [0, 2, 3]
    cap = 150
    sample = draw_samples(ds, INPUTS, dates, cap_per_class=cap, n_classes=4, balanced=True, seed=3)
    counts = sample.class_counts(4)
    assert counts.min() == counts.max() <= cap and counts.min() > 0.8 * cap  # balanced, capped
    per_scene_cap = -(-cap // len(dates))
    for t in dates:
        candidates, available = _candidates(ds, t)
        rows = sample.time_index == t
        per_class = np.bincount(sample.y[rows], minlength=4)
        assert np.all(per_class <= np.minimum(per_scene_cap, available))
        for c, x in zip(sample.y[rows], sample.X[rows], strict=True):
            assert (int(c), *x.tolist()) in candidates
    assert set(sample.time_index.tolist()) == set(dates)
    again = draw_samples(ds.chunk({"y": 48, "x": 48}), INPUTS, dates, cap_per_class=cap, n_classes=4, seed=3)
    assert len(again) == len(sample)  # same counts whatever the chunking
    same = draw_samples(ds, INPUTS, dates, cap_per_class=cap, n_classes=4, balanced=True, seed=3)
    np.testing.assert_array_equal(same.X, sample.X)  # deterministic


def test_stored_stack_reads_what_xarray_reads(cube):
    """The one-task-per-block reader of the cube equals xarray's stacked variables, and is not
    used for variables that differ from the store's (subset, computed)."""
    ds = open_cube(cube)
    fast = feature_stack(ds, INPUTS)
    assert fast.data.name.startswith("stack-")
    plain = ds.copy()
    plain.encoding = {}
    slow = feature_stack(plain, INPUTS)
    assert not slow.data.name.startswith("stack-") and fast.chunks == slow.chunks
    np.testing.assert_array_equal(fast.values, slow.values)
    changed = feature_stack(ds.assign(sigma0_hh=ds["sigma0_hh"] + 1), INPUTS)
    assert not changed.data.name.startswith("stack-")
    np.testing.assert_array_equal(changed.sel(column="sigma0_hh").values, ds["sigma0_hh"].values + 1)
    subset = feature_stack(ds.isel(time=[4, 1]), INPUTS)
    np.testing.assert_array_equal(subset.values, slow.isel(time=[4, 1]).values)


@pytest.mark.parametrize("balanced", [True, False])
def test_key_bounds_change_nothing_and_fall_back_when_inputs_are_missing(cube, balanced):
    """Blocks cut at a key bound counted from the labels give the same sample as unbounded
    blocks; where missing inputs make the bound fail, the date is flagged and drawn again."""
    from seaice_dask.learn.samples import SHORT, sample_graph

    ds = open_cube(cube)
    kw = {"cap_per_class": 60, "n_classes": 4, "balanced": balanced, "seed": 5}
    bounded = dask.compute(sample_graph(ds, INPUTS, [0, 3, 5], **kw))[0]
    unbounded = dask.compute(sample_graph(ds, INPUTS, [0, 3, 5], **kw, bounded=False))[0]
    for a, b in zip(bounded, unbounded, strict=True):
        assert not a[SHORT].any() and a["y"].size < b["y"].size + 1
        for name in ("X", "y", "key", "t", "totals"):
            np.testing.assert_array_equal(a[name], b[name])
    # inputs missing on 80 % of the labelled pixels: the bound (counted from labels) fails
    rng = np.random.default_rng(0)
    holes = xr.DataArray(rng.random(ds["sigma0_hh"].shape) < 0.8, dims=ds["sigma0_hh"].dims)
    holed = ds.assign(sigma0_hh=ds["sigma0_hh"].where(~holes))
    flagged = dask.compute(sample_graph(holed, INPUTS, [0, 3, 5], **kw))[0]
    assert any(part[SHORT].any() for part in flagged)
    drawn = draw_samples(holed, INPUTS, [0, 3, 5], **kw)
    parts = dask.compute(sample_graph(holed, INPUTS, [0, 3, 5], **kw, bounded=False))[0]
    from seaice_dask.learn.samples import assemble

    expected = assemble(list(parts), feature_names(ds, INPUTS), n_classes=4, balanced=balanced, seed=5, cap_per_class=60)
    np.testing.assert_array_equal(drawn.X, expected.X)
    np.testing.assert_array_equal(drawn.y, expected.y)


def test_unbalanced_samples_keep_class_proportions(cube):
    ds = open_cube(cube)
    everything = draw_samples(ds, INPUTS, [1], cap_per_class=None, n_classes=4, balanced=False)
    _, available = _candidates(ds, 1)
    np.testing.assert_array_equal(everything.class_counts(4), available)
    capped = draw_samples(ds, INPUTS, [1], cap_per_class=100, n_classes=4, balanced=False)
    assert len(capped) == 400
    share, expected = capped.class_counts(4) / 400, available / available.sum()
    assert np.abs(share - expected).max() < 0.1


def test_random_split_warns(cube):
    sample = draw_samples(open_cube(cube), INPUTS, [0], cap_per_class=50, n_classes=4)
    with pytest.warns(UserWarning, match="spatial autocorrelation"):
        train_s, test_s = random_split(sample, 0.25, seed=0)
    assert len(train_s) + len(test_s) == len(sample) and len(test_s) == round(0.25 * len(sample))


# ----------------------------------------------------------------------------------- scores
def test_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 5000)
    y_pred = np.where(rng.random(5000) < 0.7, y_true, rng.integers(0, 4, 5000))
    y_pred[y_pred == 3] = 2  # class 3 never predicted: precision undefined → 0
    cm = confusion(y_true, y_pred, 4)
    np.testing.assert_array_equal(cm, confusion_matrix(y_true, y_pred, labels=range(4)))
    s = scores(cm)
    assert s["overall_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert s["kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=range(4), zero_division=0)
    for i in range(4):
        got = s["per_class"][str(i)]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[i], r[i], f[i], support[i]))


def test_lazy_confusion_per_date_matches_numpy():
    rng = np.random.default_rng(1)
    ref = rng.integers(-1, 4, (3, 30, 40)).astype(np.int8)
    pred = rng.integers(-1, 4, (3, 30, 40)).astype(np.int8)
    usable = rng.random((3, 30, 40)) > 0.2
    wrap = lambda a: xr.DataArray(da.from_array(a, chunks=(1, 16, 16)), dims=("time", "y", "x"))  # noqa: E731
    lazy = confusion_per_date(wrap(ref), wrap(pred), wrap(usable), 4)
    assert isinstance(lazy, da.Array)
    got = lazy.compute()
    for t in range(3):
        m = usable[t]
        np.testing.assert_array_equal(got[t], confusion(ref[t][m], pred[t][m], 4))


# ----------------------------------------------------------------------------- models, files
def _toy(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.int8)
    X = rng.normal(size=(n, 5)).astype(np.float32) + y[:, None] * np.array([2.0, 0, 1.0, 0, 0], dtype=np.float32)
    return X, y


def test_incremental_scaler_equals_batch_scaler():
    X, _ = _toy()
    fitted = partial_fit_blocks(StandardScaler(), da.from_array(X, chunks=(700, 5)))
    ref = StandardScaler().fit(X)
    np.testing.assert_allclose(fitted.mean_, ref.mean_, rtol=1e-10)
    np.testing.assert_allclose(fitted.scale_, ref.scale_, rtol=1e-8)


@pytest.mark.parametrize("learner", LEARNERS)
def test_every_learner_fits_and_persists(learner, tmp_path):
    X, y = _toy()
    model = fit_learner(learner, X, y, [0, 1, 2, 3], seed=0)
    assert accuracy_score(y, model.predict(X)) > 0.6
    names = list("abcde")
    path = save_model(model, tmp_path / f"{learner}.skops", learner=learner, feature_names=names, classes=[0, 1, 2, 3])
    loaded, meta = load_model(path, feature_names=names)
    np.testing.assert_array_equal(loaded.predict_proba(X[:200]), model.predict_proba(X[:200]))
    assert meta["learner"] == learner and meta["classes"] == [0, 1, 2, 3] and "scikit-learn" in meta["versions"]
    with pytest.raises(ModelError, match="missing \\['e'\\], unexpected \\['z'\\]"):
        load_model(path, feature_names=list("abcdz"))
    with pytest.raises(ModelError, match="another order"):
        load_model(path, feature_names=list("edcba"))


def _custom_scale(x):
    return x * 2


def test_untrusted_types_refused(tmp_path):
    X, y = _toy(500)
    model = fit_learner("gnb", X, y, [0, 1, 2, 3])
    model.steps.insert(0, ("custom", FunctionTransformer(_custom_scale)))
    path = save_model(model, tmp_path / "custom.skops", learner="gnb", feature_names=list("abcde"), classes=[0, 1, 2, 3])
    with pytest.raises(ModelError, match="untrusted types"):
        load_model(path)
    loaded, _ = load_model(path, trusted=[f"{__name__}._custom_scale"])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="junk.skops"):
        load_model(tmp_path / "junk.skops")


def test_predict_dataset_masks_and_agrees_with_model(cube):
    ds = open_cube(cube)
    sample = draw_samples(ds, INPUTS, [0, 1], cap_per_class=200, n_classes=4)
    model = fit_learner("gnb", sample.X, sample.y, [0, 1, 2, 3])
    out = predict_dataset(ds.isel(time=[2, 3]), model, INPUTS, [0, 1, 2, 3])
    assert isinstance(out["class"].data, da.Array) and out["proba"].dims == ("time", PROBA_DIM, "y", "x")
    cls, proba = out["class"].values, out["proba"].values
    usable = usable_mask(ds.isel(time=[2, 3])).values
    assert cls.dtype == np.int8
    assert np.all(cls[~usable] == -1) and np.all(np.isnan(proba.transpose(1, 0, 2, 3)[:, ~usable]))
    assert np.all(cls[usable] >= 0)
    np.testing.assert_allclose(proba.sum(axis=1)[usable], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.argmax(np.nan_to_num(proba, nan=-1), axis=1)[usable], cls[usable])
    x = feature_stack(ds, INPUTS).isel(time=3).values.reshape(len(feature_names(ds, INPUTS)), -1).T
    np.testing.assert_array_equal(cls[1].ravel()[usable[1].ravel()], model.predict(x[usable[1].ravel()]))


def test_smoothing_is_a_normalised_box_mean_and_chunk_independent(cube):
    ds = open_cube(cube)
    sample = draw_samples(ds, INPUTS, [0, 1], cap_per_class=200, n_classes=4)
    model = fit_learner("gnb", sample.X, sample.y, [0, 1, 2, 3])
    raw = predict_dataset(ds.isel(time=[2, 3]), model, INPUTS, [0, 1, 2, 3])
    smooth = predict_dataset(ds.isel(time=[2, 3]), model, INPUTS, [0, 1, 2, 3], smooth_px=5)
    p, cls = raw["proba"].values, raw["class"].values
    usable = cls >= 0
    # independent reference: explicit window loop over usable neighbours
    t, y, x = 1, 20, 7
    win = (slice(y - 2, y + 3), slice(x - 2, x + 3))
    ok = usable[t][win]
    expected = np.array([p[t, c][win][ok].mean() for c in range(4)])
    np.testing.assert_allclose(smooth["proba"].values[t, :, y, x], expected, rtol=1e-5)
    assert smooth["class"].values[t, y, x] == np.argmax(expected)
    np.testing.assert_array_equal(smooth["class"].values == -1, ~usable)  # masks unchanged
    rechunked = predict_dataset(ds.isel(time=[2, 3]).chunk({"y": 13, "x": 17}), model, INPUTS, [0, 1, 2, 3], smooth_px=5)
    np.testing.assert_array_equal(rechunked["class"].values, smooth["class"].values)


def test_smoothing_removes_an_isolated_pixel():
    both = np.zeros((1, 3, 9, 9), dtype=np.float32)
    both[0, 0], both[0, 2] = 0.9, 0  # class 0 everywhere …
    both[0, 1] = 0.1
    both[0, :2, 4, 4], both[0, 2, 4, 4] = (0.2, 0.8), 1  # … but one pixel of class 1
    out = smooth_probabilities(both, 3, np.array([0, 1]))
    assert out[0, 2, 4, 4] == 0 and np.isclose(out[0, 1, 4, 4], (8 * 0.1 + 0.8) / 9)
    assert smoothing_pixels(0, 80) == 1 and smoothing_pixels(2000, 400) == 5 and smoothing_pixels(2000, 80) == 25


def test_train_random_split_warns_and_records_every_date(cube, tmp_path):
    import shutil

    shutil.copytree(cube, tmp_path / "cube.zarr")
    cfg = _config(tmp_path, validation="random", learners=["gnb"], cap_per_class=100)
    with pytest.warns(UserWarning, match="spatial autocorrelation"):
        report = train(cfg, progress=False)
    assert report.train_index == report.test_index == list(range(6))
    assert report.n_train + report.n_test == 400 and report.best == "gnb"
    saved = json.loads((cfg.paths.models / "train_report.json").read_text())
    assert saved["best_model"] == "gnb.skops" and (cfg.paths.models / "gnb.skops").is_file()


# ------------------------------------------------------------------------------- acceptance
@pytest.mark.slow
def test_twelve_scenes_temporal_split_best_model_reaches_085_against_truth(tmp_path):
    make_synthetic_cube(tmp_path / "cube.zarr", n_times=12, size=64, chunk=32, seed=0)
    cfg = _config(tmp_path, cap_per_class=1500, learners=list(LEARNERS))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # temporal split: no optimism warning
        report = train(cfg, progress=False)
    assert set(report.scores) == set(LEARNERS) and len(report.test_dates) == 4
    assert set(report.test_dates).isdisjoint(report.train_dates)
    pred = predict(cfg, progress=False)
    assert len(pred.dates) == 12
    stored = open_cube(cfg.paths.store)
    assert stored["class"].dtype == np.int8 and (stored["class"].isel(time=0).values >= -1).all()
    result = evaluate(cfg, progress=False)
    scores_file = json.loads((cfg.paths.reports / "scores.json").read_text())
    assert set(scores_file["scores"]) == set(LEARNERS)  # every model's scores are reported
    for learner, by_ref in scores_file["scores"].items():
        assert {"labels", "truth"} <= set(by_ref)
        assert len(by_ref["truth"]["per_scene"]) == 4 and by_ref["truth"]["per_month"]
    best = result.table("truth")[result.best]
    assert best["overall_accuracy"] >= 0.85, result.table("truth")
    assert all((cfg.paths.reports / name).is_file() for name in ("scores.png", "accuracy_per_month.png",
                                                                 "radiometry_copol_incidence.png", "radiometry_crosspol_texture.png"))
    assert len(result.radiometry) >= 2 and all(np.isfinite(r["hh_slope_db_per_deg"]) for r in result.radiometry.values())


def test_every_epoch_in_one_graph_fits_as_dask_ml_epoch_by_epoch():
    """The incremental learners' one chain over all epochs visits the blocks as dask-ml's
    ``Incremental`` does when called once per epoch (seeded shuffles ``seed + epoch``): the same
    model, coefficient for coefficient."""
    from dask_ml.wrappers import Incremental

    from seaice_dask.learn.models import epoch_block_order, fit_incremental, make_estimator

    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    classes = np.array([0, 1, 2])
    with dask.config.set(scheduler="synchronous"):
        got = fit_incremental("sgd", X, y, classes, seed=3, epochs=4, block_rows=500)
        Xs = da.from_array(X, chunks=(500, -1)).map_blocks(got.named_steps["scale"].transform, dtype=np.float64)
        yd = da.from_array(y, chunks=500)
        model = Incremental(make_estimator("sgd", 3), shuffle_blocks=True, random_state=3).fit(Xs, yd, classes=classes)
        for epoch in range(1, 4):
            model.random_state = 3 + epoch
            model.partial_fit(Xs, yd, classes=classes)
    np.testing.assert_array_equal(got.named_steps["clf"].coef_, model.estimator_.coef_)
    np.testing.assert_array_equal(got.named_steps["clf"].intercept_, model.estimator_.intercept_)
    order = epoch_block_order(6, 4, 3)
    assert len(order) == 24 and all(sorted(order[e * 6:(e + 1) * 6]) == list(range(6)) for e in range(4))
    assert order[:6] != order[6:12]  # each epoch its own order
