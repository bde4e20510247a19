"""An exclusive lock on the cube, so that two runs never write into one store.

The lock is a file beside the store (``cube.zarr.lock``), so it can be taken before the store
exists. It is created atomically (``O_CREAT | O_EXCL``: of two runs, exactly one creates it) and
records its holder: host, pid, the process's start tick (so a reused pid is not mistaken for the
holder), UTC start time and command line. Another run on the store is refused with
:class:`~seaice_dask.errors.StoreLockedError` naming the holder. A lock whose process is gone
(same host) is taken over with a warning; a lock held from another host cannot be checked and
needs ``force=True`` (``--force-unlock``).

A store in object storage (``s3://…/cube.zarr``) has a lock object beside it instead
(``s3://…/cube.zarr.lock``, same content), created with a conditional put and removed with a
conditional delete (:class:`_LockObject`).

Readers (``validate``, notebooks opening the cube) do not take the lock: every stage writes
whole regions and sets its completion flag last, so a reader never sees a half-written slice
as complete.

The lock is re-entrant within a process: the CLI takes it before starting a cluster, and
:func:`~seaice_dask.pipeline.run_pipeline` takes it again for notebook users.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seaice_dask.cube import StoreLike, remote_store
from seaice_dask.errors import StoreLockedError

log = logging.getLogger(__name__)

#: A lock file that exists but cannot be parsed is being written for at most this long.
_WRITING_S = 5.0
#: Held locks of this process: lock file or object → nesting depth.
_held: dict[str, int] = {}


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
    """The lock file of a local ``store``: ``<store>.lock`` beside it."""
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


class _LockFile:
    """The lock file of a local store: created with ``O_EXCL``, removed by an atomic rename."""

    def __init__(self, path: Path):
        self.path = path
        self.ident = str(path.resolve())

    def __str__(self) -> str:
        return str(self.path)

    def create(self, data: bytes) -> bool:
        """Write ``data`` if there is no lock; False if there is one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def read(self) -> tuple[bytes, object] | None:
        """The lock's content and a version for :meth:`remove_if`; None if there is no lock."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, data

    def age_s(self) -> float | None:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def remove_if(self, version: object) -> None:
        """Remove the lock if it is still ``version``.

        Renaming is atomic, so of two runs taking over one stale lock only one gets it; the other
        finds the first one's new lock in its hands and puts it back.
        """
        grabbed = self.path.with_name(f"{self.path.name}.{socket.gethostname()}.{os.getpid()}.old")
        try:
            self.path.rename(grabbed)
        except FileNotFoundError:
            return
        if grabbed.read_bytes() != version:
            with contextlib.suppress(FileExistsError):
                os.link(grabbed, self.path)
        grabbed.unlink()


class _LockObject:
    """The lock object of a store in object storage (``<store>.lock`` beside its prefix).

    Created with a conditional put (``If-None-Match: *``: of two runs, exactly one creates it)
    and removed with a conditional delete (``If-Match`` on the ETag read), the object-storage
    forms of ``O_EXCL`` and of the atomic rename. The server must support conditional writes
    (AWS S3, MinIO and Ceph do).
    """

    def __init__(self, fs: Any, key: str):
        self.fs, self.key = fs, key
        self.ident = str(self)

    def __str__(self) -> str:
        return f"s3://{self.key}"

    def create(self, data: bytes) -> bool:
        try:
            self.fs.pipe_file(self.key, data, mode="create")
        except FileExistsError:
            return False
        return True

    def read(self) -> tuple[bytes, object] | None:
        try:
            info = self.fs.info(self.key, refresh=True)  # the ETag first: a later version never matches it
            return self.fs.cat_file(self.key), info["ETag"]
        except FileNotFoundError:
            return None

    def age_s(self) -> float | None:
        try:
            modified = self.fs.info(self.key, refresh=True)["LastModified"]
        except FileNotFoundError:
            return None
        return (dt.datetime.now(dt.UTC) - modified).total_seconds()

    def remove_if(self, version: object) -> None:
        bucket, key, _ = self.fs.split_path(self.key)
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=version)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: 412, replaced since read: not ours to remove
                raise
        finally:
            self.fs.invalidate_cache(self.key)


def _lock_file(store: StoreLike) -> _LockFile | _LockObject:
    remote = remote_store(store)
    if remote is None:
        return _LockFile(lock_path(store))
    fs, key = remote.filesystem()
    return _LockObject(fs, f"{key}.lock")


def _unreadable(exc: Exception, lock: _LockFile | _LockObject) -> StoreLockedError:
    return StoreLockedError(f"lock file unreadable ({exc}); remove it with --force-unlock", lock)


def _read(lock: _LockFile | _LockObject) -> tuple[bytes, object] | None:
    try:
        return lock.read()
    except OSError as exc:
        raise _unreadable(exc, lock) from None


def _holder(data: bytes, lock: _LockFile | _LockObject) -> LockHolder:
    try:
        return LockHolder(**json.loads(data))
    except (ValueError, TypeError) as exc:
        raise _unreadable(exc, lock) from None


def read_lock(store: StoreLike) -> LockHolder | None:
    """The holder of ``store``'s lock, None if unlocked; raises StoreLockedError if unreadable."""
    lock = _lock_file(store)
    found = _read(lock)
    return None if found is None else _holder(found[0], lock)


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


def acquire(store: StoreLike, *, force: bool = False) -> LockHolder:
    """Take ``store``'s lock for this process or raise :class:`StoreLockedError` naming the holder."""
    lock = _lock_file(store)
    me = _me()
    mine = json.dumps(asdict(me)).encode()
    for _ in range(20):
        if lock.create(mine):
            return me
        found = _read(lock)
        if found is None:
            continue
        data, version = found
        try:
            holder = _holder(data, lock)
        except StoreLockedError:
            age = lock.age_s()
            if age is None:
                continue
            if age < _WRITING_S:  # its creator is still writing it
                time.sleep(0.1)
                continue
            if not force:
                raise
            log.warning("%s: removing an unreadable lock file (--force-unlock)", lock)
            lock.remove_if(version)
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
        lock.remove_if(version)
    raise StoreLockedError("could not take the lock: other runs keep taking it", store)


def release(store: StoreLike, me: LockHolder) -> None:
    """Remove the lock if it is still ours (someone may have forced it away)."""
    lock = _lock_file(store)
    try:
        found = _read(lock)
        holder = None if found is None else _holder(found[0], lock)
    except StoreLockedError:
        holder = None
    if holder == me:
        lock.remove_if(found[1])
    else:
        log.warning("%s: the lock was taken from this run%s; leaving it",
                    store, f" by {holder.describe()}" if holder else "")


@contextlib.contextmanager
def store_lock(store: StoreLike, *, force: bool = False) -> Iterator[None]:
    """Hold ``store``'s lock for the ``with`` block (re-entrant within a process)."""
    key = _lock_file(store).ident
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
