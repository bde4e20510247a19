"""Alaska Satellite Facility through the official ``asf_search`` package (optional extra ``asf``).

``asf_search`` searches NASA's CMR and logs in to Earthdata Login; it neither resumes nor
verifies transfers, so the bytes go through :func:`seaice_dask.download.transfer.fetch_file`
(resume, MD5 from the catalogue, zip integrity) with the logged-in session's token and cookies.
"""

from __future__ import annotations

import datetime as dt
import logging

import requests
from shapely.geometry import shape

from seaice_dask.config import AsfConfig
from seaice_dask.download.credentials import find_credentials
from seaice_dask.download.products import RemoteProduct
from seaice_dask.download.query import SearchQuery, polygon_wkt
from seaice_dask.download.run import ArchiveAccess
from seaice_dask.download.transfer import RetryPolicy
from seaice_dask.errors import AuthenticationError, DownloadError, EngineUnavailableError

log = logging.getLogger(__name__)

#: our GRD resolution class → ASF processing level (dual polarisation)
PROCESSING_LEVEL = {"GRDM": "GRD_MD", "GRDH": "GRD_HD"}


def _asf():
    try:
        import asf_search
    except ImportError:
        raise EngineUnavailableError(
            "download.provider 'asf' needs the asf_search package: pip install '.[asf]' in the seaice-dask checkout"
        ) from None
    asf_search.REPORT_ERRORS = False  # never post our queries to ASF's error reporter
    return asf_search


def _session(cfg: AsfConfig):
    asf = _asf()
    return asf.ASFSession(cmr_host=cfg.search_host, edl_host=cfg.edl_host, asf_auth_host=cfg.auth_host)


def _time(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        when = value
    else:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


def search_asf(query: SearchQuery, cfg: AsfConfig, policy: RetryPolicy = RetryPolicy()) -> list[RemoteProduct]:
    """Products matching ``query`` in ASF's catalogue, in acquisition order."""
    asf = _asf()
    opts = asf.ASFSearchOptions(host=cfg.search_host, session=_session(cfg))
    try:
        results = asf.search(
            platform=[asf.PLATFORM.SENTINEL1],
            processingLevel=[PROCESSING_LEVEL[p] for p in query.products],
            beamMode=[query.mode],
            relativeOrbit=query.relative_orbit,
            start=f"{query.start:%Y-%m-%d}T00:00:00Z",
            end=f"{query.end:%Y-%m-%d}T23:59:59Z",
            intersectsWith=polygon_wkt(query.aoi),
            opts=opts,
        )
    except (asf.ASFError, requests.RequestException) as exc:
        raise DownloadError(f"ASF search on {cfg.search_host}: {exc}") from None
    products = []
    for result in results:
        p = result.properties
        md5 = p.get("md5sum")
        products.append(RemoteProduct(
            id=p["fileID"],
            name=p["sceneName"],
            start_time=_time(p["startTime"]),
            url=p["url"],
            relative_orbit=p.get("pathNumber"),
            size=int(p["bytes"]) if p.get("bytes") else None,
            checksums={"MD5": md5} if md5 else {},
            footprint=shape(result.geometry) if result.geometry else None,
        ))
    return sorted(products, key=lambda product: product.start_time)


def asf_access(cfg: AsfConfig, policy: RetryPolicy) -> ArchiveAccess:
    """Log in to Earthdata Login (``EARTHDATA_USERNAME``/``EARTHDATA_PASSWORD`` or netrc)."""
    asf = _asf()
    credentials = find_credentials("asf", cfg.edl_host.split(":")[0])
    session = _session(cfg)
    try:
        session.auth_with_creds(credentials.username, credentials.password)
    except asf.ASFAuthenticationError:
        raise AuthenticationError(f"Earthdata Login ({cfg.edl_host}) refused the login of user "
                                  f"{credentials.username!r}") from None

    def new_session():
        fresh = _session(cfg)
        fresh.headers.update(session.headers)  # the EDL bearer token
        fresh.cookies.update(session.cookies)  # asf-urs
        return fresh

    return ArchiveAccess(auth=None, new_session=new_session)
