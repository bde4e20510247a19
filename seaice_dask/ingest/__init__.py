"""Ingest Sentinel-1 scenes into the Zarr cube, one module per step.

- :mod:`~seaice_dask.ingest.plan`: find and open the scenes, plan the grid;
- :mod:`~seaice_dask.ingest.passes`: product identity, slices assembled into passes, the mosaic;
- :mod:`~seaice_dask.ingest.prepass`: the incidence-correction pre-pass over the season;
- :mod:`~seaice_dask.ingest.writer`: declare the variables, add time slots, write a pass;
- :mod:`~seaice_dask.ingest.run`: :func:`ingest`, which runs them incrementally and resumably;
- :mod:`~seaice_dask.ingest.validate`: check an ingested cube.
"""

from seaice_dask.ingest.plan import find_scenes, plan_grid
from seaice_dask.ingest.prepass import PREPASS_RESOLUTION_M, estimate_season_slopes, resolve_incidence
from seaice_dask.ingest.report import IngestReport
from seaice_dask.ingest.run import ingest
from seaice_dask.ingest.validate import validate_ingest
from seaice_dask.ingest.writer import PASS_COORDS, SCENE_COORDS, STAGE, ingest_pass

__all__ = [
    "PASS_COORDS", "PREPASS_RESOLUTION_M", "SCENE_COORDS", "STAGE", "IngestReport", "estimate_season_slopes", "find_scenes",
    "ingest", "ingest_pass", "plan_grid", "resolve_incidence", "validate_ingest",
]
