"""Figures and tables of a run: class maps per date, confusion matrices, scores per model and month.

Figures are :class:`matplotlib.figure.Figure` objects saved straight to files, never through
pyplot: no backend to choose (it works on headless cluster nodes and leaves a notebook's inline
backend alone), nothing global to close, and separate figures can be drawn in separate threads
(``evaluate`` draws the maps while the scores are computed). Every file is written under a
temporary name and renamed, so a crash never leaves a truncated figure.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from seaice_dask.charts.schemes import SOD4
from seaice_dask.grid import Grid

#: Names of the built-in ``sod4`` class ids 0…3.
SOD4_CLASS_NAMES = tuple(SOD4.classes[i] for i in sorted(SOD4.classes))
#: Their colours (the scheme's palette, shared with the GeoTIFF colour tables and QGIS styles).
SOD4_COLOURS = tuple(SOD4.colours[i] for i in sorted(SOD4.classes))


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)
    return path


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` (format from the suffix), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


#: Largest side (pixels) of a class map as plotted (:func:`plot_class_map`).
PLOT_MAX_PX = 2000


def plot_class_map(
    cls: np.ndarray,
    grid: Grid,
    path: str | Path,
    *,
    title: str = "",
    class_names: Sequence[str] = SOD4_CLASS_NAMES,
    colours: Sequence[str] = SOD4_COLOURS,
) -> Path:
    """A (y, x) class map on the grid (km axes); −1 (land, invalid) left blank.

    Maps wider than :data:`PLOT_MAX_PX` are plotted from every n-th pixel: the figure shows
    about 700 pixels across, so a nearest-neighbour plot looks the same, and matplotlib took 10.5 s
    to draw a full-size 5000² map against 0.3 s for every third pixel."""
    k = len(class_names)
    cls = np.asarray(cls)
    step = max(1, math.ceil(max(cls.shape) / PLOT_MAX_PX))
    masked = np.ma.masked_less(cls[::step, ::step], 0)
    xmin, ymin, xmax, ymax = (v / 1000 for v in grid.bounds)
    fig = Figure(figsize=(6, 5.5))
    ax = fig.subplots()
    im = ax.imshow(
        masked, cmap=ListedColormap(list(colours[:k])), vmin=-0.5, vmax=k - 0.5,
        extent=(xmin, xmax, ymin, ymax), interpolation="nearest",
    )
    bar = fig.colorbar(im, ax=ax, ticks=range(k), shrink=0.8)
    bar.ax.set_yticklabels(class_names)
    ax.set_xlabel(f"x (km, {grid.crs})")
    ax.set_ylabel("y (km)")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_confusion(
    cm: np.ndarray, path: str | Path, *, title: str = "", class_names: Sequence[str] = SOD4_CLASS_NAMES
) -> Path:
    """Confusion matrix (rows: reference, columns: predicted), shaded by row share, counts printed."""
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(5.5, 4.8))
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=8)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=30, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_scores(table: Mapping[str, Mapping[str, float]], path: str | Path, *, title: str = "") -> Path:
    """Grouped bars: one group per model, one bar per metric (e.g. overall accuracy, kappa)."""
    models = list(table)
    metrics = list(next(iter(table.values()))) if models else []
    width = 0.8 / max(len(metrics), 1)
    fig = Figure(figsize=(1.2 + 1.1 * len(models), 3.8))
    ax = fig.subplots()
    for i, metric in enumerate(metrics):
        values = [table[m][metric] for m in models]
        bars = ax.bar(np.arange(len(models)) + i * width, values, width, label=metric)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(np.arange(len(models)) + width * (len(metrics) - 1) / 2, models)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_monthly(series: Mapping[str, Mapping[str, float]], path: str | Path, *, metric: str, title: str = "") -> Path:
    """One line per model: ``metric`` per month (keys ``YYYY-MM``)."""
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    for model, per_month in series.items():
        months = sorted(per_month)
        ax.plot(months, [per_month[m] for m in months], marker="o", label=model)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)


#: Figures of a run in the order the report shows them (file-name patterns under the reports folder).
REPORT_FIGURES = ("scores.png", "accuracy_per_month.png", "confusion_*.png", "class_*.png", "radiometry_*.png")


def _data_uri(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _map_rows(reports: Path) -> list[dict[str, Any]]:
    """One row per STAC Item under ``maps/``: date, learner and links to files that exist."""
    rows = []
    for item_path in sorted((reports / "maps").glob("class_*.json")):
        item = json.loads(item_path.read_text())
        links = {"STAC item": item_path.relative_to(reports).as_posix()}
        for key, asset in item.get("assets", {}).items():
            target = (item_path.parent / asset["href"]).resolve()
            if target.is_file():
                links[asset.get("title") or key] = target.relative_to(reports.resolve()).as_posix()
        when = str(item["properties"].get("datetime", ""))[:16].replace("T", " ")
        rows.append({"date": when, "learner": item["properties"].get("seaice:learner", ""), "links": links})
    return rows


def write_index(reports: str | Path, *, scores_file: str = "scores.json", title: str = "") -> Path:
    """``index.html``: one offline file with the scores of ``scores.json``, the figures and the maps.

    Scores per learner (overall, per month, per class) and confusion matrices come from
    ``scores.json`` (written by ``evaluate``); figures are embedded (``data:`` URIs), and the
    maps table links, relatively, to the GeoTIFFs, styles and STAC Items that exist.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    reports = Path(reports)
    scores = json.loads((reports / scores_file).read_text())
    figures = []
    for pattern in REPORT_FIGURES:
        for path in sorted(reports.glob(pattern)):
            figures.append({"name": path.stem.replace("_", " "), "src": _data_uri(path)})
    references = sorted({ref for by_ref in scores["scores"].values() for ref in by_ref})
    primary = "truth" if "truth" in references else "labels"
    env = Environment(loader=PackageLoader("seaice_dask", "templates"), undefined=StrictUndefined, autoescape=True)
    html = env.get_template("report.html.j2").render(
        title=title or f"seaice-dask report: {reports.resolve().parent.name}",
        scores=scores["scores"],
        best=scores["best"],
        method=scores.get("method", {}),  # how each learner was scored, when evaluate says
        test_dates=[d[:10] for d in scores["test_dates"]],
        references=references,
        primary=primary,
        figures=figures,
        maps=_map_rows(reports),
    )
    path = reports / "index.html"
    tmp = _tmp(path)
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
