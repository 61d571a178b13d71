"""The down, middle and up blocks of the VideoCrafter2 UNet, built from diffusers modules.

Each attention-level unit is ResBlock -> temporal conv -> spatial transformer -> temporal transformer, as in
the original ``openaimodel3d``; the names follow diffusers' ``UNet3DConditionModel`` (``resnets``,
``temp_convs``, ``attentions``, ``temp_attentions``, ``downsamplers``, ``upsamplers``).

Differences from diffusers' own 3D blocks, and the reason these are written here: every transformer has
``channels // head_dim`` heads of ``head_dim`` (diffusers' temporal blocks swap heads and head size), GroupNorms
of the ResBlocks use eps 1e-5, and the temporal transformers are pure self-attention (``attn1`` and ``attn2``).

All tensors are frame batches ``(B*F, C, H, W)`` with the frame index varying fastest.
"""

from __future__ import annotations

import torch
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D, TemporalConvLayer
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from diffusers.models.upsampling import Upsample2D
from torch import nn

RESNET_EPS = 1e-5  # GroupNorm32 of the original ResBlocks (transformers use 1e-6, set inside diffusers)
TEMPORAL_CONV_DROPOUT = 0.1


def temporal_transformer(channels: int, heads: int, head_dim: int) -> TransformerTemporalModel:
    """Self-attention over frames (one sequence per pixel); ``attn2`` is a second self-attention."""
    return TransformerTemporalModel(
        num_attention_heads=heads, attention_head_dim=head_dim, in_channels=channels, num_layers=1,
        norm_num_groups=32, cross_attention_dim=None, double_self_attention=True,
    )


def spatial_transformer(channels: int, head_dim: int, cross_attention_dim: int) -> Transformer2DModel:
    """Per-frame self-attention over pixels, cross-attention to the text, GEGLU feed-forward; linear projections."""
    return Transformer2DModel(
        num_attention_heads=channels // head_dim, attention_head_dim=head_dim, in_channels=channels, num_layers=1,
        cross_attention_dim=cross_attention_dim, norm_num_groups=32, use_linear_projection=True,
    )


class _Unit(nn.Module):
    """Shared forward of a list of (ResBlock, temporal conv[, spatial, temporal transformer]) units."""

    resnets: nn.ModuleList
    temp_convs: nn.ModuleList
    attentions: nn.ModuleList
    temp_attentions: nn.ModuleList

    def _build(self, in_channels: list[int], out_channels: int, temb_channels: int, head_dim: int,
               cross_attention_dim: int, num_transformers: int) -> None:
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels=c, out_channels=out_channels, temb_channels=temb_channels, eps=RESNET_EPS)
            for c in in_channels
        )
        self.temp_convs = nn.ModuleList(
            TemporalConvLayer(out_channels, out_channels, dropout=TEMPORAL_CONV_DROPOUT) for _ in in_channels
        )
        self.attentions = nn.ModuleList(
            spatial_transformer(out_channels, head_dim, cross_attention_dim) for _ in range(num_transformers)
        )
        self.temp_attentions = nn.ModuleList(
            temporal_transformer(out_channels, out_channels // head_dim, head_dim) for _ in range(num_transformers)
        )

    def _unit(self, i: int, hidden: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
              num_frames: int) -> torch.Tensor:
        hidden = self.resnets[i](hidden, temb)
        hidden = self.temp_convs[i](hidden, num_frames=num_frames)
        if i < len(self.attentions):
            hidden = self.attentions[i](hidden, encoder_hidden_states=context, return_dict=False)[0]
            hidden = self.temp_attentions[i](hidden, num_frames=num_frames, return_dict=False)[0]
        return hidden


class VideoCrafter2DownBlock(_Unit):
    """One resolution level of the encoder path; returns the output and the skip tensors it produced."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int, head_dim: int,
                 cross_attention_dim: int, has_attention: bool, add_downsample: bool):
        super().__init__()
        self._build([in_channels] + [out_channels] * (num_layers - 1), out_channels, temb_channels, head_dim,
                    cross_attention_dim, num_layers if has_attention else 0)
        self.downsamplers = nn.ModuleList(
            [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=1, name="op")]
            if add_downsample else []
        )

    def forward(self, hidden: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
                num_frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """hidden ``(B*F, C_in, H, W)`` -> ``(B*F, C_out, H', W')`` and the skips (one per unit and downsample)."""
        skips = []
        for i in range(len(self.resnets)):
            hidden = self._unit(i, hidden, temb, context, num_frames)
            skips.append(hidden)
        for down in self.downsamplers:
            hidden = down(hidden)
            skips.append(hidden)
        return hidden, skips


class VideoCrafter2MidBlock(_Unit):
    """ResBlock, temporal conv, spatial and temporal transformer, ResBlock, temporal conv."""

    def __init__(self, channels: int, temb_channels: int, head_dim: int, cross_attention_dim: int):
        super().__init__()
        self._build([channels, channels], channels, temb_channels, head_dim, cross_attention_dim, 1)

    def forward(self, hidden: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
                num_frames: int) -> torch.Tensor:
        """``(B*F, C, H, W)`` -> same shape."""
        hidden = self._unit(0, hidden, temb, context, num_frames)
        return self._unit(1, hidden, temb, context, num_frames)  # no transformers after the second ResBlock


class VideoCrafter2UpBlock(_Unit):
    """One resolution level of the decoder path: each unit first concatenates ``[hidden, skip]``."""

    def __init__(self, in_channels: int, skip_channels: list[int], out_channels: int, temb_channels: int,
                 head_dim: int, cross_attention_dim: int, has_attention: bool, add_upsample: bool):
        super().__init__()
        unit_in = [c + s for c, s in zip([in_channels] + [out_channels] * (len(skip_channels) - 1), skip_channels,
                                         strict=True)]
        self._build(unit_in, out_channels, temb_channels, head_dim, cross_attention_dim,
                    len(unit_in) if has_attention else 0)
        self.upsamplers = nn.ModuleList(
            [Upsample2D(out_channels, use_conv=True, out_channels=out_channels)] if add_upsample else []
        )

    def forward(self, hidden: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor, context: torch.Tensor,
                num_frames: int) -> torch.Tensor:
        """hidden ``(B*F, C, H, W)``; ``skips`` is consumed from its end (the most recent skip first)."""
        for i in range(len(self.resnets)):
            hidden = torch.cat([hidden, skips.pop()], dim=1)
            hidden = self._unit(i, hidden, temb, context, num_frames)
        for up in self.upsamplers:
            hidden = up(hidden)
        return hidden
