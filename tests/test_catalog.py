import datetime as dt

from typer.testing import CliRunner

from seaice_dask.catalog import search_local
from seaice_dask.cli import app
from tests.conftest import EW_GRDM, SENTINEL1


def test_finds_every_real_product(realdata):
    root = realdata(SENTINEL1)
    records = search_local([root])
    names = [r.name for r in records]
    assert len(records) == 5 and names == sorted(names, key=lambda n: n[17:32])
    ew = search_local([root], mode="EW")
    assert [r.name for r in ew] == [EW_GRDM.split("/")[-1]]
    # S1A relative orbit = (absolute − 73) mod 175 + 1 = (46117 − 73) mod 175 + 1
    assert ew[0].relative_orbit == 20 and ew[0].polarisations == ("HH", "HV")


def test_filters(realdata):
    root = realdata(SENTINEL1)
    assert len(search_local([root], start=dt.date(2021, 1, 1))) == 3
    assert len(search_local([root], end=dt.date(2015, 12, 31))) == 2
    assert len(search_local([root], relative_orbit=117)) == 1
    greece_italy = search_local([root], bbox=(10, 35, 30, 50))
    assert {r.name[:3] for r in greece_italy} == {"S1A", "S1B"} and len(greece_italy) == 2
    assert search_local([root], bbox=(-40, 60, -10, 70)) == []


def test_cli_search_prints_paths(realdata):
    root = realdata(SENTINEL1)
    result = CliRunner().invoke(app, ["search", str(root), "--mode", "EW", "--paths"])
    assert result.exit_code == 0
    assert result.output.strip().endswith(EW_GRDM.split("/")[-1])
    bad = CliRunner().invoke(app, ["search", str(root), "--bbox", "1,2,3"])
    assert bad.exit_code == 2


def test_corrupt_product_is_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "S1A_EW_GRDM_1SDH_20201005T080000_20201005T080100_034661_040A0C_ABCD.zip").write_bytes(b"not a zip")
    assert search_local([tmp_path]) == []
    assert "ABCD.zip" in caplog.text
