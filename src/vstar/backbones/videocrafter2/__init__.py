"""VideoCrafter2 (t2v 512 v2.0): a clean-room port of its UNet, checkpoint conversion, rescaled DDIM sampler and
the backbone adapter of vstar.

Names are imported on first use, so that the ``vstar`` command can register ``convert-videocrafter2``
without loading diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CommunityVideoCrafter2Backbone": "community",
    "ConversionError": "convert",
    "VideoCrafter2Backbone": "backbone",
    "VideoCrafter2Components": "components",
    "VideoCrafter2DDIMScheduler": "scheduler",
    "VideoCrafter2UNet": "unet",
    "convert_videocrafter2_checkpoint": "convert",
    "load_community_videocrafter2": "community",
    "load_videocrafter2": "backbone",
    "tiny_videocrafter2": "backbone",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
