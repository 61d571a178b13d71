"""TAR: the band matrix, the processor against a slow reference, configs and presets, and the wiring."""

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from hypothesis import given, settings
from hypothesis import strategies as st

from vstar.frame_attention.temporal import MIN_CHUNK_BYTES, TemporalLayout
from vstar.resources import peak_allocated
from vstar.tar import (
    INIT_LEVEL,
    TARConfig,
    TARProcessor,
    TARState,
    apply_tar,
    regularization_matrix,
    remove_tar,
    temporal_attention_layers,
)


def slow_band(num_frames, sigma):
    return [[math.exp(-0.5 * ((j - i) / sigma) ** 2) for j in range(num_frames)] for i in range(num_frames)]


def slow_tar_attention(attn, x, sigma, strength, mode):
    """Equation 3 written out head by head and row by row in float64."""
    x = x.double()
    batch, frames, channels = x.shape
    heads, d = attn.heads, channels // attn.heads
    q, k, v = (m.double()(x) for m in (attn.to_q, attn.to_k, attn.to_v))
    for m in (attn.to_q, attn.to_k, attn.to_v):
        m.float()
    band = torch.tensor(slow_band(frames, sigma), dtype=torch.float64)
    out = torch.zeros(batch, frames, heads * d, dtype=torch.float64)
    for b in range(batch):
        scores = [q[b, :, h * d:(h + 1) * d] @ k[b, :, h * d:(h + 1) * d].T * d**-0.5 for h in range(heads)]
        global_max = max(s.max() for s in scores)
        for h in range(heads):
            for i in range(frames):
                peak = {"row": scores[h][i].max(), "head": scores[h].max(), "global": global_max}[mode]
                probs = torch.softmax(scores[h][i] + strength * peak * band[i], dim=0)
                out[b, i, h * d:(h + 1) * d] = probs @ v[b, :, h * d:(h + 1) * d]
    return attn.to_out[0].double()(out).float()


def make_attention(channels=16, heads=2, seed=0):
    torch.manual_seed(seed)
    return Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=False).eval()


# --- the band -------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(num_frames=st.integers(1, 70), sigma=st.floats(0.05, 100))
def test_regularization_matrix_is_the_gaussian_toeplitz_band(num_frames, sigma):
    got = regularization_matrix(num_frames, sigma, dtype=torch.float64)
    torch.testing.assert_close(got, torch.tensor(slow_band(num_frames, sigma), dtype=torch.float64))
    assert torch.equal(got, got.T) and torch.all(got.diagonal() == 1)


def test_regularization_matrix_dtype_and_device():
    m = regularization_matrix(5, 2.0, device="cpu", dtype=torch.float16)
    assert m.dtype == torch.float16 and m.device.type == "cpu"
    assert m[0, 1] == pytest.approx(math.exp(-0.125), abs=1e-3)


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), float("inf")])
def test_regularization_matrix_rejects_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be > 0"):
        regularization_matrix(4, sigma)


def test_regularization_matrix_rejects_no_frames():
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        regularization_matrix(0, 1.0)


# --- the processor --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["row", "head", "global"])
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_processor_matches_slow_reference(mode, strength):
    attn = make_attention()
    x = torch.randn(3, 7, 16) * 2
    attn.set_processor(TARProcessor(1.5, strength=strength, max_mode=mode))
    with torch.no_grad():
        got = attn(x)
        want = slow_tar_attention(attn, x, 1.5, strength, mode)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_processor_concentrates_attention_near_the_diagonal():
    attn = make_attention()
    x = torch.randn(4, 16, 16)
    q = attn.to_q(x).view(4, 16, 2, 8).transpose(1, 2)
    k = attn.to_k(x).view(4, 16, 2, 8).transpose(1, 2)
    offsets = (torch.arange(16)[None, :] - torch.arange(16)[:, None]).abs().float()
    spread = {}
    for sigma in (8.0, 1.0):
        probs = TARProcessor(sigma).regularized_attention(q, k, attn.scale)
        torch.testing.assert_close(probs.sum(-1), torch.ones(4, 2, 16))
        spread[sigma] = (probs * offsets).sum(-1).mean().item()
    plain = (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)
    assert spread[1.0] < spread[8.0] < (plain * offsets).sum(-1).mean().item() + 1e-6


@pytest.mark.parametrize("mode", ["row", "head", "global"])
@pytest.mark.parametrize("max_chunk_bytes", [1, 3000, 20000])  # one head (global: sequence), some heads, sequences
@pytest.mark.parametrize("frames", [9, 21])  # heads of 8 channels: P V, then (V^T P^T)^T
def test_chunking_does_not_change_the_result(mode, max_chunk_bytes, frames):
    assert TemporalLayout.transposed_product(frames, 8) == (frames == 21)
    attn = make_attention(channels=32, heads=4).double()
    x = torch.randn(37, frames, 32, dtype=torch.float64)
    with torch.no_grad():
        attn.set_processor(TARProcessor(1.0, max_mode=mode, max_chunk_bytes=2**30))
        whole = attn(x)
        attn.set_processor(TARProcessor(1.0, max_mode=mode, max_chunk_bytes=max_chunk_bytes))
        chunked = attn(x)
        want = slow_tar_attention(attn, x, 1.0, 1.0, mode).double()
    torch.testing.assert_close(chunked, whole, atol=1e-12, rtol=0)
    torch.testing.assert_close(whole, want, atol=1e-6, rtol=0)  # the reference rounds its result to float32


@pytest.mark.parametrize("head_dim", [4, 8])  # (V^T P^T)^T and P V
def test_regularized_output_is_the_regularized_attention_times_v(head_dim):
    q, k, v = torch.randn(3, 5, 2, 11, head_dim).unbind(0)  # (n, heads, F, d)
    tar = TARProcessor(2.0, max_chunk_bytes=600)  # several chunks
    want = tar.regularized_attention(q, k, 0.5) @ v
    torch.testing.assert_close(tar.regularized_output(q, k, v, 0.5), want, atol=1e-6, rtol=1e-6)


def reference_output(q, k, v, scale, matrix, strength=1.0):
    """``softmax(S + strength * rowmax(S) * matrix) @ V`` in float64."""
    q, k, v, matrix = q.double(), k.double(), v.double(), matrix.double()
    scores = q @ k.transpose(-1, -2) * scale
    return torch.softmax(scores + strength * scores.amax(-1, keepdim=True) * matrix, -1) @ v


@pytest.mark.parametrize("logit_scale", [0.1, 1.0, 2.0, 40.0])  # row maxima of 0.3 to 1e4: both shifts
@pytest.mark.parametrize("sign", [1, -1])  # all logits positive, or all negative (then M < 0)
@pytest.mark.parametrize("frames", [9, 40])  # P V and (V^T P^T)^T
def test_output_is_exact_for_any_size_and_sign_of_the_logits(logit_scale, sign, frames):
    torch.manual_seed(1)
    q = torch.rand(2, 3, frames, 8) * logit_scale + 0.1
    k = sign * (torch.rand(2, 3, frames, 8) * logit_scale + 0.1)
    v = torch.randn(2, 3, frames, 8)
    scores = q @ k.transpose(-1, -2)
    assert (scores * sign > 0).all() and scores.abs().max() > logit_scale**2
    for strength in (1.0, 3.0):
        got = TARProcessor(1.5, strength=strength, max_chunk_bytes=4000).regularized_output(q, k, v, 1.0)
        want = reference_output(q, k, v, 1.0, regularization_matrix(frames, 1.5), strength)
        assert torch.isfinite(got).all()
        # float32 logits of size |S| carry errors of about |S| * 1e-7
        tolerance = 5e-7 * max(1.0, scores.abs().max().item())
        torch.testing.assert_close(got.double(), want, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("offset", [42.0, -42.0, 46.0, -46.0])
def test_output_is_exact_where_the_row_maxima_reach_float32s_exponent_range(offset):
    """Row maxima near +-44, where 2 ** (M * log2(e)) leaves 2 ** +-64 (powers of 2 ** 64 and more must not
    overflow when summed; the largest must stay far above float32's underflow)."""
    torch.manual_seed(3)
    frames = 24
    q = torch.cat([torch.randn(2, 3, frames, 7) * 0.3, torch.full((2, 3, frames, 1), 6.0)], -1)
    k = torch.cat([torch.randn(2, 3, frames, 7) * 0.3, torch.full((2, 3, frames, 1), offset / 6.0)], -1)
    v = torch.randn(2, 3, frames, 8)
    peaks = (q @ k.transpose(-1, -2)).amax(-1)
    assert (peaks.abs() / math.log(2) > 55).all() and (peaks.abs() / math.log(2) < 75).all()
    got = TARProcessor(1.0).regularized_output(q, k, v, 1.0)
    want = reference_output(q, k, v, 1.0, regularization_matrix(frames, 1.0))
    torch.testing.assert_close(got.double(), want, atol=3e-5, rtol=3e-5)


def test_custom_matrix_with_negative_and_large_entries_is_exact():
    torch.manual_seed(2)
    q, k, v = torch.randn(3, 2, 4, 12, 8).unbind(0)
    matrix = torch.randn(12, 12) * 1.5  # like a similarity matrix: any sign, entries above 1
    got = TARProcessor(None, matrix=matrix, strength=0.7).regularized_output(q, k, v, 0.5)
    torch.testing.assert_close(got.double(), reference_output(q, k, v, 0.5, matrix, 0.7), atol=1e-6, rtol=1e-6)


def test_float64_inputs_are_computed_in_float64():
    attn = make_attention().double()
    x = torch.randn(3, 7, 16, dtype=torch.float64) * 2
    attn.set_processor(TARProcessor(1.5, max_chunk_bytes=1000))
    with torch.no_grad():
        got = attn(x)
        q, k, v = (m(x).view(3, 7, 2, 8).transpose(1, 2) for m in (attn.to_q, attn.to_k, attn.to_v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(8)
        band = torch.tensor(slow_band(7, 1.5), dtype=torch.float64)
        probs = torch.softmax(scores + scores.amax(-1, keepdim=True) * band, dim=-1)
        want = attn.to_out[0]((probs @ v).transpose(1, 2).reshape(3, 7, 16))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_chunk_bound_is_the_device_default_or_the_given_one_and_never_above_the_values():
    tiny, small, big = torch.empty(64, 8, 16, 4), torch.empty(64, 8, 64, 16), torch.empty(64, 8, 64, 128)
    assert TemporalLayout().chunk_bound(tiny) == 2**20  # 128 KiB of values: one chunk of up to 1 MiB
    assert TemporalLayout().chunk_bound(small) == small.numel() * 4  # 2 MiB
    assert TemporalLayout().chunk_bound(big) == 4 * 2**20  # 16 MiB: the CPU default
    assert TemporalLayout(1000).chunk_bound(big) == 1000
    assert TemporalLayout(2**30).chunk_bound(tiny) == tiny.numel() * 4
    assert TemporalLayout().chunk_bound(big.to("meta")) == big.numel() * 4  # other devices: few large chunks


@pytest.mark.parametrize("frames,heads,max_chunk_bytes", [(16, 8, 2**22), (64, 2, 2**22), (64, 8, 2**14), (96, 4, 1)])
def test_peak_memory_stays_within_stock_attention(frames, heads, max_chunk_bytes):
    """The work buffer takes the place of the queries, keys and values that stock attention keeps alive
    while it projects its output; beyond them TAR holds at most ``max_chunk_bytes``."""
    attn = make_attention(channels=32, heads=heads)
    x = torch.randn(64, frames, 32)
    tensor = x.numel() * 4
    with torch.no_grad():
        attn.set_processor(AttnProcessor2_0())
        stock = peak_allocated(lambda: attn(x))
        attn.set_processor(TARProcessor(1.0, max_chunk_bytes=max_chunk_bytes))
        attn(x)  # the band is made once and shared
        tar = peak_allocated(lambda: attn(x))
    assert tar <= stock
    one_head = 4 * frames * (frames + 2 + 4 * 32 // heads)
    assert tar <= 4 * tensor + max(min(max_chunk_bytes, tensor), one_head)


def test_by_default_a_small_layer_runs_in_one_chunk_of_at_most_a_mebibyte_above_stock_attention():
    attn = make_attention(channels=32, heads=8)
    x = torch.randn(64, 64, 32)  # 512 KiB of values; their logits and row maxima take 8.1 MiB
    with torch.no_grad():
        attn.set_processor(AttnProcessor2_0())
        stock = peak_allocated(lambda: attn(x))
        attn.set_processor(TARProcessor(1.0))
        attn(x)
        tar = peak_allocated(lambda: attn(x))
    assert stock < tar <= stock + MIN_CHUNK_BYTES


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_use_float32_logits(dtype):
    attn = make_attention()
    x = torch.randn(2, 12, 16) * 4
    attn.set_processor(TARProcessor(1.0))
    with torch.no_grad():
        want = slow_tar_attention(attn, x, 1.0, 1.0, "row")
        got = attn.to(dtype)(x.to(dtype))
    assert got.dtype == dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def test_inactive_state_defers_to_the_fallback_processor():
    attn = make_attention()
    x = torch.randn(3, 8, 16)
    state = TARState(active=False)
    with torch.no_grad():
        attn.set_processor(AttnProcessor2_0())
        stock = attn(x)
        attn.set_processor(TARProcessor(1.0, state=state))
        torch.testing.assert_close(attn(x), stock, atol=0, rtol=0)
        state.active = True
        assert not torch.allclose(attn(x), stock, atol=1e-4)


def test_custom_matrix_replaces_the_band():
    attn = make_attention()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        attn.set_processor(TARProcessor(2.0))
        band = attn(x)
        attn.set_processor(TARProcessor(None, matrix=regularization_matrix(6, 2.0)))
        torch.testing.assert_close(attn(x), band)
        attn.set_processor(TARProcessor(None, matrix=torch.eye(5)))
        with pytest.raises(ValueError, match="5x5 but the video has 6 frames"):
            attn(x)


def test_processor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        TARProcessor(0.0)
    with pytest.raises(ValueError, match="max_mode"):
        TARProcessor(1.0, max_mode="mean")
    with pytest.raises(ValueError, match="square"):
        TARProcessor(None, matrix=torch.ones(2, 3))
    attn = make_attention()
    attn.set_processor(TARProcessor(1.0))
    with pytest.raises(ValueError, match="self-attention only"):
        attn(torch.randn(1, 4, 16), encoder_hidden_states=torch.randn(1, 3, 16))


# --- configuration --------------------------------------------------------------------------------
def test_presets_parse_to_levels():
    assert TARConfig.parse("64D1").sigmas == {0: 1.0}
    long = TARConfig.parse("64D1_32D8")
    assert long.sigmas == {0: 1.0, 1: 8.0} and long.strength == 1.0 and long.max_mode == "row"
    custom = TARConfig.parse("initD2_16D0.5S0.25", max_mode="head")
    assert custom.sigmas == {INIT_LEVEL: 2.0, 2: 0.5} and custom.include_init
    assert custom.strength_at(2) == 0.25 and custom.strength_at(INIT_LEVEL) == 1.0
    assert custom.max_mode == "head"


@pytest.mark.parametrize("preset", ["64D1", "64D1_32D8", "32D8S0.5_64D1", "initD1_8D3"])
def test_preset_round_trip(preset):
    config = TARConfig.parse(preset)
    assert TARConfig.parse(config.to_preset()) == config


@pytest.mark.parametrize("preset,message", [
    ("", "empty TAR preset"), ("128D1", "cannot parse"), ("64X1", "cannot parse"),
    ("64D1_64D2", "twice"), ("64D0", "sigma must be > 0"),
])
def test_bad_presets_name_the_problem(preset, message):
    with pytest.raises(ValueError, match=message):
        TARConfig.parse(preset)


@pytest.mark.parametrize("kwargs,message", [
    ({"sigmas": {}}, "at least one level"), ({"sigmas": {0: -1.0}}, "sigma must be > 0"),
    ({"strength": -1.0}, "strength"), ({"max_mode": "avg"}, "max_mode"), ({"step_fraction": 1.5}, "step_fraction"),
    ({"sigmas": {-2: 1.0}}, "unknown UNet level"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TARConfig(**kwargs)


@pytest.mark.parametrize("steps,active", [(25, 14), (50, 28), (10, 6), (1, 1), (100, 56)])
def test_default_step_gating_is_the_first_56_percent(steps, active):
    assert TARConfig().active_steps(steps) == active
    assert TARConfig(step_fraction=0).active_steps(steps) == 0
    assert TARConfig(step_fraction=1).active_steps(steps) == steps


# --- wiring ---------------------------------------------------------------------------------------
def tar_names(unet):
    return {n for n, m in unet.named_modules() if isinstance(m, Attention) and isinstance(m.processor, TARProcessor)}


def test_levels_of_a_unet3d(unet3d):
    layers = temporal_attention_layers(unet3d)
    by_level = {}
    for layer in layers:
        by_level.setdefault(layer.level, set()).add(layer.name)
    assert by_level[INIT_LEVEL] == {"transformer_in.transformer_blocks.0.attn1", "transformer_in.transformer_blocks.0.attn2"}
    level0 = [("down_blocks.0", 0), ("up_blocks.3", 0), ("up_blocks.3", 1)]  # layers_per_block 1: 2 up layers
    assert by_level[0] == {f"{p}.temp_attentions.{i}.transformer_blocks.0.{a}" for p, i in level0
                           for a in ("attn1", "attn2")}
    assert {n.split(".temp")[0] for n in by_level[3]} == {"mid_block"}
    assert all(not layer.module.is_cross_attention for layer in layers)


def test_apply_and_remove_tar_on_unet3d(unet3d):
    before = {n: m.processor for n, m in unet3d.named_modules() if isinstance(m, Attention)}
    state = apply_tar(unet3d, "64D1_32D8")
    names = tar_names(unet3d)
    levels = {layer.name: layer.level for layer in temporal_attention_layers(unet3d)}
    assert names == {n for n, lv in levels.items() if lv in (0, 1)}
    sigmas = {unet3d.get_submodule(n).processor.sigma for n in names}
    assert sigmas == {1.0, 8.0}
    assert all(unet3d.get_submodule(n).processor.state is state for n in names)
    apply_tar(unet3d, TARConfig.parse("initD1"))  # re-applying replaces, never stacks
    assert tar_names(unet3d) == {n for n, lv in levels.items() if lv == INIT_LEVEL}
    assert all(not isinstance(unet3d.get_submodule(n).processor.fallback, TARProcessor) for n in tar_names(unet3d))
    remove_tar(unet3d)
    after = {n: m.processor for n, m in unet3d.named_modules() if isinstance(m, Attention)}
    assert after == before


def test_apply_tar_on_animatediff_motion_modules(motion_unet):
    apply_tar(motion_unet, "64D1")
    names = tar_names(motion_unet)
    assert names and all(n.startswith(("down_blocks.0.motion_modules", "up_blocks.2.motion_modules")) for n in names)
    assert {n.split(".")[0] for n in names} == {"down_blocks", "up_blocks"}


def test_tar_changes_the_unet_output_only_while_active(unet3d):
    torch.manual_seed(1)
    x, ctx = torch.randn(1, 4, 6, 16, 16), torch.randn(1, 5, 8)
    with torch.no_grad():
        stock = unet3d(x, 500, encoder_hidden_states=ctx).sample
        state = apply_tar(unet3d, "64D1")
        regularized = unet3d(x, 500, encoder_hidden_states=ctx).sample
        state.active = False
        gated_off = unet3d(x, 500, encoder_hidden_states=ctx).sample
    assert (regularized - stock).abs().max() > 1e-4
    torch.testing.assert_close(gated_off, stock, atol=0, rtol=0)


def test_apply_tar_rejects_missing_levels(motion_unet):
    with pytest.raises(ValueError, match=r"levels \[3\].*levels \[0, 1, 2\]"):
        apply_tar(motion_unet, "8D1")
    with pytest.raises(ValueError, match="no temporal self-attention"):
        apply_tar(torch.nn.Linear(2, 2), "64D1")


def test_levels_of_the_videocrafter2_port():
    """The port names its modules like UNet3D: init, levels 0-2 in the down/up paths, the middle block at 3."""
    from vstar.backbones.videocrafter2 import tiny_videocrafter2

    unet = tiny_videocrafter2().unet
    layers = temporal_attention_layers(unet)
    assert {layer.level for layer in layers} == {INIT_LEVEL, 0, 1, 2, 3}
    assert {layer.name.split(".temp")[0] for layer in layers if layer.level == 3} == {"mid_block"}
    up = len(unet.up_blocks)
    apply_tar(unet, "64D1_32D8")
    prefixes = {".".join(n.split(".")[:2]) for n in tar_names(unet)}
    assert prefixes == {"down_blocks.0", "down_blocks.1", f"up_blocks.{up - 1}", f"up_blocks.{up - 2}"}
    assert all(".temp_attentions." in n for n in tar_names(unet))
    assert len(tar_names(unet)) == sum(layer.level in (0, 1) for layer in layers)


@pytest.mark.parametrize("preset,sigmas,strengths", [
    ("b0-9D2", dict.fromkeys(range(10), 2.0), {}),
    ("b3D1", {3: 1.0}, {}),
    ("b0-1D2_b2-5D4S0.5", {0: 2.0, 1: 2.0, 2: 4.0, 3: 4.0, 4: 4.0, 5: 4.0}, dict.fromkeys(range(2, 6), 0.5)),
    ("b0D1_b2D1", {0: 1.0, 2: 1.0}, {}),
])
def test_transformer_presets_name_blocks_and_print_back(preset, sigmas, strengths):
    config = TARConfig.parse(preset)
    assert config.unit == "block" and dict(config.sigmas) == sigmas and dict(config.level_strengths) == strengths
    assert config.to_preset() == preset and TARConfig.parse(config.to_preset()) == config


@pytest.mark.parametrize("preset,message", [
    ("b0-9D2_64D1", "cannot parse TAR preset"),  # the two kinds do not mix
    ("b5-2D1", "runs backwards"),
    ("b0-3D1_b2D1", "names block 2 twice"),
    ("b0D0", "sigma must be > 0"),
])
def test_bad_transformer_presets_say_why(preset, message):
    with pytest.raises(ValueError, match=message):
        TARConfig.parse(preset)


def test_a_preset_of_the_other_kind_does_not_fit_the_model(unet3d):
    with pytest.raises(ValueError, match="whose TAR names UNet levels"):
        apply_tar(unet3d, "b0D1")
