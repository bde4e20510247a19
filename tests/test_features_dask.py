"""glcm() on xarray/dask: chunking independence, laziness, metadata, quantisation, errors."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from seaice_dask.errors import ConfigError
from seaice_dask.features import ALL_FEATURES, glcm
from seaice_dask.features.glcm import equalprob_edges, quantize
from seaice_dask.features.reference import glcm_reference, make_layout
from seaice_dask.grid import Grid

FIVE = ["contrast", "homogeneity", "ASM", "correlation", "entropy"]


def scene(ny: int, nx: int, seed: int = 0, nodata: float = 0.05) -> xr.DataArray:
    """A sigma0-like dB image on a UTM grid with speckle, smooth structure and no-data."""
    rng = np.random.default_rng(seed)
    grid = Grid.from_bounds("EPSG:32626", (400_000.0, 7_400_000.0, 400_000.0 + 80 * nx, 7_400_000.0 + 80 * ny), 80.0)
    yy, xx = np.mgrid[0:ny, 0:nx]
    db = -18 + 6 * np.sin(xx / 37.0) * np.cos(yy / 53.0) + rng.normal(0, 2.5, (ny, nx))
    db[rng.random((ny, nx)) < nodata] = np.nan
    db[: ny // 7, : nx // 5] = np.nan  # "land"
    return grid.wrap(db.astype(np.float32), name="sigma0_hv", attrs={"units": "dB", "polarisation": "HV"})


@pytest.mark.slow
def test_bit_identical_for_every_chunking():
    da0 = scene(1100, 800)
    single = glcm(da0.chunk({"y": -1, "x": -1}), vmin=-35, vmax=-5)
    assert isinstance(single.data, dsa.Array)
    want = single.values
    for chunks in ({"y": 256, "x": 256}, {"y": 1000, "x": 700}):
        got = glcm(da0.chunk(chunks), vmin=-35, vmax=-5).values
        assert np.array_equal(got, want, equal_nan=True), chunks
    assert np.array_equal(glcm(da0, vmin=-35, vmax=-5).values, want, equal_nan=True)  # NumPy path


def test_sliver_chunks_are_merged_not_cut_into_halo_sized_pieces():
    """A 101-row grid in chunks of 50 leaves a 1-row chunk, smaller than the window's halo."""
    da0 = scene(101, 90)
    out = glcm(da0.chunk({"y": 50, "x": 45}), vmin=-35, vmax=-5)
    assert out.data.chunks[-2:] == ((50, 51), (45, 45))
    single = glcm(da0.chunk({"y": -1, "x": -1}), vmin=-35, vmax=-5)
    assert np.array_equal(out.values, single.values, equal_nan=True)


def test_dask_in_dask_out_with_metadata_and_crs():
    da0 = scene(90, 70).chunk({"y": 40, "x": 30})
    with dask.config.set(scheduler="sync"):
        out = glcm(da0, window=7, features=FIVE, vmin=-35, vmax=-5)
        assert isinstance(out.data, dsa.Array) and out.dtype == np.float32
        assert out.dims == ("feature", "y", "x") and list(out.feature.values) == FIVE
        assert out.data.chunks[1:] == da0.data.chunks
        assert out.rio.crs.to_epsg() == 32626
        np.testing.assert_array_equal(out.x, da0.x)
        assert out.attrs["polarisation"] == "HV" and out.attrs["glcm_window"] == 7
        assert out.attrs["glcm_vmin"] == -35.0 and "units" in out.attrs
        out.compute()


def test_public_output_matches_reference_from_db_values():
    da0 = scene(30, 26, seed=2, nodata=0.1)
    levels, window = 16, 5
    out = glcm(da0.chunk({"y": 11, "x": 9}), window=window, levels=levels, vmin=-30, vmax=-5).values
    q = np.where(np.isnan(da0.values), -1, np.clip(np.floor((da0.values + 30) / 25 * levels), 0, levels - 1))
    want = glcm_reference(q.astype(np.int64), window=window, levels=levels, layout=make_layout([1], (0, 45, 90, 135), "standard", True))[:, 0]  # fmt: skip
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_layouts_distances_and_snap():
    da0 = scene(40, 40)
    multi = glcm(da0, window=9, distances=(1, 2), features=["contrast", "ASM"], vmin=-35, vmax=-5)
    assert list(multi.feature.values) == ["contrast_d1", "ASM_d1", "contrast_d2", "ASM_d2"]
    single = glcm(da0, window=9, distances=(2,), features=["contrast", "ASM"], vmin=-35, vmax=-5)
    np.testing.assert_array_equal(multi.values[2:], single.values)
    full = glcm(da0, window=9, distances=(1, 2), average_angles=False, vmin=-35, vmax=-5)
    assert full.dims == ("feature", "distance", "angle", "y", "x") and full.shape[:3] == (10, 2, 4)
    np.testing.assert_allclose(full.isel(distance=0).mean("angle"), glcm(da0, window=9, vmin=-35, vmax=-5), rtol=1e-6, atol=1e-6)
    snap = glcm(da0, window=9, mode="snap", vmin=-35, vmax=-5)
    assert snap.dims == ("feature", "y", "x") and snap.attrs["glcm_mode"] == "snap"


def test_quantisation_is_global_not_per_chunk():
    values = np.array([[np.nan, -40.0, -30.0, -29.99], [-15.0, -0.01, 0.0, 5.0]])
    q = quantize(values, 32, vmin=-30, vmax=0)
    np.testing.assert_array_equal(q, [[-1, 0, 0, 0], [16, 31, 31, 31]])
    lazy = quantize(dsa.from_array(values, chunks=1), 32, vmin=-30, vmax=0)
    np.testing.assert_array_equal(lazy.compute(), q)
    # equal-probability levels from one histogram: about the same share per level
    data = np.random.default_rng(1).gamma(2.0, 3.0, (400, 400)) - 30
    edges = equalprob_edges(dsa.from_array(data, chunks=100), 8, -30, 10)
    shares = np.bincount(quantize(data, 8, vmin=-30, vmax=10, edges=edges).ravel(), minlength=8) / data.size
    np.testing.assert_allclose(shares, 1 / 8, atol=0.01)
    da0 = scene(60, 50)
    eq = glcm(da0.chunk({"y": 20, "x": 20}), quantizer="equalprob", vmin=-35, vmax=-5, features=FIVE)
    np.testing.assert_array_equal(eq.values, glcm(da0, quantizer="equalprob", vmin=-35, vmax=-5, features=FIVE).values)


def test_default_range_is_the_scene_min_max():
    da0 = scene(30, 30)
    out = glcm(da0, window=5, features=["mean"])
    assert out.attrs["glcm_vmin"] == pytest.approx(float(np.nanmin(da0))) and out.attrs["glcm_vmax"] == pytest.approx(float(np.nanmax(da0)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"window": 10}, "odd"),
        ({"window": 5, "distances": (5,)}, "distances"),
        ({"features": ["contrast", "glcm_mean"]}, "unknown"),
        ({"levels": 300}, "levels"),
        ({"mode": "snap", "average_angles": False}, "pools"),
        ({"vmin": -5, "vmax": -5}, "range"),
    ],
)
def test_bad_parameters_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        glcm(scene(20, 20), **{"vmin": -35, "vmax": -5, **kwargs})


def test_all_features_names():
    assert ALL_FEATURES == (
        "contrast", "dissimilarity", "homogeneity", "ASM", "energy", "entropy", "correlation", "mean", "variance", "max_prob",
    )  # fmt: skip
