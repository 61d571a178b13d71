"""A minimal new model family, written the way a new family is added: one module and a registry entry.

It stands in for a video transformer such as Wan: one resolution (identical blocks, no UNet levels), a
causal video "VAE" that decodes each latent frame after the first to 2 frames (temporal compression 2,
so videos have 2n+1 frames), per-frame text taken directly by the denoiser, and a flow-matching
scheduler. Nothing in ``pipeline.py``, ``tar.py`` or ``conditioning.py`` knows about it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import nn

from vstar.backbones.base import Backbone, BackboneDefaults
from vstar.backbones.clip_tokenizer import offline_clip_tokenizer
from vstar.backbones.loading import TINY_HIDDEN, seeded, tiny_clip_text_encoder, token_states
from vstar.backbones.registry import BackboneSpec
from vstar.sampling import FlowMatchScheduler, SchedulerAdapter
from vstar.temporal_attention import TemporalAttentionLayer

NAME = "tiny-fake-transformer"
CHANNELS = 4  # latent channels
WIDTH = 16  # transformer width
PIXELS_PER_LATENT = 4  # spatial factor of the decoder
COMPRESSION = 2  # output frames per latent frame (after the first)
DEFAULTS = BackboneDefaults(height=32, width=32, num_frames=9, num_inference_steps=3, guidance_scale=5.0, fps=8,
                            size_multiple=PIXELS_PER_LATENT, temporal_compression=COMPRESSION,
                            temporal_attention_levels=(0,), latent_channels=CHANNELS,
                            vae_scale_factor=PIXELS_PER_LATENT)


class Block(nn.Module):
    """Temporal self-attention over frames, then per-frame text cross-attention, then an MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.temporal = Attention(query_dim=WIDTH, heads=2, dim_head=WIDTH // 2)
        self.cross = Attention(query_dim=WIDTH, cross_attention_dim=TINY_HIDDEN, heads=2, dim_head=WIDTH // 2)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: ``(B, L, h*w, C)``; context: ``(B*L, S, D)``, latent frame fastest."""
        b, frames, pixels, _ = x.shape
        temporal = rearrange(x, "b l p c -> (b p) l c")  # (batch*h*w, frames, channels)
        x = x + rearrange(self.temporal(temporal), "(b p) l c -> b l p c", b=b)
        spatial = rearrange(x, "b l p c -> (b l) p c")
        x = x + rearrange(self.cross(spatial, encoder_hidden_states=context), "(b l) p c -> b l p c", l=frames)
        return x + self.mlp(x)


class TinyVideoTransformer(nn.Module):
    """``(B, C, L, h, w)`` latents, timesteps and ``(B*L, S, D)`` text -> velocity of the same shape."""

    def __init__(self, num_blocks: int = 2) -> None:
        super().__init__()
        self.config = SimpleNamespace(in_channels=CHANNELS)
        self.proj_in = nn.Linear(CHANNELS, WIDTH)
        self.time = nn.Linear(WIDTH, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(num_blocks))
        self.proj_out = nn.Linear(WIDTH, CHANNELS)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, frames, h, w = latents.shape
        half = WIDTH // 2
        t = torch.as_tensor(timestep, dtype=torch.float32, device=latents.device).reshape(-1, 1)
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=latents.device) / half)
        time = self.time(torch.cat([torch.sin(t * freqs), torch.cos(t * freqs)], dim=-1))  # (1 or B, C)
        x = self.proj_in(rearrange(latents, "b c l h w -> b l (h w) c")) + time[:, None, None, :]
        for block in self.blocks:
            x = block(x, context)
        return rearrange(self.proj_out(x), "b l (h w) c -> b c l h w", h=h, w=w)


class CausalFrameDecoder(nn.Module):
    """Latent frame 0 -> 1 frame, every later latent frame -> ``COMPRESSION`` frames, ``PIXELS_PER_LATENT`` x up."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(CHANNELS, COMPRESSION * 3 * PIXELS_PER_LATENT**2, 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, C, L, h, w)`` -> ``(B, 1 + COMPRESSION*(L-1), 3, H, W)`` in [0, 1]."""
        b = latents.shape[0]
        frames = self.proj(rearrange(latents, "b c l h w -> (b l) c h w"))
        frames = rearrange(frames, "n (k c) h w -> n k c h w", k=COMPRESSION)
        pixels = nn.functional.pixel_shuffle(frames.flatten(0, 1), PIXELS_PER_LATENT)
        video = rearrange(pixels, "(b l k) c h w -> b (l k) c h w", b=b, k=COMPRESSION)
        return torch.sigmoid(video[:, COMPRESSION - 1:])


class FakeTransformerBackbone(Backbone):
    """The adapter: only what differs from the defaults of :class:`~vstar.backbones.base.Backbone`."""

    name = NAME
    denoiser_attribute = "transformer"

    @property
    def vae_scale_factor(self) -> int:
        return PIXELS_PER_LATENT

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return token_states(self.tokenizer, self.text_encoder, texts).to(device=self.device, dtype=self.dtype)

    def model_output(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                     fps: int | None = None) -> torch.Tensor:
        self.check_context(latents, context)
        return self.transformer(latents, timestep, context.to(self.dtype))

    def temporal_attention_layers(self) -> list[TemporalAttentionLayer]:
        return [TemporalAttentionLayer(f"blocks.{i}.temporal", 0, block.temporal)
                for i, block in enumerate(self.transformer.blocks)]

    def scheduler_adapter(self, eta: float = 0.0) -> SchedulerAdapter:
        return FlowMatchScheduler(self.scheduler)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return self.vae(latents.to(self.dtype)).float()


def tiny_fake_transformer(seed: int = 0, device: str | torch.device | None = None) -> FakeTransformerBackbone:
    with seeded(seed):
        transformer, vae, text_encoder = TinyVideoTransformer(), CausalFrameDecoder(), tiny_clip_text_encoder()
    backbone = FakeTransformerBackbone(transformer.eval(), vae.eval(), text_encoder, offline_clip_tokenizer(),
                                       FlowMatchEulerDiscreteScheduler(), DEFAULTS, model_id=NAME)
    return backbone.to(device or "cpu").eval()


SPEC = BackboneSpec(NAME, "fake-transformer", "a tiny fake video transformer (2x temporal compression, flow matching)",
                    tiny_fake_transformer, DEFAULTS, tiny=True, seeded=True)
