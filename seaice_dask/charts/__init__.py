"""SIGRID-3 ice charts → training labels: read, repair, decode, classify, rasterise, store.

Typical use (what ``seaice-dask charts CONFIG`` does)::

    from seaice_dask.charts import write_labels_from_config
    write_labels_from_config(load_config("config.yaml"))   # or write_labels(store, paths, cfg.charts)

or, for one chart on any grid, :func:`chart_labels`.
"""

from seaice_dask.charts.codes import EggCode, decode_egg_code
from seaice_dask.charts.labels import (
    chart_labels,
    find_charts,
    load_chart,
    write_labels,
    write_labels_from_config,
)
from seaice_dask.charts.rasterize import rasterize_labels, select_chart
from seaice_dask.charts.read import chart_date, chart_id, prepare_chart, read_chart, repair_geometries
from seaice_dask.charts.schemes import (
    AI4ARCTIC,
    SCHEMES,
    SOD4,
    ChartCodeWarning,
    ClassScheme,
    classify_chart,
    get_scheme,
)

__all__ = [
    "AI4ARCTIC",
    "SCHEMES",
    "SOD4",
    "ChartCodeWarning",
    "ClassScheme",
    "EggCode",
    "chart_date",
    "chart_id",
    "chart_labels",
    "classify_chart",
    "decode_egg_code",
    "find_charts",
    "get_scheme",
    "load_chart",
    "prepare_chart",
    "rasterize_labels",
    "read_chart",
    "repair_geometries",
    "select_chart",
    "write_labels",
    "write_labels_from_config",
]
