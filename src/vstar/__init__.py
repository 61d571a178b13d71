"""vstar: longer, dynamic text-to-video from pretrained diffusion models (VSTAR: Video Synopsis Prompting and
Temporal Attention Regularization). The public API, re-exported from the modules that define it.

Names are imported on first use so that ``import vstar`` (and the CLI) start fast without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"

_EXPORTS: dict[str, str] = {
    # Temporal Attention Regularization
    "regularization_matrix": "vstar.tar",
    "TARProcessor": "vstar.tar",
    "TARConfig": "vstar.tar",
    "TARState": "vstar.tar",
    "apply_tar": "vstar.tar",
    "remove_tar": "vstar.tar",
    "temporal_attention_layers": "vstar.temporal_attention",
    "TemporalAttentionLayer": "vstar.temporal_attention",
    # per-frame conditioning
    "keyframe_indices": "vstar.conditioning",
    "interpolate_embeddings": "vstar.conditioning",
    "per_frame_context": "vstar.conditioning",
    # pipeline and models
    "VSTARPipeline": "vstar.pipeline",
    "VSTAROutput": "vstar.pipeline",
    "load_backbone": "vstar.backbones",
    "list_backbones": "vstar.backbones",
    # initial noise (paper supplement B)
    "correlated_noise": "vstar.noise",
    "kl_to_standard": "vstar.noise",
    "optimize_initial_noise": "vstar.noise",
    "OptimizedNoise": "vstar.noise",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vstar' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
