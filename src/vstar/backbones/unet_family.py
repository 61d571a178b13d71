"""What the video UNet families (ModelScope/zeroscope, AnimateDiff, VideoCrafter2) answer alike.

A video UNet interleaves spatial layers, run on every frame, with temporal layers; its temporal attention
is found from module names and levels (:func:`vstar.temporal_attention.unet_temporal_attention_layers`),
its VAE is a 2D KL autoencoder applied frame by frame, and it halves the latent once per level below the
first, so sizes must divide by ``vae factor * 2 ** (levels - 1)``. There is no temporal compression.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.utils.torch_utils import get_module_execution_device
from einops import rearrange
from torch import nn

from vstar.backbones.base import Backbone, BackboneDefaults, check_size_multiple
from vstar.temporal_attention import TemporalAttentionLayer, unet_temporal_attention_layers


def decode_frames(vae: nn.Module, latents: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
    """Decode ``(B, C, F, h, w)`` latents with a 2D KL VAE, ``chunk_size`` frames per call, into float32
    video ``(B, F, 3, h*s, w*s)`` in [0, 1] (the VAE's ``scaling_factor`` is undone first)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 frame, got {chunk_size}")
    vae_dtype = next(vae.parameters()).dtype
    frames = rearrange(latents, "b c f h w -> (b f) c h w") / vae.config.scaling_factor
    images = torch.cat([vae.decode(chunk.to(vae_dtype)).sample for chunk in frames.split(chunk_size)])
    video = (images.float() / 2 + 0.5).clamp(0, 1)
    return rearrange(video, "(b f) c h w -> b f c h w", b=latents.shape[0])


def encode_frames(vae: nn.Module, video: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
    """Encode video ``(B, F, 3, H, W)`` in [0, 1] with a 2D KL VAE into latents ``(B, C, F, h, w)``: the
    posterior mean times the VAE's ``scaling_factor`` (what :func:`decode_frames` undoes)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 frame, got {chunk_size}")
    dtype = next(vae.parameters()).dtype
    images = rearrange(video, "b f c h w -> (b f) c h w").to(get_module_execution_device(vae), dtype) * 2 - 1
    latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in images.split(chunk_size)])
    return rearrange(latents.float() * vae.config.scaling_factor, "(b f) c h w -> b c f h w", b=video.shape[0])


class UNetBackbone(Backbone):
    """A backbone whose denoiser is a video UNet (``self.unet`` is ``self.denoiser``) with a 2D KL VAE."""

    denoiser_attribute = "unet"

    def __init__(self, unet: nn.Module, vae: nn.Module, text_encoder: nn.Module, tokenizer: Any, scheduler: Any,
                 defaults: BackboneDefaults, model_id: str | None = None):
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler, defaults, model_id)

    def check_size(self, height: int, width: int) -> None:
        """Sides must be positive multiples of the VAE factor times the UNet's downsampling."""
        levels = len(self.unet.config.block_out_channels)
        check_size_multiple(height, width, self.vae_scale_factor * 2 ** (levels - 1))

    def temporal_attention_layers(self) -> list[TemporalAttentionLayer]:
        """The UNet's temporal self-attention, levels from module names (0 = highest resolution)."""
        return unet_temporal_attention_layers(self.unet)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        """``(B, C, F, h, w)`` latents -> video ``(B, F, 3, H, W)`` in [0, 1], ``chunk_size`` frames per VAE call."""
        return decode_frames(self.vae, latents, chunk_size)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        """Video ``(B, F, 3, H, W)`` in [0, 1] -> latents ``(B, C, F, h, w)``, ``chunk_size`` frames per VAE call."""
        return encode_frames(self.vae, video, chunk_size)
