"""Per-frame text conditioning (paper section 3.2).

K synopsis states are placed on evenly spaced keyframes; the embeddings in between are interpolated so
that every frame gets its own cross-attention condition. :func:`per_frame_context` feeds such
``(batch*frames, S, D)`` embeddings to the spatial cross-attention of any diffusers video UNet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from vstar.chunking import frame_rows

InterpolationMode = Literal["linear", "step", "slerp"]
INTERPOLATION_MODES: tuple[str, ...] = ("linear", "step", "slerp")


def keyframe_indices(num_states: int, num_frames: int) -> list[int]:
    """Evenly spaced keyframes for ``num_states`` states over ``num_frames`` frames.

    The first state sits on frame 0 and the last on frame ``num_frames - 1``; integer arithmetic keeps
    this exact for any length. A single state sits on frame 0.
    """
    if num_states < 1:
        raise ValueError(f"num_states must be >= 1, got {num_states}")
    if num_frames < num_states:
        raise ValueError(
            f"cannot place {num_states} states on {num_frames} frames; use at least {num_states} frames "
            "or fewer synopsis states"
        )
    if num_states == 1:
        return [0]
    return [(k * (num_frames - 1)) // (num_states - 1) for k in range(num_states)]


def _slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation per token vector; falls back to linear for (anti)parallel vectors."""
    a32, b32 = a.float(), b.float()
    na, nb = a32.norm(dim=-1, keepdim=True), b32.norm(dim=-1, keepdim=True)
    cos = ((a32 / na.clamp_min(1e-12)) * (b32 / nb.clamp_min(1e-12))).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    linear = (1 - w) * a32 + w * b32
    spherical = (torch.sin((1 - w) * omega) * a32 + torch.sin(w * omega) * b32) / sin.clamp_min(1e-12)
    return torch.where(sin.abs() < 1e-6, linear, spherical).to(a.dtype)


def interpolate_embeddings(
    embeds: torch.Tensor,
    num_frames: int,
    keyframes: Sequence[int] | None = None,
    mode: InterpolationMode = "linear",
) -> torch.Tensor:
    """Per-frame embeddings from K keyframe embeddings.

    Args:
        embeds: ``(K, S, D)`` one text embedding per synopsis state.
        num_frames: F, the number of frames.
        keyframes: K increasing frame indices, first 0 and last F-1 (default: :func:`keyframe_indices`).
        mode: ``"linear"`` blends the two neighbouring states, ``"step"`` holds each state and switches to
            the next one halfway between their keyframes (where linear blending is 50/50; the later state
            from the midpoint on), ``"slerp"`` interpolates on the sphere token by token.

    Returns:
        ``(F, S, D)``; keyframe f gets exactly its state's embedding. K = 1 repeats it.
    """
    if embeds.ndim != 3:
        raise ValueError(f"embeds must have shape (K, S, D), got {tuple(embeds.shape)}")
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; choose one of {', '.join(INTERPOLATION_MODES)}")
    num_states = embeds.shape[0]
    keyframes = list(keyframes) if keyframes is not None else keyframe_indices(num_states, num_frames)
    if len(keyframes) != num_states:
        raise ValueError(f"got {len(keyframes)} keyframes for {num_states} states; give one keyframe per state")
    if num_states == 1:
        return embeds.expand(num_frames, -1, -1).clone()
    if keyframes[0] != 0 or keyframes[-1] != num_frames - 1 or any(
        b <= a for a, b in zip(keyframes, keyframes[1:], strict=False)
    ):
        raise ValueError(
            f"keyframes must increase strictly from 0 to num_frames-1={num_frames - 1}, got {keyframes}"
        )
    frames = []
    for state in range(num_states - 1):
        start, end = keyframes[state], keyframes[state + 1]
        a, b = embeds[state], embeds[state + 1]
        for f in range(start, end):
            w = (f - start) / (end - start)
            if mode == "step":
                frames.append(a if w < 0.5 else b)
            elif w == 0:
                frames.append(a)
            elif mode == "linear":
                frames.append(torch.lerp(a, b, w))
            else:
                frames.append(_slerp(a, b, w))
    frames.append(embeds[-1])
    return torch.stack(frames)


def cfg_context(cond: torch.Tensor, uncond: torch.Tensor | None, batch_size: int = 1) -> torch.Tensor:
    """The UNet context for a batch under classifier-free guidance.

    Args:
        cond: ``(F, S, D)`` per-frame embeddings of the prompt/synopsis.
        uncond: ``(F, S, D)`` per-frame embeddings of the negative prompt, or None without guidance.
        batch_size: videos per branch.

    Returns:
        ``(n*batch_size*F, S, D)`` in ``(branch, video, frame)`` order, frame fastest: the negative branch
        first, then the positive one, matching latents stacked as ``cat([latents, latents])``.
    """
    branches = [uncond, cond] if uncond is not None else [cond]
    return torch.cat([b.repeat(batch_size, 1, 1) for b in branches])


class PerFrameContextProcessor:
    """Wraps the processor of a spatial cross-attention and feeds it per-frame embeddings.

    The UNet repeats one text embedding per video for all frames; this wrapper ignores that and passes
    ``holder.context`` (``(batch*frames, S, D)``, frame fastest) to the wrapped processor instead.
    """

    def __init__(self, inner: Any, holder: PerFrameContext):
        self.inner = inner
        self.holder = holder

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        context = self.holder.context
        if context is not None:
            rows = frame_rows()  # the frames of this call when the UNet runs in chunks (vstar.chunking)
            if rows is not None:
                context = context[rows]
            if context.shape[0] != hidden_states.shape[0]:
                raise ValueError(
                    f"per-frame context has {context.shape[0]} rows but the UNet runs {hidden_states.shape[0]} "
                    "frames (batch*frames); pass one embedding per frame and per guidance branch"
                )
            encoder_hidden_states = context.to(hidden_states.dtype)
        return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class PerFrameContext:
    """Holds the per-frame context the :class:`PerFrameContextProcessor` wrappers read."""

    def __init__(self) -> None:
        self.context: torch.Tensor | None = None


def spatial_cross_attentions(unet: nn.Module) -> dict[str, Attention]:
    """All cross-attention modules of a UNet (the spatial text conditioning), by module name."""
    return {name: m for name, m in unet.named_modules() if isinstance(m, Attention) and m.is_cross_attention}


@contextlib.contextmanager
def per_frame_context(unet: nn.Module, context: torch.Tensor) -> Iterator[None]:
    """Within the block, every spatial cross-attention of ``unet`` sees ``context`` ``(batch*frames, S, D)``.

    Call the UNet inside the block with any ``(batch, S, D)`` ``encoder_hidden_states`` (it is replaced).
    The previous processors are restored on exit.
    """
    modules = spatial_cross_attentions(unet)
    if not modules:
        raise ValueError(f"{type(unet).__name__} has no cross-attention modules to condition per frame")
    holder = PerFrameContext()
    holder.context = context
    previous = {name: m.processor for name, m in modules.items()}
    try:
        for m in modules.values():
            m.set_processor(PerFrameContextProcessor(m.processor, holder))
        yield
    finally:
        for name, m in modules.items():
            m.set_processor(previous[name])
