"""Crash points: `seaice-dask run` SIGKILLed during features, train and predict (with its
LocalCluster: the whole process group, as a batch system kills a job), then run again; and the
scheduler SIGKILLed under a run, then a resume on a new scheduler. Every resumed run must end with
outputs identical to the undisturbed reference (ingest is covered in test_ingest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from seaice_dask.cube import done
from seaice_dask.lock import lock_path, read_lock
from tests.smallseries import N_SCENES, SEAICE_DASK, assert_same_outputs, env, kill_when, start

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
DASK = str(Path(sys.executable).with_name("dask"))


def _flags(workdir: Path, stage: str) -> int:
    try:
        return int(done(workdir / "cube.zarr", stage).sum())
    except Exception:  # the flag variable is not there yet
        return 0


def _mid_train(workdir: Path) -> bool:
    """One model saved, the last one (and the training report) not yet."""
    models = workdir / "models"
    return (models / "gnb.skops").exists() and not (models / "train_report.json").exists()


#: Where the runs are killed, in pipeline order.
CRASH_POINTS: dict[str, Callable[[Path], bool]] = {
    "features": lambda w: _flags(w, "glcm_hh") >= 1,  # some slices of the first variable done
    "train": _mid_train,
    "predict": lambda w: 1 <= _flags(w, "predict") < N_SCENES,
}


def test_sigkill_during_features_train_and_predict_then_run_again_equals_undisturbed(small_series, tmp_path):
    """Each run is killed at the next point, so every resume passes through the stage the
    previous run died in; every run after a kill takes over the lock the killed run left."""
    workdir = tmp_path / "work"
    config = small_series.copy("charts", workdir)
    for stage, ready in CRASH_POINTS.items():
        log = tmp_path / f"killed-in-{stage}.log"
        kill_when(start(["run", str(config)], log), lambda: ready(workdir))
        assert read_lock(workdir / "cube.zarr") is not None, stage  # left behind by the killed run
        if stage != "features":  # the previous run's lock was there when this one started
            assert "taking over the lock of a run that is gone" in log.read_text(), stage
    again = subprocess.run([SEAICE_DASK, "run", str(config)], env=env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "taking over the lock of a run that is gone" in again.stderr
    assert not lock_path(workdir / "cube.zarr").exists()
    assert_same_outputs(workdir, small_series.reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster(tmp_path: Path, name: str) -> tuple[str, list[subprocess.Popen]]:
    """A real `dask scheduler` and one `dask worker` on 127.0.0.1."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"env": env(), "start_new_session": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0"], **quiet)
    worker = subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--memory-limit", "2GiB", "--no-dashboard",
                               "--local-directory", str(tmp_path / name), "--death-timeout", "10"], **quiet)
    return address, [scheduler, worker]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_scheduler_killed_mid_run_clear_error_then_resume_on_a_new_scheduler(small_series, tmp_path):
    workdir = tmp_path / "work"
    config = small_series.copy("charts", workdir)
    address, procs = _cluster(tmp_path, "first")
    try:
        log = tmp_path / "run.log"
        run = start(["run", str(config), "--scheduler", address], log)
        deadline = time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline and _flags(workdir, "glcm_hh") < 1:
            time.sleep(0.05)
        assert run.poll() is None, log.read_text()[-3000:]
        os.killpg(procs[0].pid, signal.SIGKILL)  # the scheduler
        killed = time.monotonic()
        run.wait(timeout=180)
        print(f"the run ended {time.monotonic() - killed:.1f} s after the scheduler was killed")
    finally:
        _stop(procs)
    err = log.read_text()
    assert run.returncode == 1, err[-3000:]
    message = err.strip().splitlines()[-1]
    assert message.startswith("error:") and f"lost the Dask scheduler {address}" in message, err[-3000:]
    assert "run again to resume" in message
    assert not lock_path(workdir / "cube.zarr").exists()  # released on the way out
    assert 1 <= _flags(workdir, "glcm_hh") < N_SCENES
    address, procs = _cluster(tmp_path, "second")
    try:
        again = subprocess.run([SEAICE_DASK, "run", str(config), "--scheduler", address], env=env(),
                               capture_output=True, text=True, timeout=600)
    finally:
        _stop(procs)
    assert again.returncode == 0, again.stderr[-4000:]
    assert_same_outputs(workdir, small_series.reference)
