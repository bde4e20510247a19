"""Copernicus Data Space Ecosystem: OData catalogue search, OpenID tokens, product URLs.

Access tokens live about 10 minutes; they are renewed with the refresh token (CDSE limits the
number of login sessions per user) and only fall back to a new password login when the refresh
token has expired too. Downloads go straight to the download host: a redirect from the
catalogue host would drop the ``Authorization`` header.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from urllib.parse import urlsplit

import requests
from shapely.geometry import shape

from seaice_dask.config import CdseConfig
from seaice_dask.download.credentials import Credentials, find_credentials
from seaice_dask.download.products import RemoteProduct
from seaice_dask.download.query import SearchQuery, cdse_filter
from seaice_dask.download.transfer import RetryPolicy, request
from seaice_dask.errors import AuthenticationError, DownloadError

log = logging.getLogger(__name__)

CLIENT_ID = "cdse-public"


class CdseTokens:
    """Bearer tokens of one login, renewed by the refresh grant; thread-safe."""

    def __init__(self, token_url: str, credentials: Credentials, policy: RetryPolicy = RetryPolicy(),
                 margin_s: float = 30.0):
        self.token_url = token_url
        self._credentials = credentials
        self._policy = policy
        self._margin_s = margin_s
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._access: str | None = None
        self._access_expiry = 0.0
        self._refresh: str | None = None
        self._refresh_expiry = 0.0
        self.logins = 0  # password grants made (each opens a CDSE session)
        self.refreshes = 0

    def _grant(self, data: dict[str, str]) -> requests.Response:
        return request(self._session, "POST", self.token_url, self._policy, data={**data, "client_id": CLIENT_ID},
                       what=f"token endpoint {urlsplit(self.token_url).netloc}")

    def _store(self, response: requests.Response) -> None:
        body = response.json()
        now = time.monotonic()
        self._access = body["access_token"]
        self._access_expiry = now + float(body.get("expires_in", 600))
        self._refresh = body.get("refresh_token")
        self._refresh_expiry = now + float(body.get("refresh_expires_in", 3600))

    def _login(self) -> None:
        response = self._grant({"grant_type": "password", "username": self._credentials.username,
                                "password": self._credentials.password})
        if response.status_code != 200:
            reason = _oauth_error(response)
            raise AuthenticationError(f"CDSE refused the login of user {self._credentials.username!r}: {reason}")
        self.logins += 1
        self._store(response)

    def _renew(self) -> None:
        if self._refresh and time.monotonic() < self._refresh_expiry - self._margin_s:
            response = self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
            if response.status_code == 200:
                self.refreshes += 1
                self._store(response)
                return
            log.info("CDSE refresh token rejected (%s); logging in again", _oauth_error(response))
        self._login()

    def login(self) -> None:
        """Log in now (so that wrong credentials fail before anything is written)."""
        with self._lock:
            if self._access is None:
                self._login()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._access is None:
                self._login()
            elif time.monotonic() > self._access_expiry - self._margin_s:
                self._renew()
            return {"Authorization": f"Bearer {self._access}"}

    def renew(self, rejected: dict[str, str]) -> None:
        with self._lock:
            if rejected.get("Authorization") == f"Bearer {self._access}":
                self._renew()


def _oauth_error(response: requests.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('error', 'error')}: {body.get('error_description', '')}".strip(": ")
    except ValueError:
        return f"HTTP {response.status_code}"


def cdse_tokens(cfg: CdseConfig, policy: RetryPolicy) -> CdseTokens:
    """Tokens for the user of ``CDSE_USERNAME``/``CDSE_PASSWORD`` or netrc, logged in."""
    credentials = find_credentials("cdse", urlsplit(cfg.token_url).hostname or "")
    tokens = CdseTokens(cfg.token_url, credentials, policy)
    tokens.login()
    return tokens


def _attribute(item: dict, name: str):
    for attribute in item.get("Attributes") or ():
        if attribute.get("Name") == name:
            return attribute.get("Value")
    return None


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC).replace(tzinfo=None)


def parse_product(item: dict, download_url: str) -> RemoteProduct:
    """A catalogue entry (OData ``Product``) as a :class:`RemoteProduct`."""
    orbit = _attribute(item, "relativeOrbitNumber")
    footprint = item.get("GeoFootprint")
    return RemoteProduct(
        id=item["Id"],
        name=item["Name"].removesuffix(".SAFE"),
        start_time=_time(item["ContentDate"]["Start"]),
        url=f"{download_url.rstrip('/')}/Products({item['Id']})/$value",
        relative_orbit=None if orbit is None else int(orbit),
        size=item.get("ContentLength"),
        online=bool(item.get("Online", True)),
        checksums={c["Algorithm"].upper(): c["Value"] for c in item.get("Checksum") or () if c.get("Value")},
        footprint=shape(footprint) if footprint else None,
        s3_path=item.get("S3Path"),
    )


def search_cdse(query: SearchQuery, cfg: CdseConfig, policy: RetryPolicy = RetryPolicy(),
                session: requests.Session | None = None) -> list[RemoteProduct]:
    """Every catalogue product matching ``query``, in acquisition order (follows ``@odata.nextLink``)."""
    session = session or requests.Session()
    url: str | None = f"{cfg.catalogue_url.rstrip('/')}/Products"
    params: dict | None = {
        "$filter": cdse_filter(query), "$orderby": "ContentDate/Start asc", "$top": cfg.page_size,
        "$expand": "Attributes",
    }
    products: list[RemoteProduct] = []
    while url:
        response = request(session, "GET", url, policy, params=params, what="CDSE catalogue")
        if response.status_code != 200:
            raise DownloadError(f"CDSE catalogue {url}: HTTP {response.status_code} {response.text[:300]}")
        page = response.json()
        products += [parse_product(item, cfg.download_url) for item in page.get("value", [])]
        url, params = page.get("@odata.nextLink"), None
    return products
