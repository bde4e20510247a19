"""Scene-estimated noise scaling and power balancing ("nersc") against known truth: a small
simulated EW product whose HV pixels are rewritten here as a smooth σ0 plus noise that is
wrong by a known factor and offset per subswath (the model of Park et al. 2018)."""

from __future__ import annotations

import datetime as dt

import dask
from dask.delayed import Delayed
import numpy as np
import pytest
import rasterio

from seaice_dask.preprocess import calibration_window, noise_window, sigma0
from seaice_dask.preprocess.nersc import noise_scaling, swath_labels
from seaice_dask.safe import open_safe

TRUE_SCALE = np.array([1.3, 0.9, 1.1, 0.85, 1.2])
TRUE_OFFSET = np.array([2e-4, 0.0, -1e-4, 1e-4, 0.0])  # linear σ0


def smooth_sigma0(samples: np.ndarray) -> np.ndarray:
    """−24 dB at near range falling to −29 dB at far range, linear in dB."""
    return 10 ** ((-24.0 - 5.0 * samples / samples.max()) / 10)


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    from seaice_dask.simulate.safe_writer import SceneSpec, write_scene

    spec = SceneSpec(start=dt.datetime(2021, 1, 10, 8, 0), absolute_orbit=36000, size="small")
    path = write_scene(tmp_path_factory.mktemp("nersc"), spec, fmt="safe")
    scene = open_safe(path)
    lines, samples = np.arange(scene.shape[0]), np.arange(scene.shape[1])
    a2 = calibration_window(scene.calibration("HV"), "sigma_nought", lines, samples) ** 2
    eta = noise_window(scene.noise("HV"), lines, samples)
    labels = swath_labels(scene.swaths, lines, samples)
    rng = np.random.default_rng(1)
    speckle = rng.gamma(10.7, 1 / 10.7, a2.shape)
    power = a2 * smooth_sigma0(samples) * speckle + TRUE_SCALE[labels] * eta + TRUE_OFFSET[labels] * a2
    tiff = path / scene._file("measurement", "HV")
    with rasterio.open(tiff, "r+") as dst:
        valid = dst.read(1) > 0
        dst.write(np.where(valid, np.clip(np.rint(np.sqrt(power)), 1, 65535), 0).astype(np.uint16), 1)
    return open_safe(path)


def test_scaling_recovers_truth(product):
    scaling = noise_scaling(product, "HV", chunks=(512, 512))
    assert isinstance(scaling, Delayed)
    fitted = scaling.compute(scheduler="sync")
    assert fitted.swaths == ("EW1", "EW2", "EW3", "EW4", "EW5")
    assert fitted.estimated.all()
    np.testing.assert_allclose(fitted.scale, TRUE_SCALE, atol=0.08)
    # offsets are identifiable up to a common constant
    np.testing.assert_allclose(np.diff(fitted.offset), np.diff(-TRUE_OFFSET), atol=1.2e-4)
    assert set(fitted.to_dataset().data_vars) == {"scale", "offset", "scale_error", "estimated"}


def test_scaling_does_not_depend_on_the_chunking(product):
    """Cells are whole sub-blocks whatever the chunks asked for (odd sizes included)."""
    reference = noise_scaling(product, "HV", chunks=(512, 512)).compute()
    for chunks in ((300, 257), (1000, 77)):
        other = noise_scaling(product, "HV", chunks=chunks).compute()
        np.testing.assert_allclose(other.scale, reference.scale, rtol=1e-12)
        np.testing.assert_allclose(other.offset, reference.offset, rtol=1e-9, atol=1e-15)


def test_nersc_sigma0_removes_subswath_steps(product):
    def column_mean_db(denoise):
        s0 = sigma0(product, "HV", denoise=denoise, chunks=(512, 512))
        assert isinstance(s0.data, dask.array.Array) and s0.dtype == np.float32
        with dask.config.set(scheduler="sync"):
            values = s0.values
        return s0, 10 * np.log10(np.nanmean(values, axis=0))

    s0, nersc = column_mean_db("nersc")
    _, esa = column_mean_db("esa")
    assert s0.attrs["denoising"] == "nersc"
    truth = 10 * np.log10(smooth_sigma0(np.arange(product.shape[1])))
    inner = slice(20, -20)
    nersc_error = np.abs(nersc - truth)[inner]
    esa_error = np.abs(esa - truth)[inner]
    # measured: median 0.11 vs 0.24 dB, 95th percentile 0.42 vs 1.66 dB, max 0.51 vs 2.42 dB
    assert np.median(nersc_error) < 0.15 < np.median(esa_error)
    assert np.percentile(nersc_error, 95) < 0.6 < np.percentile(esa_error, 95)
    assert nersc_error.max() < 0.5 * esa_error.max()


def test_power_balancing_ignores_a_coast_along_the_boundary():
    """The step between two subswaths is the median over azimuth blocks: where a bright surface
    (a coast, an ice edge) lies just beyond the boundary in a fifth of the blocks, the step stays
    the noise's (a pooled mean took 2·10⁻² of it, more than the signal of dark ice)."""
    from seaice_dask.preprocess.nersc import BIN_SAMPLES, MIN_CELL_PIXELS, _SUMS, _boundary_step

    blocks, bins, step = 50, 8, 1e-4
    x = np.arange(bins) * BIN_SAMPLES + BIN_SAMPLES / 2

    def cells(level: np.ndarray, x0: float) -> np.ndarray:
        out = np.zeros((blocks, _SUMS, bins))
        out[:, 0], out[:, 2], out[:, 3] = level[:, None] * MIN_CELL_PIXELS, MIN_CELL_PIXELS, (x + x0) * MIN_CELL_PIXELS
        return out  # ΣP, ΣN (no noise), count, Σx

    rng = np.random.default_rng(0)
    ice = 2e-3 + 1e-5 * rng.standard_normal(blocks)
    coast = np.where(np.arange(blocks) % 5 == 0, 0.1, 0.0)  # land just after the boundary
    near, far = cells(ice, 0.0), cells(ice + step + coast, bins * BIN_SAMPLES)
    assert abs(_boundary_step(near, far, 1.0, 1.0) - step) < 2e-5


def test_compiled_kernels_equal_their_numpy_references(product):
    """The block sums and the per-pixel denoising (ESA and NERSC) are compiled; pinned bit for bit
    to their NumPy references on real-layout windows, no-data (DN = 0) pixels included."""
    from seaice_dask.preprocess.nersc import (_block_sums, block_sums_reference, denoised_power,
                                              nersc_power_reference)

    scaling = noise_scaling(product, "HV", chunks=(512, 512)).compute(scheduler="sync")
    cal, noise = product.calibration("HV"), product.noise("HV")
    dn_all = product.dn("HV", chunks=(512, 512)).data.compute(scheduler="sync")
    r0, c0 = 64, product.shape[1] // 3  # a window across a subswath boundary, not chunk-aligned
    dn = dn_all[r0 : r0 + 300, c0 : c0 + 700].copy()
    dn[:40, :50] = 0
    lines, samples = np.arange(r0, r0 + dn.shape[0]), np.arange(c0, c0 + dn.shape[1])
    assert len(set(swath_labels(product.swaths, lines, samples).ravel())) >= 2
    info = {0: {"array-location": [(r0, r0 + dn.shape[0]), (c0, c0 + dn.shape[1])]}}
    sums = _block_sums(dn, cal, noise, product.swaths, block_info=info)
    assert sums.any() and np.array_equal(sums, block_sums_reference(dn, cal, noise, product.swaths, block_info=info))

    a2 = calibration_window(cal, "sigma_nought", lines, samples) ** 2
    eta = noise_window(noise, lines, samples)
    value, subtracted = denoised_power(dn, eta, a2, scaling, product.swaths, lines, samples)
    power, scaled = nersc_power_reference(dn, eta, a2, scaling, product.swaths, lines, samples)
    power[dn == 0] = np.nan
    np.testing.assert_array_equal(value, power)
    np.testing.assert_array_equal(subtracted, (scaled / a2).astype(np.float32))
    value, subtracted = denoised_power(dn, eta, a2, None, product.swaths, lines, samples)
    esa = (np.square(dn, dtype=np.float64) - eta) / a2
    esa[dn == 0] = np.nan
    np.testing.assert_array_equal(value, esa)
    np.testing.assert_array_equal(subtracted, (eta / a2).astype(np.float32))
