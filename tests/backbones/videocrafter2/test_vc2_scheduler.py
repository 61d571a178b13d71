"""VideoCrafter2's rescaled DDIM against a slow, literal transcription of the formulas in config_full.json."""

import math

import pytest
import torch

from vstar.backbones.videocrafter2.scheduler import VideoCrafter2DDIMScheduler


class ReferenceDDIM:
    """The original sampler's arrays and update, element by element in Python floats (float64)."""

    def __init__(self, steps: int, eta: float):
        sqrt_start, sqrt_end = math.sqrt(0.00085), math.sqrt(0.012)
        betas = [(sqrt_start + (sqrt_end - sqrt_start) * i / 999) ** 2 for i in range(1000)]
        self.alphas_cumprod, running = [], 1.0
        for beta in betas:
            running *= 1 - beta
            self.alphas_cumprod.append(running)
        # concat(linspace(scale_a=1, scale_b=0.7, mid_step=400), full(1000, 0.7))
        self.scale_arr = [1.0 + (0.7 - 1.0) * i / 399 for i in range(400)] + [0.7] * 1000
        self.ddim_timesteps = [t + 1 for t in range(0, 1000, 1000 // steps)]
        ts = self.ddim_timesteps
        self.alphas = [self.alphas_cumprod[t] for t in ts]
        self.alphas_prev = [self.alphas_cumprod[0]] + [self.alphas_cumprod[t] for t in ts[:-1]]
        self.scales = [self.scale_arr[t] for t in ts]
        self.scales_prev = [self.scale_arr[0]] + [self.scale_arr[t] for t in ts[:-1]]
        self.sigmas = [eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
                       for a, ap in zip(self.alphas, self.alphas_prev, strict=True)]

    def step(self, index: int, x: list[float], e: list[float], noise: list[float]) -> list[float]:
        a_t, a_prev, sigma = self.alphas[index], self.alphas_prev[index], self.sigmas[index]
        out = []
        for xi, ei, ni in zip(x, e, noise, strict=True):
            pred_x0 = (xi - math.sqrt(1 - a_t) * ei) / math.sqrt(a_t)
            pred_x0 /= self.scales[index]
            dir_xt = math.sqrt(1 - a_prev - sigma**2) * ei
            out.append(math.sqrt(a_prev) * self.scales_prev[index] * pred_x0 + dir_xt + sigma * ni)
        return out


def test_timesteps_match_the_original_uniform_discretisation():
    scheduler = VideoCrafter2DDIMScheduler()
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))
    scheduler.set_timesteps(25)
    assert scheduler.timesteps[0] == 961 and scheduler.timesteps[-1] == 1 and len(scheduler.timesteps) == 25
    assert scheduler.init_noise_sigma == 1.0


@pytest.mark.parametrize("steps", [3, 7, 30, 999])
def test_step_counts_that_do_not_divide_1000_give_exactly_that_many_valid_steps(steps):
    scheduler = VideoCrafter2DDIMScheduler()
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    assert len(timesteps) == steps and timesteps[-1] == 1 and timesteps[0] <= 999
    assert all(a - b == 1000 // steps for a, b in zip(timesteps, timesteps[1:], strict=False))
    x = torch.zeros(2)
    for t in scheduler.timesteps:
        x = scheduler.step(torch.ones(2), t, x).prev_sample
    assert torch.isfinite(x).all()


def test_scale_arr_matches_the_recorded_checkpoints():
    scale = VideoCrafter2DDIMScheduler().scale_arr
    assert len(scale) == 1400
    assert scale[0] == 1.0 and abs(scale[399] - 0.7) < 1e-7 and scale[400] == 0.7 and scale[999] == 0.7


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_full_sampling_loop_matches_reference(eta):
    """10 steps with a fixed noise prediction per step; eta=1 draws the same noise from equal generators."""
    steps, shape = 10, (1, 2, 3, 2, 2)
    scheduler, reference = VideoCrafter2DDIMScheduler(), ReferenceDDIM(steps, eta)
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == reference.ddim_timesteps[::-1]
    make = torch.Generator().manual_seed(0)
    ours_gen, ref_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=make, dtype=torch.float64)
    x_ref = x.flatten().tolist()
    for i, t in enumerate(scheduler.timesteps):
        eps = torch.randn(shape, generator=make, dtype=torch.float64)
        x = scheduler.step(eps, t, x, eta=eta, generator=ours_gen).prev_sample
        noise = torch.randn(shape, generator=ref_gen, dtype=torch.float64) if eta > 0 else torch.zeros(shape)
        x_ref = reference.step(steps - 1 - i, x_ref, eps.flatten().tolist(), noise.flatten().tolist())
        assert torch.allclose(x.flatten(), torch.tensor(x_ref, dtype=torch.float64), rtol=0, atol=1e-10), t


def test_step_returns_predicted_x0_and_scalar_tensor_timestep():
    scheduler = VideoCrafter2DDIMScheduler()
    scheduler.set_timesteps(5)
    x, eps = torch.ones(2, 3), torch.full((2, 3), 0.5)
    out = scheduler.step(eps, torch.tensor(801), x)
    a_t, s_t = scheduler.alphas_cumprod[801], 0.7
    assert torch.allclose(out.pred_original_sample, (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t) / s_t)
    prev, _ = scheduler.step(eps, 801, x, return_dict=False)
    assert torch.equal(prev, out.prev_sample)
    assert scheduler.scale_model_input(x, 801) is x


def test_unknown_timestep_and_bad_step_count_raise():
    scheduler = VideoCrafter2DDIMScheduler()
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="timestep 500 is not one of"):
        scheduler.step(torch.zeros(1), 500, torch.zeros(1))
    for bad in (0, 1000):
        with pytest.raises(ValueError, match=r"num_inference_steps must be in 1\.\.999"):
            scheduler.set_timesteps(bad)


def test_config_round_trip(tmp_path):
    VideoCrafter2DDIMScheduler(scale_b=0.6).save_pretrained(tmp_path)
    loaded = VideoCrafter2DDIMScheduler.from_pretrained(tmp_path)
    assert loaded.config.scale_b == 0.6 and abs(loaded.scale_arr[-1] - 0.6) < 1e-12


def test_add_noise_is_the_forward_process_that_a_step_inverts():
    """With the true noise as the model's prediction, a step from add_noise(x0, eps, t) recovers x0."""
    scheduler = VideoCrafter2DDIMScheduler()
    scheduler.set_timesteps(25)
    x0, eps = torch.randn(2, 4, 3, 4, 4, dtype=torch.float64), torch.randn(2, 4, 3, 4, 4, dtype=torch.float64)
    for t in (961, 401, 1):
        noisy = scheduler.add_noise(x0, eps, torch.tensor([t]))
        torch.testing.assert_close(scheduler.step(eps, t, noisy).pred_original_sample, x0)
