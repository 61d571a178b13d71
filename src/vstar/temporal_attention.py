"""Where a video model's temporal self-attention is, and how processors attach to it.

TAR (:mod:`vstar.tar`) and attention analysis act on *temporal attention layers*: attention modules whose
processor sees ``(batch*h*w, frames, channels)``, one sequence of frames per latent pixel. A backbone says
where they are (:meth:`vstar.backbones.Backbone.temporal_attention_layers`); for diffusers-style video UNets
the default is :func:`unet_temporal_attention_layers`, which walks the module names and assigns each layer
its resolution level (0 = highest resolution, the paper's "64"; -1 = the block before the down path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusers.models.attention_processor import Attention
from torch import nn

from vstar.frame_attention.layout import FrameLayout
from vstar.frame_attention.temporal import TEMPORAL

INIT_LEVEL = -1  # the temporal block before the down path (`transformer_in`, the paper's "init")


@dataclass(frozen=True)
class TemporalAttentionLayer:
    """One frame-structured self-attention module, its name in the model and its level (-1 = init block).

    Processors attach through :meth:`set_processor`. :attr:`frame_layout` says how the frames reach the
    layer (:class:`~vstar.frame_attention.layout.FrameLayout`): the UNets' temporal layout (one sequence of
    frames per latent pixel) by default; a family with another layout (a video transformer's frame-major
    tokens, where ``level`` is the block index) subclasses this and returns its own.
    """

    name: str
    level: int
    module: Attention

    @property
    def frame_layout(self) -> FrameLayout:
        return TEMPORAL

    @property
    def layout(self) -> str:
        """The layout's kind: ``"temporal"`` or ``"spatiotemporal"``."""
        return self.frame_layout.kind

    @property
    def processor(self) -> Any:
        return self.module.processor

    def set_processor(self, processor: Any) -> None:
        self.module.set_processor(processor)


_TEMPORAL_PARTS = (".temp_attentions.", ".motion_modules.")


def unet_temporal_attention_layers(unet: nn.Module) -> list[TemporalAttentionLayer]:
    """The temporal self-attention modules of a diffusers-style video UNet with their levels.

    Recognises ``UNet3DConditionModel`` (``temp_attentions``, ``transformer_in``), ``UNetMotionModel``
    (``motion_modules``) and UNets that follow the same naming. Level i of ``down_blocks`` is i,
    ``up_blocks[j]`` is ``len(up_blocks) - 1 - j``, the middle block is the deepest level.
    """
    num_down = len(getattr(unet, "down_blocks", ()))
    num_up = len(getattr(unet, "up_blocks", ()))
    layers = []
    for name, module in unet.named_modules():
        if not isinstance(module, Attention) or module.is_cross_attention:
            continue
        if name.startswith("transformer_in."):
            level = INIT_LEVEL
        elif any(part in name for part in _TEMPORAL_PARTS):
            kind, _, rest = name.partition(".")
            if kind == "down_blocks":
                level = int(rest.split(".")[0])
            elif kind == "up_blocks":
                level = num_up - 1 - int(rest.split(".")[0])
            elif kind == "mid_block":
                level = num_down - 1
            else:
                continue
        else:
            continue
        layers.append(TemporalAttentionLayer(name, level, module))
    return layers


def temporal_attention_layers(model: nn.Module) -> list[TemporalAttentionLayer]:
    """The temporal attention layers of a backbone (its own answer) or of a diffusers-style video UNet."""
    own = getattr(model, "temporal_attention_layers", None)
    if callable(own):
        return list(own())
    return unet_temporal_attention_layers(model)
