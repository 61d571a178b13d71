"""What every tiny diffusers backbone (ModelScope, AnimateDiff) must do: seeded weights, text, decoding."""

import pytest
import torch


def _weights(backbone) -> dict[str, torch.Tensor]:
    return backbone.state_dict()


def test_tiny_weights_are_a_function_of_the_seed(build):
    rng_before = torch.get_rng_state()
    a, b, c = _weights(build(seed=0)), _weights(build(seed=0)), _weights(build(seed=1))
    assert torch.equal(torch.get_rng_state(), rng_before), "building must not consume the global generator"
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every randomly initialised tensor differs between seeds (constant inits such as norms stay equal)
    differing = [k for k in a if not torch.equal(a[k], c[k])]
    assert any(k.startswith("unet.") for k in differing) and any(k.startswith("vae.") for k in differing)
    assert any(k.startswith("text_encoder.") for k in differing)


def test_tiny_models_are_small(tiny):
    megabytes = sum(p.numel() * p.element_size() for p in tiny.parameters()) / 2**20
    assert megabytes < 16


def test_defaults_fit_the_tiny_model(tiny):
    d = tiny.defaults
    assert (d.height, d.width, d.num_frames) == (64, 64, 16)
    assert tiny.vae_scale_factor == 8 and tiny.latent_channels == 4
    assert len(tiny.unet.config.block_out_channels) == 4  # four resolution levels, as in the real models


@torch.no_grad()
def test_encode_text_shape(tiny):
    embeds = tiny.encode_text(["a cat", "a dog", "a ferrari driving on the road, starts to snow"])
    assert embeds.shape == (3, 77, tiny.unet.config.cross_attention_dim) and embeds.dtype == torch.float32
    assert not torch.allclose(embeds[0], embeds[1])
    torch.testing.assert_close(tiny.encode_text(["a dog"])[0], embeds[1])  # batching does not change a text
    with pytest.raises(ValueError, match="at least one text"):
        tiny.encode_text([])


@torch.no_grad()
def test_decoded_frame_order(tiny):
    """Frame (b, f) is the decoding of latent frame (b, f) alone (shapes, ranges and chunking: contract suite)."""
    latents = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    video = tiny.decode_latents(latents, chunk_size=3)
    single = tiny.decode_latents(latents[1:, :, 3:4], chunk_size=1)
    torch.testing.assert_close(single[0, 0], video[1, 3], rtol=0, atol=1e-5)


@torch.no_grad()
def test_decode_undoes_the_latent_scaling(tiny):
    """decode_latents divides by the VAE's scaling factor before decoding, as diffusers pipelines do."""
    latents = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    direct = tiny.vae.decode(latents[:, :, 0] / tiny.vae.config.scaling_factor).sample
    torch.testing.assert_close(tiny.decode_latents(latents)[0, 0], (direct[0] / 2 + 0.5).clamp(0, 1))
