"""The sampling loop as a small function, and adapters for the schedulers it steps (k-diffusion style).

:func:`sample` knows nothing about models: it calls a model function ``(x, t) -> output`` once per step and
lets a :class:`SchedulerAdapter` turn the output into the next latents. Guidance is a wrapper around the model
function (:func:`classifier_free_guidance`). Adapters hide each scheduler family's conventions:

- :class:`DiffusersScheduler`: DDIM-style diffusers schedulers (``init_noise_sigma``, ``scale_model_input``,
  ``step(..., eta=, generator=)``), including VideoCrafter2's rescaled DDIM;
- :class:`FlowMatchScheduler`: flow matching (``FlowMatchEulerDiscreteScheduler``, ``UniPCMultistepScheduler``
  with flow sigmas; velocity prediction, no input scaling, the noise is the initial sample).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

ModelFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Generator = torch.Generator | list[torch.Generator] | None


class SchedulerAdapter(Protocol):
    """What :func:`sample` asks of a scheduler."""

    def timesteps(self, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        """Set up ``num_inference_steps`` steps and return their timesteps, first (noisiest) first."""
        ...

    def initial_latents(self, noise: torch.Tensor) -> torch.Tensor:
        """The first sample from standard normal ``noise``."""
        ...

    def model_input(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """What the denoiser sees at ``timestep``."""
        ...

    def step(self, output: torch.Tensor, timestep: torch.Tensor, latents: torch.Tensor,
             generator: Generator) -> torch.Tensor:
        """The next (less noisy) latents from the model ``output`` at ``timestep``."""
        ...


class DiffusersScheduler:
    """A diffusers scheduler with DDPM/DDIM conventions; ``eta`` and ``generator`` reach ``step`` when it takes them."""

    def __init__(self, scheduler: Any, eta: float = 0.0):
        self.scheduler = scheduler
        accepted = set(inspect.signature(scheduler.step).parameters)
        self._takes_eta = "eta" in accepted
        self._takes_generator = "generator" in accepted
        self.eta = eta

    def timesteps(self, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        return self.scheduler.timesteps

    def initial_latents(self, noise: torch.Tensor) -> torch.Tensor:
        return noise * self.scheduler.init_noise_sigma

    def model_input(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.scheduler.scale_model_input(latents, timestep)

    def step(self, output: torch.Tensor, timestep: torch.Tensor, latents: torch.Tensor,
             generator: Generator) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if self._takes_eta:
            kwargs["eta"] = self.eta
        if self._takes_generator:
            kwargs["generator"] = generator
        return self.scheduler.step(output, timestep, latents, **kwargs).prev_sample


class FlowMatchScheduler:
    """A flow-matching scheduler: the model predicts a velocity and x_T is the noise itself.

    ``FlowMatchEulerDiscreteScheduler`` and the multistep ones in flow mode (``UniPCMultistepScheduler`` with
    ``use_flow_sigmas``, what Wan ships); the step index starts at 0 (``set_begin_index``) and the generator
    reaches ``step`` where it takes one.
    """

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self._takes_generator = "generator" in inspect.signature(scheduler.step).parameters

    def timesteps(self, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)
        return self.scheduler.timesteps

    def initial_latents(self, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def model_input(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return latents

    def step(self, output: torch.Tensor, timestep: torch.Tensor, latents: torch.Tensor,
             generator: Generator) -> torch.Tensor:
        kwargs = {"generator": generator} if self._takes_generator else {}
        return self.scheduler.step(output, timestep, latents, **kwargs).prev_sample


def classifier_free_guidance(model: ModelFunction, guidance_scale: float) -> ModelFunction:
    """``model`` run on ``cat([x, x])`` (negative branch first) and combined as
    ``uncond + guidance_scale * (cond - uncond)``; the context of ``model`` must follow the same order."""

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        uncond, cond = model(torch.cat([x, x]), t).chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    return guided


StepStart = Callable[[int, torch.Tensor], None]
StepEnd = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def sample(model: ModelFunction, noise: torch.Tensor, scheduler: SchedulerAdapter, num_inference_steps: int, *,
           generator: Generator = None, on_step_start: StepStart | None = None,
           on_step_end: StepEnd | None = None, progress: bool = True) -> torch.Tensor:
    """Denoise ``noise`` ``(B, C, L, h, w)`` in ``num_inference_steps`` steps; returns the final latents.

    Latents are kept in float32 between steps whatever the model's dtype. ``on_step_start(i, t)`` runs before
    step i (e.g. to switch TAR off after the early steps); ``on_step_end(i, t, latents)`` after it and returns
    the latents to continue with.
    """
    timesteps = scheduler.timesteps(num_inference_steps, noise.device)
    latents = scheduler.initial_latents(noise.float())
    for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress)):
        if on_step_start is not None:
            on_step_start(i, t)
        output = model(scheduler.model_input(latents, t), t).float()
        latents = scheduler.step(output, t, latents, generator)
        if on_step_end is not None:
            latents = on_step_end(i, t, latents)
    return latents
