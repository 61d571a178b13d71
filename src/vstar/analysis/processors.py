"""What every temporal self-attention processor in :mod:`vstar.analysis` does around its attention.

A temporal attention module sees ``(batch*h*w, frames, channels)`` (or ``(B, C, H, W)`` images, diffusers'
convention); :func:`frames_in` applies the module's input norms and gives ``(n, F, C)`` sequences,
:func:`frames_out` applies the output projection, the residual and the rescaling exactly as diffusers'
``AttnProcessor`` does, and :func:`attention_probabilities` says which probabilities a processor attends
with (stock softmax, TAR's band, or a replacement).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers.models.attention_processor import Attention

from vstar.tar import TARProcessor


def frames_in(attn: Attention, hidden_states: torch.Tensor,
              temb: torch.Tensor | None = None) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(n, F, C)`` normed sequences of ``hidden_states``, and the function that turns the attention result
    ``(n, F, heads*d)`` into the module's output (projection, image reshape, residual, rescaling)."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    image_shape = hidden_states.shape if hidden_states.ndim == 4 else None
    if image_shape is not None:
        batch, channel, height, width = image_shape
        hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

    def finish(result: torch.Tensor) -> torch.Tensor:
        out = attn.to_out[1](attn.to_out[0](result))
        if image_shape is not None:
            out = out.transpose(-1, -2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    return hidden_states, finish


def heads_of(attn: Attention, projected: torch.Tensor) -> torch.Tensor:
    """``(n, F, heads*d)`` -> ``(n, heads, F, d)``."""
    n, frames, inner = projected.shape
    return projected.view(n, frames, attn.heads, inner // attn.heads).transpose(1, 2)


def queries_and_keys(attn: Attention, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys ``(n, heads, F, d)`` of normed sequences ``(n, F, C)``, with the module's q/k norms."""
    query, key = heads_of(attn, attn.to_q(sequences)), heads_of(attn, attn.to_k(sequences))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key


def attention_probabilities(processor: Any, query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
    """The float32 probabilities ``(n, heads, F, F)`` that ``processor`` attends with for these queries/keys.

    A processor with an ``attention_probabilities(query, key, scale)`` method answers itself (replacements);
    an active :class:`~vstar.tar.TARProcessor` uses its band, an inactive one its fallback; anything else is
    taken to be stock attention, ``softmax(Q K^T * scale)``.
    """
    own = getattr(processor, "attention_probabilities", None)
    if callable(own):
        return own(query, key, scale)
    if isinstance(processor, TARProcessor):
        if processor.active:
            return processor.regularized_attention(query, key, scale)
        return attention_probabilities(processor.fallback, query, key, scale)
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)).mul_(scale)
    return torch.softmax(scores, dim=-1)


def check_self_attention(kind: str, encoder_hidden_states: Any, attention_mask: Any) -> None:
    if encoder_hidden_states is not None or attention_mask is not None:
        raise ValueError(f"{kind} applies to temporal self-attention only (no context, no mask)")
