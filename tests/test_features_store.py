"""write_glcm_features: cube wiring, resumability, parameter guard."""

from __future__ import annotations

import numpy as np
import pytest

from seaice_dask.config import FeaturesConfig
from seaice_dask.cube import create_cube, done, ensure_variable, mark_done, open_cube, write_slice
from seaice_dask.errors import ConfigError, CubeError
from seaice_dask.features import glcm
from seaice_dask.features.store import write_glcm_features
from seaice_dask.grid import Grid

GRID = Grid.from_bounds("EPSG:32626", (400_000.0, 7_400_000.0, 400_000.0 + 80 * 70, 7_400_000.0 + 80 * 50), 80.0)
CFG = FeaturesConfig(window=5, levels=16)


@pytest.fixture()
def cube(tmp_path):
    """Three time slots; sigma0 ingested for the first two only."""
    path = tmp_path / "cube.zarr"
    times = np.array(["2020-11-01T08:00", "2020-11-02T08:00", "2020-11-03T08:00"], dtype="datetime64[ns]")
    create_cube(path, GRID, times, chunk=32)
    rng = np.random.default_rng(0)
    for pol, centre in (("hh", -15.0), ("hv", -25.0)):
        ensure_variable(path, f"sigma0_{pol}", dtype="float32", fill_value=np.float32(np.nan), attrs={"units": "dB"})
        for t in range(3):
            db = rng.normal(centre, 3.0, GRID.shape).astype(np.float32)
            db[:, : 3 + t] = np.nan  # outside the swath
            write_slice(path, f"sigma0_{pol}", t, db)
    for t in (0, 1):
        mark_done(path, "ingest", t)
    return path


def test_writes_features_of_ingested_slices_and_resumes(cube):
    assert write_glcm_features(cube, CFG, progress=False) == ["glcm_hh", "glcm_hv"]
    ds = open_cube(cube)
    assert ds.glcm_hv.dims == ("time", "feature", "y", "x") and ds.glcm_hv.dtype == np.float16
    assert list(ds.feature.values) == list(CFG.features)
    for pol, (lo, hi) in CFG.ranges_db.items():
        want = glcm(ds[f"sigma0_{pol}"].isel(time=1).compute(), window=5, levels=16, features=CFG.features, vmin=lo, vmax=hi)
        # stored: the float32 features rounded to the nearest float16, within the documented bound
        np.testing.assert_array_equal(ds[f"glcm_{pol}"].isel(time=1).values, want.values.astype(np.float16))
        np.testing.assert_allclose(ds[f"glcm_{pol}"].isel(time=1).values.astype(np.float32), want.values, rtol=2**-11)
    assert np.isnan(ds.glcm_hh.isel(time=2).values).all()
    np.testing.assert_array_equal(done(cube, "glcm_hh"), [True, True, False])
    np.testing.assert_array_equal(done(cube, "features"), [True, True, False])

    # resume: slice 0 is not recomputed (overwrite it with a marker), slice 2 is computed once ingested
    write_slice(cube, "glcm_hh", 0, np.zeros((len(CFG.features), *GRID.shape), np.float32))
    mark_done(cube, "ingest", 2)
    write_glcm_features(cube, CFG, progress=False)
    ds = open_cube(cube)
    assert (ds.glcm_hh.isel(time=0).values == 0).all()
    assert np.isfinite(ds.glcm_hh.isel(time=2).values).any()
    np.testing.assert_array_equal(done(cube, "features"), [True, True, True])


def test_refuses_to_mix_parameters_and_reports_missing_inputs(cube):
    write_glcm_features(cube, CFG, pols=("hh",), progress=False)
    with pytest.raises(CubeError, match="window"):
        write_glcm_features(cube, FeaturesConfig(window=7, levels=16), pols=("hh",), progress=False)
    with pytest.raises(CubeError, match="sigma0_vv"):
        write_glcm_features(cube, CFG, pols=("vv",), progress=False)
    with pytest.raises(ConfigError, match="ranges_db"):
        write_glcm_features(cube, FeaturesConfig(window=5, ranges_db={"hh": (-30, 0)}), pols=("hv",), progress=False)


def test_a_cube_with_float32_features_keeps_them(cube):
    """A cube written before the float16 texture: its variable keeps float32 and exact values."""
    ensure_variable(cube, "glcm_hh", dtype="float32", fill_value=np.float32(np.nan),
                    attrs={f"glcm_{k}": v for k, v in _stored_parameters("hh").items()},
                    extra_dims={"feature": list(CFG.features)})
    write_glcm_features(cube, CFG, pols=("hh",), progress=False)
    ds = open_cube(cube)
    assert ds.glcm_hh.dtype == np.float32
    lo, hi = CFG.ranges_db["hh"]
    want = glcm(ds["sigma0_hh"].isel(time=0).compute(), window=5, levels=16, features=CFG.features, vmin=lo, vmax=hi)
    np.testing.assert_array_equal(ds.glcm_hh.isel(time=0).values, want.values)


def _stored_parameters(pol: str) -> dict:
    from seaice_dask.features.store import _parameters

    return {k: v for k, v in _parameters(CFG, pol).items() if v is not None}
