"""Backbone.encode_video: the VAE's posterior mean at the denoiser's scale, in frame chunks."""

import pytest
import torch
from einops import rearrange

from vstar.backbones import load_backbone
from vstar.backbones.base import Backbone


@pytest.mark.parametrize("name", ["tiny-modelscope", "toy-shapes"])
def test_encode_video_is_the_scaled_posterior_mean_of_every_frame(name):
    backbone = load_backbone(name, device="cpu")
    video = torch.rand(2, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    latents = backbone.encode_video(video, chunk_size=2)
    vae = backbone.vae
    images = rearrange(video, "b f c h w -> (b f) c h w") * 2 - 1
    with torch.no_grad():
        want = vae.encode(images).latent_dist.mean * vae.config.scaling_factor
    assert latents.shape == (2, backbone.latent_channels, 5, *want.shape[-2:])
    torch.testing.assert_close(latents, rearrange(want, "(b f) c h w -> b c f h w", b=2), atol=1e-5, rtol=1e-5)


def test_families_without_an_encoder_say_which_can_analyse_real_videos():
    with pytest.raises(NotImplementedError, match="analyse real videos with a UNet family"):
        Backbone.encode_video(type("B", (), {"name": "wan"})(), torch.zeros(1, 2, 3, 8, 8))
