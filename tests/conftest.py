"""Shared fixtures: the real public test data in ``tests/data``, and temp outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.once import built_once

#: Trimmed real ESA annotation, a CIS chart and land polygons (origins, licences: data/SOURCES.md).
DATA = Path(__file__).resolve().parent / "data"

EW_GRDM = "sentinel1/S1A_EW_GRDM_1SDH_20221130T014342_20221130T014446_046117_058549_BB15"
IW_SARSEN = "sentinel1/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
IW_OLD_NOISE = (
    "sentinel1/S1A_IW_GRDH_1SDV_20150203T043109_20150203T043134_004454_00574F_6D00.zip",
    "sentinel1/S1A_IW_GRDH_1SDV_20150222T170750_20150222T170815_004739_005DD8_3768.zip",
)
IW_NEW_NOISE_ZIP = "sentinel1/S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip"
#: Folder holding exactly the five real products above.
SENTINEL1 = "sentinel1"
CIS_CHART = "charts/cis_SGRDREA_20201102T.gpkg"
GSHHG_L1 = "land/GSHHS_c_L1.shp"
NE_LAND = "land/ne_50m_land.shp"


@pytest.fixture(scope="session")
def realdata():
    """Return a function mapping a path below ``tests/data`` to a Path that exists.

    The files are part of the repository, so a missing one is an error, never a skip."""

    def get(relative: str) -> Path:
        path = DATA / relative
        if not path.exists():
            raise FileNotFoundError(f"test data missing from the repository: {path}")
        return path

    return get


@pytest.fixture(scope="session")
def served_series(tmp_path_factory):
    """Three small simulated SAFE zips (relative orbit 24, 5–23 Oct 2020) and four weekly NIC-style
    charts (Mondays 5–26 Oct), as the download tests' archives serve them."""
    from seaice_dask.grid import default_grid
    from seaice_dask.simulate import simulate_series

    def build(out: Path):
        return simulate_series(out, n_scenes=3, start="2020-10-05", end="2020-10-26", grid=default_grid(2000.0),
                               progress=False)

    return built_once(tmp_path_factory, "archive", build)


from tests.smallseries import small_series  # noqa: E402, F401  (session fixture shared by several modules)
from tests.s3server import s3_endpoint  # noqa: E402, F401  (moto's S3 server, one per session)


#: The modules that take longest (a simulated season through every stage, runs of the CLI killed
#: and resumed), run first: pytest-xdist hands out whole modules (``make test``: ``--dist
#: loadfile``), so a long one started last would keep one worker busy while the other idles.
LONGEST_FIRST = ("test_pipeline.py", "test_store_s3.py", "test_crash.py", "test_notebooks.py", "test_multihost.py",
                 "test_watch.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
