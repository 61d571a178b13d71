"""One mechanism for both layer kinds: edits (TAR, replacements, a user's own) on the temporal and the
spatio-temporal layout, against float64 dense references, and the two layouts against each other."""

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from vstar.analysis import ReplacementProcessor, record_temporal_attention
from vstar.frame_attention.layout import FrameBias, FrameWeights
from vstar.frame_attention.processor import FrameAttentionProcessor
from vstar.frame_attention.spatiotemporal import SpatioTemporalCall, SpatioTemporalLayout
from vstar.frame_attention.temporal import TemporalLayout
from vstar.tar import TARProcessor, regularization_matrix
from vstar.temporal_attention import TemporalAttentionLayer

HEADS, HEAD_DIM = 2, 4


class TokenLayout(SpatioTemporalLayout):
    """A diffusers ``Attention`` over ``(B, N, C)`` tokens read as ``frames`` frame-major frames (no RoPE): the
    smallest family a user could add."""

    def __init__(self, frames: int):
        self.frames = frames

    def inputs(self, attn, hidden_states, args, kwargs):
        q, k, v = (m(hidden_states).unflatten(2, (attn.heads, -1)) for m in (attn.to_q, attn.to_k, attn.to_v))

        def finish(out):
            return attn.to_out[1](attn.to_out[0](out.flatten(2, 3)))

        return SpatioTemporalCall(self.frames, q.device, q.dtype, finish, q, k, v)


class CausalWindow(FrameAttentionProcessor):
    """A user's own edit in one class: each frame attends to itself and the previous frame, equally."""

    edit_name = "causal window"

    def rule(self, frames, device, dtype):
        weights = torch.eye(frames, device=device, dtype=dtype) + torch.eye(frames, device=device, dtype=dtype).roll(-1, 1).tril()
        return FrameWeights(weights)


def attention(seed=0):
    torch.manual_seed(seed)
    return Attention(query_dim=HEADS * HEAD_DIM, heads=HEADS, dim_head=HEAD_DIM).double().eval()


def heads(attn, x):
    """``(B, N, C)`` -> q, k, v ``(B, H, N, d)`` float64."""
    return [m(x).unflatten(2, (attn.heads, -1)).transpose(1, 2) for m in (attn.to_q, attn.to_k, attn.to_v)]


def dense(attn, x, frames, *, matrix=None, strength=1.0, weights=None):
    """The float64 dense reference over all ``N`` frame-major tokens: output ``(B, N, C)`` and the head-averaged
    frame map ``(F, F)`` (each query frame's mass on each key frame, averaged over its tokens and the batch)."""
    q, k, v = heads(attn, x)
    per_frame = q.shape[2] // frames
    frame_of = torch.arange(frames).repeat_interleave(per_frame)
    scores = q @ k.transpose(-1, -2) * attn.scale  # (B, H, N, N)
    if weights is not None:
        probs = torch.zeros_like(scores)
        for b in range(frames):
            keys = frame_of == b
            probs[..., keys] = scores[..., keys].softmax(-1) * (weights / weights.sum(-1, keepdim=True))[frame_of, b][:, None]
    else:
        if matrix is not None:
            scores = scores + strength * scores.amax(-1, keepdim=True) * matrix[frame_of][:, frame_of]
        probs = scores.softmax(-1)
    out = attn.to_out[0]((probs @ v).transpose(1, 2).flatten(2))
    mass = torch.stack([probs[..., frame_of == b].sum(-1) for b in range(frames)], -1)  # (B, H, N, F)
    frame_map = torch.stack([mass[:, :, frame_of == a].mean(2) for a in range(frames)], 2).mean((0, 1))
    return out, frame_map


def edits(frames):
    band = regularization_matrix(frames, 1.5, dtype=torch.float64)
    return {
        "tar": (lambda layout: TARProcessor(1.5, strength=0.8, layout=layout), {"matrix": band, "strength": 0.8}),
        "identity": (lambda layout: ReplacementProcessor("identity", layout=layout), {"weights": torch.eye(frames, dtype=torch.float64)}),
        "uniform": (lambda layout: ReplacementProcessor("uniform", layout=layout), {"weights": torch.ones(frames, frames, dtype=torch.float64)}),
        "causal": (lambda layout: CausalWindow(layout), {"weights": CausalWindow().rule(frames, "cpu", torch.float64).weights}),
    }


@dataclass(frozen=True)
class LayerWithLayout(TemporalAttentionLayer):
    given: Any = None

    @property
    def frame_layout(self):
        return self.given


class OneLayer(nn.Module):
    """A model of one frame-structured layer in ``layout``, as a backbone presents its layers."""

    def __init__(self, attn, layout):
        super().__init__()
        self.attn, self.given = attn, layout

    def forward(self, x):
        return self.attn(x)

    def temporal_attention_layers(self):
        return [LayerWithLayout("attn", 0, self.attn, self.given)]


def record(attn, x, processor, layout):
    """The map the recorder reads with ``processor`` installed, and the layer's output while recording."""
    attn.set_processor(processor)
    model = OneLayer(attn, layout)
    with record_temporal_attention(model) as recorder, torch.no_grad():
        recorder.max_chunk_bytes = 300  # several chunks
        out = model(x)
    assert attn.processor is processor
    return recorder.maps["attn"].double(), out


@pytest.mark.parametrize("edit", ["tar", "identity", "uniform", "causal"])
@pytest.mark.parametrize("frames,per_frame", [(5, 3), (4, 1), (1, 6)])
def test_every_edit_on_the_spatiotemporal_layout_equals_the_dense_reference(edit, frames, per_frame):
    attn = attention()
    x = torch.randn(2, frames * per_frame, HEADS * HEAD_DIM, dtype=torch.float64) * 3
    make, reference = edits(frames)[edit]
    want_out, want_map = dense(attn, x, frames, **reference)
    layout = TokenLayout(frames)
    attn.set_processor(make(layout))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), want_out, atol=1e-10, rtol=1e-10)
    got_map, recorded_out = record(attn, x, make(layout), layout)
    torch.testing.assert_close(got_map, want_map, atol=1e-6, rtol=1e-6)  # maps are kept in float32
    torch.testing.assert_close(recorded_out, want_out, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("edit", ["tar", "identity", "uniform", "causal"])
def test_every_edit_on_the_temporal_layout_equals_the_dense_reference(edit):
    """A temporal layer's sequence of F frames is the spatio-temporal case of one token per frame."""
    frames = 6
    attn = attention(1)
    x = torch.randn(7, frames, HEADS * HEAD_DIM, dtype=torch.float64) * 3
    make, reference = edits(frames)[edit]
    want_out, want_map = dense(attn, x, frames, **reference)
    attn.set_processor(make(TemporalLayout()))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), want_out, atol=1e-10, rtol=1e-10)
    got_map, _ = record(attn, x, make(TemporalLayout()), TemporalLayout())
    torch.testing.assert_close(got_map, want_map, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("edit", ["tar", "identity", "uniform", "causal", "stock"])
def test_the_two_layouts_agree_with_one_token_per_frame(edit):
    """The same processor class on the same module and input: temporal layout vs spatio-temporal layout."""
    frames = 8
    attn = attention(2)
    x = torch.randn(5, frames, HEADS * HEAD_DIM, dtype=torch.float64)
    make = edits(frames)[edit][0] if edit != "stock" else None
    outputs, maps = [], []
    for layout in (TemporalLayout(), TokenLayout(frames)):
        processor = make(layout) if make else attn.processor
        attn.set_processor(processor)
        with torch.no_grad():
            outputs.append(attn(x))
        maps.append(record(attn, x, processor, layout)[0])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(maps[0], maps[1], atol=1e-6, rtol=1e-6)


def test_an_inactive_edit_is_recorded_as_stock_attention():
    frames = 4
    attn = attention(3)
    x = torch.randn(3, frames, HEADS * HEAD_DIM, dtype=torch.float64)
    _, stock_map = dense(attn, x, frames)
    off = TARProcessor(1.0, strength=0.0, fallback=attn.processor)
    assert off.current_rule(frames, "cpu", torch.float64) is None
    torch.testing.assert_close(record(attn, x, off, TemporalLayout())[0], stock_map, atol=1e-6, rtol=1e-6)


def test_the_rules_say_what_each_edit_does():
    tar = TARProcessor(2.0, strength=0.5).rule(5, "cpu", torch.float64)
    assert isinstance(tar, FrameBias) and tar.strength == 0.5 and tar.max_mode == "row"
    torch.testing.assert_close(tar.matrix, regularization_matrix(5, 2.0, dtype=torch.float64))
    bias, shifted, spread = tar.bias_terms()
    torch.testing.assert_close(bias, 0.5 * tar.matrix)
    assert spread == pytest.approx(0.5 * (1 - tar.matrix.min().item()))
    torch.testing.assert_close(shifted, bias - (1 + bias.max()))
    identity = ReplacementProcessor("identity").rule(3, "cpu", torch.float32)
    assert isinstance(identity, FrameWeights) and torch.equal(identity.weights, torch.eye(3))


def test_a_transformer_layout_takes_row_maxima_only():
    with pytest.raises(ValueError, match="maximum per query row"):
        TARProcessor(1.0, max_mode="head", layout=TokenLayout(4))
    with pytest.raises(ValueError, match="not both"):
        TARProcessor(1.0, max_chunk_bytes=100, layout=TemporalLayout())


def test_differentiable_recording_on_a_spatiotemporal_layer_says_it_is_not_available():
    attn = attention(4)
    x = torch.randn(1, 6, HEADS * HEAD_DIM, dtype=torch.float64)
    model = OneLayer(attn, TokenLayout(3))
    with record_temporal_attention(model, differentiable=True), pytest.raises(ValueError, match="not available"):
        model(x)
