"""VideoCrafter2's 3D UNet (``lvdm`` ``UNetModel`` of t2v 512 v2.0) as a diffusers model.

Layout, with module names following diffusers' ``UNet3DConditionModel``::

    t, fps -> sinusoid (cos first) -> time_embedding + fps_embedding            emb (B, 4*C0)
    x (B, C, F, H, W) -> (B*F, C, H, W) -> conv_in -> transformer_in            first skip
      down_blocks[i]  (level i; levels with attention: ResBlock, temp conv, spatial, temporal transformer)
      mid_block
      up_blocks[j]    (level len-1-j; concatenates [h, skip] before every ResBlock)
    -> conv_norm_out -> SiLU -> conv_out -> (B, C, F, H, W)

``transformer_in`` is the original ``init_attn`` (8 heads of ``attention_head_dim``, a temporal transformer
right after ``conv_in``). There is no frame positional encoding: frame order enters only through the
zero-padded temporal convolutions, so any number of frames works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from .blocks import VideoCrafter2DownBlock, VideoCrafter2MidBlock, VideoCrafter2UpBlock, temporal_transformer

DEFAULT_FPS = 16  # what the original UNet uses when no fps is given
INIT_ATTENTION_HEADS = 8


@dataclass
class VideoCrafter2UNetOutput(BaseOutput):
    """``sample``: the predicted noise ``(B, C, F, H, W)``."""

    sample: torch.Tensor


def _per_sample(value: int | float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """A scalar, 0-d or ``(B,)`` timestep/fps as a ``(B,)`` tensor."""
    value = torch.as_tensor(value, device=device)
    if value.ndim == 0:
        return value.expand(batch)
    if value.shape != (batch,):
        raise ValueError(f"expected a scalar or a ({batch},) tensor, got shape {tuple(value.shape)}")
    return value


class VideoCrafter2UNet(ModelMixin, AttentionMixin, ConfigMixin):
    """The VideoCrafter2 denoiser (epsilon prediction, fps-conditioned).

    The defaults are the full t2v 512 v2.0 model (1.41 B parameters).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        attention_levels: tuple[bool, ...] = (True, True, True, False),
        attention_head_dim: int = 64,
        cross_attention_dim: int = 1024,
        default_fps: int = DEFAULT_FPS,
    ):
        super().__init__()
        channels = list(block_out_channels)
        if len(attention_levels) != len(channels):
            raise ValueError(
                f"attention_levels needs one flag per level ({len(channels)}), got {len(attention_levels)}"
            )
        temb_channels = 4 * channels[0]

        self.time_proj = Timesteps(channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.fps_embedding = TimestepEmbedding(channels[0], temb_channels)

        self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        self.transformer_in = temporal_transformer(channels[0], INIT_ATTENTION_HEADS, attention_head_dim)

        skip_channels = [channels[0]]
        self.down_blocks = nn.ModuleList()
        for level, out in enumerate(channels):
            last = level == len(channels) - 1
            self.down_blocks.append(VideoCrafter2DownBlock(
                skip_channels[-1], out, temb_channels, layers_per_block, attention_head_dim, cross_attention_dim,
                attention_levels[level], add_downsample=not last,
            ))
            skip_channels += [out] * (layers_per_block + (0 if last else 1))

        self.mid_block = VideoCrafter2MidBlock(channels[-1], temb_channels, attention_head_dim, cross_attention_dim)

        self.up_blocks = nn.ModuleList()
        hidden = channels[-1]
        for level in reversed(range(len(channels))):
            skips = [skip_channels.pop() for _ in range(layers_per_block + 1)]
            self.up_blocks.append(VideoCrafter2UpBlock(
                hidden, skips, channels[level], temb_channels, attention_head_dim, cross_attention_dim,
                attention_levels[level], add_upsample=level > 0,
            ))
            hidden = channels[level]

        self.conv_norm_out = nn.GroupNorm(32, channels[0], eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], out_channels, kernel_size=3, padding=1)

    def _embedding(self, timestep: torch.Tensor, fps: torch.Tensor) -> torch.Tensor:
        """``(B,)`` timesteps and fps -> ``(B, 4*C0)``: ``time_embedding(sin(t)) + fps_embedding(sin(fps))``."""
        dtype = self.conv_in.weight.dtype
        return (self.time_embedding(self.time_proj(timestep).to(dtype))
                + self.fps_embedding(self.time_proj(fps).to(dtype)))

    @staticmethod
    def _frame_context(context: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """``(B, S, D)`` (shared by all frames) or ``(B*F, S, D)`` (per frame) -> ``(B*F, S, D)``."""
        if context.ndim != 3:
            raise ValueError(f"encoder_hidden_states must be (B, S, D) or (B*F, S, D), got {tuple(context.shape)}")
        if context.shape[0] == batch * frames:
            return context
        if context.shape[0] == batch:
            return context.repeat_interleave(frames, dim=0)
        raise ValueError(
            f"encoder_hidden_states has batch {context.shape[0]}; expected B={batch} (one context per video) "
            f"or B*F={batch * frames} (one context per frame, frame index fastest)"
        )

    def forward(
        self,
        sample: torch.Tensor,
        timestep: int | float | torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        fps: int | torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> VideoCrafter2UNetOutput | tuple[torch.Tensor]:
        """Predict the noise of ``sample``.

        sample: ``(B, C, F, H, W)`` latents, H and W multiples of ``2**(levels-1)``; timestep: DDPM index, scalar or
        ``(B,)``; encoder_hidden_states: ``(B, S, D)`` shared by all frames or ``(B*F, S, D)`` one context per frame
        (``(b f)`` order); fps: int or ``(B,)`` (default ``config.default_fps``). Returns ``(B, C, F, H, W)``.
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be (B, C, F, H, W), got shape {tuple(sample.shape)}")
        batch, _, frames, height, width = sample.shape
        factor = 2 ** (len(self.down_blocks) - 1)
        if height % factor or width % factor:
            raise ValueError(f"latent height and width must be multiples of {factor}, got {height}x{width}")
        fps = self.config.default_fps if fps is None else fps
        emb = self._embedding(_per_sample(timestep, batch, sample.device), _per_sample(fps, batch, sample.device))
        emb = emb.repeat_interleave(frames, dim=0)  # (B*F, 4*C0)
        context = self._frame_context(encoder_hidden_states, batch, frames)

        hidden = self.conv_in(rearrange(sample, "b c f h w -> (b f) c h w"))
        hidden = self.transformer_in(hidden, num_frames=frames, return_dict=False)[0]
        skips = [hidden]
        for block in self.down_blocks:
            hidden, block_skips = block(hidden, emb, context, frames)
            skips += block_skips
        hidden = self.mid_block(hidden, emb, context, frames)
        for block in self.up_blocks:
            hidden = block(hidden, skips, emb, context, frames)
        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))

        out = rearrange(hidden, "(b f) c h w -> b c f h w", b=batch)
        return VideoCrafter2UNetOutput(sample=out) if return_dict else (out,)
