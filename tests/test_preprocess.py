"""Lazy calibration and denoising on a full-size EW GRDM product: the real annotation of the
EW sample in tests/data with a 10708 × 10487 uint16 strip TIFF written here (constant DN 300,
a DN = 0 no-data corner and a DN = 1 patch below the noise floor)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import EW_GRDM, IW_OLD_NOISE
from rasterio.windows import Window
from xarray_sentinel import sentinel1

from seaice_dask.errors import ConfigError
from seaice_dask.preprocess import (
    SIGMA0_FLOOR,
    beta0,
    calibration_window,
    gamma0,
    incidence_angle,
    negative_count,
    noise_power,
    noise_window,
    sigma0,
)
from seaice_dask.safe import measurement, open_safe

DN = 300
NODATA = (slice(0, 200), slice(9000, 10487))  # DN = 0
BELOW_NOISE = (slice(3000, 3100), slice(4000, 4250))  # DN = 1 ≪ √η


def _dn_rows(r0: int, r1: int, width: int) -> np.ndarray:
    rows = np.full((r1 - r0, width), DN, np.uint16)
    for (ls, ss), value in ((NODATA, 0), (BELOW_NOISE, 1)):
        lo, hi = max(ls.start, r0), min(ls.stop, r1)
        if lo < hi:
            rows[lo - r0 : hi - r0, ss] = value
    return rows


@pytest.fixture(scope="module")
def ew_product(realdata, tmp_path_factory) -> Path:
    """Full-size EW GRDM SAFE (AWS layout) with an HH strip TIFF carrying the annotation GCPs."""
    dst = tmp_path_factory.mktemp("ew") / "S1A_EW_GRDM_1SDH_20221130T014342_20221130T014446_046117_058549_BB15.SAFE"
    shutil.copytree(realdata(EW_GRDM), dst, ignore=shutil.ignore_patterns("*.tiff", "*.pdf", "*.png"))
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    product = open_safe(dst)
    lines, samples = product.shape
    profile = dict(driver="GTiff", width=samples, height=lines, count=1, dtype="uint16", blockysize=1,
                   compress="deflate", gcps=product.gcps("HH"), crs="EPSG:4326")
    with rasterio.open(dst / "measurement" / "ew-hh.tiff", "w", **profile) as tif:
        for r0 in range(0, lines, 2048):
            r1 = min(r0 + 2048, lines)
            tif.write(_dn_rows(r0, r1, samples), 1, window=Window(0, r0, samples, r1 - r0))
    return dst


def test_sigma0_window_reads_only_that_window(ew_product, monkeypatch):
    reads = []
    original = measurement.read_window

    def counting(path, rows, cols):
        reads.append((rows, cols))
        return original(path, rows, cols)

    monkeypatch.setattr(measurement, "read_window", counting)
    product = open_safe(ew_product)
    s0 = sigma0(product, "HH")
    assert isinstance(s0.data, dask.array.Array) and s0.dtype == np.float32
    assert s0.shape == (10708, 10487) and s0.data.chunksize == (1024, 1024)
    assert reads == []  # building the graph reads no pixels
    with dask.config.set(scheduler="sync"):
        window = s0.isel(line=slice(2048, 3072), sample=slice(1024, 2048)).values
    assert reads == [((2048, 3072), (1024, 2048))]
    assert window.shape == (1024, 1024) and np.isfinite(window).all()


def test_sigma0_without_noise_matches_xarray_sentinel(ew_product):
    product = open_safe(ew_product)
    window = dict(line=slice(5000, 5300), sample=slice(2900, 3300))
    dn = product.dn("HH").isel(window).rename(sample="pixel").astype(np.float32).compute()
    lut = sentinel1.open_calibration_dataset(ew_product / "annotation/calibration/calibration-ew-hh.xml")
    for ours, theirs in ((sigma0, "sigmaNought"), (beta0, "betaNought"), (gamma0, "gamma")):
        expected = sentinel1.calibrate_intensity(dn, lut[theirs])
        got = ours(product, "HH", denoise=None).isel(window).values
        np.testing.assert_allclose(got, expected.values, rtol=1e-5)


def test_sigma0_esa_formula_floor_nodata_and_db(ew_product):
    product = open_safe(ew_product)
    lines, samples = np.arange(2990, 3110), np.arange(3990, 4260)
    window = dict(line=slice(2990, 3110), sample=slice(3990, 4260))
    dn = _dn_rows(2990, 3110, 10487)[:, 3990:4260].astype(np.float64)
    a2 = calibration_window(product.calibration("HH"), "sigma_nought", lines, samples) ** 2
    expected = (dn**2 - noise_window(product.noise("HH"), lines, samples)) / a2
    below = dn == 1
    assert (expected[below] < 0).all() and (expected[~below] > 0).all()
    expected[below] = SIGMA0_FLOOR
    linear = sigma0(product, "HH").isel(window)
    np.testing.assert_allclose(linear.values, expected, rtol=1e-6)
    assert linear.attrs["units"] == "m2 m-2" and linear.attrs["denoising"] == "esa"
    in_db = sigma0(product, "HH", db=True).isel(window)
    np.testing.assert_allclose(in_db.values, 10 * np.log10(expected), rtol=1e-5)
    assert in_db.attrs["units"] == "dB"
    corner = sigma0(product, "HH").isel(line=NODATA[0], sample=NODATA[1]).values
    assert np.isnan(corner).all()


@pytest.mark.slow
def test_negative_count_counts_floored_pixels(ew_product):
    product = open_safe(ew_product)
    count = negative_count(product, "HH", chunks=(2048, 4096))
    assert isinstance(count.data, dask.array.Array)
    with dask.config.set(num_workers=2):
        assert int(count) == 100 * 250  # exactly the DN = 1 patch


def test_dn_read_in_place_from_zip(ew_product, tmp_path):
    """A zipped SAFE (measurement stored uncompressed, as ESA does) is read through /vsizip/."""
    path = tmp_path / f"{ew_product.stem}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in ew_product.rglob("*"):
            if f.is_file():
                compression = zipfile.ZIP_STORED if f.suffix == ".tiff" else zipfile.ZIP_DEFLATED
                zf.write(f, f"{ew_product.name}/{f.relative_to(ew_product)}", compress_type=compression)
    zipped = open_safe(path)
    assert zipped.measurement_path("HH").startswith("/vsizip/")
    window = dict(line=slice(0, 300), sample=slice(8900, 9100))
    xr.testing.assert_identical(zipped.dn("HH").isel(window).compute(), open_safe(ew_product).dn("HH").isel(window).compute())
    assert zipped.dn("HH").isel(window).values[0, 50] == DN and zipped.dn("HH").isel(window).values[0, 150] == 0


def test_measurement_gcps_equal_annotation(ew_product):
    product = open_safe(ew_product)
    tiff = sorted((g.row, g.col, g.x, g.y) for g in product.measurement_gcps("HH"))
    annotation = sorted((g.row, g.col, g.x, g.y) for g in product.gcps("HH"))
    np.testing.assert_allclose(tiff, annotation)


def test_incidence_angle_equals_tie_points(ew_product):
    product = open_safe(ew_product)
    grid = product.geolocation_grid("HH")
    theta = incidence_angle(product, "HH")
    assert isinstance(theta.data, dask.array.Array) and theta.attrs["units"] == "degrees"
    lines = grid.line.values[grid.line.values < product.shape[0]]
    pixels = grid.pixel.values[grid.pixel.values < product.shape[1]]
    got = theta.sel(line=lines, sample=pixels).values
    np.testing.assert_allclose(got, grid.incidence_angle.sel(line=lines, pixel=pixels).values, rtol=1e-6)
    assert 18 < np.nanmin(got) and np.nanmax(got) < 47


def test_noise_power_old_format_is_range_only(realdata):
    """IPF 2.70: η is the range LUT alone, equal to the annotation at its tie points."""
    product = open_safe(realdata(IW_OLD_NOISE[0]))
    noise = product.noise("VV")
    assert not noise.has_azimuth
    eta = noise_power(product, "VV")
    assert isinstance(eta.data, dask.array.Array) and eta.shape == product.shape
    i = 5
    inside = noise.range_pixel[i] < product.shape[1]
    got = eta.sel(line=noise.range_line[i], sample=noise.range_pixel[i][inside]).values
    np.testing.assert_allclose(got, noise.range_values[i][inside], rtol=1e-6)


def test_unknown_denoising_method(ew_product):
    with pytest.raises(ConfigError, match="denoising"):
        sigma0(open_safe(ew_product), "HH", denoise="magic")
