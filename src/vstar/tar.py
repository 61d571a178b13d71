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
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from vstar.temporal_attention import INIT_LEVEL, temporal_attention_layers

MaxMode = Literal["row", "head", "global"]
MAX_MODES: tuple[str, ...] = ("row", "head", "global")
DEFAULT_CHUNK_BYTES = 4 * 2**20  # TAR's logits buffer on the CPU (measured fastest, see TARProcessor)
MIN_CHUNK_BYTES = 2**20  # smaller layers run in one chunk on the CPU: splitting costs more time than it saves memory
LOG2_E = 1 / math.log(2)  # TAR exponentiates in base 2: measured 2x faster than softmax's exp on the CPU
EXPONENT_RANGE = 64.0  # base-2 exponents the one-pass shift may span (see TARProcessor._exponentiate)

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
    """:meth:`TARProcessor.bias_terms` of the Gaussian band, shared like the band itself."""
    return _bias_terms(_shared_band(num_frames, sigma, device, dtype), strength)


def _bias_terms(matrix: torch.Tensor, strength: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    bias = matrix * strength
    top = bias.max()
    return bias, bias - (1 + top), (top - bias.min()).item()


@dataclass
class TARState:
    """Mutable switch shared by the processors of one UNet; the pipeline turns it off after the early steps."""

    active: bool = True


class TARProcessor:
    """Attention processor for temporal self-attention with the TAR band added to the logits.

    Input ``hidden_states`` is ``(batch*h*w, frames, channels)``. Computes ``S = Q K^T * scale`` per head,
    ``M`` = max of ``S`` per query row (``"row"``, the authors' release), per head (``"head"``) or over all
    heads and rows of a sequence (``"global"``), and attends with ``softmax(S + strength * M * dA) @ V``.

    The queries, keys and values (``V^T`` for narrow heads, see :meth:`transposed_product`) are made
    head-major once per call (each replacing its projection), and the work runs in chunks of sequences (or
    of the heads of one sequence when one is larger than the bound; ``"global"`` keeps a sequence's heads
    together, as its ``M`` spans them): one logits buffer serves every chunk, the logits are formed once
    in base 2 (the scale folded into the product), biased and exponentiated in place (one pass where the
    maxima allow, see :meth:`_exponentiate`), and their product with ``V`` is written straight into the
    output and divided by the row sums (``(F, d)`` numbers per head rather than ``(F, F)``). The buffer
    (float32; float64 for float64 inputs; plus float32 copies of the chunk's inputs for half precision)
    holds at most ``max_chunk_bytes`` and, when that is given, never more than the layer's ``V``: stock
    attention keeps its queries, keys and values alive while it projects its output, this processor frees
    them first, so its peak memory stays at or below stock attention's. A single head (a single sequence for ``"global"``) larger than the bound is processed
    alone. The band ``(F, F)`` is made once per length and sigma and shared by all processors. By default
    the bound on the CPU is 4 MiB, measured fastest there (``benchmarks/tar_overhead.py``: smaller chunks pay
    more per-call overhead than they gain from the cache), and never more than the larger of ``V`` and 1 MiB
    (a small layer runs in one chunk: at most 1 MiB above stock attention's peak); on other devices it is
    the size of ``V`` (few, large chunks for a GPU). While ``state.active`` is False or ``strength == 0``
    it defers to ``fallback`` (the processor it replaced, stock attention by default) at no extra cost.

    Args:
        sigma: width of the Gaussian band; ignored when ``matrix`` is given.
        strength: multiplier of ``M * dA`` (the authors' ``scale``), 1.0 in the paper.
        max_mode: how ``M`` is taken, see above.
        state: shared :class:`TARState` for step gating (always active when None).
        fallback: processor used when inactive, and restored by :func:`remove_tar`.
        matrix: a custom ``(F, F)`` regularization matrix (e.g. a real video's frame similarity).
        max_chunk_bytes: memory bound of the logits buffer, see above (None: the device's default).
    """

    def __init__(self, sigma: float | None = 1.0, strength: float = 1.0, max_mode: MaxMode = "row", *,
                 state: TARState | None = None, fallback: Any = None, matrix: torch.Tensor | None = None,
                 max_chunk_bytes: int | None = None):
        if matrix is None:
            _check_sigma(sigma)  # type: ignore[arg-type]
        elif matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square (F, F), got {tuple(matrix.shape)}")
        if max_mode not in MAX_MODES:
            raise ValueError(f"unknown max_mode {max_mode!r}; choose one of {', '.join(MAX_MODES)}")
        if max_chunk_bytes is not None and max_chunk_bytes < 1:
            raise ValueError(f"max_chunk_bytes must be positive, got {max_chunk_bytes}")
        self.sigma = sigma
        self.strength = float(strength)
        self.max_mode = max_mode
        self.state = state
        self.fallback = fallback if fallback is not None else AttnProcessor2_0()
        self.matrix = matrix
        self.max_chunk_bytes = max_chunk_bytes

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

    def bias_terms(self, num_frames: int, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``bias = strength * dA``, ``bias - (1 + max(bias))`` (both ``(F, F)``) and ``max(bias) - min(bias)``.

        What :meth:`_exponentiate` adds to the logits; made once per length for the Gaussian band.
        """
        if self.matrix is None:
            return _shared_bias(num_frames, self.sigma, self.strength, torch.device(device), dtype)
        return _bias_terms(self.band(num_frames, device, dtype), self.strength)

    def _peak(self, scores: torch.Tensor) -> torch.Tensor:
        """``M`` of ``(n, heads, F, F)`` logits, broadcastable to them."""
        if self.max_mode == "row":
            return scores.amax(dim=-1, keepdim=True)
        if self.max_mode == "head":
            return scores.amax(dim=(-2, -1), keepdim=True)
        return scores.amax(dim=(1, 2, 3), keepdim=True)

    def logit_bias(self, scores: torch.Tensor) -> torch.Tensor:
        """``strength * M * dA`` for float32 logits ``scores`` ``(n, heads, F, F)``; same shape."""
        return self.strength * self._peak(scores) * self.band(scores.shape[-1], scores.device)

    def regularized_attention(self, query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        """Attention probabilities ``(n, heads, F, F)`` in float32 from ``(n, heads, F, d)`` queries and keys."""
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)).mul_(scale)
        scores.addcmul_(self._peak(scores), self.band(scores.shape[-1], scores.device), value=self.strength)
        return torch.softmax(scores, dim=-1)

    def regularized_output(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           scale: float) -> torch.Tensor:
        """``softmax(S + strength * M * dA) @ V`` in float32, ``(n, heads, F, d)``, in bounded chunks."""
        transposed = self.transposed_product(query.shape[-2], query.shape[-1])
        value = (value.transpose(-1, -2) if transposed else value).contiguous()
        out = torch.empty(value.shape, dtype=torch.float32, device=value.device)
        self._attend(query.contiguous(), key.contiguous(), value, out, scale, self.chunk_bound(value), transposed)
        return out.transpose(-1, -2) if transposed else out

    @staticmethod
    def transposed_product(num_frames: int, head_dim: int) -> bool:
        """Whether the product with ``V`` is formed as ``(V^T P^T)^T`` rather than ``P V``.

        Matrix-product kernels are slow on narrow outputs: for heads narrower than half the frames
        (``2 * d < F``) the ``(d, F)`` product is measured faster even though ``V^T`` and the result need
        transposing copies; for wider heads ``P V`` is (``benchmarks/tar_overhead.py``).
        """
        return 2 * head_dim < num_frames

    def chunk_bound(self, value: torch.Tensor) -> int:
        """Bytes the logits buffer may hold for a layer whose values are ``value`` (see above)."""
        size = value.numel() * value.element_size()
        if self.max_chunk_bytes is not None:
            return min(self.max_chunk_bytes, size)
        if value.device.type != "cpu":
            return size
        return min(DEFAULT_CHUNK_BYTES, max(size, MIN_CHUNK_BYTES))

    def chunk_shape(self, heads: int, num_frames: int, head_dim: int, max_bytes: int, itemsize: int = 4,
                    copies: bool = False) -> tuple[int, int]:
        """``(sequences, heads)`` of one chunk, so that its working memory stays within ``max_bytes``.

        Per sequence and head a chunk holds logits ``(F, F)`` and two row statistics ``(F,)`` of ``itemsize``
        bytes, and with ``copies`` (half-precision inputs) copies of its queries, keys, values and output
        ``(F, d)`` at that precision. A chunk spans whole sequences when one fits, else some heads of one
        sequence (``"global"``: all of them, as its ``M`` spans them).
        """
        per_head = itemsize * num_frames * (num_frames + 2 + (4 * head_dim if copies else 0))
        if self.max_mode == "global" or per_head * heads <= max_bytes:
            return max(1, max_bytes // (per_head * heads)), heads
        return 1, max(1, max_bytes // per_head)

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, out: torch.Tensor,
                scale: float, max_bytes: int, transposed: bool) -> None:
        """Write ``softmax(S + strength * M * dA) @ V`` into ``out``, chunk by chunk.

        ``query`` and ``key`` are contiguous ``(n, heads, F, d)``; ``value`` and ``out`` are contiguous
        ``(n, heads, F, d)``, or ``(n, heads, d, F)`` (``V^T`` and the transposed result) when ``transposed``
        (see :meth:`transposed_product`); ``out`` in any dtype. One logits buffer of at most ``max_bytes``
        (see :meth:`chunk_shape`; float32, float64 for float64 inputs) serves every chunk. The logits are
        formed once in base 2 (``scale * log2(e)`` folded into the product), biased and exponentiated in
        place, and the product with ``V`` is divided by the row sums, which leaves the ``(F, F)`` logits
        unnormalised (see :meth:`_exponentiate`).
        """
        batch, heads, num_frames, head_dim = query.shape
        dtype = torch.promote_types(query.dtype, torch.float32)
        copies = dtype != query.dtype
        seqs, group = self.chunk_shape(heads, num_frames, head_dim, max_bytes, dtype.itemsize, copies)
        bias, shifted_bias, spread = self.bias_terms(num_frames, query.device, dtype)
        logits_buffer = torch.empty(min(seqs, batch) * group * num_frames**2, dtype=dtype, device=query.device)
        # a chunk is a range of (sequence, head) pairs: whole sequences, or heads of one sequence
        flat = [t.flatten(0, 1) for t in (query, key, value, out)]  # (n*heads, F, d) or (n*heads, d, F)
        for start in range(0, batch, seqs):
            stop = min(start + seqs, batch)
            for first in range(0, heads, group):
                width = min(first + group, heads) - first
                pairs = slice(start * heads + first, (stop - 1) * heads + first + width)
                q, k, v, o = (t[pairs] for t in flat)
                if copies:
                    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
                scores = logits_buffer[:q.shape[0] * num_frames**2].view(-1, num_frames, num_frames)
                torch.baddbmm(scores, q, k.transpose(1, 2), beta=0, alpha=scale * LOG2_E, out=scores)
                self._exponentiate(scores.view(-1, width, num_frames, num_frames), bias, shifted_bias, spread)
                sums = scores.sum(-1)  # (pairs, F)
                a, b = (v, scores.transpose(1, 2)) if transposed else (scores, v)
                sums = sums[:, None, :] if transposed else sums[:, :, None]
                if copies:
                    o.copy_(torch.bmm(a, b).div_(sums))
                else:
                    torch.bmm(a, b, out=o).div_(sums)

    def _exponentiate(self, logits: torch.Tensor, bias: torch.Tensor, shifted_bias: torch.Tensor,
                      spread: float) -> None:
        """``2 ** (S + M * bias - c)`` in place for base-2 logits ``S`` ``(c, heads, F, F)``.

        ``bias``, ``shifted_bias`` and ``spread`` are the :meth:`bias_terms`. ``c`` is a per-row shift that
        keeps the powers in range; softmax does not depend on it. For ``"row"`` maxima it is
        ``M * (1 + max(bias))``, which bounds every power by 1 (``M >= 0``) or puts the largest at 1 or above
        (``M < 0``), so one pass adds the bias and the shift together (``M * shifted_bias``); it is used
        while ``|M| * spread`` stays within ``EXPONENT_RANGE`` (the powers then lie within ``2 ** +-64``: no
        overflow, and the largest far above float32's underflow). Otherwise (``"head"`` and ``"global"``
        maxima, which may lie far above a row's, or very large logits) ``c`` is the biased row's maximum, at
        the cost of one more pass over the logits.
        """
        peak = self._peak(logits)
        if self.max_mode == "row" and torch.linalg.vector_norm(peak, math.inf).item() * spread <= EXPONENT_RANGE:
            logits.addcmul_(peak, shifted_bias)
        else:
            logits.addcmul_(peak, bias)
            logits.sub_(logits.amax(-1, keepdim=True))
        logits.exp2_()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 temb: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not self.active:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("TAR applies to temporal self-attention only (no context, no mask)")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, num_frames, _ = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        def heads_of(projected: torch.Tensor) -> torch.Tensor:
            """``(n, F, heads*d)`` -> ``(n, heads, F, d)`` (a view)."""
            return projected.view(batch_size, num_frames, attn.heads, -1).transpose(1, 2)

        # head-major copies replace the projections one at a time, so at most four tensors of the size of
        # `value` are alive at once (stock attention holds five while it projects its output); the logits
        # buffer is bounded by one more
        query = heads_of(attn.to_q(hidden_states))
        query = (attn.norm_q(query) if attn.norm_q is not None else query).contiguous()
        key = heads_of(attn.to_k(hidden_states))
        key = (attn.norm_k(key) if attn.norm_k is not None else key).contiguous()
        transposed = self.transposed_product(num_frames, query.shape[-1])
        value = heads_of(attn.to_v(hidden_states))
        value = (value.transpose(-1, -2) if transposed else value).contiguous()  # (n, heads, d, F) or (n, heads, F, d)
        out = torch.empty_like(value)
        self._attend(query, key, value, out, attn.scale, self.chunk_bound(value), transposed)
        del query, key, value
        hidden_states = out.permute(0, 3, 1, 2) if transposed else out.transpose(1, 2)  # (n, F, heads, d)
        hidden_states = hidden_states.reshape(batch_size, num_frames, -1)
        del out

        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states.div_(attn.rescale_output_factor)


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
            make = getattr(layer, "make_tar_processor", TARProcessor)  # a layout's own attention, else temporal
            layer.set_processor(make(
                config.sigmas[layer.level], config.strength_at(layer.level), config.max_mode,
                state=state, fallback=layer.processor, matrix=matrix,
            ))
    return state


def remove_tar(model: nn.Module) -> None:
    """Restore the processors that :func:`apply_tar` replaced; a no-op where TAR is not installed."""
    for layer in temporal_attention_layers(model):
        if isinstance(layer.processor, TARProcessor):
            layer.set_processor(layer.processor.fallback)
