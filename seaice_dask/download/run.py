"""``seaice-dask download``: search the configured archive, fetch what is missing, report.

Scenes go to the first folder of ``paths.scenes`` and charts to the first folder of
``paths.charts``, so that ``run`` picks them up. Transfers run in at most
``download.max_concurrent`` threads here, or as tasks on a Dask cluster when a client is given.
"""

from __future__ import annotations

import logging
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import requests

from seaice_dask.config import PipelineConfig
from seaice_dask.download.charts import chart_dates, chart_file_name, chart_url
from seaice_dask.download.products import RemoteProduct, human_size
from seaice_dask.download.query import query_from_config
from seaice_dask.download.transfer import Auth, HTTPStatusError, RetryPolicy, fetch_file
from seaice_dask.errors import AuthenticationError, ConfigError, DownloadError

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


def first_folder(cfg: PipelineConfig, patterns: Sequence[str]) -> Path:
    """The folder of the first pattern: its path up to the first glob component."""
    if patterns and "://" in patterns[0]:
        raise ConfigError(f"downloads go to the first paths entry, which must be a local folder, not {patterns[0]!r}")
    parts: list[str] = []
    for part in PurePath(patterns[0]).parts if patterns else ():
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    else:
        if parts and parts[-1].endswith((".zip", ".SAFE")):  # a product, not a folder
            parts.pop()
    return cfg.path(str(PurePath(*parts))) if parts else cfg.paths.workdir


def retry_policy(cfg: PipelineConfig) -> RetryPolicy:
    d = cfg.download
    return RetryPolicy(retries=d.retries, backoff_s=d.backoff_s, timeout_s=d.timeout_s)


@dataclass
class ArchiveAccess:
    """How to fetch a provider's products: session factory and (renewable) credentials."""

    auth: Auth | None
    new_session: Callable[[], requests.Session] = requests.Session


def search_archive(cfg: PipelineConfig) -> list[RemoteProduct]:
    """Products of the configured provider matching the config's query (no credentials needed)."""
    query = query_from_config(cfg)
    policy = retry_policy(cfg)
    if cfg.download.provider == "asf":
        from seaice_dask.download.asf import search_asf

        return search_asf(query, cfg.download.asf, policy)
    from seaice_dask.download.cdse import search_cdse

    return search_cdse(query, cfg.download.cdse, policy)


def archive_access(cfg: PipelineConfig) -> ArchiveAccess:
    """Log in to the configured provider (raises :class:`AuthenticationError` on bad credentials)."""
    policy = retry_policy(cfg)
    if cfg.download.provider == "asf":
        from seaice_dask.download.asf import asf_access

        return asf_access(cfg.download.asf, policy)
    from seaice_dask.download.cdse import cdse_tokens

    return ArchiveAccess(auth=cdse_tokens(cfg.download.cdse, policy))


@dataclass
class DownloadReport:
    """What a download run did, per product name."""

    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete
    offline: list[str] = field(default_factory=list)  # in the long-term archive: order first
    failed: dict[str, str] = field(default_factory=dict)
    charts_downloaded: list[str] = field(default_factory=list)
    charts_skipped: list[str] = field(default_factory=list)
    charts_missing: list[str] = field(default_factory=list)  # not in the chart archive (404)
    nbytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        rate = f", {human_size(int(self.nbytes / self.seconds))}/s" if self.seconds > 0 and self.nbytes else ""
        lines = [
            f"scenes: {len(self.downloaded)} downloaded ({human_size(self.nbytes)} in {self.seconds:.1f} s{rate}), "
            f"{len(self.skipped)} already complete, {len(self.offline)} offline, {len(self.failed)} failed",
        ]
        if self.charts_downloaded or self.charts_skipped or self.charts_missing:
            lines.append(f"charts: {len(self.charts_downloaded)} downloaded, {len(self.charts_skipped)} already "
                         f"complete, {len(self.charts_missing)} not in the archive")
        lines += [f"  offline (order it or retry later): {name}" for name in self.offline]
        lines += [f"  failed: {message}" for message in self.failed.values()]
        lines += [f"  no chart: {name}" for name in self.charts_missing]
        return "\n".join(lines)


def _complete(path: Path, size: int | None) -> bool:
    """A product under its final name counts as complete when its size matches and it opens as a zip."""
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def _progress_bar(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled)


def download_products(
    cfg: PipelineConfig,
    products: Sequence[RemoteProduct] | None = None,
    *,
    client: Client | None = None,
    progress: bool | None = None,
) -> DownloadReport:
    """Fetch the online products (default: :func:`search_archive`) and the charts that are missing.

    Credentials are checked before anything is written. Offline products are reported, not
    waited for; a failed product is reported and does not stop the others.
    """
    progress = sys.stderr.isatty() if progress is None else progress
    products = search_archive(cfg) if products is None else products
    report = DownloadReport()
    folder = first_folder(cfg, cfg.paths.scenes)
    todo = []
    for product in products:
        if not product.online:
            report.offline.append(product.name)
        elif _complete(folder / product.file_name, product.size):
            report.skipped.append(product.name)
        else:
            todo.append(product)
    access = archive_access(cfg) if todo else None
    policy = retry_policy(cfg)
    started = time.monotonic()
    if client is not None and cfg.download.provider == "asf":
        log.warning("ASF downloads need the logged-in session's cookies: running them here, not on the cluster")
        client = None
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        run = _on_cluster if client is not None else _in_threads
        run(todo, folder, access, policy, cfg.download.max_concurrent, report, progress=progress, client=client)
    report.seconds = time.monotonic() - started
    if cfg.download.charts.enabled and cfg.dates.start and cfg.dates.end:
        download_charts(cfg, report, policy)
    return report


def _in_threads(todo, folder, access, policy, max_concurrent, report, *, progress, client=None) -> None:
    sizes = [p.size for p in todo]
    with _progress_bar(progress) as bar, ThreadPoolExecutor(max_concurrent, "download") as pool:
        overall = bar.add_task(f"all {len(todo)} product(s)", total=None if None in sizes else sum(sizes))

        def fetch(product: RemoteProduct) -> Path:
            task = bar.add_task(product.name[:32], total=product.size)
            reached = [0]

            def show(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)
                bar.advance(overall, done - reached[0])
                reached[0] = done

            try:
                return fetch_file(product.url, folder / product.file_name, session=access.new_session(),
                                  size=product.size, checksums=product.checksums, auth=access.auth, policy=policy,
                                  progress=show)
            finally:
                bar.remove_task(task)

        futures = {pool.submit(fetch, p): p for p in todo}
        for future in as_completed(futures):
            _record(report, futures[future], future)


def _record(report: DownloadReport, product: RemoteProduct, future) -> None:
    try:
        path = future.result()
    except AuthenticationError:
        raise
    except DownloadError as exc:
        log.error("%s", exc)
        report.failed[product.name] = str(exc)
        return
    report.downloaded.append(product.name)
    report.nbytes += path.stat().st_size


class TokenExpired(DownloadError):
    """A cluster task's token was rejected; the client renews it and resubmits the task."""


@dataclass(frozen=True)
class FixedHeaders:
    """Credentials sent to a worker: the headers of the moment, not renewable there."""

    values: dict[str, str]

    def headers(self) -> dict[str, str]:
        return dict(self.values)

    def renew(self, rejected: dict[str, str]) -> None:
        raise TokenExpired("access token rejected")


def fetch_on_worker(product: RemoteProduct, dest: str, headers: dict[str, str], policy: RetryPolicy) -> str:
    """Cluster task: one product into ``dest`` (a folder the workers share with the client)."""
    return str(fetch_file(product.url, Path(dest), size=product.size, checksums=product.checksums,
                          auth=FixedHeaders(headers), policy=policy))


def _on_cluster(todo, folder, access, policy, max_concurrent, report, *, client, progress=False) -> None:
    """At most ``max_concurrent`` transfers as cluster tasks, each with a token fresh at submission."""
    from distributed import as_completed as completed

    queue = list(todo)
    renewals: dict[str, int] = {}
    running: dict = {}

    def submit() -> None:
        product = queue.pop(0)
        headers = access.auth.headers() if access.auth else {}
        future = client.submit(fetch_on_worker, product, str(folder / product.file_name), headers, policy,
                               pure=False, key=f"download-{product.name}-{renewals.get(product.name, 0)}")
        running[future] = (product, headers)
        pool.add(future)

    pool = completed()
    for _ in range(min(max_concurrent, len(queue))):
        submit()
    for future in pool:
        product, headers = running.pop(future)
        try:
            future.result()
        except TokenExpired:
            renewals[product.name] = renewals.get(product.name, 0) + 1
            if renewals[product.name] > 2:
                report.failed[product.name] = f"{product.file_name}: access token rejected three times"
            else:
                access.auth.renew(headers)
                queue.insert(0, product)
        except AuthenticationError:
            raise
        except DownloadError as exc:
            report.failed[product.name] = str(exc)
        else:
            report.downloaded.append(product.name)
            report.nbytes += (folder / product.file_name).stat().st_size
        if queue:
            submit()


def download_charts(cfg: PipelineConfig, report: DownloadReport, policy: RetryPolicy) -> None:
    """The weekly charts of ``dates`` into the first ``paths.charts`` folder (missing ones only)."""
    c = cfg.download.charts
    folder = first_folder(cfg, cfg.paths.charts)
    for date in chart_dates(cfg.dates.start, cfg.dates.end, c.weekday):
        name = chart_file_name(date)
        if _complete(folder / name, None):
            report.charts_skipped.append(name)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fetch_file(chart_url(c.url_template, date), folder / name, policy=policy)
        except HTTPStatusError as exc:
            if exc.status != 404:
                report.failed[name] = str(exc)
                continue
            report.charts_missing.append(name)
        except DownloadError as exc:
            report.failed[name] = str(exc)
        else:
            report.charts_downloaded.append(name)
