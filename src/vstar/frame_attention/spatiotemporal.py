"""Frame-level edits of spatio-temporal self-attention (video transformers such as Wan), exact and without N x N.

The layer attends over ``N = F * P`` frame-major tokens (token ``i`` belongs to latent frame ``f(i) = i // P``),
``q, k, v`` of shape ``(B, N, H, d)`` (diffusers' ``dispatch_attention_fn`` layout, after RoPE). Every edit is
a statement about how much a query attends to each key *frame*:

- TAR: ``S_ij = scale * q_i . k_j``, ``m_i = max_j S_ij``, ``S'_ij = S_ij + strength * m_i * A[f(i), f(j)]``,
  ``out_i = sum_j softmax_j(S'_i) v_j`` with ``A`` an ``(F, F)`` matrix (the Gaussian band of
  :func:`vstar.tar.regularization_matrix`, or a reference video's similarity). As written in the paper, the
  bias is scaled by the row's maximum logit: when ``m_i < 0`` the bias changes sign and *repels* the frames
  where ``A`` is large (the near frames, for the band). This module implements the formula as written.
- Replacement (paper figure 5): ``"identity"`` (a query attends only to the keys of its own frame, softmax
  within the frame) and ``"uniform"`` (mass ``1/F`` on every key frame, softmax kept within each frame).
- Recording: the map ``M[a, b]``, the attention mass that the queries of frame ``a`` put on the keys of
  frame ``b`` (per head, averaged over the queries of ``a``; rows sum to 1), for whichever edit is active.

Two exact formulations, neither ever holding an ``N x N`` tensor:

(a) **Head-dimension augmentation** (:func:`augmented_attention`): a per-(query, key-frame) bias ``c_ib``
    becomes extra head dimensions, ``q' = [q, c_i / scale]``, ``k' = [k, onehot(f(j))]``, ``v' = [v, 0]``
    (zero-padded to a multiple of 8), so that ``scale * q'_i . k'_j = S_ij + c_i,f(j)``: ONE ordinary fused
    attention call (SDPA by default, or the caller's ``attend``, e.g. diffusers' ``dispatch_attention_fn``
    with the user's backend) with the original scale. No attention map comes out of it.
(b) **Per key frame** (:func:`frame_blocks`): for each query chunk and key frame ``b``, the block logits
    ``(chunk, P)`` give ``lse_b(i) = logsumexp_{j in b} S_ij`` and ``o_b(i) = softmax_{j in b}(S_i) v_j``;
    the blocks merge online (flash-style running maximum) with frame weights ``softmax_b(lse_b + c_ib)``
    or fixed frame weights ``W[f(i), b]`` (the replacements), and the weights are the recorded map.

Both need ``m_i`` first for TAR (:func:`row_max_logits`: one pass of logits, no softmax). Use (a) to run TAR
at the speed of the user's fused kernel (memory ~4 x ``B N H d'``, ``d' = d + F`` or ``d + 2F`` rounded up
to 8); use (b) for the frame map, the replacements, or the least memory (one chunk's logits).

Logits and merging run in float32 (float64 for float64 inputs); outputs come back in the input dtype. On
float32 inputs both are exact to float32 rounding; on float16/bfloat16 both equal the float64 result on the
same inputs up to the output's rounding, (a) provided the kernel accumulates ``q' . k'`` in float32 (flash,
cuDNN, efficient attention and torch's CPU kernels do).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F_nn

from vstar.frame_attention.layout import Branch, FrameBias, FrameLayout, FrameRule, FrameWeights, LayerCall

ReplacementMode = Literal["identity", "uniform"]
TARMethod = Literal["augment", "blocks"]
# attend(q, k, v, scale) -> out, all (B, N, H, d'): SDPA or diffusers' dispatch_attention_fn with a backend.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
# A per-(query, key-frame) bias: the (B, N, H, F) tensor, or bias(start, stop) -> (B, stop - start, H, F)
# for the queries start:stop (built per query chunk, never for all N at once).
Bias = torch.Tensor | Callable[[int, int], torch.Tensor]

DEFAULT_LOGITS_BYTES = 2**22  # one query chunk's float32 logits when query_chunk is not given
HEAD_DIM_MULTIPLE = 8  # fused kernels (flash, cuDNN) want head dims in multiples of 8


class FrameAttention(NamedTuple):
    """``out``: ``(B, N, H, d)`` in the input dtype; ``map``: ``(B, H, F, F)`` float32 frame-to-frame mass
    (rows sum to 1; ``map.mean(1)`` is the recording's head average), or None when it was not asked for."""

    out: torch.Tensor
    map: torch.Tensor | None


def _layout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int) -> tuple[int, int]:
    """Check ``q, k, v`` are ``(B, N, H, d)`` floats with ``N = frames * P``; return ``(P, d)``."""
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one shape (B, N, H, d), got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if not q.is_floating_point() or q.dtype != k.dtype or q.dtype != v.dtype:
        raise ValueError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    tokens = q.shape[1]
    if frames < 1 or tokens % frames:
        raise ValueError(f"frames must be >= 1 and divide the {tokens} tokens (frame-major, P tokens per "
                         f"frame), got {frames}")
    return tokens // frames, q.shape[-1]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _scale(scale: float | None, head_dim: int) -> float:
    return head_dim**-0.5 if scale is None else scale


def _chunk(query_chunk: int | None, reference: torch.Tensor, keys: int) -> int:
    """Queries per chunk: ``query_chunk``, or as many as keep the ``(B, H, chunk, keys)`` float32 logits
    within :data:`DEFAULT_LOGITS_BYTES` on the CPU (measured fastest there) and within the size of
    ``reference`` (``(B, N, H, d)``, the layer's values) on other devices (few, large chunks for a GPU)."""
    if query_chunk is not None:
        if query_chunk < 1:
            raise ValueError(f"query_chunk must be >= 1 query, got {query_chunk}")
        return query_chunk
    batch, _, heads, _ = reference.shape
    budget = DEFAULT_LOGITS_BYTES
    if reference.device.type != "cpu":
        budget = max(budget, reference.numel() * reference.element_size())
    return max(1, budget // (4 * batch * heads * keys))


def _frame_of(tokens: int, frames: int, device: torch.device) -> torch.Tensor:
    """``(N,)`` int64: each frame-major token's latent frame."""
    return torch.arange(frames, device=device).repeat_interleave(tokens // frames)


def _heads_first(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, n, H, d)`` -> ``(B, H, n, d)`` in ``dtype``."""
    return x.to(dtype).transpose(1, 2)


def row_max_logits(q: torch.Tensor, k: torch.Tensor, scale: float | None = None, query_chunk: int | None = None,
                   key_chunk: int | None = None) -> torch.Tensor:
    """``m_i = max_j scale * q_i . k_j``: ``q`` ``(B, Nq, H, d)``, ``k`` ``(B, Nk, H, d)`` -> ``(B, Nq, H)``
    float32 (float64 for float64 inputs). Chunks of ``query_chunk`` queries against ``key_chunk`` keys at a
    time (all keys when None): the largest intermediate is ``(B, H, query_chunk, key_chunk)`` logits."""
    batch, tokens, heads, head_dim = q.shape
    dtype = _compute_dtype(q.dtype)
    scale = _scale(scale, head_dim)
    key_chunk = key_chunk or k.shape[1]
    query_chunk = _chunk(query_chunk, k, key_chunk)
    out = torch.full((batch, heads, tokens), -math.inf, dtype=dtype, device=q.device)
    for lo in range(0, tokens, query_chunk):
        qc = _heads_first(q[:, lo:lo + query_chunk], dtype) * scale  # (B, H, c, d)
        rows = out[:, :, lo:lo + query_chunk]  # (B, H, c), a view
        for start in range(0, k.shape[1], key_chunk):
            kc = _heads_first(k[:, start:start + key_chunk], dtype)  # (B, H, kc, d)
            torch.maximum(rows, (qc @ kc.transpose(-1, -2)).amax(-1), out=rows)
    return out.transpose(1, 2)


def frame_blocks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, *, scale: float | None = None,
                 bias: Bias | None = None, weights: torch.Tensor | None = None, query_chunk: int | None = None,
                 return_map: bool = False) -> FrameAttention:
    """Attention merged from per-key-frame blocks (formulation (b) of the module docstring), exact.

    ``q, k, v``: ``(B, N, H, d)``, ``N = frames * P`` frame-major tokens. For each key frame ``b`` the block
    softmax gives ``lse_b(i)`` and ``o_b(i)``; the output is ``sum_b w_ib o_b(i)`` with frame weights

    - ``w_i = softmax_b(lse_b(i) + bias_ib)``: ``bias`` ``(B, N, H, F)`` or ``bias(start, stop)``
      (``(B, stop - start, H, F)``), additive per (query, key frame), ``-inf`` masks a key frame (each
      query needs one finite entry); None is plain attention;
    - ``w_ib = W[f(i), b] / sum_b W[f(i), b]``: ``weights`` ``W`` ``(F, F)``, non-negative, each row with a
      positive entry (the replacements); key frames with zero weight for a whole chunk are not computed.

    Memory: besides the output, per chunk ``(B, H, query_chunk, P)`` logits and ``(B, H, query_chunk, d + F)``
    running state, never ``N x N``. ``query_chunk`` None: see :func:`_chunk`, and at most ``P`` queries when
    ``weights`` has zeros (identity then computes ~2 key frames per query instead of ``F``). ``return_map``
    adds the ``(B, H, F, F)`` float32 map of the weights ``w_ib`` averaged over each query frame's tokens
    (the recording; rows sum to 1) at the cost of ``(B, H, query_chunk, F)`` numbers.
    """
    tokens_per_frame, head_dim = _layout(q, k, v, frames)
    if bias is not None and weights is not None:
        raise ValueError("give bias (added to each key frame's log-sum-exp) or weights (fixed frame weights), "
                         "not both")
    batch, tokens, heads, _ = q.shape
    dtype, device = _compute_dtype(q.dtype), q.device
    scale = _scale(scale, head_dim)
    frame_of = _frame_of(tokens, frames, device)
    if weights is not None:
        if weights.shape != (frames, frames) or (weights < 0).any() or not (weights > 0).any(1).all():
            raise ValueError(f"weights must be a non-negative ({frames}, {frames}) matrix with a positive entry "
                             f"in each row, got {weights}")
        needed = (weights > 0).cpu()  # (F, F): which key frames each query frame uses
        if query_chunk is None and not needed.all():  # chunks within ~1 query frame skip the most key frames
            query_chunk = min(_chunk(None, v, tokens_per_frame), tokens_per_frame)
        log_weights = weights.to(device, dtype).log()  # (F, F), -inf where a frame gets nothing

    out = torch.empty_like(q)
    query_chunk = _chunk(query_chunk, v, tokens_per_frame)
    frame_map = torch.zeros(batch, heads, frames, frames, dtype=dtype, device=device) if return_map else None
    for lo in range(0, tokens, query_chunk):
        hi = min(lo + query_chunk, tokens)
        qc = _heads_first(q[:, lo:hi], dtype) * scale  # (B, H, c, d)
        if weights is not None:
            extra = log_weights[frame_of[lo:hi]].expand(batch, heads, -1, -1)  # (B, H, c, F)
            key_frames = needed[lo // tokens_per_frame:(hi - 1) // tokens_per_frame + 1].any(0).nonzero()
            key_frames = key_frames.flatten().tolist()
        else:
            chunk_bias = bias(lo, hi) if callable(bias) else None if bias is None else bias[:, lo:hi]
            extra = None if chunk_bias is None else chunk_bias.to(dtype).permute(0, 2, 1, 3)  # (B, H, c, F)
            key_frames = range(frames)
        run_max = torch.full(qc.shape[:-1], -math.inf, dtype=dtype, device=device)  # (B, H, c)
        run_sum = torch.zeros_like(run_max)
        acc = torch.zeros_like(qc)  # (B, H, c, d)
        # z_ib (B, H, c, F), kept for the map: -inf for the key frames left out
        scores = torch.full((*qc.shape[:-1], frames), -math.inf, dtype=dtype, device=device) if return_map else None
        for b in key_frames:
            keys = slice(b * tokens_per_frame, (b + 1) * tokens_per_frame)
            logits = qc @ _heads_first(k[:, keys], dtype).transpose(-1, -2)  # (B, H, c, P)
            block_max = logits.amax(-1, keepdim=True)
            probs = logits.sub_(block_max).exp_()
            block_sum = probs.sum(-1)  # (B, H, c)
            if weights is None:
                score = block_max.squeeze(-1) + block_sum.log()  # lse_b
                score = score if extra is None else score + extra[..., b]
            else:
                score = extra[..., b]
            if return_map:
                scores[..., b] = score
            new_max = torch.maximum(run_max, score)
            shift = new_max.nan_to_num(neginf=0.0)  # rows where every score so far is -inf: nothing to add
            old, new = (run_max - shift).exp(), (score - shift).exp()
            run_sum.mul_(old).add_(new)
            acc.mul_(old[..., None]).add_(probs.mul_((new / block_sum)[..., None]) @ _heads_first(v[:, keys], dtype))
            run_max = new_max
        out[:, lo:hi] = (acc / run_sum[..., None]).transpose(1, 2).to(q.dtype)
        if return_map:
            mass = (scores - run_max[..., None]).exp() / run_sum[..., None]  # (B, H, c, F)
            frame_map.index_add_(2, frame_of[lo:hi], mass)
    return FrameAttention(out, None if frame_map is None else (frame_map / tokens_per_frame).float())


def augmented_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, bias: torch.Tensor, *,
                        scale: float | None = None, attend: Attend | None = None) -> torch.Tensor:
    """Attention with an additive per-(query, key-frame) ``bias`` ``(B, N, H, F)`` through ONE fused attention
    call (formulation (a) of the module docstring), exact: ``q, k, v`` ``(B, N, H, d)`` -> ``(B, N, H, d)``.

    ``attend(q', k', v', scale)`` takes and returns ``(B, N, H, d')`` (the layout of diffusers'
    ``dispatch_attention_fn``: ``attend=lambda q, k, v, s: dispatch_attention_fn(q, k, v, scale=s,
    backend=...)``); default :func:`torch.nn.functional.scaled_dot_product_attention`. In float16/bfloat16
    the bias travels as two terms (the rounded value and its remainder: ``d' = d + 2F`` rounded up to a
    multiple of 8; ``d + F`` in float32/float64), so the kernel's float32 accumulation sees it to about
    ``2^-16`` relative instead of the dtype's ``2^-8``/``2^-11``. Memory: ``q', k', v'`` (3 x ``B N H d'``)
    plus the kernel's own; no ``N x N`` tensor unless ``attend`` makes one.
    """
    _, head_dim = _layout(q, k, v, frames)
    batch, tokens, heads, _ = q.shape
    if bias.shape != (batch, tokens, heads, frames):
        raise ValueError(f"bias must be (B, N, H, F) = {(batch, tokens, heads, frames)}, got {tuple(bias.shape)}")
    scale = _scale(scale, head_dim)
    extra = bias.to(_compute_dtype(q.dtype)) / scale  # (B, N, H, F): q'_i's extra dims
    terms = 1 if q.element_size() >= 4 else 2
    width = head_dim + terms * frames
    shape = (batch, tokens, heads, width + -width % HEAD_DIM_MULTIPLE)  # (B, N, H, d')
    q_aug, k_aug, v_aug = q.new_zeros(shape), k.new_zeros(shape), v.new_zeros(shape)
    q_aug[..., :head_dim], k_aug[..., :head_dim], v_aug[..., :head_dim] = q, k, v
    onehot = F_nn.one_hot(_frame_of(tokens, frames, q.device), frames)[None, :, None]  # (1, N, 1, F)
    for term in range(terms):
        columns = slice(head_dim + term * frames, head_dim + (term + 1) * frames)
        q_aug[..., columns] = extra if term == 0 else extra - q_aug[..., head_dim:head_dim + frames]
        k_aug[..., columns] = onehot
    if not torch.stack(q_aug[..., head_dim:width].aminmax()).isfinite().all():
        raise ValueError(f"the bias / scale does not fit in {q.dtype} (largest |bias| {bias.abs().max().item():.3g},"
                         f" scale {scale:.3g}); use method='blocks' or bfloat16/float32 inputs")
    del extra  # the kernel's workspace may take its place
    return (attend or _sdpa)(q_aug, k_aug, v_aug, scale)[..., :head_dim]


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The default ``attend``: SDPA on ``(B, N, H, d)`` tensors."""
    return F_nn.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             scale=scale).transpose(1, 2)


def _check_matrix(matrix: torch.Tensor, frames: int) -> None:
    if matrix.shape != (frames, frames):
        raise ValueError(f"matrix must be ({frames}, {frames}) (query frame x key frame), got {tuple(matrix.shape)}")


def tar_bias(q: torch.Tensor, k: torch.Tensor, frames: int, matrix: torch.Tensor, strength: float, *,
             scale: float | None = None, query_chunk: int | None = None) -> Callable[[int, int], torch.Tensor]:
    """TAR's bias per query chunk: ``bias(start, stop)`` -> ``strength * m_i * A[f(i), :]``,
    ``(B, stop - start, H, F)`` for the queries ``start:stop``, with ``m_i`` from :func:`row_max_logits`
    over one key frame at a time. ``q, k``: ``(B, N, H, d)``; ``matrix`` ``A``: ``(F, F)``."""
    _check_matrix(matrix, frames)
    tokens = q.shape[1]
    rows = matrix.to(q.device, _compute_dtype(q.dtype))[_frame_of(tokens, frames, q.device)]  # (N, F)

    def bias(start: int, stop: int) -> torch.Tensor:
        row_max = row_max_logits(q[:, start:stop], k, scale, query_chunk=query_chunk, key_chunk=tokens // frames)
        return strength * row_max[..., None] * rows[None, start:stop, None]

    return bias


def tar_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, matrix: torch.Tensor,
                  strength: float, *, scale: float | None = None, method: TARMethod = "augment",
                  attend: Attend | None = None, query_chunk: int | None = None) -> torch.Tensor:
    """Spatio-temporal TAR: ``softmax_j(S_ij + strength * m_i * A[f(i), f(j)])`` applied to ``v``.

    ``q, k, v``: ``(B, N, H, d)`` frame-major, ``matrix`` ``A``: ``(F, F)`` (query frame x key frame),
    ``m_i`` the row's maximum logit (a negative ``m_i`` repels the frames where ``A`` is large, as the formula
    says). Both methods first take ``m_i`` (:func:`row_max_logits`, one key frame at a time), then
    ``"augment"`` makes one fused call (:func:`augmented_attention`, ``attend`` as there; holds a
    ``(B, N, H, F)`` bias and ``q', k', v'``), ``"blocks"`` merges key frames (:func:`frame_blocks`, ``attend``
    unused; holds one chunk). Returns ``(B, N, H, d)`` in the input dtype; both exact to float32 rounding of
    the logits (float64 inputs: float64).
    """
    _layout(q, k, v, frames)
    if method == "blocks":
        bias = tar_bias(q, k, frames, matrix, strength, scale=scale, query_chunk=query_chunk)
        return frame_blocks(q, k, v, frames, scale=scale, bias=bias, query_chunk=query_chunk).out
    if method != "augment":
        raise ValueError(f"unknown TAR method {method!r}; choose augment (one fused attention call) or blocks "
                         "(per key frame, also gives the frame map)")
    _check_matrix(matrix, frames)
    bias = tar_bias(q, k, frames, matrix, strength, scale=scale, query_chunk=query_chunk)(0, q.shape[1])
    return augmented_attention(q, k, v, frames, bias, scale=scale, attend=attend)


def replacement_weights(frames: int, mode: ReplacementMode, *, device: torch.device | str | None = None
                        ) -> torch.Tensor:
    """The ``(F, F)`` frame weights of a replacement: ``I_F`` (``"identity"``) or ``J_F / F`` (``"uniform"``)."""
    if mode == "identity":
        return torch.eye(frames, device=device)
    if mode == "uniform":
        return torch.full((frames, frames), 1 / frames, device=device)
    raise ValueError(f"unknown attention replacement {mode!r}; choose identity (each frame attends to itself) "
                     "or uniform (each frame attends to all frames equally)")


def replaced_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, mode: ReplacementMode, *,
                       scale: float | None = None, query_chunk: int | None = None) -> torch.Tensor:
    """Replacement ablation: ``out_i = sum_b W[f(i), b] softmax_{j in b}(S_i) v_j`` with ``W`` from
    :func:`replacement_weights`; ``(B, N, H, d)`` -> ``(B, N, H, d)``. Identity computes only the key frames
    of each chunk's query frames."""
    weights = replacement_weights(frames, mode, device=q.device)
    return frame_blocks(q, k, v, frames, scale=scale, weights=weights, query_chunk=query_chunk).out


def frame_attention_map(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames: int, *,
                        matrix: torch.Tensor | None = None, strength: float = 0.0,
                        mode: ReplacementMode | None = None, scale: float | None = None,
                        query_chunk: int | None = None) -> FrameAttention:
    """The output AND the ``(B, H, F, F)`` frame map of one layer in a single pass of :func:`frame_blocks`, for
    the active edit: plain attention (defaults), TAR (``matrix`` and ``strength``) or a replacement (``mode``)."""
    if mode is not None and matrix is not None:
        raise ValueError("give matrix (TAR) or mode (replacement), not both")
    if mode is not None:
        weights = replacement_weights(frames, mode, device=q.device)
        return frame_blocks(q, k, v, frames, scale=scale, weights=weights, query_chunk=query_chunk,
                            return_map=True)
    _layout(q, k, v, frames)
    bias = None if matrix is None else tar_bias(q, k, frames, matrix, strength, scale=scale,
                                                  query_chunk=query_chunk)
    return frame_blocks(q, k, v, frames, scale=scale, bias=bias, query_chunk=query_chunk, return_map=True)


@dataclass
class SpatioTemporalCall(LayerCall):
    """A spatio-temporal layer's call: ``query``, ``key``, ``value`` ``(B, N, H, d)`` frame-major, after the
    family's projections, norms and positional encoding; ``scale`` of the logits (None: ``d ** -0.5``)."""

    query: torch.Tensor | None = None
    key: torch.Tensor | None = None
    value: torch.Tensor | None = None
    scale: float | None = None

    def take(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The queries, keys and values, released from the call (so that the attention can free them)."""
        tensors = self.query, self.key, self.value
        self.query = self.key = self.value = None
        return tensors  # type: ignore[return-value]


class SpatioTemporalLayout(FrameLayout):
    """Full 3D self-attention over frame-major tokens (the video transformers): ``N = F * P`` tokens, a bias
    on the latent-frame distance between query and key.

    TAR (:class:`FrameBias`, row maxima only) runs as ONE fused attention call through the attention backend
    of the processor it replaced (:func:`tar_attention`, method ``"augment"``, via diffusers'
    ``dispatch_attention_fn``); the replacements (:class:`FrameWeights`) and the recording merge per key frame
    (:func:`frame_blocks`). A model family subclasses this and implements :meth:`inputs` (its projections,
    norms and positional encoding, and how many latent frames the call spans).
    """

    kind: ClassVar[str] = "spatiotemporal"
    max_modes: ClassVar[tuple[str, ...]] = ("row",)

    def check_max_mode(self, max_mode: str) -> None:
        if max_mode not in self.max_modes:
            raise ValueError(f"TAR on a transformer takes the maximum per query row; max_mode {max_mode!r} is for "
                             "UNets' temporal attention")

    def attend(self, call: LayerCall, rule: FrameBias | FrameWeights, backend: Any = None) -> torch.Tensor:
        """``(B, N, H, d)`` under ``rule``; ``backend``: diffusers' attention backend of the fused TAR call."""
        query, key, value = call.take()
        if isinstance(rule, FrameWeights):
            return frame_blocks(query, key, value, call.frames, scale=call.scale, weights=rule.weights).out
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
            return dispatch_attention_fn(q, k, v, scale=scale, backend=backend)

        return tar_attention(query, key, value, call.frames, rule.matrix, rule.strength, scale=call.scale,
                             attend=attend)

    def frame_mass(self, call: LayerCall, rule: FrameRule, branch: Branch,
                   max_chunk_bytes: int) -> tuple[torch.Tensor, int]:
        """Per key frame blocks of :func:`frame_blocks` (``max_chunk_bytes`` of logits per query chunk; the
        replacements: its own choice), never ``N x N``; not differentiable."""
        if torch.is_grad_enabled():
            raise ValueError("differentiable recording (the attention loss of --optimize-noise) is not available "
                             "on a transformer's spatio-temporal attention; record without gradients")
        rows = branch(torch.arange(call.query.shape[0], device=call.query.device))
        query, key, value = (x[rows] for x in call.take())
        batch, tokens, heads, _ = query.shape
        query_chunk = max(1, max_chunk_bytes // (4 * batch * heads * (tokens // call.frames)))
        if isinstance(rule, FrameWeights):
            mapped = frame_blocks(query, key, value, call.frames, scale=call.scale, weights=rule.weights,
                                  return_map=True)
        else:
            bias = None if rule is None else tar_bias(query, key, call.frames, rule.matrix, rule.strength,
                                                      scale=call.scale, query_chunk=query_chunk)
            mapped = frame_blocks(query, key, value, call.frames, scale=call.scale, bias=bias,
                                  query_chunk=query_chunk, return_map=True)
        return mapped.map.double().sum(dim=(0, 1)), batch * heads
