"""The sampling loop and its scheduler adapters against hand-written loops of the same schedulers."""

import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from vstar.sampling import DiffusersScheduler, FlowMatchScheduler, classifier_free_guidance, sample


def toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth, time-dependent stand-in for a denoiser."""
    return torch.tanh(x) * (float(t) / 1000.0) + 0.1 * x.flip(-1)


def noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 4, 3, 5, 5, generator=torch.Generator().manual_seed(seed))


def test_flow_matching_is_the_euler_integration_of_the_velocity():
    """x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * v(x_i, t_i), starting from the noise itself."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    got = sample(toy_model, noise(), FlowMatchScheduler(scheduler), 6, progress=False)
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    reference.set_timesteps(6)
    x = noise()
    for i, t in enumerate(reference.timesteps):
        x = x + (reference.sigmas[i + 1] - reference.sigmas[i]) * toy_model(x, t)
    torch.testing.assert_close(got, x, rtol=0, atol=1e-6)


def test_ddim_adapter_passes_eta_and_generator_like_a_manual_loop():
    config = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    got = sample(toy_model, noise(), DiffusersScheduler(DDIMScheduler(**config), eta=1.0), 4,
                 generator=torch.Generator().manual_seed(5), progress=False)
    reference, generator = DDIMScheduler(**config), torch.Generator().manual_seed(5)
    reference.set_timesteps(4)
    x = noise() * reference.init_noise_sigma
    for t in reference.timesteps:
        x = reference.step(toy_model(reference.scale_model_input(x, t), t), t, x, eta=1.0,
                           generator=generator).prev_sample
    torch.testing.assert_close(got, x, rtol=0, atol=0)


def test_guidance_runs_the_negative_branch_first():
    def model(x, t):  # the two halves of the batch get different outputs: -1 (negative) and +1 (positive)
        return torch.cat([-torch.ones_like(x[:1]), torch.ones_like(x[1:])])

    out = classifier_free_guidance(model, 7.5)(torch.zeros(1, 2), torch.tensor(1))
    torch.testing.assert_close(out, torch.full((1, 2), -1 + 7.5 * 2))


def test_step_hooks_see_every_step_and_can_replace_the_latents():
    starts, ends = [], []

    def on_end(i, t, latents):
        ends.append(i)
        return latents * 0

    out = sample(toy_model, noise(), FlowMatchScheduler(FlowMatchEulerDiscreteScheduler()), 3,
                 on_step_start=lambda i, t: starts.append(i), on_step_end=on_end, progress=False)
    assert starts == ends == [0, 1, 2] and out.abs().max() == 0
