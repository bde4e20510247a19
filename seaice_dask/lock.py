"""An exclusive lock on the cube, so that two runs never write into one store.

The lock is a file beside the store (``cube.zarr.lock``), so it can be taken before the store
exists. It is created atomically (``O_CREAT | O_EXCL``: of two runs, exactly one creates it) and
records its holder: host, pid, the process's start tick (so a reused pid is not mistaken for the
holder), UTC start time and command line. Another run on the store is refused with
:class:`~seaice_dask.errors.StoreLockedError` naming the holder. A lock whose process is gone
(same host) is taken over with a warning; a lock held from another host cannot be checked and
needs ``force=True`` (``--force-unlock``).

Readers (``validate``, notebooks opening the cube) do not take the lock: every stage writes
whole regions and sets its completion flag last, so a reader never sees a half-written slice
as complete.

The lock is re-entrant within a process: the CLI takes it before starting a cluster, and
:func:`~seaice_dask.pipeline.run_pipeline` takes it again for notebook users.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from seaice_dask.errors import StoreLockedError

log = logging.getLogger(__name__)

#: A lock file that exists but cannot be parsed is being written for at most this long.
_WRITING_S = 5.0
#: Held locks of this process: lock path → nesting depth.
_held: dict[Path, int] = {}


@dataclass(frozen=True)
class LockHolder:
    """Who holds a store lock."""

    host: str
    pid: int
    proc_start: str | None  # /proc/<pid>/stat start tick; None where /proc is absent
    started: str  # UTC, ISO 8601
    command: str

    def describe(self) -> str:
        return f"{self.command!r} on host {self.host}, pid {self.pid}, started {self.started}"


def lock_path(store: str | Path) -> Path:
    """The lock file of ``store``: ``<store>.lock`` beside it."""
    store = Path(store)
    return store.with_name(store.name + ".lock")


def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), None if unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may contain spaces


def _me() -> LockHolder:
    return LockHolder(
        host=socket.gethostname(),
        pid=os.getpid(),
        proc_start=_process_start(os.getpid()),
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python",
    )


def read_lock(store: str | Path) -> LockHolder | None:
    """The holder of ``store``'s lock, None if unlocked; raises StoreLockedError if unreadable."""
    path = lock_path(store)
    try:
        text = path.read_text()
        return LockHolder(**json.loads(text))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise StoreLockedError(f"lock file unreadable ({exc}); remove it with --force-unlock", path) from None


def holder_alive(holder: LockHolder) -> bool | None:
    """Whether the holder still runs: True/False on this host, None (unknown) on another host."""
    if holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    start = _process_start(holder.pid)
    return holder.proc_start is None or start is None or start == holder.proc_start


def _remove_if_still(path: Path, expected: LockHolder | None) -> None:
    """Remove the lock at ``path`` if it is still ``expected`` (None: the unreadable one).

    Renaming is atomic, so of two runs taking over one stale lock only one gets it; the other
    finds the first one's new lock in its hands and puts it back.
    """
    grabbed = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.old")
    try:
        path.rename(grabbed)
    except FileNotFoundError:
        return
    try:
        current = LockHolder(**json.loads(grabbed.read_text()))
    except (OSError, ValueError, TypeError):
        current = None
    if current != expected:
        with contextlib.suppress(FileExistsError):
            os.link(grabbed, path)
    grabbed.unlink()


def _create(path: Path, me: LockHolder) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(me), f)
        f.flush()
        os.fsync(f.fileno())
    return True


def acquire(store: str | Path, *, force: bool = False) -> LockHolder:
    """Take ``store``'s lock for this process or raise :class:`StoreLockedError` naming the holder."""
    path = lock_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = _me()
    for _ in range(20):
        if _create(path, me):
            return me
        try:
            holder = read_lock(store)
        except StoreLockedError:
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < _WRITING_S:  # its creator is still writing it
                time.sleep(0.1)
                continue
            if not force:
                raise
            log.warning("%s: removing an unreadable lock file (--force-unlock)", path)
            _remove_if_still(path, None)
            continue
        if holder is None:
            continue
        alive = holder_alive(holder)
        if alive is False:
            log.warning("%s: taking over the lock of a run that is gone: %s", store, holder.describe())
        elif force:
            log.warning("%s: removing the lock of %s (--force-unlock)", store, holder.describe())
        else:
            state = "" if alive else " (on another host: cannot check whether it still runs)"
            raise StoreLockedError(
                f"locked by another run: {holder.describe()}{state}; wait for it to finish, "
                "or use --force-unlock if it is gone", store,
            )
        _remove_if_still(path, holder)
    raise StoreLockedError("could not take the lock: other runs keep taking it", store)


def release(store: str | Path, me: LockHolder) -> None:
    """Remove the lock if it is still ours (someone may have forced it away)."""
    path = lock_path(store)
    try:
        holder = read_lock(store)
    except StoreLockedError:
        holder = None
    if holder == me:
        path.unlink(missing_ok=True)
    else:
        log.warning("%s: the lock was taken from this run%s; leaving it",
                    store, f" by {holder.describe()}" if holder else "")


@contextlib.contextmanager
def store_lock(store: str | Path, *, force: bool = False) -> Iterator[None]:
    """Hold ``store``'s lock for the ``with`` block (re-entrant within a process)."""
    key = lock_path(store).resolve()
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    me = acquire(store, force=force)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        release(store, me)
