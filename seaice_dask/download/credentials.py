"""Archive credentials from environment variables or ``~/.netrc``; held in memory only.

The password never appears in a repr, a log line, an error message, the config or an output.
"""

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path

from seaice_dask.errors import AuthenticationError

#: service → (user variable, password variable)
ENV_VARS = {
    "cdse": ("CDSE_USERNAME", "CDSE_PASSWORD"),
    "asf": ("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD"),
}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def _netrc_path() -> Path:
    return Path(os.environ.get("NETRC", Path.home() / ".netrc"))


def find_credentials(service: str, host: str) -> Credentials:
    """Credentials of ``service`` from its environment variables, else the ``host`` entry of netrc."""
    user_var, password_var = ENV_VARS[service]
    user, password = os.environ.get(user_var), os.environ.get(password_var)
    if user and password:
        return Credentials(user, password)
    path = _netrc_path()
    if path.is_file():
        try:
            entry = netrc.netrc(path).authenticators(host)
        except (netrc.NetrcParseError, OSError) as exc:
            raise AuthenticationError(f"cannot read netrc: {exc.__class__.__name__}", path) from None
        if entry and entry[0] and entry[2]:
            return Credentials(entry[0], entry[2])
    raise AuthenticationError(
        f"no {service.upper()} credentials: set {user_var} and {password_var}, "
        f"or add 'machine {host} login … password …' to {path}"
    )
