"""`seaice-dask download` against a local CDSE + NIC stand-in (tests/archive_server.py) on 127.0.0.1.

The products served are simulated SAFE zips, so size, MD5, BLAKE3 and zip integrity are real.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from archive_server import PASSWORD, USER, ArchiveServer, ArchiveState

from seaice_dask.config import PipelineConfig, load_config
from seaice_dask.download import cdse_filter, download_products, query_from_config, search_archive
from seaice_dask.download.cdse import CdseTokens
from seaice_dask.download.charts import chart_dates, chart_file_name
from seaice_dask.download.credentials import Credentials, find_credentials
from seaice_dask.download.query import grid_aoi, parse_aoi
from seaice_dask.download.transfer import CHUNK_BYTES, RetryPolicy
from seaice_dask.errors import AuthenticationError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
START, END = dt.date(2020, 10, 5), dt.date(2020, 10, 26)

SEED_FILTER = (
    "Collection/Name eq 'SENTINEL-1' and "
    "(Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
    "att/OData.CSC.StringAttribute/Value eq 'EW_GRDM_1S') or "
    "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
    "att/OData.CSC.StringAttribute/Value eq 'EW_GRDH_1S')) and "
    "Attributes/OData.CSC.IntegerAttribute/any(att:att/Name eq 'relativeOrbitNumber' and "
    "att/OData.CSC.IntegerAttribute/Value eq 24) and "
    "ContentDate/Start ge 2020-10-05T00:00:00.000Z and ContentDate/Start lt 2021-03-23T00:00:00.000Z and "
    "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON(({aoi}))')"
)


# ------------------------------------------------------------------------------ query building


def test_seed_query_filter_is_pinned():
    cfg = PipelineConfig.model_validate(
        {"dates": {"start": "2020-10-05", "end": "2021-03-22"}, "download": {"relative_orbit": 24}}
    )
    aoi = (
        "-22.7061 65.3116,-22.5545 66.2062,-22.3906 67.1005,-22.2130 67.9945,-22.0199 68.8881,"
        "-24.5055 68.9427,-27.0000 68.9609,-29.4945 68.9427,-31.9801 68.8881,-31.7870 67.9945,"
        "-31.6094 67.1005,-31.4455 66.2062,-31.2939 65.3116,-29.1497 65.3575,-27.0000 65.3728,"
        "-24.8503 65.3575,-22.7061 65.3116"
    )
    assert cdse_filter(query_from_config(cfg)) == SEED_FILTER.replace("{aoi}", aoi)


def test_default_aoi_is_the_grid_in_lonlat_and_explicit_aois_parse():
    from pyproj import Transformer

    cfg = PipelineConfig()
    aoi = grid_aoi(cfg.grid.to_grid())
    to_lonlat = Transformer.from_crs(cfg.grid.crs, "EPSG:4326", always_xy=True)
    xmin, ymin, xmax, ymax = cfg.grid.bounds
    for x, y in [(xmin, ymin), (xmax, ymax), ((xmin + xmax) / 2, ymin)]:  # corners and an edge midpoint
        lon, lat = to_lonlat.transform(x, y)
        assert aoi.exterior.distance(__import__("shapely").Point(lon, lat)) < 1e-9
    assert aoi.exterior.is_ccw
    wkt = "POLYGON((-30 65, -20 65, -20 69, -30 69, -30 65))"
    geojson = json.dumps({"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[-30, 65], [-30, 69], [-20, 69], [-20, 65], [-30, 65]]]}})
    assert parse_aoi(wkt).equals(parse_aoi(geojson))
    with pytest.raises(ConfigError, match="lon/lat"):
        parse_aoi("POLYGON((300000 7250000, 700000 7250000, 700000 7650000, 300000 7250000))")
    with pytest.raises(ConfigError, match="dates.start"):
        query_from_config(PipelineConfig())


def test_chart_dates_are_the_weekdays_and_names_are_dated_by_the_chart_reader():
    from seaice_dask.charts.read import chart_date

    dates = chart_dates(dt.date(2020, 10, 3), dt.date(2020, 10, 26))
    assert dates == [dt.date(2020, 10, 5), dt.date(2020, 10, 12), dt.date(2020, 10, 19), dt.date(2020, 10, 26)]
    assert chart_dates(dt.date(2020, 10, 6), dt.date(2020, 10, 11)) == []
    assert [chart_date(chart_file_name(d)) for d in dates] == dates


def test_retry_after_is_honoured_and_backoff_is_exponential():
    import email.utils

    import requests

    def answer(status: int, retry_after: str | None) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        if retry_after is not None:
            r.headers["Retry-After"] = retry_after
        return r

    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=100)
    assert policy.delay(0, answer(429, "7")) == 7
    assert 55 < policy.delay(0, answer(503, email.utils.formatdate(time.time() + 60, usegmt=True))) <= 60
    assert policy.delay(3, answer(500, "7")) == 4.0  # only 429/503 carry Retry-After
    assert policy.delay(10) == 100


def test_credentials_from_env_or_netrc_never_shown(tmp_path, monkeypatch):
    monkeypatch.delenv("CDSE_USERNAME", raising=False)
    monkeypatch.delenv("CDSE_PASSWORD", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(AuthenticationError, match="CDSE_USERNAME and CDSE_PASSWORD"):
        find_credentials("cdse", "identity.example")
    (tmp_path / "netrc").write_text(f"machine identity.example login bob password {PASSWORD}\n")
    found = find_credentials("cdse", "identity.example")
    assert found == Credentials("bob", PASSWORD) and PASSWORD not in repr(found)
    monkeypatch.setenv("CDSE_USERNAME", USER)
    monkeypatch.setenv("CDSE_PASSWORD", "from-env")
    assert find_credentials("cdse", "identity.example") == Credentials(USER, "from-env")


# ----------------------------------------------------------------------- the local archive


@pytest.fixture
def archive(served_series):
    """The stand-in archive: the three scenes online (one with an empty Checksum list), one
    offline product, three of the four weekly charts."""
    state = ArchiveState()
    a, b, c = served_series.scenes
    ids = {
        "a": state.add_product(a),
        "b": state.add_product(b, checksums=("MD5",)),
        "c": state.add_product(c, checksums=()),
    }
    offline = served_series.scenes[0].with_name("S1A_EW_GRDM_1SDH_20201011T082203_20201011T082307_034746_03B5C1_0000.zip")
    offline.write_bytes(b"never served")
    ids["offline"] = state.add_product(offline, online=False)
    for chart in served_series.charts[:3]:
        day = dt.datetime.strptime(chart.name.split("_")[2], "%Y%m%d")
        state.charts[f"26{day:%m%d%Y}"] = chart.read_bytes()
    with ArchiveServer(state) as server:
        yield server, state, ids


def write_config(tmp_path: Path, url: str, **download) -> Path:
    cfg = {
        "paths": {"scenes": ["scenes/*.zip"], "charts": ["charts/*.zip"]},
        "dates": {"start": str(START), "end": str(END)},
        "download": {
            "relative_orbit": 24, "max_concurrent": 2, "retries": 3, "backoff_s": 0.05, "timeout_s": 20,
            "cdse": {"catalogue_url": f"{url}/odata/v1", "download_url": f"{url}/odata/v1",
                     "token_url": f"{url}/token", "page_size": 2},
            "charts": {"url_template": url + "/File/DownloadArchive?prd=26{date:%m%d%Y}"},
            **download,
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(config: Path, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CDSE_USERNAME": USER, "CDSE_PASSWORD": password, "COLUMNS": "200",
           "NETRC": os.devnull}
    return subprocess.run([sys.executable, "-m", "seaice_dask.cli", "download", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_search_follows_next_links_and_reads_the_product_fields(archive, tmp_path, served_series):
    server, state, ids = archive
    cfg = load_config(write_config(tmp_path, server.url))
    products = search_archive(cfg)
    queries = [r for r in state.requests if "catalogue" in r]
    assert [q["skip"] for q in queries] == [0, 2] and {q["top"] for q in queries} == {2}
    assert queries[0]["orderby"] == "ContentDate/Start asc"
    assert queries[0]["catalogue"] == cdse_filter(query_from_config(cfg))
    assert [p.id for p in products] == [ids["a"], ids["offline"], ids["b"], ids["c"]]  # by start time
    a = products[0]
    assert a.name == served_series.scenes[0].stem and a.size == served_series.scenes[0].stat().st_size
    assert a.relative_orbit == 24 and a.online and set(a.checksums) == {"MD5", "BLAKE3"}
    assert a.url == f"{server.url}/odata/v1/Products({ids['a']})/$value"
    assert a.start_time.date() == START and a.s3_path.startswith("/eodata/Sentinel-1/SAR/EW_GRDM_1S/2020/10/05/")
    assert a.footprint.bounds == (-35, 64, -18, 70)
    assert not products[1].online and products[3].checksums == {}
    late = load_config(write_config(tmp_path, server.url))
    late.dates.start = dt.date(2020, 10, 12)
    assert [p.id for p in search_archive(late)] == [ids["b"], ids["c"]]


def test_download_cli_end_to_end_with_faults(archive, tmp_path, served_series):
    """Every injected fault at once; two transfers in parallel; then a re-run that skips everything."""
    server, state, ids = archive
    state.faults = {ids["a"]: ["401", "cut"], ids["b"]: ["429", "500", "corrupt"], ids["c"]: ["cut", "no-range"]}
    config = write_config(tmp_path, server.url)
    result = cli(config)
    assert result.returncode == 0, result.stderr
    scenes = tmp_path / "scenes"
    assert sorted(p.name for p in scenes.iterdir()) == sorted(p.name for p in served_series.scenes)  # nothing else
    for source in served_series.scenes:
        assert (scenes / source.name).read_bytes() == source.read_bytes()
    # the cut transfer of A was resumed from the byte reached (the last, partly read chunk is lost)
    a = state.downloads(ids["a"])
    assert [r["status"] for r in a] == [401, 200, 206]
    sent, resumed = a[1]["sent"], a[2]["first"]
    assert a[2]["range"] == f"bytes={resumed}-" and sent - CHUNK_BYTES < resumed <= sent
    # B: Retry-After, a 500, then a corrupt copy that was deleted and fetched again
    # (B and C may have tried the token that expired under A first: a 401 then, and one refresh in all)
    b = [r for r in state.downloads(ids["b"]) if r["status"] != 401]
    assert [r["status"] for r in b] == [429, 500, 200, 200]
    assert b[1]["t"] - b[0]["t"] >= 0.95  # Retry-After: 1 was honoured (the backoff alone is 0.05 s)
    # C (no checksum): cut, then a 200 answer to the Range request, so it started again from byte 0
    c = [r for r in state.downloads(ids["c"]) if r["status"] != 401]
    assert [(r["status"], r["fault"]) for r in c] == [(200, "cut"), (200, "no-range")] and c[1]["range"]
    assert state.downloads(ids["offline"]) == []
    assert state.grants.count("password") == 1 and state.grants.count("refresh_token") == 1
    # charts: three saved under the archive's name, the missing week reported
    charts = tmp_path / "charts"
    assert sorted(p.name for p in charts.iterdir()) == ["arctic201005.zip", "arctic201012.zip", "arctic201019.zip"]
    assert (charts / "arctic201012.zip").read_bytes() == served_series.charts[1].read_bytes()
    assert "3 downloaded" in result.stdout and "1 offline" in result.stdout and "0 failed" in result.stdout
    assert "offline (order it or retry later): S1A_EW_GRDM_1SDH_20201011" in result.stdout
    assert "no chart: arctic201026.zip" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    # the charts read back with the package's reader
    from seaice_dask.charts.read import chart_date, read_chart

    assert chart_date(charts / "arctic201005.zip") == START and len(read_chart(charts / "arctic201005.zip")) > 0
    # a second run finds everything complete and transfers nothing
    before = len(state.requests)
    again = cli(config)
    assert again.returncode == 0 and "3 already complete" in again.stdout
    assert "charts: 0 downloaded, 3 already complete, 1 not in the archive" in again.stdout
    later = state.requests[before:]
    assert not any("product" in r for r in later) and [r["chart"] for r in later if "chart" in r] == ["prd=2610262020"]


def test_wrong_password_is_one_clean_line_and_leaves_nothing(archive, tmp_path):
    server, state, _ = archive
    result = cli(write_config(tmp_path, server.url), password="Wr0ng-pa55")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CDSE refused the login" in lines[0] and "Invalid user credentials" in lines[0]
    assert "Wr0ng-pa55" not in result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline.yaml"]
    assert not any("product" in r for r in state.requests)


def test_list_prints_and_writes_the_table_without_downloading(archive, tmp_path, served_series):
    server, state, ids = archive
    result = cli(write_config(tmp_path, server.url), "--list")
    assert result.returncode == 0, result.stderr
    assert served_series.scenes[0].stem in result.stdout and "4 product(s)" in result.stdout
    with (tmp_path / "scenes" / "cdse-products.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [ids["a"], ids["offline"], ids["b"], ids["c"]]
    assert rows[1]["online"] == "False" and int(rows[0]["size_bytes"]) == served_series.scenes[0].stat().st_size
    geo = json.loads((tmp_path / "scenes" / "cdse-products.geojson").read_text())
    assert len(geo["features"]) == 4 and geo["features"][0]["geometry"]["type"] == "Polygon"
    assert not any("product" in r for r in state.requests) and not state.grants
    assert sorted(p.name for p in (tmp_path / "scenes").iterdir()) == ["cdse-products.csv", "cdse-products.geojson"]


def test_persistent_checksum_mismatch_is_retried_once_then_fails_cleanly(served_series, tmp_path, monkeypatch):
    state = ArchiveState()
    bad = state.add_product(served_series.scenes[0], wrong_md5=True)
    good = state.add_product(served_series.scenes[1])
    monkeypatch.setenv("CDSE_USERNAME", USER)
    monkeypatch.setenv("CDSE_PASSWORD", PASSWORD)
    with ArchiveServer(state) as server:
        cfg = load_config(write_config(tmp_path, server.url, charts={"enabled": False}))
        report = download_products(cfg, progress=False)
    assert report.downloaded == [served_series.scenes[1].stem]
    assert list(report.failed) == [served_series.scenes[0].stem]
    assert "MD5 checksum" in report.failed[served_series.scenes[0].stem] and "downloaded twice" in report.summary()
    assert [r["status"] for r in state.downloads(bad)] == [200, 200] and len(state.downloads(good)) == 1
    assert sorted(p.name for p in (tmp_path / "scenes").iterdir()) == [served_series.scenes[1].name]


def test_tokens_are_refreshed_before_expiry_and_login_again_when_refresh_fails():
    state = ArchiveState(token_lifetime_s=1.0)
    with ArchiveServer(state) as server:
        tokens = CdseTokens(f"{server.url}/token", Credentials(USER, PASSWORD), RetryPolicy(backoff_s=0.01), margin_s=0.5)
        first = tokens.headers()
        assert tokens.headers() == first
        time.sleep(0.6)
        second = tokens.headers()
        assert second != first and state.grants == ["password", "refresh_token"]
        state.refresh.clear()  # the server forgot the session
        tokens.renew(second)
        assert state.grants == ["password", "refresh_token", "refresh_token", "password"]
        assert tokens.logins == 2 and tokens.refreshes == 1


@pytest.mark.cluster
def test_downloads_as_cluster_tasks_renew_the_token_on_the_client(archive, tmp_path, served_series, monkeypatch):
    from distributed import Client, LocalCluster

    server, state, ids = archive
    state.faults = {ids["a"]: ["401"], ids["b"]: ["cut"]}
    monkeypatch.setenv("CDSE_USERNAME", USER)
    monkeypatch.setenv("CDSE_PASSWORD", PASSWORD)
    cfg = load_config(write_config(tmp_path, server.url, charts={"enabled": False}))
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster, Client(cluster) as client:
        report = download_products(cfg, client=client, progress=False)
    assert sorted(report.downloaded) == sorted(p.stem for p in served_series.scenes) and not report.failed
    for source in served_series.scenes:
        assert (tmp_path / "scenes" / source.name).read_bytes() == source.read_bytes()
    assert [r["status"] for r in state.downloads(ids["a"])] == [401, 200]
    # B may have tried A's dead token first; then it was cut and resumed
    assert [r["status"] for r in state.downloads(ids["b"]) if r["status"] != 401] == [200, 206]
    assert state.grants == ["password", "refresh_token"]
    assert not list((tmp_path / "scenes").glob("*.part"))


def test_a_redirect_to_a_sibling_host_keeps_the_token(served_series, tmp_path, monkeypatch):
    """CDSE's download host redirects; requests would drop the Authorization header on the way."""
    state = ArchiveState()
    product = state.add_product(served_series.scenes[0])
    monkeypatch.setenv("CDSE_USERNAME", USER)
    monkeypatch.setenv("CDSE_PASSWORD", PASSWORD)
    with ArchiveServer(state) as front, ArchiveServer(state) as zipper:
        front.redirect_to = zipper.url  # same host name, another port
        cfg = load_config(write_config(tmp_path, front.url, charts={"enabled": False}))
        report = download_products(cfg, progress=False)
    assert report.downloaded == [served_series.scenes[0].stem]
    assert [r["status"] for r in state.downloads(product)] == [302, 200]
    assert (tmp_path / "scenes" / served_series.scenes[0].name).read_bytes() == served_series.scenes[0].read_bytes()


def test_the_token_follows_redirects_only_within_the_site():
    from seaice_dask.download.transfer import _same_site

    origin = "https://download.dataspace.copernicus.eu/odata/v1/Products(x)/$value"
    assert _same_site(origin, "https://zipper.dataspace.copernicus.eu/odata/v1/Products(x)/$value")
    assert _same_site(origin, "https://download.dataspace.copernicus.eu:8443/other")
    assert not _same_site(origin, "https://eodata.s3.amazonaws.com/x?X-Amz-Signature=y")
    assert not _same_site(origin, "https://dataspace.copernicus.eu.evil.example/x")
