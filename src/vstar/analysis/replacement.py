"""Replacing temporal attention maps (paper figure 5): every frame attends only to itself, or to all equally.

``"identity"`` uses ``A = I_F`` (each output frame is its own value), ``"uniform"`` uses ``A = J_F / F``
(each output frame is the mean value over frames). The paper reports that identity makes videos more
dynamic and uniform more static, the more so at high resolution.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from vstar.analysis.recording import chosen_layers
from vstar.frame_attention.layout import FrameLayout, FrameWeights
from vstar.frame_attention.processor import FrameAttentionProcessor
from vstar.frame_attention.spatiotemporal import ReplacementMode, replacement_weights
from vstar.temporal_attention import TemporalAttentionLayer

REPLACEMENT_MODES: tuple[str, ...] = ("identity", "uniform")


def check_mode(mode: str) -> None:
    if mode not in REPLACEMENT_MODES:
        raise ValueError(f"unknown attention replacement {mode!r}; choose identity (each frame attends to "
                         "itself) or uniform (each frame attends to all frames equally)")


class ReplacementProcessor(FrameAttentionProcessor):
    """Frame-structured self-attention with a fixed frame map: ``I_F`` (``"identity"``) or ``J_F / F``
    (``"uniform"``), :func:`vstar.frame_attention.replacement_weights`, the same for every layout. On a temporal
    layer (a token per frame) each output frame is its own value, or the mean value over frames; on a
    spatio-temporal layer each query attends only to its own frame's keys, or puts mass ``1/F`` on every key
    frame with the softmax kept within each frame. ``fallback`` is the processor it replaced (restored on
    removal)."""

    edit_name = "attention replacement"

    def __init__(self, mode: ReplacementMode, fallback: Any = None, layout: FrameLayout | None = None):
        check_mode(mode)
        super().__init__(layout, fallback)
        self.mode = mode

    def rule(self, frames: int, device: torch.device, dtype: torch.dtype) -> FrameWeights:
        return FrameWeights(replacement_weights(frames, self.mode, device=device).to(dtype))


class AttentionReplacement:
    """Installed replacement processors; :meth:`remove` (or leaving the ``with`` block) restores the old ones."""

    def __init__(self, installed: list[tuple[TemporalAttentionLayer, Any]], mode: ReplacementMode):
        self.installed = installed
        self.mode = mode

    @property
    def layers(self) -> list[str]:
        return [layer.name for layer, _ in self.installed]

    def remove(self) -> None:
        for layer, old in reversed(self.installed):
            layer.set_processor(old)
        self.installed = []

    def __enter__(self) -> AttentionReplacement:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def replace_temporal_attention(model: nn.Module, mode: ReplacementMode,
                               levels: Iterable[int] | None = None) -> AttentionReplacement:
    """Replace the temporal attention maps of ``model`` (a backbone or a video UNet) at ``levels`` (all when
    None; 0 = highest resolution, -1 = init) by ``I_F`` (``"identity"``) or ``J_F / F`` (``"uniform"``).

    Installs at once and returns an :class:`AttentionReplacement`: call ``.remove()`` or use it in a ``with``
    block. Install it before TAR's or a recorder's processors when combining them (a recorder sees it).
    """
    check_mode(mode)
    installed = []
    for layer in chosen_layers(model, levels):
        old = layer.processor
        layer.set_processor(ReplacementProcessor(mode, fallback=old, layout=layer.frame_layout))
        installed.append((layer, old))
    return AttentionReplacement(installed, mode)


def names_blocks(spec: str) -> bool:
    """Whether a replacement names a video transformer's blocks (``identity:b0-9``) rather than UNet levels."""
    return spec.partition(":")[2].strip().startswith("b")


def parse_replacement(spec: str) -> tuple[ReplacementMode, list[int]]:
    """``"identity:64,32"`` -> ``("identity", [0, 1])``; resolutions as in TAR presets (64, 32, 16, 8, init), or
    a video transformer's blocks: ``"uniform:b0-9,b20"`` -> ``("uniform", [0, ..., 9, 20])``."""
    from vstar.tar import RESOLUTION_LEVELS
    from vstar.temporal_attention import INIT_LEVEL

    mode, _, resolutions = spec.strip().partition(":")
    names = [r.strip() for r in resolutions.split(",") if r.strip()]
    if mode not in REPLACEMENT_MODES or not names:
        raise ValueError(f"cannot parse attention replacement {spec!r}; expected MODE:RES[,RES...] with MODE "
                         "identity or uniform and RES one of 64, 32, 16, 8, init, e.g. identity:64,32 (a video "
                         "transformer's blocks: identity:b0-9)")
    if names_blocks(spec):
        return mode, _blocks(names, spec)  # type: ignore[return-value]
    levels = []
    for name in names:
        if name != "init" and name not in RESOLUTION_LEVELS:
            raise ValueError(f"unknown resolution {name!r} in {spec!r}; use 64, 32, 16, 8 or init, e.g. identity:64,32")
        levels.append(INIT_LEVEL if name == "init" else RESOLUTION_LEVELS[name])
    return mode, levels  # type: ignore[return-value]


def _blocks(names: list[str], spec: str) -> list[int]:
    """``["b0-2", "b5"]`` -> ``[0, 1, 2, 5]``; a clear error for anything else."""
    blocks: list[int] = []
    for name in names:
        first, dash, last = name.removeprefix("b").partition("-")
        if not name.startswith("b") or not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"cannot read block {name!r} in {spec!r}; name blocks as b3 or b0-9, e.g. identity:b0-9")
        blocks += range(int(first), int(last if dash else first) + 1)
    return sorted(set(blocks))
