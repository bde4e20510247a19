"""Radiometric preprocessing: calibrated, denoised backscatter and incidence angle at full resolution."""

from seaice_dask.preprocess.calibrate import (
    SIGMA0_FLOOR,
    beta0,
    gamma0,
    incidence_angle,
    negative_count,
    noise_power,
    sigma0,
)
from seaice_dask.preprocess.luts import calibration_window, noise_window

__all__ = [
    "SIGMA0_FLOOR",
    "beta0",
    "calibration_window",
    "gamma0",
    "incidence_angle",
    "negative_count",
    "noise_power",
    "noise_window",
    "sigma0",
]
