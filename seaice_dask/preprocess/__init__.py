"""Radiometric preprocessing: calibrated, denoised backscatter and incidence angle at full resolution."""

from seaice_dask.preprocess.calibrate import (
    SIGMA0_FLOOR,
    beta0,
    gamma0,
    incidence_angle,
    negative_count,
    noise_power,
    sigma0,
    sigma0_textural,
)
from seaice_dask.preprocess.luts import calibration_window, noise_window
from seaice_dask.preprocess.nersc import NoiseScaling, noise_scaling

__all__ = [
    "SIGMA0_FLOOR",
    "NoiseScaling",
    "beta0",
    "calibration_window",
    "gamma0",
    "incidence_angle",
    "negative_count",
    "noise_power",
    "noise_scaling",
    "noise_window",
    "sigma0",
    "sigma0_textural",
]
