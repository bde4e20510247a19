"""Radiometric preprocessing: calibrated, denoised backscatter and incidence angle at full resolution."""

from seaice_dask.preprocess.luts import calibration_window, noise_window

__all__ = ["calibration_window", "noise_window"]
