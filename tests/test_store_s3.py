"""The cube in object storage (``paths.store: s3://…``, moto's S3 servers on 127.0.0.1).

Two servers stand for two object stores: the scenes' archive, reached through the AWS variables,
and the cube's, reached only through ``paths.storage_options``, so a stage, a worker or the lock
that ignored the options would find no cube. A whole `seaice-dask run` with the scenes read in
place and the cube in a bucket gives the same cube and scores as the run on local disk; the lock
is an object beside the cube; the credentials of the options are never written anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from seaice_dask import lock
from seaice_dask.config import dump_config, load_config
from seaice_dask.cube import RemoteStore, cube_exists, cube_store, open_cube
from seaice_dask.errors import StoreLockedError
from tests.s3server import aws_environment, moto_server
from tests.smallseries import SEAICE_DASK, env

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

KEY_ID, SECRET = "AKIASEAICEDASKTEST01", "seaice-dask-secret-that-must-never-be-written"
CUBE_URL = "s3://cubes/season/cube.zarr"


@pytest.fixture(scope="module")
def stores(s3_endpoint):
    """(scenes' endpoint, cube's endpoint) with the AWS variables set to the scenes' one."""
    with moto_server() as cube_endpoint, pytest.MonkeyPatch.context() as mp:
        aws_environment(mp, s3_endpoint)
        yield s3_endpoint, cube_endpoint


def _options(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, "key": KEY_ID, "secret": SECRET}


def _bucket(options: dict, name: str):
    from seaice_dask.safe.objectstore import s3_filesystem

    fs = s3_filesystem(**options)
    if not fs.exists(name):
        fs.mkdir(name)
    return fs


def _with_paths(config: Path, **paths) -> Path:
    """``config`` with ``paths`` set, written as a user writes it (credentials in it)."""
    raw = yaml.safe_load(config.read_text())
    raw["paths"] = {**raw["paths"], **paths}
    config.write_text(yaml.safe_dump(raw))
    return config


@pytest.mark.slow
def test_run_with_scenes_and_cube_in_buckets_equals_the_local_run(stores, small_series, tmp_path):
    """The small series' reference ran on local disk; here the same scenes are read in place from
    one bucket and the cube lives in another (reports, models and the truth stay local)."""
    _, cube_endpoint = stores
    reference = small_series.reference
    archive = _bucket({}, "series")  # the AWS variables
    for zip_path in sorted((reference / "scenes").glob("*.zip")):
        archive.put_file(str(zip_path), f"series/scenes/{zip_path.name}")
    _bucket(_options(cube_endpoint), "cubes")
    remote = tmp_path / "remote"
    config = small_series.inputs(remote)
    (remote / "scenes").unlink()
    _with_paths(config, workdir=".", scenes=["s3://series/scenes/*.zip"], store=CUBE_URL,
                storage_options=_options(cube_endpoint))
    run = subprocess.run([SEAICE_DASK, "-v", "run", str(config)], env=env(), capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]

    cfg = load_config(config)
    assert not (remote / "cube.zarr").exists() and cube_exists(cube_store(cfg))
    # the model key hashes the model file, which records when it was written
    got, expected = (open_cube(s).drop_vars("class_model_key") for s in (cube_store(cfg), reference / "cube.zarr"))
    for name in ("sigma0_hh", "sigma0_hv", "labels", "glcm_hh", "glcm_hv", "class", "proba"):
        assert name in got, name
    assert sorted(got.variables) == sorted(expected.variables)
    xr.testing.assert_identical(got.load(), expected.load())
    assert np.isfinite(got["glcm_hv"].values).any() and (got["class"].values >= 0).any()
    scores = [json.loads((d / "reports" / "scores.json").read_text())["scores"] for d in (remote, reference)]
    assert scores[0] == scores[1] and "truth" in scores[0]["sgd"]
    assert lock.read_lock(cube_store(cfg)) is None  # released
    validate = subprocess.run([SEAICE_DASK, "validate", CUBE_URL], env={**env(), "AWS_ENDPOINT_URL": cube_endpoint},
                              capture_output=True, text=True, timeout=120)
    assert validate.returncode == 0 and "consistent" in validate.stdout, validate.stdout + validate.stderr

    # the credentials: not in the log, the outputs, the cube's objects nor a dumped config
    fs = _bucket(_options(cube_endpoint), "cubes")
    files = [p for p in remote.rglob("*") if p.is_file() and p.name != "pipeline.yaml"]
    files.append(dump_config(cfg, tmp_path / "dumped.yaml"))
    assert len(files) > 20
    texts = [log.encode(), *(p.read_bytes() for p in files)]
    texts += [fs.cat_file(key) for key in fs.find("cubes") if key.endswith("zarr.json")]
    assert not [t for t in texts if SECRET.encode() in t or KEY_ID.encode() in t]
    dumped = load_config(tmp_path / "dumped.yaml")
    assert dumped.paths.store == CUBE_URL and dumped.paths.storage_options == {"endpoint_url": cube_endpoint}
    assert SECRET not in repr(cfg) and SECRET not in str(cube_store(cfg)) + repr(cube_store(cfg))


def test_the_lock_of_a_cube_in_a_bucket_is_an_object_beside_it(stores, tmp_path, caplog):
    """Taken with a conditional put: a second run is refused naming the holder, released after."""
    _, cube_endpoint = stores
    fs = _bucket(_options(cube_endpoint), "locks")
    store = RemoteStore("s3://locks/a/cube.zarr", _options(cube_endpoint))
    tmp_path.joinpath("pipeline.yaml").write_text(yaml.safe_dump({"paths": {}}))
    config = _with_paths(tmp_path / "pipeline.yaml", store=store.url, storage_options=store.storage_options)
    with lock.store_lock(store):
        holder = lock.read_lock(store)
        assert holder.pid == os.getpid() and fs.exists("locks/a/cube.zarr.lock")
        with pytest.raises(StoreLockedError, match=f"s3://locks/a/cube.zarr: locked by another run: .* pid {os.getpid()}"):
            lock.acquire(store)
        second = subprocess.run([SEAICE_DASK, "run", str(config)], env=env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        message = second.stderr.strip()
        assert message.startswith("error:") and "locked by another run" in message and len(message.splitlines()) == 1
        assert f"pid {holder.pid}" in message and holder.started in message and SECRET not in message
    fs.invalidate_cache()
    assert lock.read_lock(store) is None and not fs.exists("locks/a/cube.zarr.lock")

    # a lock left by a run that is gone is taken over; one from another host needs --force-unlock
    gone = {"host": "elsewhere", "pid": 4242, "proc_start": None, "started": "2026-01-01T00:00:00+00:00",
            "command": "seaice-dask run old.yaml"}
    fs.pipe_file("locks/a/cube.zarr.lock", json.dumps(gone).encode())
    with pytest.raises(StoreLockedError, match="host elsewhere, pid 4242.*another host.*--force-unlock"):
        lock.acquire(store)
    with lock.store_lock(store, force=True):
        assert lock.read_lock(store).pid == os.getpid()
    assert lock.read_lock(store) is None


def test_of_two_conditional_puts_one_wins(stores):
    """The lock object is created with If-None-Match: *, and removed only if it is the one read."""
    _, cube_endpoint = stores
    _bucket(_options(cube_endpoint), "locks")
    first = lock._lock_file(RemoteStore("s3://locks/race/cube.zarr", _options(cube_endpoint)))
    second = lock._lock_file(RemoteStore("s3://locks/race/cube.zarr", _options(cube_endpoint)))
    assert first.create(b"first") and not second.create(b"second")
    data, version = second.read()
    assert data == b"first"
    first.remove_if(version)  # still the one read: removed
    assert first.read() is None and second.create(b"second")
    first.remove_if(version)  # another version now: kept
    assert first.read()[0] == b"second"


def test_store_url_and_storage_options_in_the_config(tmp_path):
    """An s3:// store is kept as a URL (not resolved against workdir); other schemes are refused;
    the options' credentials, nested ones too, are neither dumped nor shown."""
    from seaice_dask.config import PipelineConfig
    from seaice_dask.errors import ConfigError

    options = {"endpoint_url": "https://eodata.example", "secret": SECRET, "key": KEY_ID,
               "client_kwargs": {"region_name": "default", "aws_secret_access_key": SECRET}}
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"paths": {"store": CUBE_URL, "storage_options": options}}))
    cfg = load_config(config)
    assert cfg.paths.store == CUBE_URL and cfg.paths.storage_options == options
    store = cube_store(cfg)
    assert isinstance(store, RemoteStore) and store.url == CUBE_URL and store.storage_options == options
    assert cube_store(PipelineConfig().resolve(tmp_path)) == tmp_path / "cube.zarr"  # local: a Path, as before
    shown = repr(cfg) + str(cfg) + repr(store) + str(store) + json.dumps(cfg.model_dump(mode="json"))
    assert SECRET not in shown and KEY_ID not in shown
    assert SECRET not in dump_config(cfg, tmp_path / "dumped.yaml").read_text()
    assert load_config(tmp_path / "dumped.yaml").paths.storage_options == {
        "endpoint_url": "https://eodata.example", "client_kwargs": {"region_name": "default"}}
    config.write_text(yaml.safe_dump({"paths": {"store": "gs://bucket/cube.zarr"}}))
    with pytest.raises(ConfigError, match="paths.store: .*only s3:// URLs"):
        load_config(config)


def test_a_half_made_cube_in_a_bucket_is_made_again_and_other_stores_are_kept(stores):
    """Object storage has no rename: a cube is written in place and becomes one (its grid) last."""
    import pandas as pd
    import zarr

    from seaice_dask.cube import create_cube, validate_cube
    from seaice_dask.errors import CubeError
    from seaice_dask.grid import default_grid

    _, cube_endpoint = stores
    options = _options(cube_endpoint)
    _bucket(options, "cubes")
    store = RemoteStore("s3://cubes/half/cube.zarr", options)
    zarr.open_group(store.url, mode="w", storage_options=options, attributes={"creating": 1, "chunk": 8})
    assert not cube_exists(store)  # an interrupted create_cube
    with pytest.raises(CubeError, match="s3://cubes/half/cube.zarr: not a seaice-dask cube"):
        open_cube(store)
    grid, times = default_grid(20_000.0), pd.to_datetime(["2020-10-05T08:00", "2020-10-11T08:00"])
    create_cube(store, grid, times, {"product_id": ["a", "b"]}, chunk=8)
    assert cube_exists(store) and validate_cube(store) == []
    assert "creating" not in zarr.open_group(store.url, mode="r", storage_options=options).attrs
    ds = open_cube(store)
    assert list(ds["product_id"].values) == ["a", "b"] and ds.sizes["y"] == grid.shape[0]
    with pytest.raises(CubeError, match="a store already exists here"):
        create_cube(store, grid, times, chunk=8)
    other = RemoteStore("s3://cubes/other.zarr", options)
    zarr.open_group(other.url, mode="w", storage_options=options, attributes={"mine": True})
    with pytest.raises(CubeError, match="a store already exists here"):
        create_cube(other, grid, times, chunk=8)
