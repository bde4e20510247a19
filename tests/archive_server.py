"""A local stand-in for the online archives, speaking their documented formats on 127.0.0.1.

- ``/token``: OpenID Connect token endpoint (password and refresh_token grants, client
  ``cdse-public``), short-lived access tokens;
- ``/odata/v1/Products``: the CDSE OData catalogue (``$filter`` on product type, relative orbit and
  start date, ``$orderby``, ``$top``/``$skip`` with ``@odata.nextLink``, ``$expand=Attributes``);
- ``/odata/v1/Products(<Id>)/$value``: the download host (Bearer token, ``Range``);
- ``/File/DownloadArchive?prd=26MMDDYYYY``: the NIC chart archive.

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
        if urlsplit(self.path).path != "/token":
            return self._json(404, {"error": "not found"})
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
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
        if fault in ("429", "500"):
            self.state.log(**entry, status=int(fault))
            return self._json(int(fault), {"detail": "slow down" if fault == "429" else "internal error"},
                              {"Retry-After": "1"} if fault == "429" else None)
        data = served.data
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


class ArchiveServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ArchiveState):
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
