"""Temporal Attention Regularization (paper section 3.4, equations 2-3).

In the temporal self-attention layers, a Gaussian Toeplitz band ``dA`` scaled by the maximum of the
logits is added before the softmax: ``A' = softmax(S + strength * max(S) * dA)``. Smaller sigma keeps
attention closer to neighbouring frames, which lets the video change more over time.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from vstar.frame_attention.layout import MAX_MODES, FrameBias, FrameLayout, MaxMode, bias_terms
from vstar.frame_attention.processor import FrameAttentionProcessor
from vstar.frame_attention.temporal import TemporalLayout, probabilities
from vstar.temporal_attention import INIT_LEVEL, temporal_attention_layers

# The paper names UNet levels by the latent width of VideoCrafter2 at 320x512 (64, 32, 16, 8).
RESOLUTION_LEVELS: dict[str, int] = {"64": 0, "32": 1, "16": 2, "8": 3}
LEVEL_NAMES: dict[int, str] = {level: name for name, level in RESOLUTION_LEVELS.items()} | {INIT_LEVEL: "init"}
PRESETS: dict[str, str] = {
    "64D1": "default for 16-32 frames: sigma 1 at the highest-resolution level",
    "64D1_32D8": "long videos (48+ frames): sigma 1 at the highest level and sigma 8 at the next",
}


def _check_sigma(sigma: float) -> None:
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be > 0, got {sigma}; smaller sigma means stronger regularization")


def regularization_matrix(
    num_frames: int, sigma: float, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The Gaussian Toeplitz band ``dA[i, j] = exp(-0.5 * ((j - i) / sigma) ** 2)``, shape ``(F, F)``.

    Symmetric with ones on the diagonal; any ``num_frames >= 1``, ``sigma > 0``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    _check_sigma(sigma)
    idx = torch.arange(num_frames, device=device, dtype=torch.float64)
    band = torch.exp(-0.5 * ((idx[None, :] - idx[:, None]) / sigma) ** 2)
    return band.to(dtype or torch.get_default_dtype())


@functools.lru_cache(maxsize=16)
def _shared_band(num_frames: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One band per length, sigma, device and dtype, shared by all processors (F*F numbers each)."""
    return regularization_matrix(num_frames, sigma, device=device, dtype=dtype)


@functools.lru_cache(maxsize=16)
def _shared_bias(num_frames: int, sigma: float, strength: float, device: torch.device,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    """:func:`~vstar.frame_attention.layout.bias_terms` of the Gaussian band, shared like the band itself."""
    return bias_terms(_shared_band(num_frames, sigma, device, dtype), strength)


@dataclass
class TARState:
    """Mutable switch shared by the processors of one UNet; the pipeline turns it off after the early steps."""

    active: bool = True


class TARProcessor(FrameAttentionProcessor):
    """TAR as an edit of frame-structured self-attention: the band added to the logits before the softmax.

    On the temporal layout (the UNets, ``(batch*h*w, frames, channels)`` inputs) it computes
    ``S = Q K^T * scale`` per head, ``M`` = max of ``S`` per query row (``"row"``, the authors' release), per
    head (``"head"``) or over all heads and rows of a sequence (``"global"``), and attends with
    ``softmax(S + strength * M * dA) @ V`` in bounded chunks, its peak memory at or below stock attention's
    (:class:`~vstar.frame_attention.temporal.TemporalLayout`). On a spatio-temporal layout (the video
    transformers) the same rule is a bias on the latent-frame distance between query and key tokens, with
    the row maximum (:class:`~vstar.frame_attention.spatiotemporal.SpatioTemporalLayout`). The band ``(F, F)``
    is made once per length and sigma and shared by all processors. While ``state.active`` is False or
    ``strength == 0`` it defers to ``fallback`` (the processor it replaced, stock attention by default) at no
    extra cost.

    Args:
        sigma: width of the Gaussian band; ignored when ``matrix`` is given.
        strength: multiplier of ``M * dA`` (the authors' ``scale``), 1.0 in the paper.
        max_mode: how ``M`` is taken, see above (the layout says which it offers).
        state: shared :class:`TARState` for step gating (always active when None).
        fallback: processor used when inactive, and restored by :func:`remove_tar`.
        matrix: a custom ``(F, F)`` regularization matrix (e.g. a real video's frame similarity).
        max_chunk_bytes: memory bound of the temporal layout's logits buffer (None: the device's default).
        layout: the layer's layout (default temporal).
    """

    edit_name = "TAR"

    def __init__(self, sigma: float | None = 1.0, strength: float = 1.0, max_mode: MaxMode = "row", *,
                 state: TARState | None = None, fallback: Any = None, matrix: torch.Tensor | None = None,
                 max_chunk_bytes: int | None = None, layout: FrameLayout | None = None):
        if matrix is None:
            _check_sigma(sigma)  # type: ignore[arg-type]
        elif matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square (F, F), got {tuple(matrix.shape)}")
        if max_chunk_bytes is not None and layout is not None:
            raise ValueError("max_chunk_bytes bounds the temporal layout's buffer; give it or a layout, not both")
        layout = TemporalLayout(max_chunk_bytes) if max_chunk_bytes is not None else layout
        super().__init__(layout, fallback)
        self.layout.check_max_mode(max_mode)
        self.sigma = sigma
        self.strength = float(strength)
        self.max_mode = max_mode
        self.state = state
        self.matrix = matrix

    @property
    def active(self) -> bool:
        """Whether the next call regularizes (False: the call goes to ``fallback``)."""
        return self.strength != 0 and (self.state is None or self.state.active)

    def band(self, num_frames: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``(F, F)`` regularization matrix on ``device`` in ``dtype``."""
        if self.matrix is not None:
            if self.matrix.shape[0] != num_frames:
                raise ValueError(
                    f"custom TAR matrix is {self.matrix.shape[0]}x{self.matrix.shape[0]} but the video has "
                    f"{num_frames} frames; give an F x F matrix"
                )
            return self.matrix.to(device=device, dtype=dtype)
        return _shared_band(num_frames, self.sigma, torch.device(device), dtype)

    def rule(self, frames: int, device: torch.device, dtype: torch.dtype) -> FrameBias:
        """``strength * M * band`` over ``frames`` frames, its :func:`bias_terms` shared for the Gaussian band."""
        terms = _shared_bias(frames, self.sigma, self.strength, torch.device(device), dtype) \
            if self.matrix is None else None
        return FrameBias(self.band(frames, device, dtype), self.strength, self.max_mode, terms)

    def regularized_attention(self, query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        """Attention probabilities ``(n, heads, F, F)`` in float32 from ``(n, heads, F, d)`` queries and keys."""
        return probabilities(query, key, scale, self.rule(query.shape[-2], query.device, torch.float32))

    def regularized_output(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           scale: float) -> torch.Tensor:
        """``softmax(S + strength * M * dA) @ V`` in float32, ``(n, heads, F, d)``, in the temporal layout's
        bounded chunks."""
        layout = self.layout if isinstance(self.layout, TemporalLayout) else TemporalLayout()
        frames, head_dim = query.shape[-2:]
        transposed = layout.transposed_product(frames, head_dim)
        value = (value.transpose(-1, -2) if transposed else value).contiguous()
        out = torch.empty(value.shape, dtype=torch.float32, device=value.device)
        rule = self.rule(frames, query.device, torch.promote_types(query.dtype, torch.float32))
        layout.band_product(query.contiguous(), key.contiguous(), value, out, scale, rule, transposed)
        return out.transpose(-1, -2) if transposed else out


_PRESET_TOKEN = re.compile(r"^(?P<res>64|32|16|8|init)D(?P<sigma>\d+(?:\.\d+)?)(?:S(?P<strength>\d+(?:\.\d+)?))?$")
# A video transformer's blocks: b<first>[-<last>]D<sigma>[S<strength>], e.g. b0-9D2 (blocks 0 to 9, sigma 2).
_BLOCK_TOKEN = re.compile(
    r"^b(?P<first>\d+)(?:-(?P<last>\d+))?D(?P<sigma>\d+(?:\.\d+)?)(?:S(?P<strength>\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class TARConfig:
    """Where, how strongly and when TAR acts.

    Attributes:
        sigmas: sigma per UNet level: 0 = highest resolution (the paper's "64"), 1 = "32", 2 = "16",
            3 = "8"; :data:`INIT_LEVEL` (-1) = the temporal block before the down path. With
            ``unit="block"``: sigma (in latent frames) per transformer block index (video transformers).
        strength: default multiplier of ``max(S) * dA``.
        level_strengths: per-level overrides of ``strength``.
        max_mode: ``"row"`` (authors' release), ``"head"`` or ``"global"``.
        step_fraction: TAR acts on steps with index < ceil(step_fraction * num_steps): 14 of 25 by default.
        unit: what the keys of ``sigmas`` name: UNet resolution ``"level"``s or transformer ``"block"``s.
    """

    sigmas: Mapping[int, float] = field(default_factory=lambda: {0: 1.0})
    strength: float = 1.0
    level_strengths: Mapping[int, float] = field(default_factory=dict)
    max_mode: MaxMode = "row"
    step_fraction: float = 0.56
    unit: Literal["level", "block"] = "level"

    def __post_init__(self) -> None:
        if not self.sigmas:
            raise ValueError("TARConfig needs at least one level; use tar=None to switch TAR off")
        if self.unit not in ("level", "block"):
            raise ValueError(f"unknown TAR unit {self.unit!r}; choose level (UNets) or block (transformers)")
        for level, sigma in self.sigmas.items():
            if self.unit == "block" and level < 0:
                raise ValueError(f"transformer blocks are numbered from 0, got {level}")
            if level < INIT_LEVEL:
                raise ValueError(f"unknown UNet level {level}; levels are 0 (highest resolution) and up, or -1 (init)")
            _check_sigma(sigma)
        for level, strength in {None: self.strength, **self.level_strengths}.items():
            if not math.isfinite(strength) or strength < 0:
                raise ValueError(f"strength must be a finite number >= 0, got {strength} (level {level})")
        if self.max_mode not in MAX_MODES:
            raise ValueError(f"unknown max_mode {self.max_mode!r}; choose one of {', '.join(MAX_MODES)}")
        if not 0 <= self.step_fraction <= 1:
            raise ValueError(f"step_fraction must be in [0, 1], got {self.step_fraction}")

    @property
    def include_init(self) -> bool:
        return INIT_LEVEL in self.sigmas

    def strength_at(self, level: int) -> float:
        return self.level_strengths.get(level, self.strength)

    def active_steps(self, num_steps: int) -> int:
        """How many of the first denoising steps are regularized (14 of 25 by default)."""
        return min(num_steps, math.ceil(round(self.step_fraction * num_steps, 9)))

    @classmethod
    def parse(cls, preset: str, **overrides: Any) -> TARConfig:
        """Build a config from the authors' preset names, e.g. ``"64D1"`` or ``"64D1_32D8"``.

        Each ``_``-separated token is ``<res>D<sigma>[S<strength>]`` with res one of 64, 32, 16, 8
        (UNet levels 0-3) or ``init``; e.g. ``"64D1S0.5"`` halves the strength at level 0. For a video
        transformer the tokens name blocks: ``b<first>[-<last>]D<sigma>[S<strength>]``, e.g. ``"b0-9D2"``
        (sigma in latent frames); the two kinds do not mix.
        """
        tokens = preset.strip().split("_") if preset and preset.strip() else []
        if not tokens:
            raise ValueError(f"empty TAR preset; try one of {', '.join(PRESETS)}")
        if all(_BLOCK_TOKEN.match(token) for token in tokens):
            return cls._parse_blocks(preset, tokens, **overrides)
        sigmas: dict[int, float] = {}
        strengths: dict[int, float] = {}
        for token in tokens:
            match = _PRESET_TOKEN.match(token)
            if match is None:
                raise ValueError(
                    f"cannot parse TAR preset {preset!r} at {token!r}; expected tokens like 64D1 or 32D8 joined "
                    f"by '_' (resolution 64/32/16/8/init, D, sigma, optional S strength), e.g. {', '.join(PRESETS)}; "
                    "a video transformer's blocks as b0-9D2"
                )
            level = INIT_LEVEL if match["res"] == "init" else RESOLUTION_LEVELS[match["res"]]
            if level in sigmas:
                raise ValueError(f"TAR preset {preset!r} names resolution {match['res']} twice")
            sigmas[level] = float(match["sigma"])
            if match["strength"] is not None:
                strengths[level] = float(match["strength"])
        return cls(sigmas=sigmas, level_strengths=strengths, **overrides)

    @classmethod
    def _parse_blocks(cls, preset: str, tokens: list[str], **overrides: Any) -> TARConfig:
        sigmas: dict[int, float] = {}
        strengths: dict[int, float] = {}
        for token in tokens:
            match = _BLOCK_TOKEN.match(token)
            first, last = int(match["first"]), int(match["last"] if match["last"] is not None else match["first"])
            if last < first:
                raise ValueError(f"TAR preset {preset!r}: block range {token!r} runs backwards; write b{last}-{first}")
            for block in range(first, last + 1):
                if block in sigmas:
                    raise ValueError(f"TAR preset {preset!r} names block {block} twice")
                sigmas[block] = float(match["sigma"])
                if match["strength"] is not None:
                    strengths[block] = float(match["strength"])
        return cls(sigmas=sigmas, level_strengths=strengths, unit="block", **overrides)

    def to_preset(self) -> str:
        """The preset string that :meth:`parse` turns back into these levels (blocks) and strengths."""
        if self.unit == "block":
            return self._blocks_preset()
        tokens = []
        for level in sorted(self.sigmas, key=lambda lv: (lv == INIT_LEVEL, lv)):
            token = f"{level_name(level)}D{self.sigmas[level]:g}"
            if level in self.level_strengths:
                token += f"S{self.level_strengths[level]:g}"
            tokens.append(token)
        return "_".join(tokens)

    def _blocks_preset(self) -> str:
        """Consecutive blocks with the same sigma and strength as one range: ``b0-9D2_b10-19D4``."""
        tokens: list[str] = []
        blocks = sorted(self.sigmas)
        start = 0
        for i, block in enumerate(blocks):
            key = (self.sigmas[block], self.level_strengths.get(block))
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            if following == block + 1 and (self.sigmas[following], self.level_strengths.get(following)) == key:
                continue
            first = blocks[start]
            token = f"b{first}" + (f"-{block}" if block != first else "") + f"D{key[0]:g}"
            tokens.append(token + (f"S{key[1]:g}" if key[1] is not None else ""))
            start = i + 1
        return "_".join(tokens)


def level_name(level: int, unit: str = "level") -> str:
    """A level as presets name it: ``"64"``, ``"32"``, ``"16"``, ``"8"`` or ``"init"`` (deeper levels by number);
    a transformer block (``unit="block"``) as ``"b3"``."""
    return f"b{level}" if unit == "block" else LEVEL_NAMES.get(level, str(level))


def apply_tar(model: nn.Module, config: TARConfig | str = "64D1", state: TARState | None = None, *,
              matrix: torch.Tensor | None = None) -> TARState:
    """Install :class:`TARProcessor` on exactly the temporal self-attention layers of the chosen levels.

    ``model`` is a backbone (its :meth:`~vstar.backbones.Backbone.temporal_attention_layers`) or a
    diffusers-style video UNet. Spatial attention and other levels are untouched. Re-applying replaces an
    earlier TAR. ``matrix`` ``(F, F)`` replaces the Gaussian band at every chosen level (a reference video's
    frame similarity, :mod:`vstar.analysis.reference`). Returns the :class:`TARState` that gates all installed
    processors (the pipeline switches it per step).
    """
    config = TARConfig.parse(config) if isinstance(config, str) else config
    remove_tar(model)
    layers = temporal_attention_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no temporal self-attention that TAR recognises")
    if {layer.layout for layer in layers} != {"spatiotemporal" if config.unit == "block" else "temporal"}:
        wanted = "transformer blocks (e.g. b0-9D2)" if config.unit == "level" else "UNet levels (e.g. 64D1)"
        raise ValueError(f"TAR preset {config.to_preset()} does not fit {type(model).__name__}, whose TAR names "
                         f"{wanted}")
    available = sorted({layer.level for layer in layers})
    missing = sorted(set(config.sigmas) - set(available))
    if missing:
        raise ValueError(
            f"TAR asks for {config.unit}s {missing} but {type(model).__name__} has temporal attention at "
            f"{config.unit}s {available}; choose a preset within those"
        )
    state = state or TARState()
    for layer in layers:
        if layer.level in config.sigmas:
            layer.set_processor(TARProcessor(
                config.sigmas[layer.level], config.strength_at(layer.level), config.max_mode,
                state=state, fallback=layer.processor, matrix=matrix, layout=layer.frame_layout,
            ))
    return state


def remove_tar(model: nn.Module) -> None:
    """Restore the processors that :func:`apply_tar` replaced; a no-op where TAR is not installed."""
    for layer in temporal_attention_layers(model):
        if isinstance(layer.processor, TARProcessor):
            layer.set_processor(layer.processor.fallback)
