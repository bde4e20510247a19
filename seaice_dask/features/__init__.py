"""GLCM texture features: NumPy reference, exact Numba kernels, dask/xarray wrapper, cube writer."""

from seaice_dask.features.glcm import glcm
from seaice_dask.features.reference import ALL_FEATURES

__all__ = ["ALL_FEATURES", "glcm"]
