"""The converted tiny UNet and VAE reproduce the outputs recorded with the original VideoCrafter2 code."""

import pytest
import torch

TOL = 1e-4  # max-abs, float32; the fixtures' own 1-vs-2-thread noise is up to 1.5e-5


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.mark.parametrize("case", ["a", "b", "c", "d"])
def test_unet_cases(converted_tiny, unet_cases, case):
    """a: shared context; b: one context per frame (16 frames); c: cond/uncond batch; d: per-sample t and fps."""
    unet, _ = converted_tiny
    c = {k.split(".", 1)[1]: v for k, v in unet_cases.items() if k.startswith(f"{case}.")}
    with torch.no_grad():
        out = unet(c["x"], c["t"], c["context"], fps=c["fps"]).sample
    assert max_abs(out, c["out"]) < TOL


def test_unet_debug_tensors_of_case_a(converted_tiny, unet_cases):
    """Intermediate outputs, named by the original module they come out of."""
    unet, _ = converted_tiny
    modules = {
        "time_embed_out": unet.time_embedding,
        "fps_embedding_out": unet.fps_embedding,
        "after_init_attn": unet.transformer_in,
        "input_blocks.1": unet.down_blocks[0].temp_attentions[0],
        "input_blocks.4": unet.down_blocks[1].temp_attentions[0],
        "middle_block": unet.mid_block,
        "output_blocks.11": unet.up_blocks[3].temp_attentions[2],
    }
    seen = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(
        name, out[0] if isinstance(out, tuple) else out)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            unet(unet_cases["a.x"], unet_cases["a.t"], unet_cases["a.context"], fps=unet_cases["a.fps"])
    finally:
        for h in hooks:
            h.remove()
    for name in modules:
        assert max_abs(seen[name], unet_cases[f"a.debug.{name}"]) < TOL, name


def test_unet_python_int_fps_and_scalar_timestep_match_tensors(converted_tiny, unet_cases):
    unet, _ = converted_tiny
    with torch.no_grad():
        out = unet(unet_cases["a.x"], 637, unet_cases["a.context"], fps=28).sample
    assert max_abs(out, unet_cases["a.out"]) < TOL


def test_vae_decode(converted_tiny, vae_cases):
    _, vae = converted_tiny
    with torch.no_grad():
        out = vae.decode(vae_cases["decode.z"]).sample
    assert max_abs(out, vae_cases["decode.out"]) < TOL


def test_vae_encode_moments_and_mean(converted_tiny, vae_cases):
    _, vae = converted_tiny
    with torch.no_grad():
        posterior = vae.encode(vae_cases["encode.image"]).latent_dist
    assert max_abs(posterior.parameters, vae_cases["encode.moments"]) < TOL
    assert max_abs(posterior.mean, vae_cases["encode.mean"]) < TOL


def test_vae_debug_tensors(converted_tiny, vae_cases):
    _, vae = converted_tiny
    seen = {}
    hooks = [vae.decoder.up_blocks[3].resnets[2].register_forward_hook(lambda _m, _i, o: seen.__setitem__("d", o)),
             vae.encoder.mid_block.resnets[1].register_forward_hook(lambda _m, _i, o: seen.__setitem__("e", o))]
    try:
        with torch.no_grad():
            vae.decode(vae_cases["decode.z"][:1])
            vae.encode(vae_cases["encode.image"][:1])
    finally:
        for h in hooks:
            h.remove()
    assert max_abs(seen["d"], vae_cases["decode.debug.decoder.up.0.block.2"]) < TOL
    assert max_abs(seen["e"], vae_cases["encode.debug.encoder.mid.block_2"]) < TOL
