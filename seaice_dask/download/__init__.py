"""Search and download Sentinel-1 GRD scenes and NIC ice charts from online archives.

``query`` builds the search from the config, ``cdse`` and ``asf`` are the providers,
``transfer`` moves bytes (resume, verify, retry), ``credentials`` finds logins, ``charts`` names
the NIC weekly charts, ``run`` ties them into ``seaice-dask download``.
"""

from seaice_dask.download.products import RemoteProduct, write_listing
from seaice_dask.download.query import SearchQuery, cdse_filter, query_from_config
from seaice_dask.download.run import DownloadReport, download_products, first_folder, search_archive

__all__ = [
    "DownloadReport", "RemoteProduct", "SearchQuery", "cdse_filter", "download_products", "first_folder",
    "query_from_config", "search_archive", "write_listing",
]
