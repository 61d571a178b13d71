"""Spatio-temporal frame attention (vstar.frame_attention.spatiotemporal) against a dense float64 reference."""

import math

import pytest
import torch
import torch.nn.functional as F_nn

from vstar.frame_attention import (
    augmented_attention,
    frame_attention_map,
    frame_blocks,
    replaced_attention,
    replacement_weights,
    row_max_logits,
    tar_attention,
)
from vstar.resources import peak_allocated
from vstar.tar import regularization_matrix

B, FRAMES, P, H, D = 2, 5, 6, 2, 8
METHODS = ("augment", "blocks")
# float32 inputs: logits and merging in float32 against float64 on the same values
TOL32 = dict(rtol=1e-5, atol=2e-5)
TOL64 = dict(rtol=1e-10, atol=1e-10)


def dense_reference(q, k, v, frames, *, scale=None, matrix=None, strength=0.0, mode=None):
    """The obvious float64 computation with an N x N probability matrix: ``(out (B, N, H, d), map (B, H, F, F))``.

    TAR: ``softmax_j(S_ij + strength * m_i * A[f(i), f(j)])``; identity: softmax over the keys of ``f(i)``;
    uniform: ``(1 / F) * softmax within each key frame``. ``map[b, h, a, c]``: mass of the queries of frame
    ``a`` on the keys of frame ``c``, averaged over those queries.
    """
    q, k, v = (x.double() for x in (q, k, v))
    tokens, head_dim = q.shape[1], q.shape[-1]
    scale = head_dim**-0.5 if scale is None else scale
    frame = torch.arange(tokens) // (tokens // frames)  # (N,)
    same = frame[:, None] == frame[None, :]  # (N, N)
    logits = torch.einsum("bihd,bjhd->bhij", q, k) * scale  # (B, H, N, N)
    if mode == "identity":
        probs = logits.masked_fill(~same, -math.inf).softmax(-1)
    elif mode == "uniform":
        probs = torch.zeros_like(logits)
        for f in range(frames):
            keys = frame == f
            probs[..., keys] = logits[..., keys].softmax(-1) / frames
    else:
        if matrix is not None:
            row_max = logits.amax(-1, keepdim=True)
            logits = logits + strength * row_max * matrix.double()[frame][:, frame]
        probs = logits.softmax(-1)
    out = torch.einsum("bhij,bjhd->bihd", probs, v)
    onehot = F_nn.one_hot(frame, frames).double()  # (N, F)
    frame_map = onehot.T @ probs @ onehot / (tokens // frames)  # (B, H, F, F)
    return out, frame_map


def qkv(batch=B, frames=FRAMES, per_frame=P, heads=H, head_dim=D, *, dtype=torch.float32, seed=0, spread=1.0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, frames * per_frame, heads, head_dim, generator=generator, dtype=torch.float64)
                 .mul(spread).to(dtype) for _ in range(3))


def band(frames=FRAMES, sigma=1.0):
    return regularization_matrix(frames, sigma, dtype=torch.float64)


def close(actual, expected, **tol):
    torch.testing.assert_close(actual.double(), expected.double(), **(tol or TOL32))


def test_row_max_logits_equals_dense():
    q, k, _ = qkv()
    expected = (torch.einsum("bihd,bjhd->bhij", q.double(), k.double()) * 0.3).amax(-1).transpose(1, 2)
    for query_chunk, key_chunk in [(None, None), (1, None), (7, 6), (30, 4)]:
        row_max = row_max_logits(q, k, 0.3, query_chunk=query_chunk, key_chunk=key_chunk)
        assert row_max.shape == (B, FRAMES * P, H) and row_max.dtype == torch.float32
        close(row_max, expected)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("strength", [0.0, 1.0, 3.0])
def test_tar_equals_dense(method, sigma, strength):
    q, k, v = qkv(spread=2.0)
    expected, _ = dense_reference(q, k, v, FRAMES, matrix=band(sigma=sigma), strength=strength)
    close(tar_attention(q, k, v, FRAMES, band(sigma=sigma), strength, method=method, query_chunk=7), expected)
    q, k, v = (x.double() for x in (q, k, v))  # float64 inputs are computed in float64: exact to rounding
    close(tar_attention(q, k, v, FRAMES, band(sigma=sigma), strength, method=method), expected, **TOL64)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("frames, per_frame", [(1, 6), (5, 1), (1, 1)])
@pytest.mark.parametrize("query_chunk", [None, 1, 4, 100])
def test_tar_edge_layouts(method, frames, per_frame, query_chunk):
    q, k, v = qkv(frames=frames, per_frame=per_frame)
    expected, _ = dense_reference(q, k, v, frames, matrix=band(frames), strength=2.0)
    close(tar_attention(q, k, v, frames, band(frames), 2.0, method=method, query_chunk=query_chunk), expected)


@pytest.mark.parametrize("method", METHODS)
def test_negative_row_maxima_flip_the_bias(method):
    """All logits negative (q opposite to a shared key direction): the bias repels near frames, as written."""
    q, k, v = qkv()
    q[..., 0], k[..., 0] = -4.0, 4.0
    assert (row_max_logits(q, k) < 0).all()
    expected, expected_map = dense_reference(q, k, v, FRAMES, matrix=band(), strength=1.0)
    close(tar_attention(q, k, v, FRAMES, band(), 1.0, method=method, query_chunk=11), expected)
    _, plain_map = dense_reference(q, k, v, FRAMES)
    diagonal = torch.eye(FRAMES, dtype=torch.bool)
    assert expected_map[..., diagonal].mean() < plain_map[..., diagonal].mean()  # repelled from its own frame


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_large_logits_do_not_overflow(method, sign):
    """Logits ~ +-1e3 and a bias ~ 3e3 (exp overflows float32 at 89): the shifts keep everything finite."""
    q, k, v = qkv(spread=10.0)
    q[..., 0], k[..., 0] = sign * 60.0, 60.0  # logits sign * 1273 +- ~100 * randn
    row_max = row_max_logits(q, k)
    assert (sign * row_max).min() > 500
    expected, _ = dense_reference(q, k, v, FRAMES, matrix=band(), strength=3.0)
    out = tar_attention(q, k, v, FRAMES, band(), 3.0, method=method, query_chunk=7)
    assert out.isfinite().all()
    # a float32 logit of 1e3 carries ~6e-5 of rounding, and exp turns it into that relative error in weights
    close(out, expected, rtol=1e-3, atol=1e-2)
    close(tar_attention(*(x.double() for x in (q, k, v)), FRAMES, band(), 3.0, method=method), expected, **TOL64)


@pytest.mark.parametrize("method", METHODS)
def test_custom_matrices(method):
    """A reference video's similarity may be anything: negative entries, entries above 1, asymmetric."""
    q, k, v = qkv(spread=1.5)
    matrix = 2 * torch.randn(FRAMES, FRAMES, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert (matrix < 0).any() and (matrix > 1).any()
    for strength in (1.0, 3.0):
        expected, _ = dense_reference(q, k, v, FRAMES, matrix=matrix, strength=strength)
        close(tar_attention(q, k, v, FRAMES, matrix.float(), strength, method=method, query_chunk=9), expected)


@pytest.mark.parametrize("method", METHODS)
def test_strength_zero_is_plain_sdpa(method):
    q, k, v = qkv()
    sdpa = F_nn.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    close(tar_attention(q, k, v, FRAMES, band(), 0.0, method=method), sdpa, rtol=1e-6, atol=1e-6)


def test_explicit_scale():
    q, k, v = qkv()
    expected, _ = dense_reference(q, k, v, FRAMES, scale=0.7, matrix=band(), strength=1.0)
    for method in METHODS:
        close(tar_attention(q, k, v, FRAMES, band(), 1.0, scale=0.7, method=method), expected)


def test_augment_makes_one_fused_call_with_padded_heads():
    """The injected ``attend`` (e.g. diffusers' dispatch_attention_fn) gets one call, (B, N, H, d') with
    d' a multiple of 8, and the original scale."""
    q, k, v = qkv()
    calls = []

    def attend(q_aug, k_aug, v_aug, scale):
        calls.append((q_aug.shape, k_aug.shape, v_aug.shape, scale))
        return F_nn.scaled_dot_product_attention(q_aug.transpose(1, 2), k_aug.transpose(1, 2), v_aug.transpose(1, 2),
                                                 scale=scale).transpose(1, 2)

    out = tar_attention(q, k, v, FRAMES, band(), 1.0, attend=attend)
    (shape, k_shape, v_shape, scale), = calls
    assert shape == k_shape == v_shape == (B, FRAMES * P, H, 16) and scale == D**-0.5  # 8 + 5 -> 16
    close(out, dense_reference(q, k, v, FRAMES, matrix=band(), strength=1.0)[0])


def test_augmented_attention_takes_any_frame_bias():
    """Formulation (a) with an arbitrary per-(query, key-frame) bias equals the blocks with the same bias."""
    q, k, v = qkv()
    bias = torch.randn(B, FRAMES * P, H, FRAMES, generator=torch.Generator().manual_seed(2))
    frame = torch.arange(FRAMES * P) // P
    logits = torch.einsum("bihd,bjhd->bhij", q.double(), k.double()) * D**-0.5
    logits = logits + bias.double().permute(0, 2, 1, 3)[..., frame]  # (B, H, N, N)
    expected = torch.einsum("bhij,bjhd->bihd", logits.softmax(-1), v.double())
    close(augmented_attention(q, k, v, FRAMES, bias), expected)
    close(frame_blocks(q, k, v, FRAMES, bias=bias, query_chunk=4).out, expected)
    close(frame_blocks(q, k, v, FRAMES, bias=lambda lo, hi: bias[:, lo:hi], query_chunk=13).out, expected)


@pytest.mark.parametrize("mode", ["identity", "uniform"])
@pytest.mark.parametrize("query_chunk", [None, 1, 4, 7, 100])
def test_replacements_equal_their_definitions(mode, query_chunk):
    q, k, v = qkv(spread=2.0)
    expected, _ = dense_reference(q, k, v, FRAMES, mode=mode)
    close(replaced_attention(q, k, v, FRAMES, mode, query_chunk=query_chunk), expected)


@pytest.mark.parametrize("frames, per_frame", [(1, 6), (5, 1)])
@pytest.mark.parametrize("mode", ["identity", "uniform"])
def test_replacement_edge_layouts(frames, per_frame, mode):
    q, k, v = qkv(frames=frames, per_frame=per_frame)
    close(replaced_attention(q, k, v, frames, mode), dense_reference(q, k, v, frames, mode=mode)[0])


EDITS = {
    "none": ({}, {}),
    "tar": (dict(matrix=band(sigma=0.5), strength=2.0), dict(matrix=band(sigma=0.5).float(), strength=2.0)),
    "tar-negative": (dict(matrix=-band(), strength=1.0), dict(matrix=-band().float(), strength=1.0)),
    "identity": (dict(mode="identity"), dict(mode="identity")),
    "uniform": (dict(mode="uniform"), dict(mode="uniform")),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("query_chunk", [None, 4, 7])
def test_recording_map_equals_dense_masses(edit, query_chunk):
    reference_args, args = EDITS[edit]
    q, k, v = qkv(spread=2.0)
    expected_out, expected_map = dense_reference(q, k, v, FRAMES, **reference_args)
    out, frame_map = frame_attention_map(q, k, v, FRAMES, query_chunk=query_chunk, **args)
    close(out, expected_out)
    assert frame_map.shape == (B, H, FRAMES, FRAMES) and frame_map.dtype == torch.float32
    close(frame_map.sum(-1), torch.ones(B, H, FRAMES), rtol=0, atol=1e-6)
    close(frame_map, expected_map)
    close(frame_map.mean(1), expected_map.mean(1))  # the recording's average over heads


def test_recorded_replacement_maps_are_the_weights():
    q, k, v = qkv()
    for mode in ("identity", "uniform"):
        frame_map = frame_attention_map(q, k, v, FRAMES, mode=mode).map
        close(frame_map, replacement_weights(FRAMES, mode).expand(B, H, -1, -1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype, atol", [(torch.bfloat16, 2e-2), (torch.float16, 3e-3)])
@pytest.mark.parametrize("path", ["augment", "blocks", "identity", "uniform"])
def test_half_precision_round_trip(dtype, atol, path):
    """Half-precision inputs come back in their dtype, equal to the float64 reference on the same (rounded) values
    up to the output's rounding (bf16: 2^-9, fp16: 2^-12 of values ~ 3); the augmented bias travels as two terms,
    so augment is as accurate as blocks."""
    q, k, v = qkv(spread=2.0, dtype=dtype)
    if path in METHODS:
        out = tar_attention(q, k, v, FRAMES, band(), 3.0, method=path)
        expected, _ = dense_reference(q, k, v, FRAMES, matrix=band(), strength=3.0)
    else:
        out = replaced_attention(q, k, v, FRAMES, path)
        expected, _ = dense_reference(q, k, v, FRAMES, mode=path)
    assert out.dtype == dtype
    close(out, expected, rtol=0, atol=atol)
    close(out.float(), expected.to(dtype).float(), rtol=0, atol=2 * atol)  # vs the float32 result, both rounded


def test_bad_inputs_are_refused():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="frames must be >= 1 and divide the 30 tokens"):
        tar_attention(q, k, v, 4, band(4), 1.0)
    with pytest.raises(ValueError, match="share one shape"):
        tar_attention(q, k[:, :6], v, FRAMES, band(), 1.0)
    with pytest.raises(ValueError, match="share one floating dtype"):
        tar_attention(q, k.double(), v, FRAMES, band(), 1.0)
    with pytest.raises(ValueError, match=r"matrix must be \(5, 5\)"):
        tar_attention(q, k, v, FRAMES, band(4), 1.0)
    with pytest.raises(ValueError, match="unknown TAR method 'dense'"):
        tar_attention(q, k, v, FRAMES, band(), 1.0, method="dense")
    with pytest.raises(ValueError, match="unknown attention replacement 'mean'"):
        replaced_attention(q, k, v, FRAMES, "mean")
    with pytest.raises(ValueError, match="query_chunk must be >= 1"):
        replaced_attention(q, k, v, FRAMES, "uniform", query_chunk=0)
    with pytest.raises(ValueError, match="not both"):
        frame_blocks(q, k, v, FRAMES, bias=torch.zeros(B, 30, H, FRAMES), weights=torch.eye(FRAMES))
    with pytest.raises(ValueError, match="positive entry in each row"):
        frame_blocks(q, k, v, FRAMES, weights=torch.zeros(FRAMES, FRAMES))
    with pytest.raises(ValueError, match="not both"):
        frame_attention_map(q, k, v, FRAMES, matrix=band(), mode="identity")
    with pytest.raises(ValueError, match=r"bias must be \(B, N, H, F\)"):
        augmented_attention(q, k, v, FRAMES, torch.zeros(B, 30, H, 4))
    with pytest.raises(ValueError, match="does not fit in torch.float16"):
        augmented_attention(*(x.half() for x in (q, k, v)), FRAMES, torch.full((B, 30, H, FRAMES), 6e4))


MID = dict(per_frame=64, heads=4, head_dim=32, batch=1)  # N = 21 * 64 = 1344 at 21 frames


def tar_peaks(frames, query_chunk=64):
    q, k, v = qkv(frames=frames, **MID)
    matrix = regularization_matrix(frames, 1.0)
    return {method: peak_allocated(lambda m=method: tar_attention(q, k, v, frames, matrix, 1.0, method=m,
                                                                  query_chunk=query_chunk))
            for method in METHODS} | {
        "map": peak_allocated(lambda: frame_attention_map(q, k, v, frames, matrix=matrix, strength=1.0,
                                                          query_chunk=query_chunk)),
        "identity": peak_allocated(lambda: replaced_attention(q, k, v, frames, "identity", query_chunk=query_chunk)),
    }


def test_memory_is_bounded_independently_of_n_squared():
    """Mid-size layer (F=21, P=64, H=4, d=32): the per-key-frame paths hold one chunk's (chunk, P) logits and
    the inputs' size, far below one N x N float32 bias per head, and grow linearly when F doubles; augment
    holds q', k', v' and the fused kernel's output (~4 x B N H d' values, d' = d + F rounded up to 8)."""
    peaks, doubled = tar_peaks(21), tar_peaks(42)
    for frames, measured in ((21, peaks), (42, doubled)):
        tokens = frames * MID["per_frame"]
        dense_bias = tokens * tokens * 4
        for path in ("blocks", "map", "identity"):
            assert measured[path] < 0.25 * dense_bias, (frames, path, measured[path], dense_bias)
        augmented = tokens * MID["heads"] * (MID["head_dim"] + frames + -(MID["head_dim"] + frames) % 8) * 4
        assert measured["augment"] < 6 * augmented, (frames, measured["augment"], augmented)
    for path in ("blocks", "map", "identity"):
        assert doubled[path] < 2.5 * peaks[path], (path, peaks[path], doubled[path])  # linear (x2), not x4
