"""Tiny video UNets with weights large enough that temporal attention is far from uniform."""

import torch


def sharp_unet3d():
    """A 2-level UNet3DConditionModel (temporal attention at levels -1, 0, 1), weights N(0, 0.3); in temporal
    attention keys share the queries' weights, scaled up, so that similar frames attend to each other."""
    from diffusers import UNet3DConditionModel

    from vstar import temporal_attention_layers

    torch.manual_seed(3)
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=8, cross_attention_dim=24,
        attention_head_dim=8,
    ).eval()
    for p in unet.parameters():
        p.data.normal_(0, 0.3)
    for layer in temporal_attention_layers(unet):
        layer.module.to_q.weight.data.mul_(3)
        layer.module.to_k.weight.data.copy_(layer.module.to_q.weight.data)
    return unet


def unet_inputs(batch=1, frames=6, seed=4):
    """Latents that change gradually over frames (a random walk) and a text context."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, frames, 8, 8, generator=g).cumsum(2), torch.randn(batch, 5, 24, generator=g)


def seeded_generation(pipe, frames=8, steps=2, seed=5, **kwargs):
    """A 64x64 generation of "a red circle" from seeded latents of ``frames`` frames, no progress bar;
    ``kwargs`` override any pipeline argument."""
    latents = torch.randn(1, pipe.backbone.latent_channels, frames, 8, 8,
                          generator=torch.Generator().manual_seed(seed))
    args = {"prompt": "a red circle", "num_frames": frames, "num_inference_steps": steps, "height": 64,
            "width": 64, "progress": False, "latents": latents}
    return pipe(**(args | kwargs))
