"""One exception family for the whole package; every message names the file and the problem."""

from __future__ import annotations

from os import PathLike


class SeaIceError(Exception):
    """Base class of all seaice-dask errors."""

    def __init__(self, message: str, path: str | PathLike | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(SeaIceError):
    """The pipeline configuration is missing, malformed or inconsistent."""


class ProductError(SeaIceError):
    """A Sentinel-1 product (SAFE folder or zip) cannot be read or is not supported."""


class ChartError(SeaIceError):
    """An ice chart cannot be read, decoded or placed on the grid."""


class CubeError(SeaIceError):
    """The Zarr time-series cube is missing, inconsistent or incompatible."""


class ModelError(SeaIceError):
    """A model cannot be trained, saved or loaded (e.g. feature mismatch)."""


class EngineUnavailableError(SeaIceError):
    """An optional engine (ESA SNAP, dask-jobqueue, dask-kubernetes) is not installed."""


class StoreLockedError(SeaIceError):
    """Another run holds the store's lock (see :mod:`seaice_dask.lock`)."""


class ClusterError(SeaIceError):
    """The Dask cluster failed under the run (e.g. the scheduler was lost)."""


class DownloadError(SeaIceError):
    """An archive search or a transfer failed (after its retries), or a download did not verify."""


class AuthenticationError(DownloadError):
    """An archive refused the credentials, or none were found."""
