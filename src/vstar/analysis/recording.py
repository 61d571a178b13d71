"""Recording the temporal attention a model actually uses (paper section 3.3, figures 4 and 10).

>>> with record_temporal_attention(pipe.backbone, levels=[0]) as rec:
...     unet(latents, t, encoder_hidden_states=text)
>>> rec.maps["down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1"]   # (F, F), rows sum to 1

Each recorded layer's processor is wrapped: before the wrapped processor runs, the wrapper takes the rule
the wrapped processor attends with (stock attention, TAR's bias when TAR is installed, a replacement's frame
weights) and asks the layer's layout for the frame map under it
(:meth:`~vstar.frame_attention.layout.FrameLayout.frame_mass`): on a UNet's temporal layer the probabilities
of bounded chunks of sequences, added up over heads and sequences; on a video transformer's spatio-temporal
layer the mass each query token puts on each key frame, per key frame and never ``N x N``, averaged over
heads and the query frame's tokens. Only ``(F, F)`` sums are kept: one per layer and call. The model's output
is the wrapped processor's, unchanged. Install the recorder last (innermost ``with``, after TAR or a
replacement): it wraps whatever processor it finds.

``differentiable=True`` keeps the maps in the autograd graph on the model's device (for losses on attention,
:mod:`vstar.noise`; temporal layers): each chunk is checkpointed, so the extra memory held for the backward
pass is one chunk's probabilities, not every sequence's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from vstar.frame_attention.layout import FrameLayout
from vstar.frame_attention.processor import FrameAttentionProcessor, check_self_attention, logits_dtype
from vstar.temporal_attention import TemporalAttentionLayer, temporal_attention_layers

Branch = Literal["all", "cond", "uncond"]
BRANCHES: tuple[str, ...] = ("all", "cond", "uncond")
DEFAULT_CHUNK_BYTES = 4 * 2**20  # float32 probabilities of one chunk of sequences


def chosen_layers(model: nn.Module, levels: Iterable[int] | None) -> list[TemporalAttentionLayer]:
    """The temporal attention layers of ``model`` at ``levels`` (all when None); a clear error for a level
    the model lacks."""
    layers = temporal_attention_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no temporal self-attention to record or replace")
    if levels is None:
        return layers
    wanted = set(levels)
    available = sorted({layer.level for layer in layers})
    missing = sorted(wanted - set(available))
    if missing:
        raise ValueError(f"levels {missing} have no temporal attention in {type(model).__name__}; it has levels "
                         f"{available} (0 = highest resolution, -1 = init)")
    return [layer for layer in layers if layer.level in wanted]


class RecordingProcessor:
    """Wraps a frame-structured attention processor and reports the frame map it attends with to ``recorder``
    under ``name``: the rule of ``inner`` when it is an active edit (TAR's bias, a replacement's weights),
    stock attention otherwise, read by the layer's ``layout``
    (:meth:`~vstar.frame_attention.layout.FrameLayout.frame_mass`). The output is ``inner``'s, unchanged."""

    def __init__(self, inner: Any, recorder: AttentionRecorder, name: str, layout: FrameLayout):
        self.inner = inner
        self.recorder = recorder
        self.name = name
        self.layout = layout

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        check_self_attention("attention recording", encoder_hidden_states, attention_mask)
        with contextlib.nullcontext() if self.recorder.differentiable else torch.no_grad():
            call = self.layout.inputs(attn, hidden_states, args, kwargs)
            rule = None
            if isinstance(self.inner, FrameAttentionProcessor):
                rule = self.inner.current_rule(call.frames, call.device, logits_dtype(call.dtype))
            total, count = self.layout.frame_mass(call, rule, self.recorder.branch_rows, self.recorder.max_chunk_bytes)
        self.recorder.add(self.name, (total if self.recorder.differentiable else total.cpu(), count))
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


class AttentionRecorder:
    """Temporal attention maps recorded while the block runs; see :func:`record_temporal_attention`.

    Attributes:
        maps: layer name -> ``(F, F)`` float32 tensor (on the CPU; on the model's device when differentiable),
            the probabilities averaged over heads, over the branch's ``batch*h*w`` sequences and over every
            recorded call; rows sum to 1.
        levels: layer name -> resolution level (0 = highest resolution, -1 = init).
        per_step: layer name -> one ``(F, F)`` map per call (one per denoising step in a generation).
    """

    def __init__(self, model: nn.Module, levels: Iterable[int] | None = None, branch: Branch = "all",
                 max_chunk_bytes: int = DEFAULT_CHUNK_BYTES, differentiable: bool = False):
        if branch not in BRANCHES:
            raise ValueError(f"unknown branch {branch!r}; choose all, cond or uncond (cond/uncond need a "
                             "classifier-free-guidance batch, negative branch first)")
        if max_chunk_bytes < 1:
            raise ValueError(f"max_chunk_bytes must be positive, got {max_chunk_bytes}")
        self.layers = chosen_layers(model, levels)
        self.denoiser: nn.Module = getattr(model, "denoiser", model)
        self.branch = branch
        self.max_chunk_bytes = max_chunk_bytes
        self.differentiable = differentiable
        self.levels: dict[str, int] = {layer.name: layer.level for layer in self.layers}
        self.per_step: dict[str, list[torch.Tensor]] = {}
        self._sums: dict[str, tuple[torch.Tensor, int]] = {}
        self._installed: list[tuple[TemporalAttentionLayer, Any]] = []
        self._hook: Any = None
        self._batch: int | None = None  # the denoiser's batch size in the current call

    def branch_rows(self, sequences: torch.Tensor) -> torch.Tensor:
        """The sequences ``(n, F, C)`` of the recorded branch (a CFG batch has the negative half first)."""
        if self.branch == "all":
            return sequences
        batch = self._batch if self._batch is not None else sequences.shape[0]
        if batch % 2:
            raise ValueError(f"branch {self.branch!r} needs a classifier-free-guidance batch (an even batch, "
                             f"negative half first), got a batch of {batch}; record branch='all'")
        half = sequences.shape[0] // 2
        return sequences[half:] if self.branch == "cond" else sequences[:half]

    def add(self, name: str, summed: tuple[torch.Tensor, int]) -> None:
        """Add one call's summed maps ``(F x F sum, count)`` of layer ``name``."""
        total, count = summed
        self.per_step.setdefault(name, []).append((total / count).float())
        if name in self._sums and self._sums[name][0].shape != total.shape:
            raise ValueError(f"layer {name} was recorded with {self._sums[name][0].shape[0]} and {total.shape[0]} "
                             "frames; use one recorder per frame count")
        old, old_count = self._sums.get(name, (0.0, 0))
        self._sums[name] = (old + total, old_count + count)

    @property
    def maps(self) -> dict[str, torch.Tensor]:
        return {name: (total / count).float() for name, (total, count) in self._sums.items()}

    @property
    def unit(self) -> str:
        """What the levels are: UNet resolution ``"level"``s, or a video transformer's ``"block"``s."""
        return "block" if any(layer.layout == "spatiotemporal" for layer in self.layers) else "level"

    def by_level(self) -> dict[int, torch.Tensor]:
        """level -> the mean ``(F, F)`` map of its recorded layers."""
        grouped: dict[int, list[torch.Tensor]] = {}
        for name, value in self.maps.items():
            grouped.setdefault(self.levels[name], []).append(value)
        return {level: torch.stack(values).mean(0) for level, values in sorted(grouped.items())}

    def _see_batch(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else next(iter(kwargs.values()), None)
        self._batch = sample.shape[0] if isinstance(sample, torch.Tensor) else None

    def __enter__(self) -> AttentionRecorder:
        if self._installed:
            raise RuntimeError("this recorder is already installed; make a new one with record_temporal_attention")
        self._hook = self.denoiser.register_forward_pre_hook(self._see_batch, with_kwargs=True)
        for layer in self.layers:
            inner = layer.processor
            layer.set_processor(RecordingProcessor(inner, self, layer.name, layer.frame_layout))
            self._installed.append((layer, inner))
        return self

    def __exit__(self, *exc: Any) -> None:
        for layer, inner in reversed(self._installed):
            layer.set_processor(inner)
        self._installed = []
        if self._hook is not None:
            self._hook.remove()
            self._hook = self._batch = None


def record_temporal_attention(model: nn.Module, *, levels: Iterable[int] | None = None,
                              branch: Branch = "all", differentiable: bool = False) -> AttentionRecorder:
    """A context manager recording the temporal attention of ``model`` (a backbone or a video UNet).

    ``levels``: resolution levels to record (all when None). ``branch``: ``"all"`` sequences of the batch, or
    ``"cond"`` / ``"uncond"`` of a classifier-free-guidance batch (negative half first, as
    :func:`vstar.conditioning.cfg_context` orders it). Yields an :class:`AttentionRecorder`; its ``maps`` are
    ``(F, F)`` float32 CPU tensors whose rows sum to 1. ``differentiable``: the maps stay on the model's device
    with their gradients (run the model with gradients enabled). The processors are restored when the block
    ends.
    """
    return AttentionRecorder(model, levels, branch, differentiable=differentiable)
