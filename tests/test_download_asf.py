"""The ASF provider through the real ``asf_search`` package, against a local CMR / Earthdata Login /
data-pool stand-in over TLS (a throw-away CA from trustme) on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from archive_server import PASSWORD, USER, ArchiveServer, ArchiveState

from seaice_dask.config import load_config
from seaice_dask.download import download_products, search_archive
from seaice_dask.errors import AuthenticationError

pytest.importorskip("asf_search")
trustme = pytest.importorskip("trustme")


@pytest.fixture
def asf_archive(served_series, tmp_path, monkeypatch):
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))  # requests trusts only this CA now
    monkeypatch.setenv("EARTHDATA_USERNAME", USER)
    monkeypatch.setenv("EARTHDATA_PASSWORD", PASSWORD)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    state = ArchiveState()
    with ArchiveServer(state, tls=ca) as server:
        names = [state.add_asf_product(path, server.host) for path in served_series.scenes]
        yield server, state, names


def config(tmp_path: Path, host: str) -> Path:
    path = tmp_path / "run" / "pipeline.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({
        "paths": {"scenes": ["scenes/*.zip"]},
        "dates": {"start": "2020-10-05", "end": "2020-10-26"},
        "download": {"provider": "asf", "relative_orbit": 24, "product": ["GRDM"], "retries": 3, "backoff_s": 0.05,
                     "asf": {"search_host": host, "edl_host": host, "auth_host": host},
                     "charts": {"enabled": False}},
    }))
    return path


def test_asf_search_speaks_cmr_through_asf_search(asf_archive, tmp_path, served_series):
    server, state, names = asf_archive
    cfg = load_config(config(tmp_path, server.host))
    products = search_archive(cfg)
    assert [p.file_name for p in products] == [p.name for p in served_series.scenes]
    first = products[0]
    assert first.relative_orbit == 24 and first.size == served_series.scenes[0].stat().st_size
    assert set(first.checksums) == {"MD5"} and first.url == f"https://{server.host}/GRD_MD/SB/{names[0]}"
    assert first.start_time.isoformat() == "2020-10-05T08:22:03" and first.footprint.bounds == (-35, 64, -18, 70)
    (query,) = [r["cmr"] for r in state.requests if "cmr" in r]
    assert "int,PATH_NUMBER,24" in query["attribute[]"] and "string,BEAM_MODE,EW" in query["attribute[]"]
    assert "SENTINEL-1A_DP_GRD_MEDIUM" in query["shortName"] and "SENTINEL-1A_DP_GRD_HIGH" not in query["shortName"]
    assert query["temporal"] == ["2020-10-05T00:00:00Z,2020-10-26T23:59:59Z,"]
    cfg.dates.start = cfg.dates.start.replace(day=10)
    assert len(search_archive(cfg)) == 2


def test_asf_download_logs_in_resumes_and_verifies(asf_archive, tmp_path, served_series):
    server, state, names = asf_archive
    state.faults = {names[0]: ["cut"], names[1]: ["corrupt"], names[2]: ["500"]}
    cfg = load_config(config(tmp_path, server.host))
    report = download_products(cfg, progress=False)
    assert sorted(report.downloaded) == sorted(p.stem for p in served_series.scenes) and not report.failed
    scenes = tmp_path / "run" / "scenes"
    assert sorted(p.name for p in scenes.iterdir()) == sorted(p.name for p in served_series.scenes)
    for source in served_series.scenes:
        assert (scenes / source.name).read_bytes() == source.read_bytes()
    s3 = {name: [r for r in state.downloads(name) if r["status"] != 307] for name in names}
    cut, resumed = s3[names[0]]
    assert cut["fault"] == "cut" and resumed["status"] == 206 and 0 < resumed["first"] <= cut["sent"]
    assert [r["status"] for r in s3[names[1]]] == [200, 200]  # corrupt copy deleted, fetched again
    assert [r["status"] for r in s3[names[2]]] == [500, 200]
    assert [r["edl"] for r in state.requests if "edl" in r] == ["find_or_create_token"]


def test_asf_wrong_password_is_a_clean_error(asf_archive, tmp_path, monkeypatch):
    server, state, _ = asf_archive
    monkeypatch.setenv("EARTHDATA_PASSWORD", "Wr0ng-pa55")
    cfg = load_config(config(tmp_path, server.host))
    with pytest.raises(AuthenticationError, match="Earthdata Login .* refused the login") as err:
        download_products(cfg, progress=False)
    assert "Wr0ng" not in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["pipeline.yaml"]
