"""Initial noise for VSTAR: correlated over frames, optionally optimized toward a reference video's temporal
attention (paper supplement B)."""

from vstar.noise.gaussian import (
    NoiseParameters,
    check_covariance_parameters,
    correlate,
    correlated_noise,
    frame_cholesky,
    frame_covariance,
    kl_to_standard,
)
from vstar.noise.optimization import OptimizedNoise, load_reference, optimize_initial_noise

__all__ = [
    "NoiseParameters", "check_covariance_parameters", "correlate", "correlated_noise", "frame_cholesky",
    "frame_covariance", "kl_to_standard", "OptimizedNoise", "load_reference", "optimize_initial_noise",
]
