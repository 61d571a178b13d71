"""The recorder against a float64 map computed by hand from each layer's own q/k weights and inputs."""

import contextlib

import pytest
import torch
from analysis_models import unet_inputs

from vstar import TARConfig, apply_tar, load_backbone, remove_tar, temporal_attention_layers
from vstar.analysis import diagonal_mass, record_temporal_attention
from vstar.tar import regularization_matrix


def capture_inputs(unet):
    """layer name -> list of the (n, F, C) inputs each temporal attention module saw."""
    seen, hooks = {}, []
    for layer in temporal_attention_layers(unet):
        def hook(module, args, kwargs, name=layer.name):
            seen.setdefault(name, []).append(args[0].detach().clone())
        hooks.append(layer.module.register_forward_pre_hook(hook, with_kwargs=True))
    return seen, hooks


def reference_map(module, x, sigma=None, strength=1.0, rows=slice(None)):
    """Mean over heads and rows of softmax(QK^T * scale [+ strength * rowmax * band]) in float64."""
    x = x[rows].double()
    heads = module.heads
    q = torch.nn.functional.linear(x, module.to_q.weight.double(), None if module.to_q.bias is None else module.to_q.bias.double())
    k = torch.nn.functional.linear(x, module.to_k.weight.double(), None if module.to_k.bias is None else module.to_k.bias.double())
    n, frames, inner = q.shape
    q = q.view(n, frames, heads, inner // heads).transpose(1, 2)
    k = k.view(n, frames, heads, inner // heads).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) * module.scale
    if sigma is not None:
        scores = scores + strength * scores.amax(-1, keepdim=True) * regularization_matrix(frames, sigma, dtype=torch.float64)
    return torch.softmax(scores, -1).mean(dim=(0, 1))


def run(unet, batch=1, frames=6):
    x, ctx = unet_inputs(batch, frames)
    with torch.no_grad():
        return unet(x, 400, encoder_hidden_states=ctx).sample


def test_maps_equal_a_float64_reference_without_tar(sharp_unet):
    seen, hooks = capture_inputs(sharp_unet)
    with record_temporal_attention(sharp_unet) as rec:
        run(sharp_unet)
    for h in hooks:
        h.remove()
    modules = {layer.name: layer.module for layer in temporal_attention_layers(sharp_unet)}
    assert set(rec.maps) == set(modules) and set(rec.levels.values()) == {-1, 0, 1}
    for name, got in rec.maps.items():
        want = reference_map(modules[name], seen[name][0])
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        torch.testing.assert_close(got.double(), want, atol=2e-6, rtol=0)
    # the maps are far from uniform, so the comparison means something
    assert min(float((m - 1 / 6).abs().max()) for m in rec.maps.values()) > 0.02


def test_maps_with_tar_use_the_band_only_where_installed(sharp_unet):
    seen, hooks = capture_inputs(sharp_unet)
    apply_tar(sharp_unet, TARConfig(sigmas={0: 1.0}, strength=0.7))
    try:
        with record_temporal_attention(sharp_unet) as rec:
            run(sharp_unet)
    finally:
        remove_tar(sharp_unet)
        for h in hooks:
            h.remove()
    for layer in temporal_attention_layers(sharp_unet):
        sigma = 1.0 if layer.level == 0 else None
        want = reference_map(layer.module, seen[layer.name][0], sigma=sigma, strength=0.7)
        torch.testing.assert_close(rec.maps[layer.name].double(), want, atol=2e-6, rtol=0)
    # TAR moves attention towards the diagonal at level 0
    level0 = [n for n, lv in rec.levels.items() if lv == 0]
    plain = reference_map(dict((lyr.name, lyr.module) for lyr in temporal_attention_layers(sharp_unet))[level0[0]],
                          seen[level0[0]][0])
    assert diagonal_mass(rec.maps[level0[0]]) > diagonal_mass(plain)


def test_inactive_tar_records_stock_attention(sharp_unet):
    seen, hooks = capture_inputs(sharp_unet)
    state = apply_tar(sharp_unet, "64D1")
    state.active = False
    with record_temporal_attention(sharp_unet, levels=[0]) as rec:
        run(sharp_unet)
    remove_tar(sharp_unet)
    for h in hooks:
        h.remove()
    for layer in temporal_attention_layers(sharp_unet):
        if layer.level == 0:
            torch.testing.assert_close(rec.maps[layer.name].double(), reference_map(layer.module, seen[layer.name][0]),
                                       atol=2e-6, rtol=0)


@pytest.mark.parametrize("branch", ["cond", "uncond"])
def test_branches_split_a_cfg_batch_negative_half_first(sharp_unet, branch):
    seen, hooks = capture_inputs(sharp_unet)
    with record_temporal_attention(sharp_unet, levels=[0], branch=branch) as rec:
        run(sharp_unet, batch=2)
    for h in hooks:
        h.remove()
    for name, got in rec.maps.items():
        x = seen[name][0]
        half = x.shape[0] // 2
        rows = slice(half, None) if branch == "cond" else slice(0, half)
        module = dict((lyr.name, lyr.module) for lyr in temporal_attention_layers(sharp_unet))[name]
        torch.testing.assert_close(got.double(), reference_map(module, x, rows=rows), atol=2e-6, rtol=0)


def test_calls_are_averaged_and_kept_per_step_and_per_level(sharp_unet):
    rec = record_temporal_attention(sharp_unet, levels=[0, 1])
    with rec:
        run(sharp_unet)
        x, ctx = unet_inputs(seed=9)
        with torch.no_grad():
            sharp_unet(x, 100, encoder_hidden_states=ctx)
    assert set(rec.levels.values()) == {0, 1}
    for name, steps in rec.per_step.items():
        assert len(steps) == 2
        torch.testing.assert_close(rec.maps[name], (steps[0] + steps[1]) / 2, atol=1e-6, rtol=0)
    by_level = rec.by_level()
    assert set(by_level) == {0, 1}
    names0 = [n for n, lv in rec.levels.items() if lv == 0]
    torch.testing.assert_close(by_level[0], torch.stack([rec.maps[n] for n in names0]).mean(0))


def test_chunking_does_not_change_the_maps(sharp_unet):
    whole = record_temporal_attention(sharp_unet)
    with whole:
        run(sharp_unet)
    tiny = record_temporal_attention(sharp_unet)
    tiny.max_chunk_bytes = 1  # one sequence per chunk
    with tiny:
        run(sharp_unet)
    for name in whole.maps:
        torch.testing.assert_close(tiny.maps[name], whole.maps[name], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["tiny-animatediff", "tiny-videocrafter2", "toy-shapes"])
def test_recording_works_on_every_family(name):
    backbone = load_backbone(name, device="cpu")
    frames = 5
    latents = torch.randn(backbone.latent_shape(1, frames, backbone.defaults.height, backbone.defaults.width))
    context = backbone.encode_text(["a red circle"]).expand(frames, -1, -1)
    with record_temporal_attention(backbone) as rec, backbone.per_frame_text(context), torch.no_grad():
        backbone.model_output(latents, 10, context, fps=backbone.defaults.cond_fps)
    assert set(rec.maps) == {layer.name for layer in temporal_attention_layers(backbone)}
    for m in rec.maps.values():
        torch.testing.assert_close(m.sum(-1), torch.ones(frames), atol=1e-5, rtol=0)


def test_bad_input_is_named(sharp_unet):
    with pytest.raises(ValueError, match="unknown branch 'both'"):
        record_temporal_attention(sharp_unet, branch="both")
    with pytest.raises(ValueError, match=r"levels \[5\] have no temporal attention"):
        record_temporal_attention(sharp_unet, levels=[5])
    with pytest.raises(ValueError, match="even batch, negative half first.*got a batch of 1"), record_temporal_attention(sharp_unet, branch="cond"):
        run(sharp_unet, batch=1)
    # the processors are restored even after an error
    assert not any(type(p).__name__ == "RecordingProcessor" for p in sharp_unet.attn_processors.values())


def test_recording_a_long_forward_adds_a_chunk_not_per_pixel_maps():
    from vstar.analysis import AttentionRecorder
    from vstar.conditioning import cfg_context
    from vstar.resources import peak_allocated

    backbone = load_backbone("tiny-modelscope", device="cpu")
    frames, chunk = 64, 256 * 2**10
    latents = torch.randn(2, backbone.latent_channels, frames, 8, 8, generator=torch.Generator().manual_seed(0))
    text = backbone.encode_text(["a cat"]).expand(frames, -1, -1)
    context, t = cfg_context(text, text, 1), torch.tensor([500])

    def forward(record: bool):
        with torch.no_grad(), backbone.per_frame_text(context):
            with AttentionRecorder(backbone, max_chunk_bytes=chunk) if record else contextlib.nullcontext():
                backbone.model_output(latents, t, context)

    plain, recorded = peak_allocated(lambda: forward(False)), peak_allocated(lambda: forward(True))
    layers = len(temporal_attention_layers(backbone))
    per_pixel = 2 * 8 * 8 * 4 * frames * frames * 4  # the float32 probabilities of one 8x8 layer's sequences
    assert recorded - plain <= 3 * chunk + 4 * layers * frames * frames * 8 < per_pixel
