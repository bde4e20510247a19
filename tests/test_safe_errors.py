"""Hostile and broken input: one test per case, each expecting a ProductError naming the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from conftest import IW_NEW_NOISE_ZIP

from seaice_dask.errors import ProductError
from seaice_dask.safe import open_safe

NAME = Path(IW_NEW_NOISE_ZIP).stem  # S1A_IW_GRDH_1SDV_20210119T031653_…_8255


@pytest.fixture(scope="module")
def members(realdata) -> dict[str, bytes]:
    """The real IPF 3.31 zip's XML members, by SAFE-relative name."""
    with zipfile.ZipFile(realdata(IW_NEW_NOISE_ZIP)) as zf:
        return {n.split(".SAFE/", 1)[1]: zf.read(n) for n in zf.namelist() if n.endswith((".xml", ".safe"))}


def write_zip(path: Path, members: dict[str, bytes], safe_name: str = NAME, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(f"{safe_name}.SAFE/{name}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def member(members: dict[str, bytes], kind: str, pol: str = "vv") -> str:
    prefix = {"annotation": "annotation/s1a", "calibration": "annotation/calibration/calibration-",
              "noise": "annotation/calibration/noise-"}[kind]
    return next(n for n in members if n.startswith(prefix) and f"-{pol}-" in n)


def test_valid_zip_opens(tmp_path, members):
    product = open_safe(write_zip(tmp_path / f"{NAME}.zip", members))
    assert product.polarisations == ("VV", "VH") and product.ipf_version == "003.31"


def test_entity_expansion_refused(tmp_path, members):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><calibration>&lol2;</calibration>')
    name = member(members, "calibration")
    product = open_safe(write_zip(tmp_path / f"{NAME}.zip", {**members, name: bomb}))
    with pytest.raises(ProductError, match="DOCTYPE") as err:
        product.calibration("VV")
    assert Path(name).name in str(err.value)


def test_external_entity_not_read(tmp_path, members):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY s SYSTEM "file://{secret}">]>'
           "<noise><noiseRangeVectorList>&s;</noiseRangeVectorList></noise>").encode()
    product = open_safe(write_zip(tmp_path / f"{NAME}.zip", {**members, member(members, "noise"): xxe}))
    with pytest.raises(ProductError) as err:
        product.noise("VV")
    assert "TOP-SECRET" not in str(err.value)


def test_zip_member_with_parent_dir_refused(tmp_path, members):
    path = write_zip(tmp_path / f"{NAME}.zip", members, extra={f"{NAME}.SAFE/../../evil.txt": b"x"})
    with pytest.raises(ProductError, match=r"\.\.") as err:
        open_safe(path)
    assert str(path) in str(err.value)


def test_zip_member_with_absolute_path_refused(tmp_path, members):
    path = write_zip(tmp_path / f"{NAME}.zip", members, extra={"/etc/evil.txt": b"x"})
    with pytest.raises(ProductError, match="absolute"):
        open_safe(path)


def test_manifest_href_escaping_product_refused(tmp_path, members):
    manifest = members["manifest.safe"].replace(b'href="./annotation/', b'href="../annotation/', 1)
    with pytest.raises(ProductError, match=r"\.\."):
        open_safe(write_zip(tmp_path / f"{NAME}.zip", {**members, "manifest.safe": manifest}))


def test_oversized_member_refused(tmp_path, members, monkeypatch):
    """A member that unpacks beyond the metadata size cap (a zip bomb) is never inflated."""
    from seaice_dask.safe import store

    name = member(members, "noise")
    product = open_safe(write_zip(tmp_path / f"{NAME}.zip", members))
    monkeypatch.setattr(store, "MAX_METADATA_BYTES", len(members[name]) - 1)
    with pytest.raises(ProductError, match="larger than .*zip bomb") as err:
        product.noise("VV")
    assert name in str(err.value)


def test_missing_member_named(tmp_path, members):
    name = member(members, "calibration", "vh")
    product = open_safe(write_zip(tmp_path / f"{NAME}.zip", {k: v for k, v in members.items() if k != name}))
    with pytest.raises(ProductError, match="missing member") as err:
        product.calibration("VH")
    assert name in str(err.value)


def test_corrupt_member_named(tmp_path, members):
    name = member(members, "noise")
    product = open_safe(write_zip(tmp_path / f"{NAME}.zip", {**members, name: members[name][:5000]}))
    with pytest.raises(ProductError, match="corrupt XML") as err:
        product.noise("VV")
    assert name in str(err.value)


def test_corrupt_zip_named(tmp_path):
    path = tmp_path / f"{NAME}.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    with pytest.raises(ProductError, match="zip") as err:
        open_safe(path)
    assert str(path) in str(err.value)


def test_missing_manifest_named(tmp_path):
    (tmp_path / f"{NAME}.SAFE").mkdir()
    with pytest.raises(ProductError, match="manifest.safe"):
        open_safe(tmp_path / f"{NAME}.SAFE")


def test_unknown_polarisation(tmp_path, members):
    product = open_safe(write_zip(tmp_path / f"{NAME}.zip", members))
    with pytest.raises(ProductError, match="HH.*not in this product.*VV, VH"):
        product.calibration("HH")


@pytest.mark.parametrize(
    "product_type, safe_name",
    [
        ("SLC", NAME.replace("_GRDH_1SDV", "_SLC__1SDV")),
        ("OCN", NAME.replace("_GRDH_1SDV", "_OCN__2SDV")),
        ("RAW", NAME.replace("_GRDH_1SDV", "_RAW__0SDV")),
    ],
)
def test_unsupported_product_types(tmp_path, members, product_type, safe_name):
    manifest = members["manifest.safe"].replace(b">GRD<", f">{product_type}<".encode())
    path = write_zip(tmp_path / f"{safe_name}.zip", {**members, "manifest.safe": manifest}, safe_name=safe_name)
    with pytest.raises(ProductError, match=f"unsupported product type .*{product_type}") as err:
        open_safe(path)
    assert str(path) in str(err.value)


def test_not_a_product(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ProductError, match="not a .SAFE"):
        open_safe(path)
    with pytest.raises(ProductError, match="not found"):
        open_safe(tmp_path / "absent.SAFE")
