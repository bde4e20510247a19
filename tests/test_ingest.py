"""Ingest of simulated scenes into the cube: values against the simulator's truth, incremental
runs, crash safety (SIGKILL mid-way, then resume == uninterrupted), bad scenes, validation."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from seaice_dask import cube
from seaice_dask.config import PipelineConfig, dump_config, load_config
from seaice_dask.errors import CubeError
from seaice_dask.ingest import ingest, validate_ingest

pytestmark = pytest.mark.slow

DATES = [dt.datetime(2020, 10, 12, 8, 31), dt.datetime(2020, 11, 9, 8, 29), dt.datetime(2020, 12, 7, 8, 30),
         dt.datetime(2021, 1, 4, 8, 30), dt.datetime(2021, 2, 1, 8, 29), dt.datetime(2021, 3, 1, 8, 31)]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    """Six small simulated EW GRDM HH+HV scenes over the Denmark Strait, one a month."""
    from seaice_dask.simulate.safe_writer import SceneSpec, write_scene

    out = tmp_path_factory.mktemp("scenes")
    return [write_scene(out, SceneSpec(start=d, absolute_orbit=34000 + 400 * i, seed=0)) for i, d in enumerate(DATES)]


#: Plain ESA processing: the values are checked against the forward model at each pixel's own
#: incidence (corrections are tested in test_ingest_incidence.py).
PLAIN_ESA = {"denoise": "esa", "textural_noise": False, "incidence": {"correction": "none"}}


def _config(workdir: Path, scenes: list[Path], **grid) -> PipelineConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    raw = {
        "paths": {"workdir": str(workdir), "scenes": [str(s) for s in scenes], "store": "cube.zarr"},
        "grid": {"resolution_m": 800, "chunk": 128, **grid},
        "preprocess": PLAIN_ESA,
    }
    path = dump_config(PipelineConfig.model_validate(raw), workdir / "config.yaml")
    return load_config(path)


def _assert_same_cube(a: Path, b: Path) -> None:
    left, right = cube.open_cube(a), cube.open_cube(b)
    assert sorted(left.variables) == sorted(right.variables)
    xr.testing.assert_identical(left.load(), right.load())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scenes) -> PipelineConfig:
    cfg = _config(tmp_path_factory.mktemp("reference"), scenes)
    report = ingest(cfg, progress=False)
    assert report.ok and len(report.ingested) == 6, report.summary()
    return cfg


def test_cube_layout_and_metadata(reference):
    ds = cube.open_cube(reference.paths.store)
    assert ds.sizes["time"] == 6 and (ds.sizes["y"], ds.sizes["x"]) == reference.grid.to_grid().shape
    assert ds["sigma0_hh"].dtype == np.float32 and ds["sigma0_hh"].attrs["units"] == "dB"
    assert ds["land"].dims == ("y", "x") and ds["land"].dtype == bool
    assert ds["sigma0_hh"].rio.crs.to_epsg() == 32626
    assert list(ds["mission"].values) == ["S1A"] * 6
    assert all(str(p).startswith("S1A_EW_GRDM_1SDH_") for p in ds["product_id"].values)
    assert list(ds["denoise"].values) == ["esa"] * 6
    assert (np.diff(ds["time"].values) > np.timedelta64(0)).all()
    assert cube.done(reference.paths.store, "ingest").all()
    assert validate_ingest(reference.paths.store) == []


def test_values_match_the_simulator_truth(reference):
    """Per class, the median of the ingested sigma0 is the forward model's mean at the same
    incidence (speckle and texture average out; ESA denoising leaves HV unbiased)."""
    from seaice_dask.simulate.backscatter import mean_sigma0_db
    from seaice_dask.simulate.truth import truth_fields

    ds = cube.open_cube(reference.paths.store)
    grid = cube.cube_grid(ds)
    checked = 0
    for t in (0, 3, 5):
        truth = truth_fields(grid, ds["time"].values[t], seed=0)
        slice_ = ds.isel(time=t).load()
        valid = slice_["valid"].values & ~slice_["land"].values
        for pol, tol in (("hh", 0.75), ("hv", 1.0)):
            expected = mean_sigma0_db(truth["surface"].values, slice_["incidence"].values, pol.upper(),
                                      truth["wind_speed"].values)
            got = slice_[f"sigma0_{pol}"].values
            for cls in range(4):
                sel = valid & (truth["truth_class"].values == cls) & np.isfinite(expected)
                if sel.sum() < 500:
                    continue
                assert abs(np.median(got[sel] - expected[sel])) < tol, (t, pol, cls)
                checked += 1
    assert checked >= 6


def test_rerun_skips_and_new_scene_appends(tmp_path, scenes, reference):
    cfg = _config(tmp_path / "inc", scenes[1:3])
    first = ingest(cfg, progress=False)
    assert len(first.ingested) == 2
    again = ingest(cfg, progress=False)
    assert again.ingested == [] and len(again.skipped) == 2
    # an earlier scene arrives late: it gets a new slot at the end
    more = ingest(_config(tmp_path / "inc", scenes[:3]), progress=False)
    assert len(more.ingested) == 1 and len(more.skipped) == 2
    inc, ref = cube.open_cube(cfg.paths.store), cube.open_cube(reference.paths.store)
    assert list(inc["product_id"].values) == list(ref["product_id"].values[[1, 2, 0]])
    for t_inc, t_ref in ((0, 1), (1, 2), (2, 0)):
        xr.testing.assert_identical(inc.isel(time=t_inc).load(), ref.isel(time=t_ref).load())


_RUN = "from seaice_dask.config import load_config; from seaice_dask.ingest import ingest; ingest(load_config({cfg!r}), progress=False)"


def test_sigkill_mid_ingest_then_resume_equals_uninterrupted(tmp_path, scenes, reference):
    cfg = _config(tmp_path / "crash", scenes)
    store = cfg.paths.store
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _RUN.format(cfg=str(tmp_path / "crash" / "config.yaml"))], env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists() and cube.done(store, "ingest").sum() >= 2:
                time.sleep(0.3)  # into the next scene's writes
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "ingest finished before it could be killed"
    flags = cube.done(store, "ingest")
    assert 2 <= flags.sum() < 6
    # the slices flagged before the kill are already final
    killed, ref = cube.open_cube(store), cube.open_cube(reference.paths.store)
    for t in np.flatnonzero(flags):
        xr.testing.assert_equal(killed["sigma0_hv"].isel(time=t).load(), ref["sigma0_hv"].isel(time=t).load())
    report = ingest(cfg, progress=False)
    assert len(report.ingested) == 6 - flags.sum() and report.ok
    _assert_same_cube(store, reference.paths.store)


def test_bad_scenes_are_skipped_and_reported(tmp_path, scenes):
    broken = tmp_path / "S1A_EW_GRDM_1SDH_20201201T083000_20201201T083104_035400_03C000_AAAA.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    cfg = _config(tmp_path / "bad", [scenes[0], broken], bounds=None)
    with pytest.warns(UserWarning, match="skipping scene"):
        report = ingest(cfg, progress=False)
    assert report.ingested and not report.ok
    assert list(report.failed) == [str(broken)] and broken.name in report.failed[str(broken)]
    # grid from the footprint of the good scene (bounds: null)
    grid = cube.cube_grid(cfg.paths.store)
    assert grid.resolution == 800 and grid.shape[0] > 400


def test_missing_polarisation_and_date_filter(tmp_path, scenes):
    cfg = _config(tmp_path / "pol", scenes[:2])
    cfg.preprocess.polarisations = ["HH", "VV"]
    with pytest.warns(UserWarning, match="VV"):
        report = ingest(cfg, progress=False)
    assert len(report.failed) == 2 and not cfg.paths.store.exists()
    cfg = _config(tmp_path / "dates", scenes)
    cfg.dates.start, cfg.dates.end = dt.date(2020, 11, 1), dt.date(2020, 11, 30)
    report = ingest(cfg, progress=False)
    assert len(report.ingested) == 1 and len(report.excluded) == 5


def test_grid_mismatch_and_validation(tmp_path, scenes, reference):
    copy = tmp_path / "cube.zarr"
    shutil.copytree(reference.paths.store, copy)
    cfg = _config(tmp_path, scenes[:1], resolution_m=400)
    with pytest.raises(CubeError, match="grid"):
        ingest(cfg, progress=False)
    # a flagged slice whose data went missing is reported
    import zarr

    zarr.open_group(str(copy), mode="r+")["valid"][2] = False
    problems = validate_ingest(copy)
    assert any("slice 2" in p and "valid" in p for p in problems)
    assert validate_ingest(tmp_path / "nothing.zarr")


def test_client_keeps_passes_in_flight_and_a_failing_pass_stays_unflagged(tmp_path, scenes, reference):
    """With a client, passes compute while earlier ones are finished: the cube is the sequential
    one, and a scene whose radar data cannot be read (a TIFF holding no image: its metadata
    opens) is reported without stopping the passes around it, its step left unflagged."""
    import zipfile

    from distributed import Client, LocalCluster

    broken = tmp_path / "broken" / scenes[1].name.replace(".zip", ".SAFE")
    with zipfile.ZipFile(scenes[1]) as z:
        z.extractall(broken.parent)
    tiff = next(broken.glob("measurement/*hv*.tiff"))
    tiff.write_bytes(b"II*\x00 no image")
    cfg = _config(tmp_path / "client", [scenes[0], broken, *scenes[2:]])
    with (LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client,
          pytest.warns(UserWarning, match="skipping scene")):
        report = ingest(cfg, progress=False, client=client)
    assert list(report.failed) == [str(broken)] and len(report.ingested) == 5
    flags = cube.done(cfg.paths.store, "ingest")
    assert flags.tolist() == [True, False, True, True, True, True]
    ours, ref = cube.open_cube(cfg.paths.store), cube.open_cube(reference.paths.store)
    for t in np.flatnonzero(flags):
        xr.testing.assert_identical(ours.isel(time=t).load(), ref.isel(time=t).load())
    # the next run (sequential) rewrites the failed step from the intact scene: the whole cube
    report = ingest(_config(tmp_path / "client", scenes), progress=False)
    assert report.ok and len(report.ingested) == 1
    _assert_same_cube(cfg.paths.store, reference.paths.store)
