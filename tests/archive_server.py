"""A local stand-in for the online archives, speaking their documented formats on 127.0.0.1.

- ``/token``: OpenID Connect token endpoint (password and refresh_token grants, client
  ``cdse-public``), short-lived access tokens;
- ``/odata/v1/Products``: the CDSE OData catalogue (``$filter`` on product type, relative orbit and
  start date, ``$orderby``, ``$top``/``$skip`` with ``@odata.nextLink``, ``$expand=Attributes``);
- ``/odata/v1/Products(<Id>)/$value``: the download host (Bearer token, ``Range``);
- ``/File/DownloadArchive?prd=26MMDDYYYY``: the NIC chart archive;
- ASF, over TLS: ``/search/granules.umm_json`` (NASA CMR, UMM-G JSON, filtered by collection
  short name, ``PATH_NUMBER``, ``BEAM_MODE`` and temporal range), Earthdata Login
  (``/api/users/find_or_create_token`` with Basic auth, ``/oauth/authorize`` → ``/login``
  setting the ``asf-urs`` cookie) and the data pool (``/GRD_MD/SA/NAME.zip``, redirected to a
  signed ``/s3/…`` URL that serves ``Range``).

Faults are queued per product id and consumed one per download request: ``401`` (token taken
as expired), ``429`` (with ``Retry-After``), ``500``, ``cut`` (connection closed half-way),
``corrupt`` (bytes altered), ``no-range`` (a 200 answer to a Range request).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import blake3

USER, PASSWORD = "alice@example.org", "correct-horse-battery-staple"


@dataclass
class Served:
    item: dict  # the OData Product entry
    data: bytes


@dataclass
class ArchiveState:
    token_lifetime_s: float = 600.0
    products: dict[str, Served] = field(default_factory=dict)
    charts: dict[str, bytes] = field(default_factory=dict)  # prd value → zip bytes
    faults: dict[str, list[str]] = field(default_factory=dict)
    access: dict[str, float] = field(default_factory=dict)  # token → expiry (time.time)
    refresh: set[str] = field(default_factory=set)
    grants: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)  # one per download/catalogue request
    asf: dict[str, Served] = field(default_factory=dict)  # file name → UMM-G item and bytes
    edl_tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_product(self, path: Path, *, relative_orbit: int = 24, online: bool = True,
                    checksums: tuple[str, ...] = ("MD5", "BLAKE3"), wrong_md5: bool = False) -> str:
        """Serve the SAFE zip ``path`` as a catalogue product; returns its Id."""
        data = path.read_bytes()
        name = path.name.removesuffix(".zip")
        start = dt.datetime.strptime(name.split("_")[4], "%Y%m%dT%H%M%S")
        digests = {"MD5": hashlib.md5(data).hexdigest(), "BLAKE3": blake3.blake3(data).hexdigest()}
        if wrong_md5:
            digests["MD5"] = "0" * 32
        product_id = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        item = {
            "@odata.mediaContentType": "application/octet-stream",
            "Id": product_id,
            "Name": f"{name}.SAFE",
            "ContentType": "application/octet-stream",
            "ContentLength": len(data),
            "OriginDate": "2021-04-01T10:00:00.000000Z",
            "PublicationDate": "2021-04-01T11:00:00.000000Z",
            "ModificationDate": "2021-04-01T11:00:00.000000Z",
            "Online": online,
            "EvictionDate": "",
            "S3Path": f"/eodata/Sentinel-1/SAR/EW_GRDM_1S/{start:%Y/%m/%d}/{name}.SAFE",
            "Checksum": [{"Value": digests[a], "Algorithm": a, "ChecksumDate": "2021-04-01T10:30:00.000000Z"}
                         for a in checksums],
            "ContentDate": {"Start": f"{start:%Y-%m-%dT%H:%M:%S}.000000Z",
                            "End": f"{start + dt.timedelta(seconds=64):%Y-%m-%dT%H:%M:%S}.000000Z"},
            "Footprint": "geography'SRID=4326;POLYGON ((-35 64, -18 64, -18 70, -35 70, -35 64))'",
            "GeoFootprint": {"type": "Polygon", "coordinates": [[[-35, 64], [-18, 64], [-18, 70], [-35, 70], [-35, 64]]]},
            "Attributes": [
                {"@odata.type": "#OData.CSC.StringAttribute", "Name": "productType", "Value": f"EW_{name.split('_')[2]}_1S", "ValueType": "String"},
                {"@odata.type": "#OData.CSC.IntegerAttribute", "Name": "relativeOrbitNumber", "Value": relative_orbit, "ValueType": "Integer"},
                {"@odata.type": "#OData.CSC.StringAttribute", "Name": "platformSerialIdentifier", "Value": name[2], "ValueType": "String"},
            ],
        }
        self.products[product_id] = Served(item, data)
        return product_id

    def add_asf_product(self, path: Path, host: str, *, relative_orbit: int = 24) -> str:
        """Serve ``path`` as an ASF granule (UMM-G as CMR returns it); returns its file name."""
        data = path.read_bytes()
        name = path.name.removesuffix(".zip")
        mission, _, klass = name.split("_")[:3]
        start = dt.datetime.strptime(name.split("_")[4], "%Y%m%dT%H%M%S")
        stop = dt.datetime.strptime(name.split("_")[5], "%Y%m%dT%H%M%S")
        level = {"GRDM": "GRD_MD", "GRDH": "GRD_HD"}[klass]
        ring = [(-35, 64), (-18, 64), (-18, 70), (-35, 70), (-35, 64)]
        attributes = {
            "ASCENDING_DESCENDING": "DESCENDING", "ASF_PLATFORM": f"Sentinel-1{mission[-1]}", "BEAM_MODE": "EW",
            "BEAM_MODE_TYPE": "EW", "BYTES": str(len(data)), "CENTER_LAT": "67.0", "CENTER_LON": "-26.5",
            "FRAME_NUMBER": "370", "GRANULE_TYPE": f"SENTINEL_1{mission[-1]}_FRAME",
            "GROUP_ID": f"{mission}_EWDH_0370_0375_{name.split('_')[6]}_{relative_orbit:03d}",
            "LOOK_DIRECTION": "R", "MD5SUM": hashlib.md5(data).hexdigest(), "PATH_NUMBER": str(relative_orbit),
            "POLARIZATION": "HH+HV", "PROCESSING_LEVEL": "L1", "PROCESSING_TYPE": level,
        }
        item = {
            "meta": {"concept-type": "granule", "concept-id": f"G{abs(hash(name)) % 10**10}-ASF", "revision-id": 1,
                     "native-id": f"{name}-{level}", "provider-id": "ASF", "format": "application/echo10+xml",
                     "revision-date": "2021-04-01T10:00:00.000Z"},
            "umm": {
                "TemporalExtent": {"RangeDateTime": {"BeginningDateTime": f"{start:%Y-%m-%dT%H:%M:%S}.000Z",
                                                     "EndingDateTime": f"{stop:%Y-%m-%dT%H:%M:%S}.000Z"}},
                "OrbitCalculatedSpatialDomains": [{"OrbitNumber": int(name.split("_")[6])}],
                "GranuleUR": f"{name}-{level}",
                "AdditionalAttributes": [{"Name": k, "Values": [v]} for k, v in attributes.items()],
                "SpatialExtent": {"HorizontalSpatialDomain": {"Geometry": {"GPolygons": [{"Boundary": {
                    "Points": [{"Longitude": x, "Latitude": y} for x, y in ring]}}]}}},
                "CollectionReference": {"ShortName": f"SENTINEL-1{mission[-1]}_DP_GRD_{'MEDIUM' if klass == 'GRDM' else 'HIGH'}",
                                        "Version": "1"},
                "RelatedUrls": [{"Type": "GET DATA", "URL": f"https://{host}/{level}/S{mission[-1]}/{name}.zip",
                                 "Description": "This link provides direct download access to the granule."}],
                "DataGranule": {"DayNightFlag": "Unspecified", "ProductionDateTime": f"{start:%Y-%m-%dT%H:%M:%S}.000Z",
                                "Identifiers": [{"Identifier": name, "IdentifierType": "ProducerGranuleId"}],
                                "ArchiveAndDistributionInformation": [{"Name": "Not provided", "Size": len(data) / 2**20,
                                                                       "SizeUnit": "MB", "Format": "Not provided"}]},
                "Platforms": [{"ShortName": f"SENTINEL-1{mission[-1]}", "Instruments": [{"ShortName": "C-SAR"}]}],
            },
        }
        self.asf[f"{name}.zip"] = Served(item, data)
        return f"{name}.zip"

    def log(self, **entry) -> None:
        with self.lock:
            self.requests.append({**entry, "t": time.monotonic()})

    def downloads(self, product_id: str) -> list[dict]:
        return [r for r in self.requests if r.get("product") == product_id]


def _matches(item: dict, expr: str) -> bool:
    """Evaluate the parts of a CDSE ``$filter`` this server knows: product type, orbit, dates."""
    attrs = {a["Name"]: a["Value"] for a in item["Attributes"]}
    types = re.findall(r"att/Name eq 'productType' and att/OData.CSC.StringAttribute/Value eq '([^']+)'", expr)
    if types and attrs["productType"] not in types:
        return False
    orbit = re.search(r"att/Name eq 'relativeOrbitNumber' and att/OData.CSC.IntegerAttribute/Value eq (\d+)", expr)
    if orbit and attrs["relativeOrbitNumber"] != int(orbit.group(1)):
        return False
    start = item["ContentDate"]["Start"][:23] + "Z"
    for op, value in re.findall(r"ContentDate/Start (ge|gt|lt|le) (\S+Z)", expr):
        if not {"ge": start >= value, "gt": start > value, "lt": start < value, "le": start <= value}[op]:
            return False
    return "Collection/Name eq 'SENTINEL-1'" in expr and "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((" in expr


class Handler(BaseHTTPRequestHandler):
    server: ArchiveServer

    def log_message(self, *args) -> None:  # quiet
        pass

    @property
    def state(self) -> ArchiveState:
        return self.server.state

    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    # -- token endpoint
    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        fields = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        if path == "/search/granules.umm_json":
            return self._cmr(fields)
        if path == "/api/users/find_or_create_token":
            return self._edl_token()
        if path != "/token":
            return self._json(404, {"error": "not found"})
        form = {k: v[0] for k, v in fields.items()}
        if form.get("client_id") != "cdse-public":
            return self._json(401, {"error": "invalid_client", "error_description": "Invalid client credentials"})
        grant = form.get("grant_type")
        with self.state.lock:
            self.state.grants.append(grant)
            if grant == "password":
                if (form.get("username"), form.get("password")) != (USER, PASSWORD):
                    return self._json(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
            elif grant == "refresh_token":
                if form.get("refresh_token") not in self.state.refresh:
                    return self._json(400, {"error": "invalid_grant", "error_description": "Token is not active"})
                self.state.refresh.discard(form["refresh_token"])
            else:
                return self._json(400, {"error": "unsupported_grant_type"})
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            self.state.access[access] = time.time() + self.state.token_lifetime_s
            self.state.refresh.add(refresh)
        self._json(200, {"access_token": access, "expires_in": self.state.token_lifetime_s,
                         "refresh_expires_in": 3600, "refresh_token": refresh, "token_type": "Bearer",
                         "not-before-policy": 0, "session_state": "x", "scope": "AUDIENCE_PUBLIC openid email profile"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        download = re.fullmatch(r"/odata/v1/Products\(([0-9a-f-]+)\)/\$value", url.path)
        if download:
            return self._download(download.group(1))
        if url.path == "/odata/v1/Products":
            return self._catalogue(parse_qs(url.query))
        if url.path == "/oauth/authorize":
            if not self._basic_ok():
                return self._json(401, {"error": "invalid_credentials"})
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["redirect_uri"][0] + "?code=" + secrets.token_hex(8))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/login":
            self.send_response(200)
            self.send_header("Set-Cookie", f"asf-urs={secrets.token_hex(16)}; Path=/; Secure; HttpOnly")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if re.fullmatch(r"/GRD_[MH]D/S[ABCD]/[^/]+\.zip", url.path):
            return self._datapool(url.path.rsplit("/", 1)[1])
        if url.path.startswith("/s3/"):
            served = self.state.asf.get(url.path[4:])
            entry = {"product": url.path[4:], "range": self.headers.get("Range"), "fault": None}
            if served is None or "X-Amz-Signature=" not in url.query:
                self.state.log(**entry, status=403)
                return self._json(403, {"Code": "AccessDenied"})
            with self.state.lock:
                faults = self.state.faults.get(url.path[4:], [])
                entry["fault"] = faults.pop(0) if faults else None
            return self._send_bytes(served.data, entry)
        if url.path == "/File/DownloadArchive":
            data = self.state.charts.get(parse_qs(url.query).get("prd", [""])[0])
            self.state.log(chart=url.query)
            if data is None:
                return self._json(404, {"error": "no such product"})
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._json(404, {"error": "not found"})

    def _catalogue(self, query: dict[str, list[str]]) -> None:
        expr = query["$filter"][0]
        top, skip = int(query.get("$top", ["20"])[0]), int(query.get("$skip", ["0"])[0])
        self.state.log(catalogue=expr, top=top, skip=skip, orderby=query.get("$orderby", [""])[0])
        hits = sorted((s.item for s in self.state.products.values() if _matches(s.item, expr)),
                      key=lambda item: item["ContentDate"]["Start"])
        page = [dict(item) for item in hits[skip:skip + top]]
        if "Attributes" not in query.get("$expand", [""])[0]:
            for item in page:
                item.pop("Attributes")
        body = {"@odata.context": "$metadata#Products(Attributes())", "value": page}
        if skip + top < len(hits):
            host = self.headers["Host"]
            body["@odata.nextLink"] = (f"http://{host}/odata/v1/Products?%24filter={quote(expr)}"
                                       f"&%24orderby={quote(query['$orderby'][0])}&%24top={top}&%24skip={skip + top}"
                                       f"&%24expand=Attributes")
        self._json(200, body)

    def _download(self, product_id: str) -> None:
        if self.server.redirect_to:  # the download host hands over to another host, as CDSE's does
            self.state.log(product=product_id, range=self.headers.get("Range"), fault=None, status=302,
                           auth="Authorization" in self.headers)
            self.send_response(302)
            self.send_header("Location", f"{self.server.redirect_to}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        served = self.state.products.get(product_id)
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        with self.state.lock:
            valid = time.time() < self.state.access.get(token, 0)
            faults = self.state.faults.get(product_id, [])
            fault = faults.pop(0) if faults and valid else None
            if fault == "401":
                del self.state.access[token]  # the token expires under the client's feet
                valid = False
        entry = {"product": product_id, "range": self.headers.get("Range"), "fault": fault}
        if not valid:
            self.state.log(**entry, status=401)
            return self._json(401, {"detail": "Expired signature!"})
        if served is None:
            self.state.log(**entry, status=404)
            return self._json(404, {"detail": "Not found"})
        if not served.item["Online"]:
            self.state.log(**entry, status=422)
            return self._json(422, {"detail": "Offline product, order it first"})
        return self._send_bytes(served.data, entry)

    def _send_bytes(self, data: bytes, entry: dict) -> None:
        """Serve ``data`` honouring ``Range``, with the fault of ``entry`` applied."""
        fault = entry["fault"]
        if fault in ("429", "500"):
            self.state.log(**entry, status=int(fault))
            return self._json(int(fault), {"detail": "slow down" if fault == "429" else "internal error"},
                              {"Retry-After": "1"} if fault == "429" else None)
        if fault == "corrupt":
            data = data[:1000] + bytes(b ^ 0xFF for b in data[1000:1100]) + data[1100:]
        first = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and fault != "no-range":
            first = int(match.group(1))
            if first >= len(data):
                self.state.log(**entry, status=416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[first:]
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = len(body) // 2 if fault == "cut" else len(body)
        self.state.log(**entry, status=206 if first else 200, first=first, sent=sent)
        self.wfile.write(body[:sent])
        if fault == "cut":
            self.wfile.flush()
            self.close_connection = True

    # -- ASF: CMR search, Earthdata Login, data pool
    def _basic_ok(self) -> bool:
        import base64

        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        return base64.b64decode(auth[6:]).decode() == f"{USER}:{PASSWORD}"

    def _edl_token(self) -> None:
        self.state.log(edl="find_or_create_token")
        if not self._basic_ok():
            return self._json(401, {"error": "invalid_credentials", "error_description": "Invalid user credentials"})
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.edl_tokens.add(token)
        self._json(200, {"access_token": token, "token_type": "Bearer", "expiration_date": "1/1/2099"})

    def _cmr(self, fields: dict[str, list[str]]) -> None:
        self.state.log(cmr=fields)
        names = set(fields.get("shortName", []))
        wanted = {}
        for attribute in fields.get("attribute[]", []):
            kind, key, value = attribute.split(",", 2)
            wanted[key] = value
        begin, end = (fields.get("temporal", [","])[0].split(",") + ["", ""])[:2]
        items = []
        for served in self.state.asf.values():
            umm = served.item["umm"]
            attrs = {a["Name"]: a["Values"][0] for a in umm["AdditionalAttributes"]}
            start = umm["TemporalExtent"]["RangeDateTime"]["BeginningDateTime"]
            if names and umm["CollectionReference"]["ShortName"] not in names:
                continue
            if any(attrs.get(k) != v for k, v in wanted.items()):
                continue
            if (begin and start < begin.replace("Z", ".000Z")) or (end and start > end.replace("Z", ".000Z")):
                continue
            items.append(served.item)
        self._json(200, {"hits": len(items), "took": 3, "items": items}, {"CMR-Hits": str(len(items))})

    def _datapool(self, name: str) -> None:
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
        cookie = "asf-urs=" in (self.headers.get("Cookie") or "")
        entry = {"product": name, "range": self.headers.get("Range"), "fault": None}
        if bearer not in self.state.edl_tokens or not cookie:
            self.state.log(**entry, status=401)
            return self._json(401, {"error": "login required"})
        self.state.log(**entry, status=307)
        self.send_response(307)
        self.send_header("Location", f"/s3/{name}?X-Amz-Signature={secrets.token_hex(16)}")
        self.send_header("Content-Length", "0")
        self.end_headers()


class ArchiveServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ArchiveState, tls=None):
        """``tls``: a ``trustme.CA`` whose certificate for 127.0.0.1 the server presents."""
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state
        self.redirect_to: str | None = None  # base URL that download requests are redirected to
        self.scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert("127.0.0.1").configure_cert(context)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
