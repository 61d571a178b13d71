"""The small adapter interface every base-model family implements.

The VSTAR pipeline owns the denoising loop; a backbone only answers the questions the loop asks:
how to encode texts, how to call its UNet with per-frame embeddings, how to decode latents, and
which scheduler, sizes and limits it uses. Adding a model family means writing one subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneDefaults:
    """Recommended generation settings of a model family (what its authors use)."""

    height: int
    width: int
    num_frames: int = 16
    num_inference_steps: int = 25
    guidance_scale: float = 9.0
    fps: int = 8
    max_frames: int | None = None  # hard limit (a fixed-length frame position table), None = unbounded
    eta: float = 0.0  # DDIM eta


class Backbone(nn.Module):
    """A loaded base model: UNet, VAE, text encoder, tokenizer and scheduler behind one interface.

    Subclasses set the components in ``__init__`` and implement :meth:`encode_text`,
    :meth:`predict_noise` and :meth:`decode_latents`. ``unet`` is the denoiser that
    :func:`vstar.apply_tar` and per-frame conditioning act on.
    """

    name: str = "backbone"

    def __init__(self, unet: nn.Module, vae: nn.Module, text_encoder: nn.Module, tokenizer: Any,
                 scheduler: Any, defaults: BackboneDefaults, model_id: str | None = None):
        super().__init__()
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.defaults = defaults
        self.model_id = model_id

    # --- what the loop asks -------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        """Spatial downsampling of the VAE (8 for SD-style KL-f8 autoencoders)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Encode ``K`` texts into cross-attention embeddings of shape ``(K, S, D)`` on the UNet's device/dtype."""
        raise NotImplementedError

    def predict_noise(self, latents: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                      fps: int | None = None) -> torch.Tensor:
        """Run the UNet.

        latents: ``(B, C, F, h, w)``; timestep: scalar or ``(B,)``; context: ``(B*F, S, D)`` with the frame
        index varying fastest (one embedding per frame, ``(b f)`` order). Returns the model output
        ``(B, C, F, h, w)`` in the scheduler's parameterisation.
        """
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        """Decode ``(B, C, F, h, w)`` latents ``chunk_size`` frames at a time into video ``(B, F, 3, H, W)`` in [0, 1]."""
        raise NotImplementedError

    def check_num_frames(self, num_frames: int) -> None:
        """Raise a clear ValueError when the family cannot generate ``num_frames`` frames."""
        limit = self.defaults.max_frames
        if limit is not None and num_frames > limit:
            raise ValueError(
                f"{self.name} supports at most {limit} frames (its frame positional embeddings have {limit} entries), "
                f"got {num_frames}; "
                f"use --frames {limit} or a backbone without frame positional embeddings (modelscope, videocrafter2)"
            )
