"""HTTP transfers as a careful user makes them: resumable, verified, retried, never half-named.

A file is written to ``NAME.part``, resumed with a ``Range`` request after a cut (only a 206
answer is appended to; a 200 restarts from zero), checked (size, MD5/BLAKE3 when given, zip
integrity) and only then renamed to ``NAME``. 429 and 503 wait as long as ``Retry-After`` says,
other failures back off exponentially; a 401 asks the credentials for a fresh token once.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import requests

from seaice_dask.errors import AuthenticationError, DownloadError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 18  # also the most a cut connection can cost: a partly read chunk is lost
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class HTTPStatusError(DownloadError):
    """The server answered with an error status that retrying does not cure (404, 403, …)."""

    def __init__(self, message: str, status: int):
        self.status = status
        super().__init__(message)


class Auth(Protocol):
    """Request credentials that can be renewed after the server rejected them."""

    def headers(self) -> dict[str, str]: ...

    def renew(self, rejected: dict[str, str]) -> None:
        """Get fresh credentials unless another thread already replaced ``rejected``."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 300.0
    timeout_s: float = 60.0

    def delay(self, attempt: int, response: requests.Response | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based): ``Retry-After`` when the server sent one."""
        if response is not None and response.status_code in (429, 503):
            after = _retry_after(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, self.max_backoff_s)
        return min(self.backoff_s * 2**attempt, self.max_backoff_s)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(response: requests.Response) -> str:
    text = response.text[:200].strip().replace("\n", " ") if response.content else ""
    return f"HTTP {response.status_code} {response.reason or ''}".strip() + (f": {text}" if text else "")


def request(
    session: requests.Session,
    method: str,
    url: str,
    policy: RetryPolicy,
    *,
    auth: Auth | None = None,
    what: str = "",
    **kwargs,
) -> requests.Response:
    """One request with retries on 429/5xx and connection errors, and one token renewal on 401.

    Returns the first answer that is neither retried nor a 401; the caller decides about 4xx.
    """
    attempt, renewed = 0, False
    extra_headers = kwargs.pop("headers", {})
    while True:
        headers = {**extra_headers, **(auth.headers() if auth else {})}
        try:
            response = _send(session, method, url, headers, policy, follow_with_auth=auth is not None, **kwargs)
        except requests.RequestException as exc:
            if attempt >= policy.retries:
                raise DownloadError(f"{what or url}: {exc.__class__.__name__} after {attempt} retries") from None
            wait = policy.delay(attempt)
            log.warning("%s: %s, retrying in %.1f s", what or url, exc.__class__.__name__, wait)
        else:
            if response.status_code == 401 and auth is not None and not renewed:
                response.close()
                auth.renew(headers)
                renewed = True
                continue
            if response.status_code == 401 and auth is not None:
                raise AuthenticationError(f"{what or url}: access refused after renewing the token ({_describe(response)})")
            if response.status_code not in RETRY_STATUS:
                return response
            if attempt >= policy.retries:
                raise DownloadError(f"{what or url}: {_describe(response)} after {attempt} retries")
            wait = policy.delay(attempt, response)
            log.warning("%s: HTTP %d, retrying in %.1f s", what or url, response.status_code, wait)
            response.close()
        time.sleep(wait)
        attempt += 1


def _same_site(url: str, target: str) -> bool:
    """Whether ``target`` is on ``url``'s host or a sibling (download.x.eu → zipper.x.eu)."""
    host, other = urlsplit(url).hostname or "", urlsplit(target).hostname or ""
    parent = host.split(".", 1)[1] if host.count(".") >= 2 else host
    return other == host or other.endswith(f".{parent}")


def _send(session: requests.Session, method: str, url: str, headers: dict[str, str], policy: RetryPolicy, *,
          follow_with_auth: bool, **kwargs) -> requests.Response:
    """One request; with credentials, redirects are followed here so that the token goes along to
    the same site (requests drops it on any change of host or port) and nowhere else."""
    response = session.request(method, url, headers=headers, timeout=policy.timeout_s,
                               allow_redirects=not follow_with_auth, **kwargs)
    kwargs.pop("params", None)
    kwargs.pop("data", None)
    for _ in range(10):
        if not (follow_with_auth and response.is_redirect):
            break
        target = urljoin(response.url, response.headers["Location"])
        response.close()
        if not _same_site(url, target):
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        method = "GET" if response.status_code == 303 else method
        response = session.request(method, target, headers=headers, timeout=policy.timeout_s,
                                   allow_redirects=False, **kwargs)
    return response


def _hasher(algorithm: str):
    if algorithm == "BLAKE3":
        import blake3

        return blake3.blake3()
    return hashlib.new(algorithm.lower().replace("-", ""))


def verify_file(path: Path, *, size: int | None = None, checksums: dict[str, str] | None = None,
                is_zip: bool = True) -> str | None:
    """The first problem of ``path`` (size, checksum, zip integrity), or None when it is sound."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual} bytes, expected {size}"
    hashers = {}
    for algorithm in checksums or {}:
        try:
            hashers[algorithm] = _hasher(algorithm)
        except ValueError:
            log.debug("%s: no hash for checksum algorithm %s", path.name, algorithm)
    if hashers:
        with path.open("rb") as f:
            while block := f.read(CHUNK_BYTES):
                for h in hashers.values():
                    h.update(block)
        for algorithm, h in hashers.items():
            if h.hexdigest().lower() != checksums[algorithm].lower():
                return f"{algorithm} checksum {h.hexdigest()} differs from the archive's {checksums[algorithm]}"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            return f"not a readable zip archive ({exc})"
        if bad is not None:
            return f"zip member {bad} is corrupt (CRC mismatch)"
    return None


def _content_range_start(value: str | None) -> int | None:
    """First byte of ``Content-Range: bytes a-b/n``."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


ProgressFn = Callable[[int, "int | None"], None]


def _transfer(session: requests.Session, url: str, part: Path, size: int | None, auth: Auth | None,
              policy: RetryPolicy, progress: ProgressFn | None, what: str) -> None:
    """Bring ``part`` to the full content of ``url``, resuming from its current length."""
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        if size is not None and offset == size and size > 0:
            return
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = request(session, "GET", url, policy, auth=auth, what=what, headers=headers, stream=True)
        with response:
            if response.status_code == 416 and offset:  # the part is longer than the product now
                log.warning("%s: range not satisfiable, restarting", what)
                part.unlink()
                continue
            if response.status_code not in (200, 206):
                raise HTTPStatusError(f"{what}: {_describe(response)}", response.status_code)
            if response.status_code == 206 and _content_range_start(response.headers.get("Content-Range")) != offset:
                raise DownloadError(f"{what}: server answered Range bytes={offset}- with "
                                    f"Content-Range {response.headers.get('Content-Range')!r}")
            if offset and response.status_code == 200:
                log.info("%s: server ignored the Range request, restarting from byte 0", what)
                offset = 0
            if size is None and response.headers.get("Content-Length"):
                size = offset + int(response.headers["Content-Length"])
            received = offset
            if progress:
                progress(received, size)
            try:
                with part.open("ab" if offset else "wb") as f:
                    for block in response.iter_content(CHUNK_BYTES):
                        f.write(block)
                        received += len(block)
                        if progress:
                            progress(received, size)
            except requests.RequestException as exc:
                if received > offset:
                    attempt = 0  # progress was made: a cut, not a dead server
                if attempt >= policy.retries:
                    raise DownloadError(f"{what}: transfer broke off at byte {received} ({exc.__class__.__name__}) "
                                        f"after {attempt} retries") from None
                wait = policy.delay(attempt)
                log.warning("%s: transfer broke off at byte %d (%s), resuming in %.1f s",
                            what, received, exc.__class__.__name__, wait)
                time.sleep(wait)
                attempt += 1
                continue
        if size is None or received == size:
            return
        # a short body without a transport error: ask for the rest
        attempt += 1
        if attempt > policy.retries:
            raise DownloadError(f"{what}: got {received} of {size} bytes after {policy.retries} retries")


def fetch_file(
    url: str,
    dest: Path,
    *,
    session: requests.Session | None = None,
    size: int | None = None,
    checksums: dict[str, str] | None = None,
    auth: Auth | None = None,
    policy: RetryPolicy = RetryPolicy(),
    progress: ProgressFn | None = None,
    is_zip: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``; verified, then renamed.

    A verification failure deletes the part and downloads once more; a second failure raises
    :class:`DownloadError` and leaves nothing behind.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    session = session or requests.Session()
    what = dest.name
    for trial in (1, 2):
        try:
            _transfer(session, url, part, size, auth, policy, progress, what)
        except BaseException:
            # keep a resumable part after transport failures; drop it when nothing usable arrived
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
            raise
        problem = verify_file(part, size=size, checksums=checksums, is_zip=is_zip)
        if problem is None:
            part.replace(dest)
            return dest
        part.unlink()
        if trial == 1:
            log.warning("%s: %s; deleted, downloading again", what, problem)
    raise DownloadError(f"{what}: {problem} (downloaded twice)")
