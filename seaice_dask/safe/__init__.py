"""Sentinel-1 Level-1 GRD products: manifest, annotation, calibration/noise LUTs, lazy DN."""

from seaice_dask.safe.annotation import CalibrationLUT, NoiseAzimuthBlock, NoiseLUT, Subswath
from seaice_dask.safe.product import Product, open_safe

__all__ = ["CalibrationLUT", "NoiseAzimuthBlock", "NoiseLUT", "Product", "Subswath", "open_safe"]
