"""Products read in place from S3 (moto's server on 127.0.0.1): zipped SAFE and the CDSE
``eodata`` folder layout give exactly what the same product gives from local disk."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import xarray as xr

from seaice_dask.download.products import RemoteProduct
from tests.s3server import aws_environment

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

EODATA_DIR = "Sentinel-1/SAR/EW_GRDM_1S/2020/10/05"


@pytest.fixture(scope="module")
def s3(served_series, s3_endpoint, tmp_path_factory):
    """moto's S3 server with a bucket ``scenes`` holding the simulated zips and ``eodata``
    holding the first one unzipped (CDSE layout)."""
    with pytest.MonkeyPatch.context() as mp:
        aws_environment(mp, s3_endpoint)
        from seaice_dask.safe.objectstore import s3_filesystem

        fs = s3_filesystem()
        fs.mkdir("scenes")
        fs.mkdir("eodata")
        for path in served_series.scenes:
            fs.put_file(str(path), f"scenes/archive/{path.name}")
        unzipped = tmp_path_factory.mktemp("unzipped")
        with zipfile.ZipFile(served_series.scenes[0]) as zf:
            zf.extractall(unzipped)
        (safe,) = unzipped.iterdir()
        for file in sorted(p for p in safe.rglob("*") if p.is_file()):
            fs.put_file(str(file), f"eodata/{EODATA_DIR}/{safe.name}/{file.relative_to(safe).as_posix()}")
        yield fs


def _same_product(remote, local) -> None:
    assert (remote.name, remote.mission, remote.relative_orbit, remote.shape) == (local.name, local.mission, local.relative_orbit, local.shape)
    assert remote.start_time == local.start_time and remote.footprint().equals(local.footprint())
    np.testing.assert_array_equal(remote.calibration("HV").sigma_nought, local.calibration("HV").sigma_nought)
    xr.testing.assert_equal(remote.geolocation_grid("HH"), local.geolocation_grid("HH"))  # attrs name the source
    for pol in ("HH", "HV"):
        np.testing.assert_array_equal(remote.dn(pol, chunks=(512, 512)).values, local.dn(pol).values)
    assert [g.x for g in remote.measurement_gcps("HH")] == [g.x for g in local.measurement_gcps("HH")]


def test_zipped_safe_is_read_in_place_from_a_bucket(s3, served_series):
    from seaice_dask.safe import open_safe

    url = f"s3://scenes/archive/{served_series.scenes[1].name}"
    product = open_safe(url)
    assert product.measurement_path("HH").startswith("/vsizip//vsis3/scenes/archive/")
    _same_product(product, open_safe(served_series.scenes[1]))


def test_cdse_eodata_folder_layout_is_read_in_place(s3, served_series):
    from seaice_dask.safe import open_safe

    local = open_safe(served_series.scenes[0])
    s3_path = f"/eodata/{EODATA_DIR}/{local.name}.SAFE"  # as the CDSE catalogue's S3Path gives it
    url = RemoteProduct(id="x", name=local.name, start_time=None, url="", s3_path=s3_path).s3_url
    assert url == f"s3://eodata/{EODATA_DIR}/{local.name}.SAFE"
    product = open_safe(url)
    assert product.measurement_path("HV").startswith(f"/vsis3/eodata/{EODATA_DIR}/")
    _same_product(product, local)
    assert open_safe(f"{url}/manifest.safe").name == local.name


def test_missing_and_unreadable_objects_name_the_url(s3):
    from seaice_dask.errors import ProductError
    from seaice_dask.safe import open_safe

    with pytest.raises(ProductError, match="s3://scenes/bad/nothing.zip: product not found"):
        open_safe("s3://scenes/bad/nothing.zip")
    s3.pipe_file("scenes/bad/broken.zip", b"not a zip")
    with pytest.raises(ProductError, match="s3://scenes/bad/broken.zip: not a readable zip"):
        open_safe("s3://scenes/bad/broken.zip")


@pytest.mark.slow
def test_ingest_from_the_bucket_equals_ingest_from_disk(s3, served_series, tmp_path):
    from seaice_dask import cube
    from seaice_dask.config import PipelineConfig
    from seaice_dask.ingest import find_scenes, ingest

    def config(name: str, scenes: list[str]) -> PipelineConfig:
        raw = {"paths": {"workdir": str(tmp_path / name), "scenes": scenes, "store": "cube.zarr"},
               "grid": {"resolution_m": 2000, "chunk": 128}}
        return PipelineConfig.model_validate(raw).resolve(tmp_path)

    remote = config("remote", ["s3://scenes/archive/*.zip", f"s3://eodata/{EODATA_DIR}/*.SAFE"])
    found = find_scenes(remote)
    assert len(found) == 4 and all(str(p).startswith("s3://") for p in found)
    local = config("local", [str(p) for p in served_series.scenes])
    assert ingest(local, progress=False).ok
    report = ingest(remote, progress=False)  # the eodata copy is the same acquisition: ignored
    assert report.ok and len(report.ingested) == 3, report.summary()
    xr.testing.assert_identical(cube.open_cube(remote.paths.store).load(), cube.open_cube(local.paths.store).load())
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
