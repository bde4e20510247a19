"""Read-only access to the files of one product: a ``.SAFE`` folder, a zipped SAFE or the
AWS open-data layout (short names such as ``annotation/ew-hh.xml`` mapped from the SAFE names
through ``productInfo.json``'s ``filenameMap``).

Every file is addressed by its path relative to the SAFE root as the manifest writes it
(``annotation/s1a-ew-grd-hh-….xml``); the store maps it to the real location. Zip members are
read in place, never extracted; member names are validated on open.
"""

from __future__ import annotations

import json
import posixpath
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from seaice_dask.errors import ProductError

MANIFEST = "manifest.safe"
PRODUCT_INFO = "productInfo.json"
#: Largest metadata file (manifest, annotation XML) read into memory; real ones are < 20 MB,
#: so anything bigger is refused as corrupt or a decompression bomb.
MAX_METADATA_BYTES = 256 * 2**20


def safe_relpath(name: str, source: str | Path) -> str:
    """Normalise a product-relative path; refuse absolute paths and ``..`` escapes."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("./"):
        cleaned = cleaned[2:]
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise ProductError(f"absolute path {name!r} inside the product is not allowed", source)
    parts = PurePosixPath(cleaned).parts
    if ".." in parts:
        raise ProductError(f"path {name!r} escapes the product folder ('..')", source)
    return posixpath.normpath(cleaned)


def read_name_map(data: bytes, source: str | Path) -> tuple[dict[str, str], str | None]:
    """AWS ``productInfo.json``: (SAFE name → stored name map, product id)."""
    try:
        meta = json.loads(data)
        mapping = meta.get("filenameMap", {}) or {}
        names = {safe_relpath(k, source): safe_relpath(v, source) for k, v in mapping.items()}
        return names, meta.get("id")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError) as exc:
        raise ProductError(f"corrupt {PRODUCT_INFO}: {exc}", source) from None


class ProductStore:
    """Base class: ``read``/``exists``/``gdal_path`` by SAFE-relative name."""

    path: Path

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def gdal_path(self, name: str) -> str:
        """A path GDAL/rasterio opens in place (``/vsizip/…`` for zip members)."""
        raise NotImplementedError

    def describe(self, name: str) -> str:
        """Human-readable location of ``name``, for error messages."""
        raise NotImplementedError

    @property
    def product_name(self) -> str:
        raise NotImplementedError


class FolderStore(ProductStore):
    """A ``.SAFE`` folder, optionally with an AWS ``productInfo.json`` name map."""

    def __init__(self, path: Path):
        self.path = path
        info = path / PRODUCT_INFO
        self._map, self._aws_id = read_name_map(info.read_bytes(), info) if info.is_file() else ({}, None)

    def _local(self, name: str) -> Path:
        rel = safe_relpath(name, self.path)
        return self.path / self._map.get(rel, rel)

    def read(self, name: str) -> bytes:
        local = self._local(name)
        try:
            if local.stat().st_size > MAX_METADATA_BYTES:
                raise ProductError(f"file is larger than {MAX_METADATA_BYTES} bytes: not a product metadata file", local)
            return local.read_bytes()
        except FileNotFoundError:
            raise ProductError("missing file in product", local) from None
        except OSError as exc:
            raise ProductError(f"cannot read file: {exc}", local) from None

    def exists(self, name: str) -> bool:
        return self._local(name).is_file()

    def gdal_path(self, name: str) -> str:
        return str(self._local(name))

    def describe(self, name: str) -> str:
        return str(self._local(name))

    @property
    def product_name(self) -> str:
        if self._aws_id:
            return str(self._aws_id)
        return self.path.name.removesuffix(".SAFE")


class ZipStore(ProductStore):
    """A zipped SAFE (``S1A_….zip`` holding ``S1A_….SAFE/…``), read in place."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with self._open_zip() as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ProductError(f"not a readable zip archive: {exc}", path) from None
        for member in names:
            safe_relpath(member, path)  # raises on absolute paths and '..'
        manifests = [n for n in names if PurePosixPath(n).name == MANIFEST]
        if not manifests:
            raise ProductError(f"no {MANIFEST} inside the zip", path)
        manifests.sort(key=lambda n: n.count("/"))
        self._prefix = manifests[0][: -len(MANIFEST)]
        self._members = set(names)
        self._map: dict[str, str] = {}
        self._map, self._aws_id = (
            read_name_map(self.read(PRODUCT_INFO), self.describe(PRODUCT_INFO))
            if self.exists(PRODUCT_INFO)
            else ({}, None)
        )

    def _open_zip(self) -> zipfile.ZipFile:
        return zipfile.ZipFile(self.path)

    def _member(self, name: str) -> str:
        rel = safe_relpath(name, self.path)
        return self._prefix + self._map.get(rel, rel)

    def read(self, name: str) -> bytes:
        member = self._member(name)
        if member not in self._members:
            raise ProductError(f"missing member {member!r}", self.path)
        try:
            with self._open_zip() as zf:
                if zf.getinfo(member).file_size > MAX_METADATA_BYTES:
                    raise ProductError(
                        f"member {member!r} is larger than {MAX_METADATA_BYTES} bytes unpacked: "
                        "not a product metadata file (zip bomb?)",
                        self.path,
                    )
                # zipfile stops at the declared size, so a lying header cannot inflate further
                return zf.read(member)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise ProductError(f"corrupt member {member!r}: {exc}", self.path) from None

    def exists(self, name: str) -> bool:
        return self._member(name) in self._members

    def gdal_path(self, name: str) -> str:
        return f"/vsizip/{self.path.resolve()}/{self._member(name)}"

    def describe(self, name: str) -> str:
        return f"{self.path}!{self._member(name)}"

    @property
    def product_name(self) -> str:
        if self._aws_id:
            return str(self._aws_id)
        prefix = self._prefix.rstrip("/")
        stem = PurePosixPath(prefix).name if prefix else self.path.stem
        return stem.removesuffix(".SAFE")


def open_store(path: str | Path) -> ProductStore:
    """The store for a ``.SAFE`` folder, its ``manifest.safe``, a zip, or an AWS-layout folder;
    local or at an ``s3://`` URL (read in place, see :mod:`seaice_dask.safe.objectstore`)."""
    if str(path).startswith("s3://"):
        from seaice_dask.safe.objectstore import open_remote_store

        return open_remote_store(str(path))
    path = Path(path).expanduser()
    if not path.exists():
        raise ProductError("product not found", path)
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise ProductError(f"no {MANIFEST} in folder: not a Sentinel-1 SAFE product", path)
        return FolderStore(path)
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        return ZipStore(path)
    raise ProductError("not a .SAFE folder, manifest.safe or .zip product", path)
