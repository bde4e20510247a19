"""Simulated Sentinel-1 EW GRD products and SIGRID-3 ice charts with a known truth.

``truth`` draws the ice classes on the map grid, ``backscatter`` turns them into sigma0 with
speckle and thermal noise, ``safe_writer`` writes SAFE products re-targeted from a real EW GRDM
annotation, ``slices`` cuts a pass into consecutive slice products, ``charts`` writes weekly
SIGRID-3 charts, ``series`` ties them into a season over one or more relative orbits.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "truth_map": "seaice_dask.simulate.truth",
    "truth_fields": "seaice_dask.simulate.truth",
    "weekly_truth": "seaice_dask.simulate.truth",
    "Surface": "seaice_dask.simulate.truth",
    "simulate_series": "seaice_dask.simulate.series",
    "SimulatedSeries": "seaice_dask.simulate.series",
    "scatter_centres": "seaice_dask.simulate.series",
    "write_scene": "seaice_dask.simulate.safe_writer",
    "write_pass": "seaice_dask.simulate.safe_writer",
}


def __getattr__(name: str) -> Any:  # lazy: importing the package stays cheap
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'seaice_dask.simulate' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
