"""VideoCrafter2's DDIM sampler with the rescaled noise schedule (``use_scale``), with diffusers' scheduler API.

VideoCrafter2 was trained with ``x_t = sqrt(a_t) * s_t * x_0 + sqrt(1 - a_t) * eps``, where the signal scale
``s = concat(linspace(scale_a, scale_b, mid_step), full(T, scale_b))`` ramps from 1.0 to 0.7 over the first
400 DDPM steps. Its DDIM step undoes ``s_t`` in the predicted ``x_0`` and applies ``s_prev``::

    x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t) / s_t
    sigma = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    x_prev = sqrt(a_prev) * s_prev * x0 + sqrt(1 - a_prev - sigma^2) * eps + sigma * noise

The final step goes to DDPM index 0 (``a_prev = alphas_cumprod[0]``, ``s_prev = s[0]``), as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor


@dataclass
class VideoCrafter2DDIMSchedulerOutput(BaseOutput):
    """``prev_sample``: the latents of the next (less noisy) step; ``pred_original_sample``: the predicted,
    unscaled ``x_0``. Both have the shape of the input sample."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class VideoCrafter2DDIMScheduler(SchedulerMixin, ConfigMixin):
    """DDIM over the linear-beta schedule of VideoCrafter2 with its signal rescaling (epsilon prediction)."""

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        use_scale: bool = True,
        scale_a: float = 1.0,
        scale_b: float = 0.7,
        mid_step: int = 400,
    ):
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float64) ** 2
        self.alphas_cumprod = np.cumprod(1.0 - betas)  # (T,) float64
        if use_scale:  # (mid_step + T,), indexed by DDPM timestep like the original
            self.scale_arr = np.concatenate([np.linspace(scale_a, scale_b, mid_step),
                                             np.full(num_train_timesteps, scale_b)])
        else:
            self.scale_arr = np.ones(num_train_timesteps)
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.from_numpy(np.arange(num_train_timesteps)[::-1].copy())

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """``n`` uniform DDIM timesteps ``k * (T // n) + 1``, descending (50 steps: 981, 961, ..., 1).

        This is the original ``range(0, T, T // n) + 1`` whenever ``n`` divides ``T`` (25, 50, ...). For other
        ``n`` the original yields extra steps (30 -> 31) or an index past ``T - 1`` (3 -> 1000); here it is
        always exactly ``n`` steps.
        """
        total = self.config.num_train_timesteps
        if not 0 < num_inference_steps < total:  # the +1 offset leaves room for T - 1 steps at most
            raise ValueError(f"num_inference_steps must be in 1..{total - 1}, got {num_inference_steps}")
        ascending = np.arange(num_inference_steps) * (total // num_inference_steps) + 1
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(ascending[::-1].copy()).to(device=device, dtype=torch.long)

    def scale_model_input(self, sample: torch.Tensor, timestep: int | torch.Tensor | None = None) -> torch.Tensor:
        """Identity (DDIM does not rescale the model input)."""
        return sample

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: int | torch.Tensor) -> torch.Tensor:
        """The training forward process at one DDPM ``timesteps``: ``sqrt(a_t) * s_t * x_0 + sqrt(1 - a_t) * eps``."""
        t = int(timesteps)
        a_t, s_t = float(self.alphas_cumprod[t]), float(self.scale_arr[t])
        return a_t**0.5 * s_t * original_samples + (1 - a_t) ** 0.5 * noise

    def _previous(self, timestep: int) -> int:
        """The DDPM index the step from ``timestep`` lands on (0 after the last timestep)."""
        positions = (self.timesteps == timestep).nonzero()
        if len(positions) == 0:
            raise ValueError(f"timestep {timestep} is not one of the scheduler's timesteps; call set_timesteps first")
        position = int(positions[0, 0]) + 1
        return int(self.timesteps[position]) if position < len(self.timesteps) else 0

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> VideoCrafter2DDIMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One DDIM step from ``timestep`` to the next of ``self.timesteps``.

        model_output: predicted noise, same shape as ``sample`` (any shape, e.g. ``(B, C, F, H, W)``); eta: 0 is
        deterministic DDIM, 1.0 is the authors' setting (fresh noise from ``generator`` each step).
        """
        t = int(timestep)
        index_prev = self._previous(t)
        a_t, s_t = float(self.alphas_cumprod[t]), float(self.scale_arr[t])
        a_prev, s_prev = float(self.alphas_cumprod[index_prev]), float(self.scale_arr[index_prev])
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5

        pred_x0 = (sample - (1 - a_t) ** 0.5 * model_output) / a_t**0.5 / s_t
        prev = a_prev**0.5 * s_prev * pred_x0 + (1 - a_prev - sigma**2) ** 0.5 * model_output
        if sigma > 0:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            prev = prev + sigma * noise
        if not return_dict:
            return prev, pred_x0
        return VideoCrafter2DDIMSchedulerOutput(prev_sample=prev, pred_original_sample=pred_x0)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
