"""The store lock: one writer per store, stale locks taken over, readers never blocked.

The lock is exercised by real processes: racing processes, a killed holder, and two
`seaice-dask run` on one store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seaice_dask import lock
from seaice_dask.cube import open_cube
from seaice_dask.errors import StoreLockedError
from tests.smallseries import N_SCENES, SEAICE_DASK, assert_same_outputs, env, start

_HOLD = """
import os, sys, time
from seaice_dask.lock import acquire
from seaice_dask.errors import StoreLockedError
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
try:
    acquire(sys.argv[1])
except StoreLockedError as exc:
    print("refused", exc)
else:
    print("acquired")
    sys.stdout.flush()
    time.sleep(float(sys.argv[3]))
"""


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def _write_lock(store: Path, **fields) -> None:
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": None,
              "started": "2026-01-01T00:00:00+00:00", "command": "seaice-dask run old.yaml", **fields}
    lock.lock_path(store).write_text(json.dumps(holder))


def test_lock_records_the_holder_and_refuses_a_second_writer(tmp_path):
    store = tmp_path / "cube.zarr"
    me = lock.acquire(store)
    recorded = json.loads((tmp_path / "cube.zarr.lock").read_text())
    assert recorded["host"] == socket.gethostname() and recorded["pid"] == os.getpid()
    assert recorded["proc_start"] == Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert recorded["started"].endswith("+00:00")
    with pytest.raises(StoreLockedError, match=f"locked by another run: .* pid {os.getpid()}, started") as err:
        lock.acquire(store)
    assert "\n" not in str(err.value) and str(store) in str(err.value)
    lock.release(store, me)
    assert not lock.lock_path(store).exists()


def test_store_lock_is_reentrant_and_released_on_errors(tmp_path):
    store = tmp_path / "cube.zarr"
    with pytest.raises(RuntimeError), lock.store_lock(store):
        with lock.store_lock(store):  # the CLI, then run_pipeline
            assert lock.read_lock(store).pid == os.getpid()
        assert lock.lock_path(store).exists()
        raise RuntimeError
    assert lock.read_lock(store) is None


def test_stale_lock_of_a_gone_process_is_taken_over_with_a_warning(tmp_path, caplog):
    store = tmp_path / "cube.zarr"
    _write_lock(store, pid=_dead_pid())
    with caplog.at_level(logging.WARNING, logger="seaice_dask.lock"), lock.store_lock(store):
        assert lock.read_lock(store).pid == os.getpid()
    assert "taking over the lock of a run that is gone" in caplog.text and "old.yaml" in caplog.text


def test_a_reused_pid_is_not_the_holder(tmp_path):
    store = tmp_path / "cube.zarr"
    _write_lock(store, pid=os.getpid(), proc_start="1")  # our pid, but another process's start
    with lock.store_lock(store):
        assert lock.read_lock(store).proc_start != "1"


def test_lock_from_another_host_needs_force_unlock(tmp_path, caplog):
    store = tmp_path / "cube.zarr"
    _write_lock(store, host="node17.cluster", pid=1234)
    with pytest.raises(StoreLockedError, match="host node17.cluster, pid 1234.*another host.*--force-unlock"):
        lock.acquire(store)
    with caplog.at_level(logging.WARNING, logger="seaice_dask.lock"), lock.store_lock(store, force=True):
        assert lock.read_lock(store).host == socket.gethostname()
    assert "--force-unlock" in caplog.text


def test_unreadable_lock_is_refused_unless_forced(tmp_path):
    store = tmp_path / "cube.zarr"
    path = lock.lock_path(store)
    path.write_text("")
    os.utime(path, (time.time() - 60, time.time() - 60))  # not one being written right now
    with pytest.raises(StoreLockedError, match="lock file unreadable"):
        lock.acquire(store)
    with lock.store_lock(store, force=True):
        assert lock.read_lock(store).pid == os.getpid()


def test_release_leaves_a_lock_that_was_forced_away(tmp_path):
    store = tmp_path / "cube.zarr"
    me = lock.acquire(store)
    _write_lock(store, host="other", pid=99)
    lock.release(store, me)
    assert lock.read_lock(store).host == "other"


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_racing_processes_one_wins(tmp_path, stale):
    """O_EXCL creation (and rename-based takeover): of 6 simultaneous writers exactly one gets the lock."""
    store = tmp_path / "cube.zarr"
    if stale:
        _write_lock(store, pid=_dead_pid())
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _HOLD, str(store), str(go), "3"],
                         env=env(), stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    time.sleep(1.5)  # all started and polling
    go.touch()
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert sum(o.startswith("acquired") for o in outputs) == 1, outputs
    assert sum(o.startswith("refused") and "locked by another run" in o for o in outputs) == 5, outputs


@pytest.mark.slow
def test_second_run_on_a_held_store_is_refused_while_the_first_completes(tmp_path, small_series):
    """Acceptance: two `seaice-dask run` on one store, real processes; the second names the holder."""
    config = small_series.copy("train", tmp_path / "work")
    log = tmp_path / "first.log"
    first = start(["run", str(config), "--stages", "predict,evaluate,export"], log)
    store = tmp_path / "work" / "cube.zarr"
    deadline = time.monotonic() + 120
    holder = None
    while holder is None and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        with contextlib.suppress(StoreLockedError):  # caught between creating and writing it
            holder = lock.read_lock(store)
    assert holder is not None, log.read_text()[-3000:]
    second = subprocess.run([SEAICE_DASK, "run", str(config)], env=env(), capture_output=True, text=True, timeout=120)
    # a reader is not blocked: validate works while the run holds the lock
    validate = subprocess.run([SEAICE_DASK, "validate", str(store)], env=env(),
                              capture_output=True, text=True, timeout=120)
    assert open_cube(store).sizes["time"] == N_SCENES  # a notebook read
    assert first.poll() is None, "the first run ended before the second started"
    assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert second.returncode == 1
    message = second.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error:") and "locked by another run" in message
    assert f"pid {holder.pid}" in message and f"host {socket.gethostname()}" in message and holder.started in message
    assert validate.returncode == 0 and "consistent" in validate.stdout, validate.stderr
    assert not lock.lock_path(store).exists()
    assert_same_outputs(tmp_path / "work", small_series.reference)
