"""``watch``: new products in a folder or an archive become maps, across kills and archive faults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import yaml

from seaice_dask.cube import open_cube
from tests.archive_server import PASSWORD, USER, ArchiveServer, ArchiveState
from tests.smallseries import SEAICE_DASK, env, kill_when

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, models: Path, **extra) -> Path:
    raw = {
        "paths": {"scenes": ["incoming/*.zip"], "models": str(models)},
        "cluster": {"n_workers": 1, "threads_per_worker": 1, "memory_limit": "2GiB", "dashboard": False},
        **extra,
    }
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _state(out: Path) -> dict:
    path = out / "watch.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _written(out: Path) -> set[str]:
    return {name for name, entry in _state(out).items() if "written" in entry}


def _wait(condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_folder_watch_survives_sigkill_without_duplicates(small_series, tmp_path):
    reference = small_series.reference
    models = shutil.copytree(reference / "models", tmp_path / "model")
    scenes = sorted((reference / "scenes").glob("*.zip"))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = _config(tmp_path, models)
    out = tmp_path / "classified"
    log = tmp_path / "watch.log"
    proc = subprocess.Popen([SEAICE_DASK, "watch", str(config), "--interval", "1"], env=env(),
                            start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        shutil.copy(scenes[0], incoming)
        _wait(lambda: _written(out) == {scenes[0].name})
        latency = _state(out)[scenes[0].name]["latency_s"]
        assert 0 < latency <= 1 + 60
        shutil.copy(scenes[1], incoming)

        def second_under_way() -> bool:
            try:
                return open_cube(out / "cube.zarr").sizes["time"] == 2
            except Exception:  # the store is being written
                return False

        kill_when(proc, second_under_way)
    finally:
        if proc.poll() is None:
            proc.kill()
    shutil.copy(scenes[2], incoming)
    again = subprocess.run([SEAICE_DASK, "watch", str(config), "--rounds", "1"], env=env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _written(out) == {s.name for s in scenes}
    cube = open_cube(out / "cube.zarr")
    assert cube.sizes["time"] == 3  # no duplicate time step
    maps = sorted((out / "maps").glob("class_*.tif"))
    assert len(maps) == 3
    collection = pystac.Collection.from_file(str(out / "maps" / "collection.json"))
    assert len(list(collection.get_items())) == 3
    batch = open_cube(reference / "cube.zarr")
    for t, product in enumerate(cube["product_id"].values):
        expected = batch["class"].isel(time=int(np.flatnonzero(batch["product_id"].values == product)[0])).values
        np.testing.assert_array_equal(cube["class"].isel(time=t).values, expected)
    with rasterio.open(maps[0]) as cog:
        assert cog.read(1).shape == expected.shape


def test_archive_watch_keeps_going_through_faults(small_series, served_series, tmp_path):
    state = ArchiveState()
    a, b = served_series.scenes[:2]
    ids = {"a": state.add_product(a), "b": state.add_product(b)}
    state.faults = {ids["a"]: ["500"] * 3, ids["b"]: ["401", "429"]}  # A fails its first round (1 retry)
    models = shutil.copytree(small_series.reference / "models", tmp_path / "model")
    with ArchiveServer(state) as server:
        url = server.url
        config = _config(tmp_path, models, dates={"start": "2020-10-05"}, download={
            "relative_orbit": 24, "retries": 1, "backoff_s": 0.05, "timeout_s": 20,
            "cdse": {"catalogue_url": f"{url}/odata/v1", "download_url": f"{url}/odata/v1", "token_url": f"{url}/token"},
        })
        environment = {**env(), "CDSE_USERNAME": USER, "CDSE_PASSWORD": PASSWORD, "NETRC": os.devnull}
        proc = subprocess.run([sys.executable, "-m", "seaice_dask.cli", "-v", "watch", str(config), "--download",
                               "--interval", "1", "--rounds", "3"], env=environment, capture_output=True, text=True,
                              timeout=900)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "classified"
    assert _written(out) == {a.name, b.name}, proc.stderr
    assert "failed this round" in proc.stderr and "map written" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


def test_the_archive_window_ends_today_and_skips_charts(tmp_path):
    import datetime as dt

    from seaice_dask.config import PipelineConfig
    from seaice_dask.watch import LOOKBACK_DAYS, watch_window

    today = dt.date(2021, 1, 10)
    window = watch_window(PipelineConfig(), today)
    assert (window.dates.start, window.dates.end) == (today - dt.timedelta(days=LOOKBACK_DAYS), today)
    assert not window.download.charts.enabled
    fixed = PipelineConfig.model_validate({"dates": {"start": "2020-10-05", "end": "2020-11-01"}})
    assert (watch_window(fixed, today).dates.start, watch_window(fixed, today).dates.end) == (dt.date(2020, 10, 5), dt.date(2020, 11, 1))
    assert fixed.download.charts.enabled  # the caller's config is untouched
