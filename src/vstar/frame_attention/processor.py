"""An edit on a layout: the one attention processor class behind TAR and the replacements, on any layout.

A subclass is an edit: it says when it is :attr:`~FrameAttentionProcessor.active` and which
:data:`~vstar.frame_attention.layout.FrameRule` it imposes on a call of ``frames`` latent frames
(:meth:`~FrameAttentionProcessor.rule`); the layout does the rest (:class:`~vstar.frame_attention.layout.FrameLayout`).
TAR (:class:`vstar.tar.TARProcessor`) and the replacement (:class:`vstar.analysis.replacement.ReplacementProcessor`)
are such subclasses; the recorder (:class:`vstar.analysis.recording.RecordingProcessor`) reads the rule of the
processor it wraps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from vstar.frame_attention.layout import FrameBias, FrameLayout, FrameRule, FrameWeights
from vstar.frame_attention.temporal import TEMPORAL


def check_self_attention(kind: str, encoder_hidden_states: Any, attention_mask: Any) -> None:
    if encoder_hidden_states is not None or attention_mask is not None:
        raise ValueError(f"{kind} applies to self-attention only (no context, no mask)")


class FrameAttentionProcessor(ABC):
    """Attention processor for a frame-structured self-attention layer with one edit.

    Args:
        layout: how the layer presents its frames (default the UNets' temporal layout).
        fallback: the processor it replaced (stock attention by default): runs the calls while the edit is
            inactive, lends its attention backend to layouts that make a fused call, and is restored on removal.
    """

    edit_name = "a frame attention edit"

    def __init__(self, layout: FrameLayout | None = None, fallback: Any = None):
        self.layout = layout if layout is not None else TEMPORAL
        self.fallback = fallback if fallback is not None else AttnProcessor2_0()

    @property
    def active(self) -> bool:
        """Whether the next call is edited (False: it goes to ``fallback``)."""
        return True

    @abstractmethod
    def rule(self, frames: int, device: torch.device, dtype: torch.dtype) -> FrameBias | FrameWeights:
        """The edit's rule for a call of ``frames`` latent frames whose logits are ``dtype`` on ``device``."""

    def current_rule(self, frames: int, device: torch.device, dtype: torch.dtype) -> FrameRule:
        """:meth:`rule` while active, else None (the fallback's stock attention): what a recorder reads."""
        return self.rule(frames, device, dtype) if self.active else None

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not self.active:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        check_self_attention(self.edit_name, encoder_hidden_states, attention_mask)
        call = self.layout.inputs(attn, hidden_states, args, kwargs)
        rule = self.rule(call.frames, call.device, logits_dtype(call.dtype))
        out = self.layout.attend(call, rule, backend=getattr(self.fallback, "_attention_backend", None))
        return call.finish(out)


def logits_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype attention logits are formed in for activations of ``dtype``: float64 or float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
