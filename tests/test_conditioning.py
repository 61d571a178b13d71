"""Per-frame conditioning: keyframes, interpolation modes, CFG ordering and feeding a UNet."""

import pytest
import torch
from diffusers.models.attention_processor import Attention
from hypothesis import given, settings
from hypothesis import strategies as st

from vstar.conditioning import (
    PerFrameContextProcessor,
    cfg_context,
    interpolate_embeddings,
    keyframe_indices,
    per_frame_context,
    spatial_cross_attentions,
)


@settings(max_examples=200, deadline=None)
@given(num_states=st.integers(1, 12), extra=st.integers(0, 100_000))
def test_keyframes_are_evenly_spaced_from_first_to_last(num_states, extra):
    num_frames = num_states + extra
    kf = keyframe_indices(num_states, num_frames)
    assert len(kf) == num_states and kf[0] == 0
    if num_states > 1:
        assert kf[-1] == num_frames - 1
        gaps = [b - a for a, b in zip(kf, kf[1:], strict=False)]
        assert min(gaps) >= 1 and max(gaps) - min(gaps) <= 1
        ideal = [k * (num_frames - 1) / (num_states - 1) for k in range(num_states)]
        assert all(abs(a - b) < 1 for a, b in zip(kf, ideal, strict=True))


def test_keyframe_errors():
    with pytest.raises(ValueError, match="num_states must be >= 1"):
        keyframe_indices(0, 16)
    with pytest.raises(ValueError, match="cannot place 5 states on 4 frames"):
        keyframe_indices(5, 4)


def slow_linear(embeds, num_frames):
    kf = keyframe_indices(embeds.shape[0], num_frames)
    out = []
    for f in range(num_frames):
        k = max(i for i, start in enumerate(kf) if start <= f)
        if k == len(kf) - 1:
            out.append(embeds[k])
            continue
        w = (f - kf[k]) / (kf[k + 1] - kf[k])
        out.append((1 - w) * embeds[k] + w * embeds[k + 1])
    return torch.stack(out)


@pytest.mark.parametrize("num_states,num_frames", [(2, 16), (3, 48), (4, 31), (5, 130), (2, 2)])
def test_linear_interpolation_matches_reference(num_states, num_frames):
    embeds = torch.randn(num_states, 7, 5)
    out = interpolate_embeddings(embeds, num_frames)
    assert out.shape == (num_frames, 7, 5)
    torch.testing.assert_close(out, slow_linear(embeds, num_frames))
    for state, f in enumerate(keyframe_indices(num_states, num_frames)):
        assert torch.equal(out[f], embeds[state])


def test_step_switches_states_halfway_between_keyframes():
    embeds = torch.arange(3.0)[:, None, None].expand(3, 2, 2)
    out = interpolate_embeddings(embeds, 9, mode="step")  # keyframes 0, 4, 8
    assert out[:, 0, 0].tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    out = interpolate_embeddings(embeds, 16, mode="step")  # keyframes 0, 7, 15
    assert out[:, 0, 0].tolist() == [0] * 4 + [1] * 7 + [2] * 5
    out = interpolate_embeddings(embeds[:2], 6, keyframes=[0, 5], mode="step")
    assert out[:, 0, 0].tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("num_frames", [5, 16, 24, 63])
def test_step_takes_the_state_linear_blending_weighs_most(num_frames):
    embeds = torch.randn(4, 3, 2)
    step = interpolate_embeddings(embeds, num_frames, mode="step")
    keyframes = torch.tensor(keyframe_indices(4, num_frames), dtype=torch.float32)
    for f in range(num_frames):
        state = int(torch.searchsorted(keyframes, torch.tensor(float(f)), right=True).clamp(max=3)) - 1
        if f == num_frames - 1:
            nearest = 3
        else:
            w = (f - keyframes[state]) / (keyframes[state + 1] - keyframes[state])
            nearest = state if w < 0.5 else state + 1
        assert torch.equal(step[f], embeds[nearest]), f


def test_slerp_keeps_the_norm_between_unit_vectors():
    a = torch.nn.functional.normalize(torch.randn(1, 4, 16), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(1, 4, 16), dim=-1)
    out = interpolate_embeddings(torch.cat([a, b]), 11, mode="slerp")
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(11, 4))
    torch.testing.assert_close(out[0], a[0]) and torch.testing.assert_close(out[-1], b[0])
    same = interpolate_embeddings(torch.cat([a, a]), 5, mode="slerp")  # parallel: no division by zero
    torch.testing.assert_close(same, a.expand(5, -1, -1))


def test_single_state_and_custom_keyframes():
    embeds = torch.randn(1, 3, 2)
    assert torch.equal(interpolate_embeddings(embeds, 6), embeds.expand(6, -1, -1))
    two = torch.randn(2, 3, 2)
    out = interpolate_embeddings(two, 10, keyframes=[0, 9])
    torch.testing.assert_close(out[3], two[0] * 6 / 9 + two[1] * 3 / 9)


@pytest.mark.parametrize("kwargs,message", [
    ({"embeds": torch.randn(2, 3)}, r"shape \(K, S, D\)"),
    ({"mode": "cubic"}, "unknown interpolation mode"),
    ({"keyframes": [0, 5]}, "give one keyframe per state"),
    ({"keyframes": [0, 4, 4]}, "increase strictly"),
    ({"keyframes": [1, 4, 7]}, "increase strictly"),
])
def test_interpolation_errors(kwargs, message):
    args = {"embeds": torch.randn(3, 2, 2), "num_frames": 8} | kwargs
    with pytest.raises(ValueError, match=message):
        interpolate_embeddings(**args)


def test_cfg_context_order_is_negative_then_positive_video_major():
    cond = torch.arange(3.0)[:, None, None] + 10  # frames 10, 11, 12
    uncond = torch.zeros(3, 1, 1) - 1
    ctx = cfg_context(cond, uncond, batch_size=2)
    assert ctx[:, 0, 0].tolist() == [-1] * 6 + [10, 11, 12, 10, 11, 12]
    assert torch.equal(cfg_context(cond, None), cond)


def test_per_frame_context_with_equal_frames_matches_stock(unet3d):
    torch.manual_seed(3)
    frames = 5
    x = torch.randn(2, 4, frames, 16, 16)
    shared = torch.randn(2, 6, 8)
    per_frame = shared.repeat_interleave(frames, dim=0)  # (b f) order
    before = {n: m.processor for n, m in unet3d.named_modules() if isinstance(m, Attention)}
    with torch.no_grad():
        stock = unet3d(x, 400, encoder_hidden_states=shared).sample
        with per_frame_context(unet3d, per_frame):
            assert all(isinstance(m.processor, PerFrameContextProcessor)
                       for m in spatial_cross_attentions(unet3d).values())
            wired = unet3d(x, 400, encoder_hidden_states=torch.zeros(2, 6, 8)).sample
    torch.testing.assert_close(wired, stock, atol=1e-6, rtol=0)
    assert {n: m.processor for n, m in unet3d.named_modules() if isinstance(m, Attention)} == before


def test_per_frame_context_reaches_the_right_frame(unet3d):
    """Spatial layers see frame f's text; without temporal mixing only frame f would change."""
    torch.manual_seed(4)
    frames = 4
    x = torch.randn(1, 4, frames, 16, 16)
    ctx = torch.randn(frames, 6, 8)
    changed = ctx.clone()
    changed[2] += 1.0
    for module in unet3d.modules():  # cut the temporal paths so that frames are independent
        if type(module).__name__ in ("TransformerTemporalModel", "TemporalConvLayer"):
            module.forward = lambda hidden_states, *a, **k: (hidden_states,) if "return_dict" in k else hidden_states
    with torch.no_grad(), per_frame_context(unet3d, ctx):
        a = unet3d(x, 400, encoder_hidden_states=ctx[:1]).sample
    with torch.no_grad(), per_frame_context(unet3d, changed):
        b = unet3d(x, 400, encoder_hidden_states=ctx[:1]).sample
    diff = (a - b).abs().amax(dim=(0, 1, 3, 4))
    assert diff[2] > 1e-4 and torch.all(diff[[0, 1, 3]] == 0)


def test_per_frame_context_rejects_wrong_row_count(unet3d):
    with torch.no_grad(), per_frame_context(unet3d, torch.randn(3, 6, 8)):
        with pytest.raises(ValueError, match="one embedding per frame"):
            unet3d(torch.randn(1, 4, 4, 16, 16), 1, encoder_hidden_states=torch.randn(1, 6, 8))
    with pytest.raises(ValueError, match="no cross-attention"):
        with per_frame_context(torch.nn.Linear(2, 2), torch.randn(1, 1, 1)):
            pass
