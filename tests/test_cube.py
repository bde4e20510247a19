import dask.array as da
import numpy as np
import pandas as pd
import pytest

from seaice_dask import cube
from seaice_dask.errors import CubeError
from seaice_dask.grid import Grid

GRID = Grid.from_bounds("EPSG:32626", (0, 0, 4000, 3000), 100)
TIMES = pd.date_range("2020-10-05", periods=3, freq="6D").values


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "cube.zarr"
    cube.create_cube(path, GRID, TIMES, {"product_id": ["a", "bb", "ccc"], "relative_orbit": [24] * 3}, chunk=16)
    return path


def test_create_and_open(store):
    ds = cube.open_cube(store)
    assert ds.sizes == {"time": 3, "y": 30, "x": 40}
    assert list(ds.product_id.values) == ["a", "bb", "ccc"]
    assert ds.rio.crs.to_epsg() == 32626
    assert cube.cube_grid(store) == GRID
    np.testing.assert_array_equal(ds.x.values, GRID.x)
    assert cube.validate_cube(store) == []
    with pytest.raises(CubeError, match="already exists"):
        cube.create_cube(store, GRID, TIMES)


def test_slices_extra_dims_static_and_flags(store):
    cube.ensure_variable(store, "sigma0_hh", dtype="float32", fill_value=np.nan, attrs={"units": "dB"})
    cube.ensure_variable(store, "glcm_hh", dtype="float32", fill_value=np.nan, extra_dims={"feature": ["contrast", "ASM"]})
    cube.ensure_variable(store, "land", dtype=bool, fill_value=False, static=True)
    cube.ensure_variable(store, "sigma0_hh", dtype="float32", fill_value=np.nan)  # idempotent
    data = da.random.random(GRID.shape, chunks=(7, 11)).astype("float32")
    cube.write_slice(store, "sigma0_hh", 1, data)
    cube.write_slice(store, "sigma0_hh", 1, data)  # idempotent rewrite
    cube.write_slice(store, "glcm_hh", 2, np.full((2, *GRID.shape), 3.0))
    cube.write_slice(store, "land", None, np.ones(GRID.shape, bool))
    cube.mark_done(store, "ingest", 1)
    ds = cube.open_cube(store)
    np.testing.assert_array_equal(ds.sigma0_hh[1].values, data.compute())
    assert np.isnan(ds.sigma0_hh[0].values).all()
    assert list(ds.feature.values) == ["contrast", "ASM"] and float(ds.glcm_hh[2, 1].max()) == 3.0
    assert ds.land.dims == ("y", "x") and bool(ds.land.all())
    np.testing.assert_array_equal(cube.done(store, "ingest"), [False, True, False])
    np.testing.assert_array_equal(cube.done(store, "labels"), [False] * 3)
    with pytest.raises(CubeError, match="does not match"):
        cube.write_slice(store, "sigma0_hh", 0, np.zeros((3, 3)))
    with pytest.raises(CubeError, match="out of range"):
        cube.write_slice(store, "sigma0_hh", 5, np.zeros(GRID.shape))
    with pytest.raises(CubeError, match="exists with dims"):
        cube.ensure_variable(store, "land", dtype=bool, fill_value=False)


def test_slice_coords_and_append(store):
    cube.ensure_variable(store, "labels", dtype="int8", fill_value=-1)
    cube.set_slice_coord(store, "chart_id", 1, "nic_arctic_20201008")
    cube.set_slice_coord(store, "chart_date", 1, np.datetime64("2020-10-08"))
    cube.mark_done(store, "labels", 1)
    new = [np.datetime64("2020-11-01")]
    assert cube.append_times(store, new, {"product_id": ["dddd"], "relative_orbit": [24]}) == [3]
    assert cube.append_times(store, new, {"product_id": ["dddd"]}) == []  # already there
    ds = cube.open_cube(store)
    assert ds.sizes["time"] == 4 and ds.labels.shape[0] == 4
    assert list(ds.product_id.values) == ["a", "bb", "ccc", "dddd"]
    assert list(ds.chart_id.values) == ["", "nic_arctic_20201008", "", ""]
    assert pd.isna(ds.chart_date.values[[0, 2, 3]]).all()
    assert ds.chart_date.values[1] == np.datetime64("2020-10-08")
    assert int(ds.labels[3].min()) == -1
    np.testing.assert_array_equal(cube.done(store, "labels"), [False, True, False, False])
    assert cube.validate_cube(store) == []


def test_remove_times_moves_the_last_steps_into_the_holes(store):
    cube.append_times(store, pd.date_range("2020-11-01", periods=2, freq="6D").values,
                      {"product_id": ["dddd", "eeeee"], "relative_orbit": [24, 89]})
    cube.ensure_variable(store, "glcm_hh", dtype="float32", fill_value=np.nan, extra_dims={"feature": ["contrast", "ASM"]})
    values = np.arange(5, dtype="float32")[:, None, None, None] + np.zeros((5, 2, *GRID.shape), "float32")
    for t in range(5):
        cube.write_slice(store, "glcm_hh", t, values[t])
        if t != 4:
            cube.mark_done(store, "features", t)
    before = cube.open_cube(store)
    moved = cube.remove_times(store, [3, 1])
    assert moved == {0: 0, 2: 2, 4: 1}
    ds = cube.open_cube(store)
    assert ds.sizes["time"] == 3 and cube.validate_cube(store) == []
    assert list(ds.product_id.values) == ["a", "eeeee", "ccc"] and list(ds.relative_orbit.values) == [24, 89, 24]
    np.testing.assert_array_equal(ds.time.values, before.time.values[[0, 4, 2]])
    np.testing.assert_array_equal(ds.glcm_hh.values, values[[0, 4, 2]])
    np.testing.assert_array_equal(cube.done(store, "features"), [True, False, True])  # flags travel with the step
    assert "removing_times" not in cube.cube_attrs(store)


def test_interrupted_removal_is_finished(store):
    cube.ensure_variable(store, "sigma0_hh", dtype="float32", fill_value=np.nan)
    for t in range(3):
        cube.write_slice(store, "sigma0_hh", t, np.full(GRID.shape, t, "float32"))
    # a crash after the last step was copied into slot 0, before the resize: the plan is redone
    cube.set_cube_attrs(store, removing_times={"moves": [[2, 0]], "size": 2, "moved": False})
    cube.write_slice(store, "sigma0_hh", 0, np.full(GRID.shape, 2, "float32"))
    cube.finish_removal(store)
    ds = cube.open_cube(store)
    assert list(ds.product_id.values) == ["ccc", "bb"] and cube.validate_cube(store) == []
    assert ds.sigma0_hh.values[:, 0, 0].tolist() == [2.0, 1.0]
    cube.finish_removal(store)  # nothing left to do
    assert cube.open_cube(store).sizes["time"] == 2


def test_not_a_cube(tmp_path):
    with pytest.raises(CubeError, match="no cube here"):
        cube.open_cube(tmp_path / "missing.zarr")
    assert cube.validate_cube(tmp_path / "missing.zarr")
