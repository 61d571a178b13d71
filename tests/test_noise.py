"""Correlated initial noise (paper supplement B, equations 5 and 7) against slow, obvious references."""

import math

import pytest
import torch

from vstar.noise import (
    NoiseParameters,
    check_covariance_parameters,
    correlated_noise,
    frame_cholesky,
    frame_covariance,
    kl_to_standard,
)


def equation_5(num_frames, beta, gamma):
    return [[beta if i == j else gamma ** abs(i - j) for j in range(num_frames)] for i in range(num_frames)]


@pytest.mark.parametrize("num_frames,beta,gamma", [(1, 1.0, 0.0), (5, 1.3, 0.6), (7, 0.9, -0.3), (16, 2.0, 0.95)])
def test_covariance_is_equation_5_entry_by_entry(num_frames, beta, gamma):
    got = frame_covariance(beta, gamma, num_frames)
    want = equation_5(num_frames, beta, gamma)
    assert got.shape == (num_frames, num_frames) and got.dtype == torch.float64
    for i in range(num_frames):
        for j in range(num_frames):
            assert math.isclose(float(got[i, j]), want[i][j], rel_tol=1e-12, abs_tol=1e-15)


def test_samples_have_the_covariance_and_mean_within_their_sampling_error():
    num_frames, beta, gamma = 6, 1.4, 0.7
    mu = torch.linspace(-1, 1, num_frames).view(1, 1, num_frames, 1, 1)
    noise = correlated_noise((500, 2, num_frames, 4, 5), mu, beta, gamma, torch.Generator().manual_seed(0))
    columns = noise.double().permute(0, 1, 3, 4, 2).reshape(-1, num_frames)  # (n, F)
    n = columns.shape[0]
    sigma = torch.tensor(equation_5(num_frames, beta, gamma), dtype=torch.float64)
    mean = columns.mean(0)
    # the mean of n draws has standard error sqrt(Sigma_ii / n)
    assert ((mean - mu.flatten().double()).abs() <= 5 * (sigma.diagonal() / n).sqrt()).all()
    centred = columns - mean
    sample = centred.T @ centred / (n - 1)
    # a Gaussian sample covariance entry has variance (Sigma_ii Sigma_jj + Sigma_ij^2) / (n - 1)
    standard_error = ((sigma.diagonal()[:, None] * sigma.diagonal()[None, :] + sigma**2) / (n - 1)).sqrt()
    assert ((sample - sigma).abs() <= 5 * standard_error).all(), (sample - sigma).abs().max()


def test_equal_generators_give_equal_noise():
    draw = [correlated_noise((1, 4, 8, 3, 3), 0.0, 1.2, 0.5, torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(draw[0], draw[1], rtol=0, atol=0)


def test_kl_is_zero_at_the_standard_normal_and_positive_elsewhere():
    zero = torch.zeros(1, 4, 8, 2, 2)
    assert float(kl_to_standard(zero, 1.0, 0.0, 8, 16)) == pytest.approx(0.0, abs=1e-12)
    assert float(kl_to_standard(zero, 1.0, 0.3, 8, 16)) > 0
    assert float(kl_to_standard(zero + 0.1, 1.0, 0.0, 8, 16)) == pytest.approx(0.5 * 0.01 * zero.numel())


def test_closed_form_kl_equals_a_monte_carlo_estimate():
    num_frames, beta, gamma = 5, 1.5, 0.6
    mu = torch.randn(1, 2, num_frames, 1, 2, generator=torch.Generator().manual_seed(1)).double() * 0.7
    columns = mu.permute(0, 1, 3, 4, 2).reshape(-1, num_frames)  # (4 positions, F)
    sigma = torch.tensor(equation_5(num_frames, beta, gamma), dtype=torch.float64)
    standard = torch.distributions.MultivariateNormal(torch.zeros(num_frames, dtype=torch.float64),
                                                      torch.eye(num_frames, dtype=torch.float64))
    torch.manual_seed(2)
    estimate, variance = 0.0, 0.0
    for mean in columns:  # KL = E_q[log q(x) - log p(x)] per position, summed over positions
        q = torch.distributions.MultivariateNormal(mean, sigma)
        x = q.sample((40000,))
        ratio = q.log_prob(x) - standard.log_prob(x)
        estimate += float(ratio.mean())
        variance += float(ratio.var()) / len(ratio)
    closed = float(kl_to_standard(mu, beta, gamma, num_frames, len(columns)))
    assert abs(closed - estimate) <= 5 * math.sqrt(variance), (closed, estimate, math.sqrt(variance))


def test_extreme_parameters_stay_positive_definite_at_256_frames():
    gamma = 1 - 1e-6
    beta = 2 * gamma / (1 + gamma) + 1e-6
    factor = frame_cholesky(beta, gamma, 256)
    assert torch.isfinite(factor).all() and (factor.diagonal() > 0).all()
    assert math.isfinite(float(kl_to_standard(torch.zeros(1, 1, 256, 1, 1), beta, gamma, 256, 1)))
    params = NoiseParameters((1, 2, 256, 2, 2))
    with torch.no_grad():  # far beyond any learning rate's reach: gamma -> 1, margin -> 0
        params.raw_gamma.fill_(50.0)
        params.raw_margin.fill_(-1000.0)
    beta, gamma = float(params.beta.detach()), float(params.gamma.detach())
    assert gamma < 1 and beta > 2 * gamma / (1 + gamma)
    sample, kl = params(torch.randn(1, 2, 256, 2, 2)), params.kl()
    (sample.sum() + kl).backward()
    assert torch.isfinite(sample).all() and math.isfinite(float(kl.detach()))
    assert all(torch.isfinite(p.grad).all() for p in params.parameters())


@pytest.mark.parametrize("beta,gamma,message", [
    (1.0, 1.0, "gamma must be in"), (1.0, -1.2, "gamma must be in"), (0.5, 0.5, "beta must exceed 2|gamma|"),
])
def test_parameters_that_could_break_positive_definiteness_are_refused(beta, gamma, message):
    with pytest.raises(ValueError, match=message):
        check_covariance_parameters(beta, gamma)
    with pytest.raises(ValueError, match=message):
        correlated_noise((1, 1, 4, 1, 1), 0.0, beta, gamma)


def test_gradients_reach_mu_beta_and_gamma():
    mu = torch.zeros(1, 2, 6, 2, 2, requires_grad=True)
    beta = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    noise = correlated_noise(mu.shape, mu, beta, gamma, torch.Generator().manual_seed(0))
    (noise[:, :, 1:] * noise[:, :, :-1]).sum().backward()  # neighbouring frames' correlation
    assert mu.grad.abs().sum() > 0 and beta.grad != 0 and gamma.grad != 0

    params = NoiseParameters((1, 2, 6, 2, 2))  # at N(0, I): gamma = 0, beta = 1
    assert float(params.beta.detach()) == pytest.approx(1.0) and float(params.gamma.detach()) == 0.0
    sample = params(torch.randn(1, 2, 6, 2, 2, generator=torch.Generator().manual_seed(1)))
    ((sample[:, :, 1:] * sample[:, :, :-1]).sum() + params.kl()).backward()
    for p in params.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
