"""``open_safe``: one Sentinel-1 Level-1 GRD product and its per-polarisation annotation.

Product-level metadata comes from ``manifest.safe`` (identity, orbit, times, IPF version,
footprint, the list of files) and from the first available product annotation (image shape,
pixel spacing, subswaths). Per-polarisation LUTs are parsed on first use and cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import xarray as xr
from lxml import etree
from rasterio.control import GroundControlPoint
from shapely.geometry import Polygon

from seaice_dask.errors import ProductError
from seaice_dask.safe.annotation import (
    CalibrationLUT,
    NoiseLUT,
    Subswath,
    parse_calibration,
    parse_geolocation_grid,
    parse_noise,
    parse_subswaths,
)
from seaice_dask.safe.store import MANIFEST, ProductStore, open_store, safe_relpath
from seaice_dask.safe.xml import parse_xml, text, utc

#: ESA product name, e.g. S1A_EW_GRDM_1SDH_20221130T014342_20221130T014446_046117_058549_BB15.
PRODUCT_NAME = re.compile(
    r"^(?P<mission>S1[A-D])_(?P<mode>IW|EW|WV|S[1-6]|EN|N[1-6]|Z[1-6I])_"
    r"(?P<type>GRD|SLC|RAW|OCN|ETA)(?P<resolution>[FHM_])_(?P<level>[0-2])(?P<klass>[SAN])"
    r"(?P<pol>SH|SV|DH|DV|HH|HV|VV|VH)_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_"
    r"(?P<orbit>\d{6})_(?P<datatake>[0-9A-F]{6})_(?P<uid>[0-9A-F]{4})$"
)
POLARISATIONS = ("HH", "HV", "VV", "VH")
_SCHEMA_KIND = {
    "s1Level1ProductSchema": "annotation",
    "s1Level1CalibrationSchema": "calibration",
    "s1Level1NoiseSchema": "noise",
    "s1Level1MeasurementSchema": "measurement",
}
_FILE_POL = re.compile(r"-(hh|hv|vv|vh)-", re.IGNORECASE)
# GRD resolution class by (mode, range pixel spacing in m) when the product name is not standard.
_RESOLUTION_BY_SPACING = {("EW", 40.0): "M", ("EW", 25.0): "H", ("IW", 40.0): "M", ("IW", 10.0): "H"}


@dataclass(frozen=True)
class _Identity:
    mission: str
    mode: str
    product_type: str
    resolution_class: str


class Product:
    """A Sentinel-1 GRD product opened with :func:`open_safe` (metadata read, pixels lazy).

    Attributes: ``path``, ``name`` (product id), ``mission`` ('S1A'…'S1D'), ``mode`` ('EW', 'IW',
    'SM'…), ``product_type`` ('GRD'), ``resolution_class`` ('M', 'H', 'F'), ``polarisations``
    (as the manifest lists them), ``start_time``/``stop_time`` (datetime64[ns], UTC),
    ``absolute_orbit``, ``relative_orbit``, ``pass_direction`` ('ASCENDING'/'DESCENDING'),
    ``ipf_version`` ('003.52'), ``shape`` (lines, samples), ``pixel_spacing`` (range, azimuth
    in m), ``swaths`` (:class:`~seaice_dask.safe.annotation.Subswath` extents), and the slice's
    place in its data take where the manifest has them (else None): ``datatake_id``,
    ``segment_start`` (datetime64[ns], UTC), ``slice_number``, ``total_slices``.
    """

    def __init__(self, store: ProductStore):
        self._store = store
        self.path: Path = store.path
        self._manifest_source = store.describe(MANIFEST)
        manifest = parse_xml(store.read(MANIFEST), self._manifest_source)
        self._files = self._file_table(manifest)
        self.name: str = store.product_name
        self._check_supported(manifest)
        self._parse_manifest(manifest)
        self._cache: dict[tuple[str, str], object] = {}
        self._parse_image_annotation()

    # ------------------------------------------------------------------ manifest
    def _file_table(self, manifest: etree._Element) -> dict[tuple[str, str], str]:
        """(kind, polarisation) → SAFE-relative file name, from the manifest's dataObjects."""
        table: dict[tuple[str, str], str] = {}
        for obj in manifest.iterfind(".//{*}dataObjectSection/{*}dataObject"):
            kind = _SCHEMA_KIND.get(obj.get("repID", ""))
            loc = obj.find(".//{*}fileLocation")
            if kind is None or loc is None or not loc.get("href"):
                continue
            name = safe_relpath(loc.get("href"), self._manifest_source)
            match = _FILE_POL.search(PurePosixPath(name).name)
            if match:
                table.setdefault((kind, match.group(1).upper()), name)
        return table

    def _check_supported(self, manifest: etree._Element) -> None:
        """Refuse anything but Level-1 GRD, by the product name and the manifest's productType."""
        match = PRODUCT_NAME.match(self.name)
        declared = manifest.findtext(".//{*}standAloneProductInformation/{*}productType")
        kinds = {k.strip().upper() for k in (declared, match["type"] if match else None) if k}
        other = sorted(kinds - {"GRD"}) or ([] if kinds else ["unknown"])
        if other:
            names = {"SLC": "SLC (complex)", "RAW": "Level-0 RAW", "OCN": "Level-2 OCN"}
            what = ", ".join(names.get(k, k) for k in other)
            raise ProductError(f"unsupported product type {what}: only Level-1 GRD products are read", self.path)

    def _parse_manifest(self, manifest: etree._Element) -> None:
        src = self._manifest_source
        match = PRODUCT_NAME.match(self.name)
        number = text(manifest, ".//{*}platform/{*}number", src)
        family = text(manifest, ".//{*}platform/{*}familyName", src)
        if family.upper() != "SENTINEL-1":
            raise ProductError(f"not a Sentinel-1 product (platform {family!r})", src)
        self.mission: str = f"S1{number.upper()}"
        self.mode: str = text(manifest, ".//{*}instrumentMode/{*}mode", src).upper()
        self.product_type: str = "GRD"
        pols = [p.text.strip().upper() for p in manifest.iterfind(".//{*}transmitterReceiverPolarisation") if p.text]
        if not pols:
            raise ProductError("manifest lists no polarisations", src)
        self.polarisations: tuple[str, ...] = tuple(pols)
        self.start_time: np.datetime64 = utc(text(manifest, ".//{*}acquisitionPeriod/{*}startTime", src))
        self.stop_time: np.datetime64 = utc(text(manifest, ".//{*}acquisitionPeriod/{*}stopTime", src))
        self.absolute_orbit: int = int(text(manifest, ".//{*}orbitNumber[@type='start']", src))
        self.relative_orbit: int = int(text(manifest, ".//{*}relativeOrbitNumber[@type='start']", src))
        self.pass_direction: str = text(manifest, ".//{*}orbitProperties/{*}pass", src).upper()
        software = manifest.find(".//{*}software[@name='Sentinel-1 IPF']")
        if software is None or not software.get("version"):
            raise ProductError("manifest carries no Sentinel-1 IPF version", src)
        self.ipf_version: str = software.get("version")
        self._parse_slice(manifest)
        coords = manifest.findtext(".//{*}footPrint/{*}coordinates")
        if not coords:
            raise ProductError("manifest carries no footprint", src)
        lat_lon = [tuple(float(v) for v in pair.split(",")) for pair in coords.split()]
        self._footprint = Polygon([(lon, lat) for lat, lon in lat_lon])
        self._resolution_from_name = match["resolution"] if match else None

    def _parse_slice(self, manifest: etree._Element) -> None:
        """Data take and slice position (``standAloneProductInformation``); optional, since
        products assembled from a whole segment or made by other processors lack them."""
        info = manifest.find(".//{*}standAloneProductInformation")

        def field(tag: str) -> str | None:
            value = info.findtext(f"{{*}}{tag}") if info is not None else None
            return value.strip() if value and value.strip() else None

        try:
            datatake, segment = field("missionDataTakeID"), field("segmentStartTime")
            number, total = field("sliceNumber"), field("totalSlices")
            self.datatake_id: int | None = int(datatake) if datatake else None
            self.segment_start: np.datetime64 | None = utc(segment) if segment else None
            self.slice_number: int | None = int(number) if number else None
            self.total_slices: int | None = int(total) if total else None
        except ValueError as exc:
            raise ProductError(f"unreadable slice information ({exc})", self._manifest_source) from None

    def _parse_image_annotation(self) -> None:
        pol = next((p for p in self.polarisations if self._store.exists(self._file("annotation", p))), None)
        if pol is None:
            raise ProductError("no product annotation file present for any polarisation", self.path)
        root = self._xml("annotation", pol)
        src = self._source("annotation", pol)
        info = root.find("imageAnnotation/imageInformation")
        if info is None:
            raise ProductError("missing imageAnnotation/imageInformation", src)
        self.shape: tuple[int, int] = (int(text(info, "numberOfLines", src)), int(text(info, "numberOfSamples", src)))
        self.pixel_spacing: tuple[float, float] = (
            float(text(info, "rangePixelSpacing", src)),
            float(text(info, "azimuthPixelSpacing", src)),
        )
        self.swaths: tuple[Subswath, ...] = parse_subswaths(root, src)
        self.resolution_class: str = self._resolution_from_name or _RESOLUTION_BY_SPACING.get(
            (self.mode, self.pixel_spacing[0]), "H"
        )

    # ------------------------------------------------------------------ files
    def _pol(self, pol: str) -> str:
        key = str(pol).upper()
        if key not in self.polarisations:
            raise ProductError(
                f"polarisation {pol!r} is not in this product (it has {', '.join(self.polarisations)})", self.path
            )
        return key

    def _file(self, kind: str, pol: str) -> str:
        try:
            return self._files[(kind, self._pol(pol))]
        except KeyError:
            raise ProductError(f"manifest lists no {kind} file for {pol}", self._manifest_source) from None

    def _source(self, kind: str, pol: str) -> str:
        return self._store.describe(self._file(kind, pol))

    def _xml(self, kind: str, pol: str) -> etree._Element:
        name = self._file(kind, pol)
        return parse_xml(self._store.read(name), self._store.describe(name))

    def _cached(self, kind: str, pol: str, build):
        key = (kind, self._pol(pol))
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def measurement_path(self, pol: str) -> str:
        """GDAL-openable path of the measurement TIFF of ``pol`` (``/vsizip/…`` inside zips)."""
        name = self._file("measurement", pol)
        if not self._store.exists(name):
            raise ProductError("missing measurement file", self._store.describe(name))
        return self._store.gdal_path(name)

    # ------------------------------------------------------------------ annotation
    def calibration(self, pol: str) -> CalibrationLUT:
        """Calibration LUTs (sigmaNought, betaNought, gamma, dn) of ``pol``."""
        return self._cached("calibration", pol, lambda: parse_calibration(self._xml("calibration", pol), self._source("calibration", pol)))

    def noise(self, pol: str) -> NoiseLUT:
        """Thermal noise LUTs of ``pol`` (range vectors and, from IPF 2.9, azimuth blocks)."""
        return self._cached("noise", pol, lambda: parse_noise(self._xml("noise", pol), self._source("noise", pol)))

    def geolocation_grid(self, pol: str) -> xr.Dataset:
        """Geolocation tie points (line, pixel, latitude, longitude, height, incidence/elevation angle)."""
        return self._cached(
            "geolocation", pol, lambda: parse_geolocation_grid(self._xml("annotation", pol), self._source("annotation", pol))
        )

    def gcps(self, pol: str) -> list[GroundControlPoint]:
        """The geolocation grid as GCPs in EPSG:4326 (row=line, col=pixel, x=lon, y=lat, z=height)."""
        grid = self.geolocation_grid(pol)
        flat = grid.stack(point=("line", "pixel")) if "pixel" in grid.dims else grid
        return [
            GroundControlPoint(row=float(r), col=float(c), x=float(x), y=float(y), z=float(z), id=str(i + 1))
            for i, (r, c, x, y, z) in enumerate(
                zip(
                    flat["line"].values,
                    flat["pixel"].values,
                    flat["longitude"].values,
                    flat["latitude"].values,
                    flat["height"].values,
                )
            )
        ]

    def measurement_gcps(self, pol: str) -> list[GroundControlPoint]:
        """The GCPs written in the measurement TIFF (EPSG:4326 in ESA products)."""
        from seaice_dask.safe.measurement import read_gcps

        return read_gcps(self.measurement_path(pol))

    def footprint(self) -> Polygon:
        """Product footprint from the manifest as a lon/lat polygon."""
        return self._footprint

    def dn(self, pol: str, chunks: tuple[int, int] = (1024, 1024)) -> xr.DataArray:
        """Digital numbers of ``pol`` as a lazy (line, sample) uint16 DataArray read window by window."""
        from seaice_dask.safe.measurement import lazy_dn

        return lazy_dn(self, self._pol(pol), chunks)

    def __repr__(self) -> str:
        return f"<Product {self.name} {'+'.join(self.polarisations)} {self.shape[0]}x{self.shape[1]} IPF {self.ipf_version}>"


def open_safe(path: str | Path) -> Product:
    """Open a Sentinel-1 GRD product: a ``.SAFE`` folder, its zip (read in place) or the AWS layout.

    Raises :class:`~seaice_dask.errors.ProductError` naming the file for anything unreadable or
    unsupported (SLC, OCN, RAW/L0, non-Sentinel-1).
    """
    return Product(open_store(path))
