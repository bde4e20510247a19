"""Figures of ``seaice_dask.report``: files are written atomically and contain what they should."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np

from seaice_dask import report
from seaice_dask.grid import Grid


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_map_colours_follow_class_ids(tmp_path):
    grid = Grid.from_bounds("EPSG:32626", (400_000.0, 7_400_000.0, 408_000.0, 7_408_000.0), 80.0)
    cls = np.full(grid.shape, -1, dtype=np.int8)
    cls[:, 25:50], cls[:, 50:75], cls[:, 75:] = 0, 2, 3
    path = report.plot_class_map(cls, grid, tmp_path / "maps" / "class.png", title="2020-10-05")
    assert _is_png(path) and not list(tmp_path.glob("maps/.*"))
    image = mpimg.imread(path)[..., :3]
    colours = {c: np.array([int(report.SOD4_COLOURS[c][i : i + 2], 16) / 255 for i in (1, 3, 5)]) for c in (0, 2, 3)}
    for c, rgb in colours.items():  # each class colour is present in the figure
        assert (np.abs(image - rgb).max(axis=-1) < 0.02).sum() > 100, c


def test_confusion_scores_monthly_and_json(tmp_path):
    cm = np.array([[50, 2, 0, 0], [3, 40, 5, 0], [0, 4, 60, 1], [0, 0, 2, 30]])
    assert _is_png(report.plot_confusion(cm, tmp_path / "cm.png", title="rf"))
    table = {"rf": {"overall_accuracy": 0.9, "kappa": 0.85}, "sgd": {"overall_accuracy": 0.8, "kappa": 0.7}}
    assert _is_png(report.plot_scores(table, tmp_path / "scores.png"))
    monthly = {"rf": {"2020-11": 0.9, "2020-10": 0.85}, "sgd": {"2020-10": 0.7, "2020-11": 0.75}}
    assert _is_png(report.plot_monthly(monthly, tmp_path / "monthly.png", metric="overall accuracy"))
    path = report.write_json({"table": table, "when": np.datetime64("2020-10-05")}, tmp_path / "out" / "scores.json")
    assert json.loads(path.read_text())["table"] == table
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["cm.png", "scores.png", "monthly.png", "out", "scores.json"])
