"""seaice-dask: sea-ice type classification of Sentinel-1 SAR time series with Dask.

Pipeline (one sub-package or module per stage, imported in this order):
``safe`` → ``preprocess`` → ``grid``/``geocode`` → ``charts`` → ``cube`` → ``features`` →
``learn`` → ``report``; ``simulate`` renders realistic products and charts with a known truth.
"""

from importlib.metadata import PackageNotFoundError, version

from seaice_dask.errors import (
    ChartError,
    ConfigError,
    CubeError,
    EngineUnavailableError,
    ModelError,
    ProductError,
    SeaIceError,
)

try:
    __version__ = version("seaice-dask")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "ChartError",
    "ConfigError",
    "CubeError",
    "EngineUnavailableError",
    "ModelError",
    "ProductError",
    "SeaIceError",
    "__version__",
]
