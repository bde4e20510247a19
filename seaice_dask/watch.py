"""Follow an archive: classify each new product with a frozen model as soon as it arrives.

Each round fetches what the configured archive has that is missing (``download``, optional),
lists the scene folders (``paths.scenes``) and hands every product not classified yet to
:func:`seaice_dask.classify.classify`, which ingests it (assembling a pass whose other slice
arrives later), computes its texture and writes its map, style and STAC Item. The model is
never retrained here. What was classified is kept in ``watch.json`` beside the maps, written
after each map (temp name, then rename), and every step of ``classify`` is idempotent, so a
watcher killed at any point and restarted loses nothing and writes no duplicate. The store lock
is held only while a product is classified.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time as clock
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from seaice_dask.config import PipelineConfig
from seaice_dask.errors import SeaIceError

log = logging.getLogger(__name__)

STATE_FILE = "watch.json"
#: Without ``dates.start``, the archive is searched for products of the last days only.
LOOKBACK_DAYS = 3


@dataclass
class WatchReport:
    """What a watcher did: maps written with their latency (found → map written), refusals."""

    classified: dict[str, float] = field(default_factory=dict)  # product file → latency (s)
    refused: dict[str, str] = field(default_factory=dict)
    archive_errors: list[str] = field(default_factory=list)
    rounds: int = 0


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _signature(path: Path | str) -> list[float]:
    """Size and modification time: a product still being copied in changes them."""
    stat = Path(path).stat()
    return [float(stat.st_size), stat.st_mtime]


def load_state(out: Path) -> dict[str, dict[str, Any]]:
    path = out / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_state(out: Path, state: dict[str, dict[str, Any]]) -> None:
    path = out / STATE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)


def watch_window(cfg: PipelineConfig, today: dt.date | None = None) -> PipelineConfig:
    """The config of one archive search: open-ended dates end today (UTC), a missing start
    means the last :data:`LOOKBACK_DAYS` days; no chart downloads (classifying needs none)."""
    today = today or dt.datetime.now(dt.UTC).date()
    search = cfg.model_copy(deep=True)
    search.dates.end = search.dates.end or today
    search.dates.start = search.dates.start or search.dates.end - dt.timedelta(days=LOOKBACK_DAYS)
    search.download.charts.enabled = False
    return search


def fetch_new(cfg: PipelineConfig, report: WatchReport) -> None:
    """Download what the archive has and the scene folder lacks; an archive that fails (refused
    login, 401/429 beyond the retries, no network) is logged and tried again next round."""
    from seaice_dask.download import download_products

    try:
        fetched = download_products(watch_window(cfg), progress=False)
    except (SeaIceError, requests.RequestException, OSError) as exc:
        message = f"archive unavailable this round: {exc}"
        report.archive_errors.append(message)
        log.warning(message)
        return
    for name, reason in fetched.failed.items():
        report.archive_errors.append(f"{name}: {reason}")
        log.warning("download of %s failed this round (%s); trying again next round", name, reason)


def watch_round(cfg: PipelineConfig, model: Path, out: Path, report: WatchReport, *,
                download: bool = False, client: Any = None) -> list[str]:
    """One round: fetch, list, classify what is new; returns the product files classified."""
    from seaice_dask.classify import classify
    from seaice_dask.ingest import find_scenes

    if download:
        fetch_new(cfg, report)
    state = load_state(out)
    new = []
    for path in find_scenes(cfg):
        name = Path(str(path)).name
        entry = state.setdefault(name, {"found": _now()})
        if "written" in entry or entry.get("refused_as") == _signature(path):
            continue  # done, or refused and unchanged since
        new.append(path)
    if not new:
        return []
    _save_state(out, state)  # the time each product was found survives a restart
    try:
        result = classify(model, new, out, client=client, progress=False)
    except SeaIceError as exc:  # e.g. the store locked by another writer: next round
        log.warning("classifying %d product(s) failed this round: %s", len(new), exc)
        return []
    for path in new:
        name = Path(str(path)).name
        reason = result.refused.get(str(path))
        if reason:
            state[name]["refused_as"] = _signature(path)
            report.refused[name] = reason
            log.warning("refused %s: %s", name, reason)
            continue
        state[name]["written"] = _now()
        latency = (dt.datetime.fromisoformat(state[name]["written"]) - dt.datetime.fromisoformat(state[name]["found"])).total_seconds()
        state[name]["latency_s"] = round(latency, 3)
        report.classified[name] = latency
        log.info("%s: map written %.1f s after it was found", name, latency)
    _save_state(out, state)
    return [Path(str(p)).name for p in new if Path(str(p)).name not in report.refused]


def watch(
    cfg: PipelineConfig,
    *,
    model: str | Path | None = None,
    out: str | Path | None = None,
    interval_s: float = 60.0,
    download: bool = False,
    rounds: int | None = None,
    client: Any = None,
) -> WatchReport:
    """Poll every ``interval_s`` seconds (``rounds`` times, or until interrupted) and classify
    each new product with ``model`` (default: ``paths.models``, the model ``train`` chose) into
    ``out`` (default: ``<paths.workdir>/classified``)."""
    model = Path(model) if model else Path(cfg.paths.models)
    out = Path(out) if out else cfg.paths.workdir / "classified"
    out.mkdir(parents=True, exist_ok=True)
    report = WatchReport()
    while rounds is None or report.rounds < rounds:
        started = clock.monotonic()
        watch_round(cfg, model, out, report, download=download, client=client)
        report.rounds += 1
        if rounds is None or report.rounds < rounds:
            clock.sleep(max(0.0, interval_s - (clock.monotonic() - started)))
    return report
