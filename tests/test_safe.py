"""open_safe on every real product: metadata against the XML (read independently with
xarray-sentinel's manifest parser and ElementTree), calibration against xarray-sentinel's
interpolation, noise against the annotated tie-point values."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EW_GRDM, IW_NEW_NOISE_ZIP, IW_OLD_NOISE, IW_SARSEN
from xarray_sentinel import esa_safe, sentinel1

from seaice_dask.errors import ProductError
from seaice_dask.preprocess.luts import (
    calibration_window,
    noise_azimuth_window,
    noise_range_window,
    noise_window,
)
from seaice_dask.safe import open_safe

PRODUCTS = [EW_GRDM, IW_SARSEN, *IW_OLD_NOISE, IW_NEW_NOISE_ZIP]
# Values read off each manifest / annotation by hand.
EXPECTED = {
    EW_GRDM: dict(mission="S1A", mode="EW", resolution_class="M", ipf_version="003.52", shape=(10708, 10487),
                  pixel_spacing=(40.0, 40.0), swaths=("EW1", "EW2", "EW3", "EW4", "EW5"), old_noise=False),
    IW_SARSEN: dict(mission="S1B", mode="IW", resolution_class="H", ipf_version="003.40", shape=(16705, 26102),
                    pixel_spacing=(10.0, 10.0), swaths=("IW1", "IW2", "IW3"), old_noise=False),
    IW_OLD_NOISE[0]: dict(mission="S1A", mode="IW", resolution_class="H", ipf_version="002.70", shape=(16712, 25560),
                          pixel_spacing=(10.0, 10.0), swaths=("IW1", "IW2", "IW3"), old_noise=True),
    IW_OLD_NOISE[1]: dict(mission="S1A", mode="IW", resolution_class="H", ipf_version="002.36", shape=(16685, 25368),
                          pixel_spacing=(10.0, 9.998647), swaths=("IW1", "IW2", "IW3"), old_noise=True),
    IW_NEW_NOISE_ZIP: dict(mission="S1A", mode="IW", resolution_class="H", ipf_version="003.31", shape=(16854, 25931),
                           pixel_spacing=(10.0, 10.0), swaths=("IW1", "IW2", "IW3"), old_noise=False),
}


class RawProduct:
    """Independent access to a real product's XML files (no seaice_dask code involved)."""

    def __init__(self, path: Path):
        self.path = path
        if path.suffix == ".zip":
            self.zip = zipfile.ZipFile(path)
            self.names = {n.split(".SAFE/", 1)[1]: n for n in self.zip.namelist() if ".SAFE/" in n}
        else:
            self.zip = None
            info = path / "productInfo.json"
            self.map = json.loads(info.read_text())["filenameMap"] if info.exists() else {}

    def open(self, name: str):
        if self.zip is not None:
            return io.BytesIO(self.zip.read(self.names[name]))
        return open(self.path / self.map.get(name, name), "rb")

    def file(self, kind: str, pol: str) -> str:
        """SAFE-relative name of the annotation/calibration/noise XML of ``pol``."""
        _, files = esa_safe.parse_manifest_sentinel1(self.open("manifest.safe"))
        for href, (rep_id, _prefix, _swath, file_pol, _start) in files.items():
            if file_pol.upper() == pol and rep_id == {"annotation": "s1Level1ProductSchema",
                                                       "calibration": "s1Level1CalibrationSchema",
                                                       "noise": "s1Level1NoiseSchema"}[kind]:
                return href.removeprefix("./")
        raise KeyError((kind, pol))

    def xml(self, kind: str, pol: str) -> ET.Element:
        return ET.parse(self.open(self.file(kind, pol))).getroot()


@pytest.fixture(params=PRODUCTS, ids=lambda p: Path(p).name[:25] + Path(p).name[-8:])
def real(request, realdata):
    path = realdata(request.param)
    return request.param, open_safe(path), RawProduct(path)


def test_metadata_equals_xml(real):
    key, product, raw = real
    attrs, _ = esa_safe.parse_manifest_sentinel1(raw.open("manifest.safe"))
    expected = EXPECTED[key]
    assert product.name == Path(key).name.removesuffix(".zip").removesuffix(".SAFE")
    assert product.mission == expected["mission"] == "S1" + attrs["number"]
    assert product.mode == expected["mode"] == attrs["mode"]
    assert product.product_type == attrs["product_type"] == "GRD"
    assert product.resolution_class == expected["resolution_class"]
    assert product.polarisations == tuple(attrs["transmitter_receiver_polarisations"])
    assert product.start_time == np.datetime64(attrs["start_time"], "ns")
    assert product.stop_time == np.datetime64(attrs["stop_time"], "ns")
    assert product.start_time.dtype == np.dtype("datetime64[ns]")
    assert product.absolute_orbit == attrs["orbit_number"]
    assert product.relative_orbit == attrs["relative_orbit_number"]
    assert product.pass_direction == attrs["pass"]
    assert product.ipf_version == expected["ipf_version"]
    assert product.shape == expected["shape"]
    assert product.pixel_spacing == pytest.approx(expected["pixel_spacing"])
    assert tuple(s.name for s in product.swaths) == expected["swaths"]
    annotation = raw.xml("annotation", product.polarisations[0])
    bounds = annotation.findall(".//swathMerge/swathBoundsList/swathBounds")
    assert min(s.first_line for s in product.swaths) == min(int(b.findtext("firstAzimuthLine")) for b in bounds)
    assert max(s.last_sample for s in product.swaths) == max(int(b.findtext("lastRangeSample")) for b in bounds)
    assert max(s.last_sample for s in product.swaths) == product.shape[1] - 1
    footprint = product.footprint()
    assert footprint.is_valid and footprint.area > 0


def test_geolocation_grid_and_gcps_equal_xml(real):
    _, product, raw = real
    pol = product.polarisations[0]
    points = raw.xml("annotation", pol).findall(".//geolocationGridPoint")
    grid = product.geolocation_grid(pol)
    assert grid.sizes["line"] * grid.sizes["pixel"] == len(points)
    gcps = {(g.row, g.col): g for g in product.gcps(pol)}
    assert len(gcps) == len(points)
    for p in points[:: max(1, len(points) // 25)]:
        line, pixel = int(p.findtext("line")), int(p.findtext("pixel"))
        g = gcps[(line, pixel)]
        assert (g.y, g.x, g.z) == (float(p.findtext("latitude")), float(p.findtext("longitude")), float(p.findtext("height")))
        at = grid.sel(line=line, pixel=pixel)
        assert float(at.incidence_angle) == float(p.findtext("incidenceAngle"))
        assert float(at.elevation_angle) == float(p.findtext("elevationAngle"))


def test_calibration_matches_xarray_sentinel(real):
    _, product, raw = real
    pol = product.polarisations[0]
    reference = sentinel1.open_calibration_dataset(raw.open(raw.file("calibration", pol)))
    lut = product.calibration(pol)
    rng = np.random.default_rng(0)
    lines = np.sort(rng.choice(product.shape[0], 40, replace=False))
    samples = np.sort(rng.choice(product.shape[1], 60, replace=False))
    for ours, theirs in (("sigma_nought", "sigmaNought"), ("beta_nought", "betaNought"), ("gamma", "gamma"), ("dn", "dn")):
        expected = reference[theirs].interp(line=lines, pixel=samples).values
        np.testing.assert_allclose(calibration_window(lut, ours, lines, samples), expected, rtol=1e-5)


def _vectors(root: ET.Element, vector_tag: str, lut_tag: str):
    for vec in root.iter(vector_tag):
        yield int(vec.findtext("line")), np.array(vec.findtext("pixel").split(), int), np.array(vec.findtext(lut_tag).split(), float)


def test_noise_equals_xml_at_tie_points(real):
    key, product, raw = real
    for pol in product.polarisations:
        try:
            root = raw.xml("noise", pol)
        except (KeyError, FileNotFoundError):  # sarsen ships VV files only
            continue
        noise = product.noise(pol)
        old = root.find("noiseVectorList") is not None
        assert old == EXPECTED[key]["old_noise"] == (not noise.has_azimuth)
        vector_tag, lut_tag = ("noiseVector", "noiseLut") if old else ("noiseRangeVector", "noiseRangeLut")
        n_vectors = 0
        for line, pixel, values in _vectors(root, vector_tag, lut_tag):
            got = noise_range_window(noise, np.array([line]), pixel)[0]
            np.testing.assert_allclose(got, values, rtol=1e-12)
            n_vectors += 1
        assert n_vectors == len(noise.range_line)
        for block in root.iter("noiseAzimuthVector"):
            first, last = int(block.findtext("firstAzimuthLine")), int(block.findtext("lastAzimuthLine"))
            s0, s1 = int(block.findtext("firstRangeSample")), int(block.findtext("lastRangeSample"))
            lines = np.array(block.findtext("line").split(), int)
            values = np.array(block.findtext("noiseAzimuthLut").split(), float)
            inside = (lines >= first) & (lines <= last)
            samples = np.array([s0, (s0 + s1) // 2, s1])
            got = noise_azimuth_window(noise, lines[inside], samples)
            np.testing.assert_allclose(got, np.repeat(values[inside][:, None], 3, axis=1), rtol=1e-12)
        # η is the product of both parts everywhere
        lines, samples = np.arange(0, product.shape[0], 997), np.arange(0, product.shape[1], 1013)
        np.testing.assert_allclose(
            noise_window(noise, lines, samples),
            noise_range_window(noise, lines, samples) * noise_azimuth_window(noise, lines, samples),
        )


def test_ew_noise_vectors_have_unequal_lengths(realdata):
    """The real EW sample is the case xarray-sentinel cannot read; it must work here."""
    noise = open_safe(realdata(EW_GRDM)).noise("HV")
    assert len({p.size for p in noise.range_pixel}) > 1
    assert {b.swath for b in noise.azimuth} == {"EW1", "EW2", "EW3", "EW4", "EW5"}


def test_missing_polarisation_files_named(realdata):
    """The sarsen sample lists VH in its manifest but ships only the VV files."""
    product = open_safe(realdata(IW_SARSEN))
    assert product.polarisations == ("VV", "VH")
    product.calibration("VV")
    with pytest.raises(ProductError, match=r"calibration-s1b-iw-grd-vh.*missing|missing.*calibration-s1b-iw-grd-vh"):
        product.calibration("VH")


def test_measurement_absent_is_clear(realdata):
    product = open_safe(realdata(IW_NEW_NOISE_ZIP))
    with pytest.raises(ProductError, match="measurement"):
        product.dn("VV")


def test_empty_measurement_tiff_is_clear(realdata):
    """The real EW sample ships 0-byte measurement placeholders."""
    product = open_safe(realdata(EW_GRDM))
    with pytest.raises(ProductError, match="corrupt or unreadable measurement TIFF") as err:
        product.dn("HH")
    assert "ew-hh.tiff" in str(err.value)


def test_truncated_measurement_tiff_is_clear(served_series, tmp_path):
    """A cut download: the windowed reads' direct I/O would return whatever lies past the end of
    the file without an error, so opening the band refuses it, naming the file."""
    with zipfile.ZipFile(served_series.scenes[0]) as zf:
        zf.extractall(tmp_path)
    (safe,) = tmp_path.glob("*.SAFE")
    assert open_safe(safe).dn("HH").shape  # whole: opens
    (tiff,) = (safe / "measurement").glob("*-hh-*.tiff")
    tiff.write_bytes(tiff.read_bytes()[: tiff.stat().st_size // 2])
    with pytest.raises(ProductError, match="truncated measurement TIFF") as err:
        open_safe(safe).dn("HH")
    assert tiff.name in str(err.value)
