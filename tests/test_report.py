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


def test_a_map_wider_than_the_plot_is_plotted_from_every_nth_pixel(tmp_path, monkeypatch):
    """A 2400² map is drawn from every second pixel (matplotlib took 10.5 s for a 5000² one), and
    the figure is the one of the whole map, pixel for pixel (the figure shows ~700 across)."""
    import matplotlib.axes

    grid = Grid.from_bounds("EPSG:32626", (400_000.0, 7_400_000.0, 592_000.0, 7_592_000.0), 80.0)
    rng = np.random.default_rng(0)
    cls = np.repeat(np.repeat(rng.integers(-1, 4, (240, 240)), 10, axis=0), 10, axis=1).astype(np.int8)
    decimated = mpimg.imread(report.plot_class_map(cls, grid, tmp_path / "decimated.png"))
    drawn, imshow = [], matplotlib.axes.Axes.imshow
    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", lambda ax, data, **kw: drawn.append(data.shape) or imshow(ax, data, **kw))
    report.plot_class_map(cls, grid, tmp_path / "again.png")
    assert drawn == [(1200, 1200)]
    monkeypatch.setattr(report, "PLOT_MAX_PX", 10_000)
    whole = mpimg.imread(report.plot_class_map(cls, grid, tmp_path / "whole.png"))
    assert drawn[-1] == (2400, 2400)
    np.testing.assert_array_equal(decimated, whole)


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


def _scores(oa: float) -> dict:
    cm = np.array([[50, 2, 0, 0], [3, 40, 5, 0], [0, 4, 60, 1], [0, 0, 2, 30]])
    from seaice_dask.learn.evaluate import scores

    s = scores(cm, list(report.SOD4_CLASS_NAMES))
    s["overall_accuracy"] = oa  # a marker the page must show
    return s


def test_index_html_shows_the_scores_and_links_only_existing_files(tmp_path):
    import lxml.html

    learners = {"rf": 0.9123, "sgd": 0.7456}
    scores_json = {
        "test_dates": ["2020-11-02T08:31:00", "2021-01-04T08:31:00"],
        "best": "rf",
        "method": {"rf": "stored class maps", "sgd": "stratified sample"},
        "scores": {
            m: {ref: {"overall": _scores(oa), "per_scene": {}, "per_month": {"2020-11": _scores(oa - 0.1), "2021-01": _scores(oa - 0.2)},
                      "per_orbit": {"24 DESCENDING": _scores(oa - 0.01), "89 ASCENDING": _scores(oa - 0.03)}}
                for ref in ("labels", "truth")}
            for m, oa in learners.items()
        },
    }
    report.write_json(scores_json, tmp_path / "scores.json")
    report.plot_scores({m: {"overall_accuracy": oa} for m, oa in learners.items()}, tmp_path / "scores.png")
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "class_20201102T083100.tif").write_bytes(b"II*\0")
    item = {"properties": {"datetime": "2020-11-02T08:31:00Z", "seaice:learner": "rf"},
            "assets": {"class_map": {"href": "./class_20201102T083100.tif", "title": "class map"},
                       "style": {"href": "./class_20201102T083100.qml", "title": "QGIS style"}}}  # no .qml: no link
    (maps / "class_20201102T083100.json").write_text(json.dumps(item))
    path = report.write_index(tmp_path, title="test run")
    page = lxml.html.parse(str(path)).getroot()
    assert page.findtext(".//h1") == "test run"
    overall = page.get_element_by_id("scores-overall")
    rows = {r[0].text_content(): [c.text_content() for c in r[1:]] for r in overall.iter("tr") if r[0].tag == "td"}
    assert rows["rf"][0] == "0.912" and rows["sgd"][3] == "0.746"  # labels, then truth
    assert rows["sgd"][-1] == "stratified sample"
    monthly = page.get_element_by_id("scores-month").text_content()
    assert "2020-11" in monthly and "0.812" in monthly and "0.546" in monthly
    per_orbit = page.get_element_by_id("scores-orbit").text_content()
    assert "89 ASCENDING" in per_orbit and "0.902" in per_orbit and "0.716" in per_orbit
    per_class = page.get_element_by_id("scores-class").text_content()
    assert "first-year ice" in per_class and f"{40 / 46:.3f}" in per_class  # young ice precision
    confusion = page.get_element_by_id("confusion-sgd")
    assert [c.text_content() for c in list(confusion.iter("tr"))[2]] == ["young ice", "3", "40", "5", "0"]
    hrefs = [a.get("href") for a in page.iter("a")]
    assert hrefs == ["maps/class_20201102T083100.json", "maps/class_20201102T083100.tif"]
    assert all((tmp_path / h).is_file() for h in hrefs)
    images = [img.get("src") for img in page.iter("img")]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")  # offline, one file
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_scores_per_orbit_sum_the_dates_of_each_orbit():
    import pandas as pd

    from seaice_dask.learn.evaluate import scores, summarise

    rng = np.random.default_rng(0)
    per_date = rng.integers(0, 50, size=(3, 4, 4))
    stamps = pd.DatetimeIndex(["2020-10-05T08:22", "2020-10-05T19:08", "2020-10-11T08:22"])
    out = summarise(per_date, stamps, list(report.SOD4_CLASS_NAMES), ["24 DESCENDING", "89 ASCENDING", "24 DESCENDING"])
    assert out["per_orbit"]["24 DESCENDING"] == scores(per_date[[0, 2]].sum(axis=0), list(report.SOD4_CLASS_NAMES))
    assert out["per_orbit"]["89 ASCENDING"] == scores(per_date[1], list(report.SOD4_CLASS_NAMES))
    assert "per_orbit" not in summarise(per_date, stamps, list(report.SOD4_CLASS_NAMES))
