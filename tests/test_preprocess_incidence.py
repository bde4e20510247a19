"""Incidence-angle correction and textural noise correction, against known slopes, independent
references and the simulator's truth; lazy, chunk-invariant, with ESA and NERSC denoising."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
import warnings

import dask
import numpy as np
import pytest
import xarray as xr

from seaice_dask.errors import CubeError
from seaice_dask.grid import default_grid
from seaice_dask.preprocess.incidence import (
    CELL,
    ClassModel,
    IncidenceCorrection,
    check_compatible,
    cell_pixels,
    class_correct_block,
    correct_db,
    correct_multilooked,
    estimate_slopes,
    fit_class_model,
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


# --------------------------------------------------------------------------- class-aware (GIA)

#: (HH at 35°, HH slope, HV at 35°, HV slope, chart label) of synthetic surfaces: young ice, level
#: and deformed first-year ice (one chart class), multi-year ice, water (simulator-reference.md).
SURFACES = np.array([(-12.6, -0.133, -27.3, -0.044, 1), (-17.2, -0.333, -32.1, -0.275, 2),
                     (-11.0, -0.167, -20.7, -0.060, 2), (-10.3, -0.167, -18.8, -0.100, 3),
                     (-22.0, -0.800, -34.0, -0.100, 0)])


def _synthetic_samples(n: int, seed: int):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(19, 46, n)
    surface = rng.integers(0, len(SURFACES), n)
    p = SURFACES[surface]
    values = np.column_stack([p[:, 0] + p[:, 1] * (theta - 35), p[:, 2] + p[:, 3] * (theta - 35)]) + rng.normal(0, 1.0, (n, 2))
    labels = p[:, 4].astype(int)
    labels[rng.uniform(size=n) < 0.2] = -1  # unlabelled
    return values, theta, surface, labels


def test_class_model_recovers_the_slope_of_every_surface():
    """Chart classes that lump two surfaces (level and deformed first-year ice): EM still finds
    each surface's own slope, and the membership-weighted correction flattens every surface."""
    values, theta, surface, labels = _synthetic_samples(200_000, 0)
    model = fit_class_model(values, theta, labels)
    slopes = model.effective_slopes(values, theta, 35.0)
    for k, (_, hh_slope, _, hv_slope, _) in enumerate(SURFACES):
        sel = surface == k
        nearest = np.argmin(((model.mean_db - SURFACES[k, [0, 2]]) ** 2).sum(axis=1))
        assert abs(model.slope_db_per_deg[nearest, 0] - hh_slope) < 0.02, (k, model.slope_db_per_deg[nearest])
        corrected = values[sel, 0] - slopes[sel, 0] * (theta[sel] - 35)
        assert abs(np.polyfit(theta[sel], corrected, 1)[0]) < 0.02, k
    one_slope = estimate_slopes({"incidence": theta, "sigma0_hh": values[:, 0], "sigma0_hv": values[:, 1],
                                 "labels": labels}, ["HH", "HV"])
    level = surface == 1  # what one common slope leaves on level first-year ice
    assert abs(np.polyfit(theta[level], correct_db(values[level, 0], theta[level], one_slope.slopes_db_per_deg["hh"]), 1)[0]) > 0.08
    record = IncidenceCorrection("class", 35.0, one_slope.slopes_db_per_deg, "charts", model)
    back = IncidenceCorrection.from_attrs(record.to_attrs())
    assert back.same_as(record) and back.method == "class" and not back.same_as(one_slope)
    np.testing.assert_allclose(back.classes.slope_db_per_deg, model.slope_db_per_deg, atol=1e-6)


def test_water_components_shape_the_fit_but_every_cell_takes_an_ice_slope():
    """Water (chart class 0) keeps its own steep slope in the likelihood (the fit), records the
    common slope, and is never picked: an ice sample moves by its own component's slope, a water
    sample by the slope of the ice component it resembles most (within the ice slopes)."""
    values, theta, surface, labels = _synthetic_samples(100_000, 3)
    common = [-0.05, -0.01]  # outside the ice slopes: a water sample given it would show
    model = fit_class_model(values, theta, labels, common_slope_db_per_deg=common)
    own = fit_class_model(values, theta, labels)
    np.testing.assert_array_equal(model.slope_db_per_deg, own.slope_db_per_deg)
    water = np.argmin(((model.mean_db - SURFACES[4, [0, 2]]) ** 2).sum(axis=1))
    assert model.slope_db_per_deg[water, 0] < -0.6  # fitted: steep
    np.testing.assert_array_equal(model.applied[water], common)
    assert not model.assignable[water] and model.assignable.any()
    np.testing.assert_array_equal(~model.assignable, (model.applied == common).all(axis=1))  # water's components
    slopes = model.effective_slopes(values, theta, 35.0)
    for k in (0, 1, 2, 3):
        assert abs(np.median(slopes[surface == k, 0]) - SURFACES[k, 1]) < 0.02, k
    ice = model.applied[model.assignable, 0]
    assert np.all((slopes[surface == 4, 0] >= ice.min()) & (slopes[surface == 4, 0] <= ice.max()))
    back = ClassModel.from_attrs(model.to_attrs())
    np.testing.assert_allclose(back.applied, model.applied, atol=1e-6)
    np.testing.assert_array_equal(back.assignable, model.assignable)
    legacy = [{k: v for k, v in c.items() if k not in ("applied_slope_db_per_deg", "assignable")} for c in own.to_attrs()]
    old = ClassModel.from_attrs(legacy)
    assert old.assignable is None
    np.testing.assert_allclose(old.applied, own.slope_db_per_deg, atol=1e-6)


def test_level_ice_that_looks_like_broad_water_keeps_its_own_slope():
    """A broad, steep, frequent water component crosses level first-year ice in mid-swath: as the
    most probable component it gave level ice its (common) slope. Not assignable, it gives none."""
    pols = ("hh", "hv")
    # level first-year ice, young ice, wind-roughened water (at 35°: HH, HV; slopes; variances)
    mean = np.array([[-17.2, -32.1], [-12.6, -27.3], [-17.0, -31.5]])
    slope = np.array([[-0.333, -0.275], [-0.133, -0.044], [-0.6, -0.05]])
    variance = np.array([[1.0, 1.5], [1.0, 1.0], [9.0, 4.0]])
    applied = slope.copy()
    applied[2] = [-0.16, -0.05]
    weight = np.array([0.2, 0.1, 0.7])
    rng = np.random.default_rng(2)
    theta = rng.uniform(30, 36, 20_000)
    level = mean[0] + slope[0] * (theta - 35)[:, None] + rng.normal(0, 1, (theta.size, 2)) * np.sqrt(variance[0])
    old = ClassModel(pols, weight, mean, slope, variance, applied)
    assert np.mean(old.effective_slopes(level, theta, 35.0)[:, 0] == -0.16) > 0.3  # the old rule
    new = replace(old, assignable=np.array([True, True, False]))
    got = new.effective_slopes(level, theta, 35.0)[:, 0]
    assert np.mean(got == -0.333) > 0.95 and not np.any(got == -0.16)


@pytest.mark.parametrize("cell", [CELL, 2])  # 80 m multilooked pixels; the demo's 320 m (cell_pixels)
def test_class_correction_is_lazy_chunk_invariant_and_flattens_each_class(cell):
    model = ClassModel(("hh", "hv"), np.array([0.5, 0.5]), np.array([[-12.0, -27.0], [-17.0, -32.0]]),
                       np.array([[-0.13, -0.04], [-0.33, -0.27]]), np.ones((2, 2)))
    correction = IncidenceCorrection("class", 35.0, {"hh": -0.2, "hv": -0.1}, "config", model)
    rng = np.random.default_rng(1)
    h, w = 203, 150
    theta = (np.linspace(19, 46, w)[None, :] * np.ones((h, 1))).astype(np.float32)
    cls = (np.arange(h)[:, None] > 100) * np.ones((1, w), int)
    db = model.mean_db[cls] + model.slope_db_per_deg[cls] * (theta - 35)[..., None]  # (h, w, 2)
    sigma0 = (10 ** (np.moveaxis(db, -1, 0) / 10) * rng.gamma(10, 0.1, (2, h, w))).astype(np.float32)
    sigma0[:, :5, :9] = np.nan
    results = []
    for chunks in ((203, 150), (64, 48), (40, 100), (17, 33)):
        out = correct_multilooked({p: dask.array.from_array(sigma0[i], chunks=chunks) for i, p in enumerate(("HH", "HV"))},
                                  dask.array.from_array(theta, chunks=chunks), correction, cell)
        assert isinstance(out["HH"], dask.array.Array) and out["HH"].dtype == np.float32
        results.append(np.stack(dask.compute(out["HH"], out["HV"])))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    assert cell_pixels(80.0) == CELL and cell_pixels(320.0) == 2  # cells of 640 m
    pad = ((0, 0), (cell, cell), (cell, cell))  # map_overlap's NaN boundary, in one block
    reference = class_correct_block(np.pad(sigma0, pad, constant_values=np.nan), np.pad(theta, cell, constant_values=np.nan),
                                    model, cell=cell)
    np.testing.assert_array_equal(results[0], reference[:, cell:-cell, cell:-cell])
    corrected = 10 * np.log10(results[0][0])
    for k in (0, 1):
        sel = (cls == k) & np.isfinite(corrected)
        sel[95:110] = False  # the class boundary: cells there mix both
        assert abs(np.polyfit(theta[sel], corrected[sel], 1)[0]) < 0.02, k


def test_class_model_slopes_match_the_simulator(product):
    """Pre-pass samples of a small simulated scene, its sod4 classes as chart labels: for every ice
    surface, the HH slope applied to its samples (median; water components not picked, as at
    ingest) is the simulator's within 0.05 dB/deg, so the residual slope stays well inside the
    0.08 dB/deg acceptance limit. (With 4 components per chart class a surface may span two
    components: young ice here takes −0.09 and −0.14 dB/deg, LFYI, DFYI and MYI within 0.022.)"""
    product, _ = product
    grid = default_grid(1000.0)
    truth = truth_fields(grid, DATE)
    surface, classes = truth.surface.values, truth.truth_class.values
    samples = scene_samples(product, ["HH", "HV"], grid, surface == Surface.LAND, surface, block=(3, 3))
    chart = scene_samples(product, ["HH"], grid, surface == Surface.LAND, classes, block=(3, 3))["labels"]
    values = np.column_stack([samples["sigma0_hh"], samples["sigma0_hv"]])
    model = fit_class_model(values, samples["incidence"], chart, common_slope_db_per_deg=[-0.17, -0.05])
    applied = model.effective_slopes(values, samples["incidence"], 35.0)[:, 0]
    checked = 0
    for s in (Surface.YOUNG_ICE, Surface.LEVEL_FYI, Surface.DEFORMED_FYI, Surface.MULTIYEAR_ICE):
        sel = samples["labels"] == s
        if sel.sum() < 2000:
            continue
        slope = np.median(applied[sel])
        assert abs(slope - bs.SIGNATURES[s].hh_slope) < 0.05, (s.name, slope)
        checked += 1
    assert checked >= 2


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
def test_sigma0_textural_is_the_correction_of_the_denoised_scene_bit_for_bit(product, denoise):
    """The fused per-block path (DN with a halo → σ0 and noise → kernel → floor) equals the
    kernel run once on the whole scene's unfloored σ0 and subtracted noise, computed here from
    the LUTs and the documented formulas, for any radar chunking (and edges: halos off the image)."""
    from seaice_dask.preprocess import SIGMA0_FLOOR, calibration_window, noise_window, sigma0_textural
    from seaice_dask.preprocess.nersc import noise_scaling, swath_labels

    product, _ = product
    lines, samples = np.arange(product.shape[0]), np.arange(product.shape[1])
    dn = product.dn("HV").values.astype(np.float64)
    a2 = calibration_window(product.calibration("HV"), "sigma_nought", lines, samples) ** 2
    eta = noise_window(product.noise("HV"), lines, samples)
    for chunks in ((2048, 2048), (300, 257), (64, 1000)):
        scale, offset = np.ones(eta.shape), np.zeros(eta.shape)
        if denoise == "nersc":  # k_s, o_s per subswath (estimated with the same chunks)
            scaling = noise_scaling(product, "HV", chunks).compute()
            labels = swath_labels(product.swaths, lines, samples)
            scale, offset = np.append(scaling.scale, 1.0)[labels], np.append(scaling.offset, 0.0)[labels]
        signal = (dn**2 - scale * eta) / a2 + offset
        signal[dn == 0] = np.nan
        expected = textural_noise_block(signal.astype(np.float32), (scale * eta / a2).astype(np.float32))
        expected[expected <= 0] = SIGMA0_FLOOR
        out = sigma0_textural(product, "HV", denoise, chunks)
        assert isinstance(out.data, dask.array.Array) and out.dtype == np.float32
        assert out.data.chunks == dask.array.core.normalize_chunks(chunks, product.shape)
        np.testing.assert_array_equal(out.values, expected)
    assert np.isnan(expected).any() and (expected == np.float32(SIGMA0_FLOOR)).any()


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
    # one GIA component with the same slopes is the linear correction, through the class path
    single = ClassModel(("hh", "hv"), np.ones(1), np.array([[-15.0, -25.0]]), np.array([[-0.2, -0.1]]), np.ones((1, 2)))
    by_class = geocode_product(product, grid, denoise=denoise, chunk=128, textural_noise=True,
                               incidence_correction=IncidenceCorrection("class", 35.0, {"hh": -0.2, "hv": -0.1}, "", single))
    assert isinstance(by_class.sigma0_hh.data, dask.array.Array)
    for pol in ("hh", "hv"):
        np.testing.assert_allclose(by_class[f"sigma0_{pol}"].values, both[f"sigma0_{pol}"].values, atol=1e-4)
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
        with pytest.raises(ModelError, match="gnb.skops: the model was trained on inputs made with textural noise on, "
                           r"incidence correction linear \(reference 35°\)(; this cube's were made with| .*other estimated slopes)"):
            load_model(path, radiometry=radiometry_of(other))
    plain = save_model(model, tmp_path / "plain.skops", learner="gnb", feature_names=["a", "b"], classes=[0, 1])
    load_model(plain, radiometry=radiometry_of({}))  # cubes and models from before: uncorrected


def test_cell_mean_matches_nanmean_of_padded_tiles():
    """The compiled cell means equal NumPy's nanmean over the tiles, partial edge tiles and
    all-NaN tiles (NaN) included."""
    from seaice_dask.preprocess.incidence import _cell_mean

    rng = np.random.default_rng(5)
    values = rng.normal(size=(2, 37, 29)).astype(np.float32)
    values[0, :8, :8] = np.nan  # one all-NaN tile
    values[1, rng.uniform(size=(37, 29)) < 0.3] = np.nan
    hc, wc = -(-37 // 8), -(-29 // 8)
    padded = np.pad(values.astype(np.float64), ((0, 0), (0, hc * 8 - 37), (0, wc * 8 - 29)), constant_values=np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(padded.reshape(2, hc, 8, wc, 8), axis=(2, 4))
    np.testing.assert_allclose(_cell_mean(values, 8), expected, rtol=1e-12)
    assert np.isnan(_cell_mean(values, 8)[0, 0, 0])



@pytest.mark.parametrize("shape, cell", [((37, 29), 8), ((64, 48), 16), ((5, 70), 4)])
def test_slope_exponents_equal_their_numpy_reference(shape, cell):
    """The compiled per-pixel exponents of the class-aware correction equal the NumPy reference
    (two linear interpolations between cell centres, then the angle term) bit for bit: partial
    edge cells, a single cell row and NaN cells (no data) included."""
    from seaice_dask.preprocess.incidence import slope_exponents, slope_exponents_reference

    rng = np.random.default_rng(11)
    h, w = shape
    slopes = rng.normal(-0.2, 0.1, size=(2, -(-h // cell), -(-w // cell))).astype(np.float32)
    slopes[1, 0, 0] = np.nan
    theta = rng.uniform(18, 47, size=shape).astype(np.float32)
    got = slope_exponents(slopes, theta, cell, 31.5)
    expected = slope_exponents_reference(slopes, theta, cell, 31.5)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[1, 0, 0]) and np.isfinite(got[0]).all()


@pytest.mark.parametrize("assignable", [None, [True, False, True, True, False, True]])
def test_most_probable_component_equals_its_numpy_reference(assignable):
    """The compiled posterior argmax of the class model equals NumPy's argmax over the
    log-likelihoods: ties, components that may not be assigned and NaN angles included."""
    rng = np.random.default_rng(3)
    k, d = 6, 2
    model = ClassModel(("hh", "hv"), rng.dirichlet(np.ones(k)), rng.normal(-18, 5, (k, d)), rng.normal(-0.2, 0.1, (k, d)),
                       rng.uniform(0.5, 4, (k, d)), rng.normal(-0.2, 0.1, (k, d)),
                       None if assignable is None else np.array(assignable))
    values = rng.normal(-18, 6, (5000, d))
    theta = rng.uniform(-15, 15, 5000)
    theta[:10] = np.nan
    values[10:20] = values[20:30] = model.mean_db[0]  # repeated rows
    got = model.most_probable(values, theta)
    np.testing.assert_array_equal(got, model.most_probable_reference(values, theta))
    assert len(np.unique(got)) > 2
    if assignable is not None:
        assert np.isin(got[10:], np.flatnonzero(assignable)).all()
