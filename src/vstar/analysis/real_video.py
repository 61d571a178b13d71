"""The temporal attention of a real video (paper section 3.3, figure 4): encode it, noise it, run the
denoiser once and record.

The default timestep is 400 of 1000 training steps: the clip's layout survives the noise there (its signal
still dominates in the latent), and it lies within the steps TAR regularizes (the first 56% of a 25-step
schedule reach down to t ~ 440), so the maps compare with those a generation forms while TAR acts.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from vstar.analysis.recording import AttentionRecorder, record_temporal_attention
from vstar.backbones import Backbone
from vstar.conditioning import cfg_context

DEFAULT_TIMESTEP = 400


def pick_frames(num_available: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames evenly spread over ``num_available`` (first and last included); temporal
    attention needs at least 2 frames, so fewer are refused."""
    if num_available < 2:
        raise ValueError(f"the video has {num_available} frame(s); temporal attention needs at least 2: give a "
                         "longer video")
    if not 2 <= num_frames <= num_available:
        raise ValueError(f"--frames {num_frames}: the video has {num_available} frames; use --frames between 2 and "
                         f"{num_available}")
    return np.round(np.linspace(0, num_available - 1, num_frames)).astype(int)


def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(F, H0, W0, 3)`` frames resized to cover ``height x width`` and centre-cropped to it, same dtype."""
    source_h, source_w = frames.shape[1:3]
    scale = max(height / source_h, width / source_w)
    size = (max(width, round(source_w * scale)), max(height, round(source_h * scale)))  # cv2 wants (w, h)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, size, interpolation=interpolation)[top:top + height, left:left + width]
                     for f in frames])


def prepare_video(frames: np.ndarray, num_frames: int, height: int, width: int) -> torch.Tensor:
    """``(N, H0, W0, 3)`` uint8 frames -> ``(1, F, 3, height, width)`` float32 in [0, 1]: ``num_frames``
    evenly spread frames, resized and centre-cropped."""
    chosen = fit_frames(frames[pick_frames(len(frames), num_frames)], height, width)
    return torch.from_numpy(chosen).permute(0, 3, 1, 2)[None].float() / 255.0


def check_train_timestep(timestep: int, num_train_timesteps: int, name: str, flag: str = "--timestep") -> None:
    """Raise a ValueError unless ``timestep`` is one of the ``num_train_timesteps`` training timesteps of the
    model ``name`` (known from the registry before it loads)."""
    if not 0 <= timestep < num_train_timesteps:
        raise ValueError(f"{flag} must be in 0..{num_train_timesteps - 1} (the training timesteps of {name}), got "
                         f"{timestep}; {DEFAULT_TIMESTEP} is the default")


def check_timestep(backbone: Backbone, timestep: int, flag: str = "--timestep") -> None:
    """:func:`check_train_timestep` for a loaded model (its scheduler's training timesteps)."""
    check_train_timestep(timestep, backbone.scheduler.config.num_train_timesteps, backbone.name, flag)


@torch.no_grad()
def noised_video_latents(backbone: Backbone, video: torch.Tensor, timestep: int = DEFAULT_TIMESTEP,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``video`` ``(1, F, 3, H, W)`` in [0, 1], VAE-encoded and noised to ``timestep`` (noise seeded by
    ``seed``): float32 latents ``(1, C, L, h, w)`` and the timestep ``(1,)``, both on the model's device."""
    check_timestep(backbone, timestep)
    latents = backbone.encode_video(video.to(backbone.device)).float()  # (1, C, L, h, w)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents.device)
    t = torch.tensor([timestep], device=latents.device)
    return backbone.scheduler.add_noise(latents, noise, t), t


@torch.no_grad()
def record_video_attention(backbone: Backbone, video: torch.Tensor, prompt: str = "",
                           timestep: int = DEFAULT_TIMESTEP, seed: int = 0) -> AttentionRecorder:
    """Record the temporal attention of every layer while the denoiser sees ``video`` ``(1, F, 3, H, W)``
    (in [0, 1]) noised to ``timestep``, conditioned on ``prompt`` (the empty prompt: unconditional), CFG off."""
    noisy, t = noised_video_latents(backbone, video, timestep, seed)
    num_latent = noisy.shape[2]
    context = cfg_context(backbone.encode_text([prompt]).expand(num_latent, -1, -1), None)
    with backbone.per_frame_text(context), record_temporal_attention(backbone) as recorder:
        backbone.model_output(noisy.to(backbone.dtype), t, context, fps=backbone.defaults.cond_fps)
    return recorder
