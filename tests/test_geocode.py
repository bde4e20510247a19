"""Geocoding: the inverse map against GDAL's thin-plate-spline transformer on real annotation,
and the chunk-wise resampling against independent references (GDAL, scikit-image, SciPy)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from rasterio.control import GroundControlPoint
from rasterio.transform import GCPTransformer
from scipy import ndimage
from skimage.measure import block_reduce

from conftest import EW_GRDM, IW_OLD_NOISE, IW_NEW_NOISE_ZIP, IW_SARSEN
from seaice_dask import geocode as gc
from seaice_dask.grid import Grid
from seaice_dask.safe import open_safe

REAL_PRODUCTS = {"ew-grdm": EW_GRDM, "iw-sarsen": IW_SARSEN, "iw-2015": IW_OLD_NOISE[0], "iw-2021": IW_NEW_NOISE_ZIP}


def _grid_crs(tp: gc.TiePoints) -> str:
    """Polar stereographic north of 60°N (the EW scene is at 77–82°N), else the UTM zone."""
    lat, lon = tp.latitude.mean(), tp.longitude.mean()
    if lat > 60:
        return "EPSG:3413"
    return f"EPSG:{(32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1}"


@pytest.fixture(scope="module", params=list(REAL_PRODUCTS))
def real(request, realdata):
    product = open_safe(realdata(REAL_PRODUCTS[request.param]))
    tp = gc.TiePoints.from_product(product)
    crs = _grid_crs(tp)
    x, y = tp.projected(crs)
    gdal = GCPTransformer(
        [GroundControlPoint(row=r, col=c, x=a, y=b) for r, c, a, b in zip(tp.line, tp.sample, x, y)], tps=True
    )
    return tp, crs, gc.InverseMap(tp, crs), gdal


def test_round_trip_exact_at_tie_points(real):
    # line/sample -> lat/lon (the annotation) -> grid x/y -> line/sample
    tp, crs, inverse, _ = real
    line, sample = inverse(*tp.projected(crs))
    assert np.abs(line - tp.line).max() < 0.1
    assert np.abs(sample - tp.sample).max() < 0.1


def test_matches_gdal_tps_between_tie_points(real):
    tp, _, inverse, gdal = real
    rng = np.random.default_rng(1)
    lines = rng.uniform(0, tp.shape[0] - 1, 5000)
    samples = rng.uniform(0, tp.shape[1] - 1, 5000)
    x, y = (np.asarray(v) for v in gdal.xy(lines, samples, offset="ul"))
    line, sample = inverse(x, y)
    # back to the map with GDAL's spline: distance in 80 m output pixels
    x2, y2 = (np.asarray(v) for v in gdal.xy(line, sample, offset="ul"))
    assert (np.hypot(x2 - x, y2 - y) / 80.0).max() < 0.5
    gdal_line, gdal_sample = gdal.rowcol(x, y, op=np.positive)
    assert np.abs(line - gdal_line).max() < 0.1
    assert np.abs(sample - gdal_sample).max() < 0.1


def test_lattice_interpolation_close_to_exact_spline(real):
    # a full-width strip of 80 m pixels, footprint edges included
    tp, crs, inverse, gdal = real
    grid = Grid.from_bounds(crs, gc.footprint_bounds(tp, crs), 80.0)
    rows, cols = slice(grid.shape[0] // 2, grid.shape[0] // 2 + 24), slice(0, grid.shape[1])
    line, sample = gc._chunk_map(inverse, grid, rows, cols, stride=gc._stride(grid))
    yy, xx = np.meshgrid(grid.y[rows], grid.x[cols], indexing="ij")
    exact_line, exact_sample = inverse(xx, yy)
    inside = (exact_line > -2) & (exact_line < tp.shape[0] + 1) & (exact_sample > -2) & (exact_sample < tp.shape[1] + 1)
    assert inside.mean() > 0.3
    # error of the lattice shortcut, measured on the map in 80 m output pixels
    x, y = (np.asarray(v) for v in gdal.xy(line[inside], sample[inside], offset="ul"))
    assert (np.hypot(x - xx[inside], y - yy[inside]) / grid.resolution).max() < 0.05


@pytest.fixture(scope="module")
def ew(realdata):
    product = open_safe(realdata(EW_GRDM))
    tp = gc.TiePoints.from_product(product)
    crs = "EPSG:3413"
    # a 1 km grid on a 100 km band across the whole scene: footprint edges on both sides
    xmin, ymin, xmax, ymax = gc.footprint_bounds(tp, crs)
    ymid = (ymin + ymax) / 2
    grid = Grid.from_bounds(crs, (xmin - 20e3, ymid - 50e3, xmax + 20e3, ymid + 50e3), 1000.0)
    x, y = tp.projected(crs)
    gdal = GCPTransformer(
        [GroundControlPoint(row=r, col=c, x=a, y=b) for r, c, a, b in zip(tp.line, tp.sample, x, y)], tps=True
    )
    return tp, grid, gc.InverseMap(tp, crs), gdal


def _ramp(shape: tuple[int, int], axis: int) -> xr.DataArray:
    """Lazy full-size radar image whose value is its own line (axis 0) or sample (axis 1)."""
    data = da.fromfunction(lambda i, j: (i, j)[axis].astype(np.float32), shape=shape, chunks=2048, dtype=np.float32)
    return xr.DataArray(data, dims=("line", "sample"), name="ramp", attrs={"units": "1"})


def test_geocode_ramp_matches_gdal_positions(ew):
    tp, grid, inverse, gdal = ew
    yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
    ref_line, ref_sample = (np.asarray(v).reshape(grid.shape) for v in gdal.rowcol(xx.ravel(), yy.ravel(), op=np.positive))
    n = tp.shape
    # clearly inside / outside the footprint (2 multilooked pixels of margin)
    inside = (ref_line > 4) & (ref_line < n[0] - 5) & (ref_sample > 4) & (ref_sample < n[1] - 5)
    outside = (ref_line < -4) | (ref_line > n[0] + 3) | (ref_sample < -4) | (ref_sample > n[1] + 3)
    assert inside.sum() > 20_000 and outside.sum() > 5_000
    for axis, ref in ((0, ref_line), (1, ref_sample)):
        out = gc.geocode(_ramp(n, axis), inverse, grid, multilook=2, chunk=64)
        assert isinstance(out.data, da.Array)
        assert out.dims == ("y", "x") and out.rio.crs.to_epsg() == 3413
        values = out.values
        # within 0.05 output pixel (in 40 m source pixels) of GDAL's position
        assert np.abs(values[inside] - ref[inside]).max() < 0.05 * grid.resolution / 40.0
        assert np.isnan(values[outside]).all()


def test_other_tie_points_make_other_graph_keys(ew):
    """The same radar array mapped with two sets of tie points (a slice's own and its pass's) in
    one computation: two graphs, two results, not one key for both."""
    from dataclasses import replace

    tp, grid, inverse, _ = ew
    shifted = gc.InverseMap(replace(tp, line=tp.line + 40.0), grid.crs)
    radar = _ramp(tp.shape, 0)
    own, other = gc.geocode(radar, inverse, grid, chunk=64), gc.geocode(radar, shifted, grid, chunk=64)
    assert own.data.name != other.data.name
    with dask.config.set(scheduler="sync"):
        own, other = dask.compute(own, other)
    away_from_ends = np.abs(own.values - tp.shape[0] / 2) < tp.shape[0] / 2 - 50  # positions clamped there
    inside = np.isfinite(own.values) & np.isfinite(other.values) & away_from_ends
    # lines numbered 40 higher at the tie points: each pixel samples the ramp 40 lines further on
    np.testing.assert_allclose((other.values - own.values)[inside], 40.0, atol=0.5)


def test_geocode_reads_only_each_chunks_window(ew, monkeypatch):
    tp, grid, inverse, _ = ew
    windows: list[tuple[int, int]] = []
    looked: list[tuple[int, int]] = []
    sample_windows, multilook = gc._sample_windows, gc.multilook

    def spy_window(line, sample, *radar, **kwargs):
        windows.extend(w.shape for w in radar)
        return sample_windows(line, sample, *radar, **kwargs)

    def spy_multilook(image, looks):
        looked.append(image.shape)
        return multilook(image, looks)

    monkeypatch.setattr(gc, "_sample_windows", spy_window)
    monkeypatch.setattr(gc, "multilook", spy_multilook)
    out = gc.geocode(_ramp(tp.shape, 0), inverse, grid, multilook=2, chunk=32)
    with dask.config.set(scheduler="sync"):
        out.compute()
    band = tp.shape[0] * tp.shape[1]
    assert len(windows) > 20
    # a 32-pixel chunk at 1 km covers 32 km = 800 radar pixels a side (plus the scene's
    # rotation); windows are in 2 × 2 multilooked pixels
    assert max(h * w for h, w in windows) * 4 < 0.02 * band
    # every radar block is multilooked once, not once per window that reads it
    assert len(looked) <= 36  # 6 × 6 blocks of 2048
    assert max(h * w for h, w in looked) <= 2048 * 2048


@pytest.mark.slow
def test_geocode_average_resampling(ew):
    tp, grid, inverse, gdal = ew
    ones = xr.DataArray(da.ones(tp.shape, chunks=2048, dtype=np.float32), dims=("line", "sample"))
    bilinear = gc.geocode(_ramp(tp.shape, 1), inverse, grid, chunk=128).values
    average = gc.geocode(_ramp(tp.shape, 1), inverse, grid, chunk=128, resampling="average").values
    constant = gc.geocode(ones, inverse, grid, chunk=128, resampling="average").values
    # pixels away from the footprint edge: the mean of a linear ramp over a pixel is its
    # centre value (the map is locally affine)
    both = ndimage.binary_erosion(np.isfinite(bilinear) & np.isfinite(average), iterations=1)
    assert both.sum() > 20_000
    assert np.abs(bilinear[both] - average[both]).max() < 0.5
    assert np.allclose(constant[np.isfinite(constant)], 1.0)
    # averaging extends the footprint by at most part of a pixel
    assert abs(np.isfinite(average).sum() - np.isfinite(bilinear).sum()) < 0.02 * np.isfinite(bilinear).sum()


def test_multilook_is_block_mean():
    image = np.random.default_rng(0).gamma(2.0, size=(101, 87)).astype(np.float32)
    expected = block_reduce(image[:100, :86], (2, 2), np.mean)
    np.testing.assert_allclose(gc.multilook(image, 2), expected, rtol=1e-6)


def test_bilinear_matches_scipy_map_coordinates():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(40, 50))
    line, sample = rng.uniform(0, 39, 1000), rng.uniform(0, 49, 1000)
    expected = ndimage.map_coordinates(image, [line, sample], order=1)
    np.testing.assert_allclose(gc._bilinear(image, line, sample), expected, atol=1e-12)


def test_input_errors(ew):
    tp, grid, inverse, _ = ew
    with pytest.raises(ValueError, match="dims"):
        gc.geocode(_ramp(tp.shape, 0).rename(line="y"), inverse, grid)
    with pytest.raises(ValueError, match="shape"):
        gc.geocode(_ramp((100, 100), 0), inverse, grid)
    with pytest.raises(ValueError, match="resampling"):
        gc.geocode(_ramp(tp.shape, 0), inverse, grid, resampling="cubic")


def test_multilook_lazy_equals_whole_image_multilook():
    image = np.random.default_rng(3).gamma(2.0, size=(203, 157)).astype(np.float32)
    lazy = gc.multilook_lazy(da.from_array(image, chunks=(51, 37)), 2)  # odd chunks get realigned
    np.testing.assert_allclose(lazy.compute(), gc.multilook(image, 2), rtol=1e-6)
    assert lazy.shape == (101, 78)


def test_radar_to_grid_map_is_the_spline_at_pixel_centres(ew):
    tp, grid, inverse, _ = ew
    line, sample = gc.radar_to_grid_map(tp, grid, chunk=64)
    assert isinstance(line, da.Array) and line.shape == grid.shape
    yy, xx = np.meshgrid(grid.y, grid.x, indexing="ij")
    exact_line, exact_sample = inverse(xx, yy)
    # within 0.05 output pixel, in 40 m source pixels
    assert np.abs(line.compute() - exact_line).max() < 0.05 * grid.resolution / 40.0
    assert np.abs(sample.compute() - exact_sample).max() < 0.05 * grid.resolution / 40.0
