"""The temporal layout: one sequence of ``F`` frames per latent pixel, as the video UNets' temporal attention.

A diffusers ``Attention`` module sees ``(batch*h*w, F, C)`` (or ``(B, C, H, W)`` images, diffusers'
convention); each sequence attends over its own ``F`` frames, so a token *is* a frame and every rule acts on
``(F, F)`` logits per sequence and head:

- :class:`~vstar.frame_attention.layout.FrameBias` (TAR): ``softmax(S + strength * M * A) @ V``, fused in
  bounded chunks (:meth:`TemporalLayout.biased_attention`);
- :class:`~vstar.frame_attention.layout.FrameWeights` (the replacements): ``W @ V``;
- the recording: the probabilities under the rule, summed over sequences and heads in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.checkpoint import checkpoint

from vstar.frame_attention.layout import Branch, FrameBias, FrameLayout, FrameRule, FrameWeights, LayerCall

DEFAULT_CHUNK_BYTES = 4 * 2**20  # TAR's logits buffer on the CPU (measured fastest, see TemporalLayout)
MIN_CHUNK_BYTES = 2**20  # smaller layers run in one chunk on the CPU: splitting costs more time than it saves memory
LOG2_E = 1 / math.log(2)  # TAR exponentiates in base 2: measured 2x faster than softmax's exp on the CPU
EXPONENT_RANGE = 64.0  # base-2 exponents the one-pass shift may span (see TemporalLayout._exponentiate)


def frames_in(attn: Any, hidden_states: torch.Tensor,
              temb: torch.Tensor | None = None) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(n, F, C)`` normed sequences of ``hidden_states``, and the function that turns the attention result
    ``(n, F, heads*d)`` into the module's output (projection, image reshape, residual, rescaling) exactly as
    diffusers' ``AttnProcessor`` does."""
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


def heads_of(attn: Any, projected: torch.Tensor) -> torch.Tensor:
    """``(n, F, heads*d)`` -> ``(n, heads, F, d)`` (a view)."""
    n, frames, inner = projected.shape
    return projected.view(n, frames, attn.heads, inner // attn.heads).transpose(1, 2)


def queries_and_keys(attn: Any, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys ``(n, heads, F, d)`` of normed sequences ``(n, F, C)``, with the module's q/k norms."""
    query, key = heads_of(attn, attn.to_q(sequences)), heads_of(attn, attn.to_k(sequences))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key


@dataclass
class TemporalCall(LayerCall):
    """A temporal layer's call: the module and its normed sequences ``(n, F, C)``; the projections are made
    by the operation that needs them (all at once to attend, chunk by chunk to record)."""

    attn: Any = None
    sequences: torch.Tensor | None = None


def peak_logits(scores: torch.Tensor, max_mode: str) -> torch.Tensor:
    """``M`` of ``(n, heads, F, F)`` logits per row, head or sequence (``max_mode``), broadcastable to them."""
    if max_mode == "row":
        return scores.amax(dim=-1, keepdim=True)
    if max_mode == "head":
        return scores.amax(dim=(-2, -1), keepdim=True)
    return scores.amax(dim=(1, 2, 3), keepdim=True)


def probabilities(query: torch.Tensor, key: torch.Tensor, scale: float, rule: FrameRule) -> torch.Tensor:
    """The float32 probabilities ``(n, heads, F, F)`` a temporal layer attends with under ``rule`` for queries
    and keys ``(n, heads, F, d)``: stock ``softmax(Q K^T * scale)``, TAR's biased softmax, or the fixed
    weights broadcast (a view, no per-sequence memory)."""
    frames = query.shape[-2]
    if isinstance(rule, FrameWeights):
        weights = rule.weights.to(query.device, torch.float32)
        return (weights / weights.sum(-1, keepdim=True)).expand(*query.shape[:-2], frames, frames)
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)).mul_(scale)
    if isinstance(rule, FrameBias):
        matrix = rule.matrix.to(scores.device, torch.float32)
        scores.addcmul_(peak_logits(scores, rule.max_mode), matrix, value=rule.strength)
    return torch.softmax(scores, dim=-1)


class TemporalLayout(FrameLayout):
    """Temporal self-attention of the video UNets: ``(batch*h*w, F, C)`` sequences, one per latent pixel.

    TAR (:meth:`biased_attention`) makes the queries, keys and values head-major once per call (each
    replacing its projection; ``V^T`` for narrow heads, see :meth:`transposed_product`) and works in chunks
    of sequences (or of the heads of one sequence when one is larger than the bound; ``"global"`` keeps a
    sequence's heads together, as its ``M`` spans them): one logits buffer serves every chunk, the logits are
    formed once in base 2 (the scale folded into the product), biased and exponentiated in place (one pass
    where the maxima allow, see :meth:`_exponentiate`), and their product with ``V`` is written straight into
    the output and divided by the row sums. The buffer (float32; float64 for float64 inputs; plus float32
    copies of the chunk's inputs for half precision) holds at most ``max_chunk_bytes`` and, when that is
    given, never more than the layer's ``V``: stock attention keeps its queries, keys and values alive while
    it projects its output, TAR frees them first, so its peak memory stays at or below stock attention's. By
    default the bound on the CPU is 4 MiB, measured fastest there (``benchmarks/tar_overhead.py``), and never
    more than the larger of ``V`` and 1 MiB; on other devices it is the size of ``V`` (few, large chunks).
    """

    kind: ClassVar[str] = "temporal"

    def __init__(self, max_chunk_bytes: int | None = None):
        if max_chunk_bytes is not None and max_chunk_bytes < 1:
            raise ValueError(f"max_chunk_bytes must be positive, got {max_chunk_bytes}")
        self.max_chunk_bytes = max_chunk_bytes

    def inputs(self, attn: Any, hidden_states: torch.Tensor, args: tuple, kwargs: dict[str, Any]) -> TemporalCall:
        temb = args[0] if args else kwargs.get("temb")
        sequences, finish = frames_in(attn, hidden_states, temb)
        return TemporalCall(sequences.shape[1], sequences.device, sequences.dtype, finish, attn, sequences)

    def attend(self, call: LayerCall, rule: FrameBias | FrameWeights, backend: Any = None) -> torch.Tensor:
        """``(n, F, heads*d)``: TAR's fused chunks for a :class:`FrameBias`, ``W @ V`` for
        :class:`FrameWeights` (``backend`` unused: the temporal kernels are vstar's own)."""
        attn, sequences = call.attn, call.sequences
        call.sequences = None  # the projections replace the sequences
        if isinstance(rule, FrameWeights):
            value = attn.to_v(sequences)  # (n, F, heads*d); I_F @ V is V, J_F / F @ V the mean over frames
            weights = rule.weights.to(value.device, value.dtype)
            return torch.matmul(weights / weights.sum(-1, keepdim=True), value)
        return self.biased_attention(attn, sequences, rule)

    def biased_attention(self, attn: Any, sequences: torch.Tensor, rule: FrameBias) -> torch.Tensor:
        """``softmax(S + strength * M * A) @ V`` of normed sequences ``(n, F, C)`` -> ``(n, F, heads*d)``."""
        batch_size, num_frames, _ = sequences.shape
        # head-major copies replace the projections one at a time, so at most four tensors of the size of
        # `value` are alive at once (stock attention holds five while it projects its output); the logits
        # buffer is bounded by one more
        query = heads_of(attn, attn.to_q(sequences))
        query = (attn.norm_q(query) if attn.norm_q is not None else query).contiguous()
        key = heads_of(attn, attn.to_k(sequences))
        key = (attn.norm_k(key) if attn.norm_k is not None else key).contiguous()
        transposed = self.transposed_product(num_frames, query.shape[-1])
        value = heads_of(attn, attn.to_v(sequences))
        del sequences
        value = (value.transpose(-1, -2) if transposed else value).contiguous()  # (n, heads, d, F) or (n, heads, F, d)
        out = torch.empty_like(value)
        self.band_product(query, key, value, out, attn.scale, rule, transposed)
        del query, key, value
        out = out.permute(0, 3, 1, 2) if transposed else out.transpose(1, 2)  # (n, F, heads, d)
        return out.reshape(batch_size, num_frames, -1)

    def frame_mass(self, call: LayerCall, rule: FrameRule, branch: Branch,
                   max_chunk_bytes: int) -> tuple[torch.Tensor, int]:
        attn = call.attn
        sequences = branch(call.sequences)  # (n, F, C)
        n, frames, _ = sequences.shape
        step = max(1, max_chunk_bytes // (4 * attn.heads * frames * frames))
        differentiable = torch.is_grad_enabled()
        total = torch.zeros(frames, frames, dtype=torch.float64, device=sequences.device)

        def chunk_sum(chunk: torch.Tensor) -> torch.Tensor:
            query, key = queries_and_keys(attn, chunk)
            return probabilities(query, key, attn.scale, rule).sum(dim=(0, 1), dtype=torch.float64)

        for chunk in sequences.split(step):
            if differentiable:  # recompute the chunk's probabilities in the backward pass
                total = total + checkpoint(chunk_sum, chunk, use_reentrant=False)
            else:
                total += chunk_sum(chunk)
        return total, n * attn.heads

    # --- TAR's fused kernel --------------------------------------------------------------------------------
    @staticmethod
    def transposed_product(num_frames: int, head_dim: int) -> bool:
        """Whether the product with ``V`` is formed as ``(V^T P^T)^T`` rather than ``P V``.

        Matrix-product kernels are slow on narrow outputs: for heads narrower than half the frames
        (``2 * d < F``) the ``(d, F)`` product is measured faster even though ``V^T`` and the result need
        transposing copies; for wider heads ``P V`` is (``benchmarks/tar_overhead.py``).
        """
        return 2 * head_dim < num_frames

    def chunk_bound(self, value: torch.Tensor) -> int:
        """Bytes the logits buffer may hold for a layer whose values are ``value`` (see the class)."""
        size = value.numel() * value.element_size()
        if self.max_chunk_bytes is not None:
            return min(self.max_chunk_bytes, size)
        if value.device.type != "cpu":
            return size
        return min(DEFAULT_CHUNK_BYTES, max(size, MIN_CHUNK_BYTES))

    @staticmethod
    def chunk_shape(heads: int, num_frames: int, head_dim: int, max_bytes: int, max_mode: str, itemsize: int = 4,
                    copies: bool = False) -> tuple[int, int]:
        """``(sequences, heads)`` of one chunk, so that its working memory stays within ``max_bytes``.

        Per sequence and head a chunk holds logits ``(F, F)`` and two row statistics ``(F,)`` of ``itemsize``
        bytes, and with ``copies`` (half-precision inputs) copies of its queries, keys, values and output
        ``(F, d)`` at that precision. A chunk spans whole sequences when one fits, else some heads of one
        sequence (``"global"``: all of them, as its ``M`` spans them).
        """
        per_head = itemsize * num_frames * (num_frames + 2 + (4 * head_dim if copies else 0))
        if max_mode == "global" or per_head * heads <= max_bytes:
            return max(1, max_bytes // (per_head * heads)), heads
        return 1, max(1, max_bytes // per_head)

    def band_product(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, out: torch.Tensor,
                     scale: float, rule: FrameBias, transposed: bool) -> None:
        """Write ``softmax(S + strength * M * A) @ V`` into ``out``, chunk by chunk.

        ``query`` and ``key`` are contiguous ``(n, heads, F, d)``; ``value`` and ``out`` are contiguous
        ``(n, heads, F, d)``, or ``(n, heads, d, F)`` (``V^T`` and the transposed result) when ``transposed``
        (see :meth:`transposed_product`); ``out`` in any dtype. One logits buffer of at most
        :meth:`chunk_bound` bytes (see :meth:`chunk_shape`; float32, float64 for float64 inputs) serves every
        chunk. The logits are formed once in base 2 (``scale * log2(e)`` folded into the product), biased and
        exponentiated in place, and the product with ``V`` is divided by the row sums, which leaves the
        ``(F, F)`` logits unnormalised (see :meth:`_exponentiate`).
        """
        batch, heads, num_frames, head_dim = query.shape
        dtype = torch.promote_types(query.dtype, torch.float32)
        copies = dtype != query.dtype
        seqs, group = self.chunk_shape(heads, num_frames, head_dim, self.chunk_bound(value), rule.max_mode,
                                       dtype.itemsize, copies)
        bias, shifted_bias, spread = (t.to(query.device, dtype) if isinstance(t, torch.Tensor) else t
                                      for t in rule.bias_terms())
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
                self._exponentiate(scores.view(-1, width, num_frames, num_frames), rule.max_mode, bias,
                                   shifted_bias, spread)
                sums = scores.sum(-1)  # (pairs, F)
                a, b = (v, scores.transpose(1, 2)) if transposed else (scores, v)
                sums = sums[:, None, :] if transposed else sums[:, :, None]
                if copies:
                    o.copy_(torch.bmm(a, b).div_(sums))
                else:
                    torch.bmm(a, b, out=o).div_(sums)

    @staticmethod
    def _exponentiate(logits: torch.Tensor, max_mode: str, bias: torch.Tensor, shifted_bias: torch.Tensor,
                      spread: float) -> None:
        """``2 ** (S + M * bias - c)`` in place for base-2 logits ``S`` ``(c, heads, F, F)``.

        ``bias``, ``shifted_bias`` and ``spread`` are :func:`~vstar.frame_attention.layout.bias_terms`. ``c``
        is a per-row shift that keeps the powers in range; softmax does not depend on it. For ``"row"`` maxima
        it is ``M * (1 + max(bias))``, which bounds every power by 1 (``M >= 0``) or puts the largest at 1 or
        above (``M < 0``), so one pass adds the bias and the shift together (``M * shifted_bias``); it is used
        while ``|M| * spread`` stays within ``EXPONENT_RANGE`` (the powers then lie within ``2 ** +-64``: no
        overflow, and the largest far above float32's underflow). Otherwise (``"head"`` and ``"global"``
        maxima, which may lie far above a row's, or very large logits) ``c`` is the biased row's maximum, at
        the cost of one more pass over the logits.
        """
        peak = peak_logits(logits, max_mode)
        if max_mode == "row" and torch.linalg.vector_norm(peak, math.inf).item() * spread <= EXPONENT_RANGE:
            logits.addcmul_(peak, shifted_bias)
        else:
            logits.addcmul_(peak, bias)
            logits.sub_(logits.amax(-1, keepdim=True))
        logits.exp2_()


TEMPORAL = TemporalLayout()  # the layout every UNet layer shares (the default bound: no state of its own)
