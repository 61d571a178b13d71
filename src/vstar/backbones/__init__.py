"""Base-model families behind one adapter interface, and the registry of names that load them."""

from vstar.backbones.base import Backbone, BackboneDefaults
from vstar.backbones.registry import (
    BACKBONES,
    DEFAULT_MODEL,
    BackboneSpec,
    get_spec,
    list_backbones,
    load_backbone,
    weights_available,
)

__all__ = [
    "BACKBONES", "DEFAULT_MODEL", "Backbone", "BackboneDefaults", "BackboneSpec", "get_spec", "list_backbones", "load_backbone",
    "weights_available",
]
