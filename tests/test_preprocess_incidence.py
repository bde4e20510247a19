"""Incidence-angle correction and textural noise correction, against known slopes, independent
references and the simulator's truth; lazy, chunk-invariant, with ESA and NERSC denoising."""

from __future__ import annotations

import datetime as dt

import dask
import numpy as np
import pytest
import xarray as xr

from seaice_dask.errors import CubeError
from seaice_dask.grid import default_grid
from seaice_dask.preprocess.incidence import (
    IncidenceCorrection,
    check_compatible,
    correct_db,
    estimate_slopes,
    fit_slope,
    scene_samples,
)
from seaice_dask.preprocess.textural import textural_noise_block, textural_noise_correction, textural_noise_reference
from seaice_dask.simulate import backscatter as bs
from seaice_dask.simulate.truth import Surface, truth_fields

DATE = dt.datetime(2021, 2, 1, 8, 29)


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """One small simulated EW GRDM scene (SAFE) with noise-scaling errors, and its spec."""
    from seaice_dask.safe import open_safe
    from seaice_dask.simulate.safe_writer import SceneSpec, write_scene
    from seaice_dask.simulate.series import noise_errors

    scale, offset = noise_errors(np.random.default_rng(3))
    spec = SceneSpec(start=DATE, absolute_orbit=36146, noise_scale=scale, noise_offset=offset)
    return open_safe(write_scene(tmp_path_factory.mktemp("inc"), spec, fmt="safe")), spec


# --------------------------------------------------------------------------- incidence


def test_correction_removes_a_known_synthetic_slope():
    rng = np.random.default_rng(0)
    theta = rng.uniform(19, 46, 200_000)
    db = -15.0 - 0.25 * (theta - 35.0) + rng.normal(0, 1.5, theta.size)
    assert abs(fit_slope(db, theta) + 0.25) < 0.005
    corrected = correct_db(db, theta, -0.25, 35.0)
    assert abs(np.polyfit(theta, corrected, 1)[0]) < 0.005
    np.testing.assert_allclose(correct_db(np.array([-15.0]), np.array([35.0]), -0.25), [-15.0])
    linear = IncidenceCorrection("linear", 35.0, {"hh": -0.25}).factor("HH", theta) * 10 ** (db / 10)
    np.testing.assert_allclose(10 * np.log10(linear), corrected, atol=1e-9)
    assert IncidenceCorrection().factor("hh", theta) == 1.0


def test_fit_slope_keeps_the_class_mix_out_of_the_slope():
    """Two classes, one slope; the bright class dominates near range. The class intercepts keep
    the composition out of the fit; a pooled straight line is off by far more than 0.02."""
    rng = np.random.default_rng(1)
    theta = rng.uniform(19, 46, 300_000)
    bright = rng.uniform(0, 1, theta.size) < np.interp(theta, [19, 46], [0.9, 0.1])
    db = np.where(bright, -10.0, -18.0) - 0.2 * (theta - 35) + rng.normal(0, 1.0, theta.size)
    db[rng.uniform(size=theta.size) < 0.01] = 5.0  # outliers
    assert abs(fit_slope(db, theta, bright.astype(int)) + 0.2) < 0.01
    assert abs(np.polyfit(theta, db, 1)[0] + 0.2) > 0.1
    assert abs(estimate_slopes({"incidence": theta, "sigma0_hh": db, "sigma0_hv": db - 12}, ["HH", "HV"])
               .slopes_db_per_deg["hh"] + 0.2) < 0.02  # unsupervised classes recover it too


def test_attrs_round_trip_and_mixing_is_refused():
    linear = IncidenceCorrection("linear", 35.0, {"hh": -0.2, "hv": -0.1}, "charts")
    back = IncidenceCorrection.from_attrs(linear.to_attrs())
    assert back.same_as(linear) and back.source == "charts"
    assert IncidenceCorrection.from_attrs(None).method == "none"
    check_compatible(linear, IncidenceCorrection("linear", 35.0, {"hh": -0.2, "hv": -0.1}, "config"), "cube.zarr")
    with pytest.raises(CubeError, match="cube.zarr.*incidence correction"):
        check_compatible(linear, IncidenceCorrection(), "cube.zarr")


def test_estimated_slopes_match_the_simulator(product):
    """Decimated pre-pass samples of a simulated scene; the simulator's surface map as labels:
    per-surface and pooled HH slopes within 0.02 dB/deg of the simulator's."""
    product, spec = product
    grid = default_grid(1000.0)
    surface = truth_fields(grid, DATE).surface.values
    samples = scene_samples(product, ["HH", "HV"], grid, surface == Surface.LAND, surface, block=(3, 3))
    ice = [Surface.YOUNG_ICE, Surface.LEVEL_FYI, Surface.DEFORMED_FYI, Surface.MULTIYEAR_ICE]
    theta, hh, labels = samples["incidence"], samples["sigma0_hh"], samples["labels"]
    found = []
    for s in ice:
        sel = labels == s
        if sel.sum() < 2000:
            continue
        found.append(s)
        slope = fit_slope(hh[sel], theta[sel])
        assert abs(slope - bs.SIGNATURES[s].hh_slope) < 0.02, (s.name, slope)
    assert len(found) >= 2
    classes = np.where(np.isin(labels, found), labels, -1)
    counts = np.array([(classes == s).sum() for s in found])
    expected = np.average([bs.SIGNATURES[s].hh_slope for s in found], weights=counts)
    assert abs(fit_slope(hh, theta, classes) - expected) < 0.02


# --------------------------------------------------------------------------- textural noise


def test_textural_noise_block_matches_the_per_pixel_reference():
    rng = np.random.default_rng(4)
    sigma0 = rng.gamma(10.7, 1e-3 / 10.7, (40, 50)) - 5e-4
    sigma0[:3, :7] = np.nan
    noise = rng.uniform(2e-4, 2e-3, sigma0.shape)
    np.testing.assert_allclose(textural_noise_block(sigma0, noise), textural_noise_reference(sigma0, noise), rtol=1e-5, atol=1e-9)


def test_textural_noise_correction_restores_noise_free_speckle():
    """(σ0 + N)·G − N with N stepping up 10× across the image: after correction the speckle
    deviation relative to the local mean is close to that of noise-free σ0·G everywhere."""
    enl = bs.ENL["GRDM"]
    rng = np.random.default_rng(5)
    shape = (400, 1200)
    speckle = bs.StripNoise(rng, shape[1], "gamma", enl).next(shape[0])
    noise = np.where(np.arange(shape[1]) < 600, 2e-4, 2e-3)[None, :] * np.ones(shape)
    signal = 1e-3
    x = (signal + noise) * speckle - noise
    before = [x[:, s].std() / x[:, s].mean() for s in (slice(10, 590), slice(610, 1190))]
    after_full = textural_noise_block(x, noise)
    after = [after_full[:, s].std() / after_full[:, s].mean() for s in (slice(10, 590), slice(610, 1190))]
    clean = speckle.std()
    assert before[1] / before[0] > 2.2, before
    assert after[1] / after[0] < 1.15, after
    for value in after:  # what remains is the local mean's own noise (21 × 21 box)
        assert abs(value / clean - 1) < 0.15, (after, clean)
    assert abs(after_full.mean() / x.mean() - 1) < 0.01


def test_textural_noise_correction_is_lazy_and_chunk_invariant():
    rng = np.random.default_rng(6)
    sigma0 = (rng.gamma(10.7, 1e-3 / 10.7, (300, 260)) - 4e-4).astype(np.float32)
    sigma0[:20, :40] = np.nan
    noise = rng.uniform(2e-4, 2e-3, sigma0.shape).astype(np.float32)
    results = []
    for chunks in ((300, 260), (64, 50), (17, 100)):
        s = xr.DataArray(dask.array.from_array(sigma0, chunks=chunks), dims=("line", "sample"))
        n = xr.DataArray(dask.array.from_array(noise, chunks=chunks), dims=("line", "sample"))
        out = textural_noise_correction(s, n)
        assert isinstance(out.data, dask.array.Array) and out.dtype == np.float32
        results.append(out.values)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_allclose(results[0], textural_noise_reference(sigma0, noise), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("denoise", ["esa", "nersc"])
def test_geocoded_corrections_with_esa_and_nersc(product, denoise):
    """Both corrections through geocode_product: HH brought to 35° (the known slope removed
    from the uncorrected product exactly), HV textural noise corrected, all lazy."""
    from seaice_dask.geocode import geocode_product

    product, _ = product
    grid = default_grid(2000.0)
    correction = IncidenceCorrection("linear", 35.0, {"hh": -0.2, "hv": -0.1})
    plain = geocode_product(product, grid, denoise=denoise, chunk=128)
    both = geocode_product(product, grid, denoise=denoise, chunk=128, incidence_correction=correction, textural_noise=True)
    assert isinstance(both.sigma0_hh.data, dask.array.Array)
    # variable by variable: dask.compute on the whole lazy Dataset trips a dask graph-culling bug
    plain, both = (ds.map(lambda v: v.copy(data=v.values)) for ds in (plain, both))
    expected = correct_db(plain.sigma0_hh, plain.incidence, -0.2, 35.0)
    ok = np.isfinite(expected) & np.isfinite(both.sigma0_hh)
    assert ok.sum() > 10_000
    # multilooking and bilinear resampling average linear power over pixels of slightly
    # different incidence: the dB result differs from the pointwise correction by ~0.001 dB
    error = np.abs(both.sigma0_hh.values[ok] - expected.values[ok])
    assert np.median(error) < 0.002 and error.max() < 0.03
    hv_plain, hv_both = plain.sigma0_hv.values, both.sigma0_hv.values
    hv_expected = correct_db(hv_plain, plain.incidence.values, -0.1, 35.0)
    ok = np.isfinite(hv_both) & np.isfinite(hv_plain)
    # the textural correction keeps local means (linear)
    mean_ratio = (10 ** (hv_both[ok] / 10)).mean() / (10 ** (hv_expected[ok] / 10)).mean()
    assert abs(mean_ratio - 1) < 0.05, mean_ratio
    assert (both.valid == plain.valid).mean() > 0.999


def test_model_refuses_inputs_made_with_another_correction(tmp_path):
    from sklearn.naive_bayes import GaussianNB

    from seaice_dask.errors import ModelError
    from seaice_dask.learn.persist import load_model, radiometry_of, save_model

    linear = IncidenceCorrection("linear", 35.0, {"hh": -0.2, "hv": -0.1}, "charts")
    corrected = radiometry_of({"incidence_correction": linear.to_attrs(), "textural_noise": True})
    model = GaussianNB().fit(np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2)
    path = save_model(model, tmp_path / "gnb.skops", learner="gnb", feature_names=["a", "b"], classes=[0, 1],
                      radiometry=corrected)
    _, meta = load_model(path, radiometry=radiometry_of({"incidence_correction": {**linear.to_attrs(), "source": "config"},
                                                        "textural_noise": True}))
    assert meta["radiometry"]["incidence_correction"]["slopes_db_per_deg"] == {"hh": -0.2, "hv": -0.1}
    for other in ({}, {"incidence_correction": linear.to_attrs(), "textural_noise": False},
                  {"incidence_correction": IncidenceCorrection("linear", 35.0, {"hh": -0.25, "hv": -0.1}).to_attrs(),
                   "textural_noise": True}):
        with pytest.raises(ModelError, match="gnb.skops.*radiometric corrections"):
            load_model(path, radiometry=radiometry_of(other))
    plain = save_model(model, tmp_path / "plain.skops", learner="gnb", feature_names=["a", "b"], classes=[0, 1])
    load_model(plain, radiometry=radiometry_of({}))  # cubes and models from before: uncorrected
