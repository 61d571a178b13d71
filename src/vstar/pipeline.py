"""The VSTAR pipeline: one denoising pass over all frames with per-frame text and TAR (orchestration only)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from vstar.backbones import Backbone, load_backbone
from vstar.conditioning import InterpolationMode, cfg_context, interpolate_embeddings, keyframe_indices
from vstar.tar import TARConfig, apply_tar, remove_tar

OutputType = Literal["np", "pt", "latent"]
StepCallback = Callable[["VSTARPipeline", int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor] | None]


@dataclass
class VSTAROutput:
    """What a generation returns.

    frames: ``(B, F, H, W, 3)`` float32 numpy in [0, 1] (``output_type="np"``), ``(B, F, 3, H, W)`` tensor
    (``"pt"``) or the final latents ``(B, C, F, h, w)`` (``"latent"``).
    states: the synopsis states used, keyframes: the frame of each state, settings: every resolved setting.
    """

    frames: np.ndarray | torch.Tensor
    states: list[str]
    keyframes: list[int]
    settings: dict[str, Any] = field(default_factory=dict)


def _states_from(prompt: str | None, synopsis: Sequence[str] | Any | None) -> list[str]:
    """The visual states to condition on: the synopsis (a list of strings or an object with ``.states``),
    else the single prompt for every frame."""
    if synopsis is not None:
        states = list(getattr(synopsis, "states", synopsis))
        if isinstance(synopsis, str) or not states or not all(isinstance(s, str) and s.strip() for s in states):
            raise ValueError("synopsis must be a non-empty list of non-empty state prompts, e.g. "
                             "['a landscape in winter', 'a landscape in spring']")
        return [s.strip() for s in states]
    if prompt is None or not prompt.strip():
        raise ValueError("prompt is empty; describe the video, e.g. 'a landscape from winter to spring'")
    return [prompt.strip()]


class VSTARPipeline:
    """Text-to-video with Video Synopsis Prompting and Temporal Attention Regularization over any backbone.

    >>> pipe = VSTARPipeline.from_pretrained("modelscope")
    >>> out = pipe("a landscape from winter to spring", synopsis=["a landscape in winter", "... in spring"],
    ...            num_frames=48, tar="64D1_32D8", generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    @classmethod
    def from_pretrained(cls, name: str = "videocrafter2", *, model_path: str | Path | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        seed: int = 0) -> VSTARPipeline:
        """Load a registered backbone (``vstar.list_backbones()``) and wrap it."""
        return cls(load_backbone(name, model_path=model_path, device=device, dtype=dtype, seed=seed))

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def check_size(self, height: int, width: int) -> None:
        """The UNet halves the latent once per level; the pixel size must divide by the total factor."""
        levels = len(self.backbone.unet.config.block_out_channels)
        factor = self.backbone.vae_scale_factor * 2 ** (levels - 1)
        for label, value in (("height", height), ("width", width)):
            if value < factor or value % factor:
                nearest = max(factor, round(value / factor) * factor)
                raise ValueError(f"{label} must be a positive multiple of {factor} for this model, got {value}; "
                                 f"try {nearest}")

    def encode_states(self, states: Sequence[str], negative_prompt: str | None, num_frames: int,
                      interpolation: InterpolationMode, use_cfg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-frame embeddings ``(F, S, D)`` of the states, and of the negative prompt under CFG."""
        cond = interpolate_embeddings(self.backbone.encode_text(list(states)), num_frames, mode=interpolation)
        if not use_cfg:
            return cond, None
        uncond = self.backbone.encode_text([negative_prompt or ""]).expand(num_frames, -1, -1)
        return cond, uncond

    def _step_kwargs(self, eta: float, generator: torch.Generator | list[torch.Generator] | None) -> dict[str, Any]:
        accepted = set(inspect.signature(self.backbone.scheduler.step).parameters)
        return {k: v for k, v in (("eta", eta), ("generator", generator)) if k in accepted}

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | None = None,
        synopsis: Sequence[str] | Any | None = None,
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        tar: str | TARConfig | None = "64D1",
        interpolation: InterpolationMode = "linear",
        fps: int | None = None,
        eta: float | None = None,
        num_videos: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: OutputType = "np",
        decode_chunk_size: int = 4,
        progress: bool = True,
        callback_on_step_end: StepCallback | None = None,
    ) -> VSTAROutput:
        """Generate ``num_videos`` videos of ``num_frames`` frames in one pass.

        Args:
            prompt: the video description; used for every frame when no ``synopsis`` is given.
            synopsis: visual states (K prompts) placed on evenly spaced keyframes and interpolated per frame.
            tar: a preset like ``"64D1"`` / ``"64D1_32D8"``, a :class:`TARConfig`, or None to switch TAR off.
            interpolation: ``"linear"``, ``"step"`` or ``"slerp"`` between keyframe embeddings.
            fps: frame-rate conditioning for backbones that take it (VideoCrafter2).
            generator: seeds the initial noise and stochastic sampler steps (same seed, same frames); a list
                gives each of the ``num_videos`` videos its own seed.
            latents: initial noise ``(num_videos, C, F, h, w)`` instead of drawing it.
            callback_on_step_end: ``fn(pipeline, step, t, {"latents": ...})``; may return new latents.
            Missing sizes and sampler settings come from the backbone's recommended defaults.
        """
        backbone, defaults = self.backbone, self.backbone.defaults
        states = _states_from(prompt, synopsis)
        def default(value: Any, fallback: Any) -> Any:
            return fallback if value is None else value

        num_frames = default(num_frames, defaults.num_frames)
        height, width = default(height, defaults.height), default(width, defaults.width)
        num_inference_steps = default(num_inference_steps, defaults.num_inference_steps)
        guidance_scale = default(guidance_scale, defaults.guidance_scale)
        eta, fps = default(eta, defaults.eta), default(fps, defaults.fps)
        tar_config = TARConfig.parse(tar) if isinstance(tar, str) else tar
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 for a video, got {num_frames}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"unknown output_type {output_type!r}; choose np, pt or latent")
        if len(states) > num_frames:
            raise ValueError(f"{len(states)} synopsis states do not fit on {num_frames} frames; "
                             "use more frames or fewer states")
        backbone.check_num_frames(num_frames)
        self.check_size(height, width)

        use_cfg = guidance_scale > 1.0
        cond, uncond = self.encode_states(states, negative_prompt, num_frames, interpolation, use_cfg)
        context = cfg_context(cond, uncond, num_videos)

        scale = backbone.vae_scale_factor
        shape = (num_videos, backbone.latent_channels, num_frames, height // scale, width // scale)
        scheduler = backbone.scheduler
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        latents = latents.to(self.device, torch.float32) * scheduler.init_noise_sigma
        step_kwargs = self._step_kwargs(eta, generator)

        tar_state = apply_tar(backbone.unet, tar_config) if tar_config is not None else None
        active_steps = tar_config.active_steps(num_inference_steps) if tar_config is not None else 0
        try:
            for i, t in enumerate(tqdm(scheduler.timesteps, desc="denoising", disable=not progress)):
                if tar_state is not None:
                    tar_state.active = i < active_steps
                model_in = torch.cat([latents] * 2) if use_cfg else latents
                model_in = scheduler.scale_model_input(model_in, t).to(backbone.dtype)
                noise = backbone.predict_noise(model_in, t, context, fps=fps).float()
                if use_cfg:
                    noise_uncond, noise_cond = noise.chunk(2)
                    noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
                latents = scheduler.step(noise, t, latents, **step_kwargs).prev_sample
                if callback_on_step_end is not None:
                    update = callback_on_step_end(self, i, t, {"latents": latents})
                    latents = (update or {}).get("latents", latents)
        finally:
            if tar_state is not None:
                remove_tar(backbone.unet)

        settings = {
            "num_frames": num_frames, "height": height, "width": width, "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale, "negative_prompt": negative_prompt, "eta": eta, "fps": fps,
            "tar": tar_config.to_preset() if tar_config is not None else None,
            "tar_max_mode": tar_config.max_mode if tar_config is not None else None,
            "tar_strength": tar_config.strength if tar_config is not None else None,
            "tar_step_fraction": tar_config.step_fraction if tar_config is not None else None,
            "interpolation": interpolation, "num_videos": num_videos,
        }
        keyframes = keyframe_indices(len(states), num_frames)
        if output_type == "latent":
            return VSTAROutput(latents, states, keyframes, settings)
        video = backbone.decode_latents(latents, chunk_size=decode_chunk_size).float().clamp(0, 1).cpu()
        frames = video.permute(0, 1, 3, 4, 2).numpy() if output_type == "np" else video
        return VSTAROutput(frames, states, keyframes, settings)
