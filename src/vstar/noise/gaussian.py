"""Initial noise correlated over frames (paper supplement B, equations 5 and 7).

Every latent position (batch item, channel, pixel) holds an independent column of ``F`` frame values drawn
from ``N(mu, Sigma_N(beta, gamma))`` with ``Sigma[i, j] = gamma^|i-j|`` off the diagonal and ``beta`` on it
(equation 5). ``Sigma = K(gamma) + (beta - 1) I`` where ``K`` is the AR(1) correlation matrix, whose
eigenvalues lie above ``(1 - |gamma|) / (1 + |gamma|)`` at every size, so ``Sigma`` is positive definite for
any frame count when ``|gamma| < 1`` and ``beta > 2|gamma| / (1 + |gamma|)``. The paper uses ``gamma >= 0``;
negative values (neighbouring frames anti-correlated) are allowed so that an optimization can start at
exactly ``N(0, I)`` (``gamma = 0``) and move either way.

``mu`` is a full latent-shaped tensor ``(B, C, F, h, w)``, not one value per frame: the temporal attention
that the noise is optimized for is formed per latent pixel from its features, and a mean that is constant
over each frame would mostly be removed by the denoiser's normalisations.
"""

from __future__ import annotations

import math

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from torch.nn import functional


def check_covariance_parameters(beta: float | torch.Tensor, gamma: float | torch.Tensor) -> None:
    """Raise a ValueError unless ``|gamma| < 1`` and ``beta > 2|gamma| / (1 + |gamma|)`` (then ``Sigma_N`` is
    positive definite for every frame count)."""
    b, g = (float(torch.as_tensor(value).detach()) for value in (beta, gamma))
    if not -1 < g < 1:
        raise ValueError(f"gamma must be in (-1, 1) (the correlation of neighbouring frames), got {g:g}")
    bound = 2 * abs(g) / (1 + abs(g))
    if not b > bound:
        raise ValueError(f"beta must exceed 2|gamma|/(1+|gamma|) = {bound:.6g} for gamma = {g:g} (then the "
                         f"covariance is positive definite at any frame count), got {b:g}")


def frame_covariance(beta: float | torch.Tensor, gamma: float | torch.Tensor, num_frames: int) -> torch.Tensor:
    """``Sigma_N(beta, gamma)`` of equation 5, ``(F, F)`` float64: ``beta`` on the diagonal, ``gamma^|i-j|`` off
    it; differentiable in ``beta`` and ``gamma``."""
    beta = torch.as_tensor(beta, dtype=torch.float64)
    gamma = torch.as_tensor(gamma, dtype=torch.float64, device=beta.device)
    index = torch.arange(num_frames, device=beta.device)
    distance = (index[:, None] - index[None, :]).abs()
    return torch.where(distance == 0, beta, gamma ** distance.double())


def frame_cholesky(beta: float | torch.Tensor, gamma: float | torch.Tensor, num_frames: int) -> torch.Tensor:
    """The lower Cholesky factor ``L`` ``(F, F)`` float64 of ``Sigma_N(beta, gamma)`` (``L L^T = Sigma``),
    after checking that the parameters keep ``Sigma`` positive definite."""
    check_covariance_parameters(beta, gamma)
    return torch.linalg.cholesky(frame_covariance(beta, gamma, num_frames))


def correlate(white: torch.Tensor, beta: float | torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """Standard normal ``white`` ``(B, C, F, h, w)`` -> zero-mean noise with covariance ``Sigma_N(beta, gamma)``
    over frames (``L @ white`` along the frame axis), same shape and dtype; differentiable in beta and gamma."""
    if white.ndim != 5:
        raise ValueError(f"noise must have shape (B, C, F, h, w), got {tuple(white.shape)}")
    factor = frame_cholesky(beta, gamma, white.shape[2]).to(white.device, white.dtype)
    return torch.einsum("fg,bcghw->bcfhw", factor, white)


def correlated_noise(shape: tuple[int, ...], mu: torch.Tensor | float, beta: float | torch.Tensor,
                     gamma: float | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A draw of ``N(mu, Sigma_N(beta, gamma))`` over frames, independent over the other axes.

    shape: ``(B, C, F, h, w)``; mu: the mean, a tensor broadcastable to ``shape`` (usually full latent-shaped)
    or a number; generator: seeds the standard normal draw (on the CPU, as diffusers' ``randn_tensor`` does
    for a CPU generator, so equal seeds give equal noise on every device). Returns float32 ``shape`` on
    ``mu``'s device; differentiable in mu, beta and gamma.
    """
    mu = torch.as_tensor(mu, dtype=torch.float32)
    white = randn_tensor(tuple(shape), generator=generator, device=mu.device, dtype=torch.float32)
    return mu + correlate(white, beta, gamma)


def kl_to_standard(mu: torch.Tensor, beta: float | torch.Tensor, gamma: float | torch.Tensor, num_frames: int,
                   positions: int) -> torch.Tensor:
    """``KL(N(mu, Sigma) || N(0, I))`` in closed form (equation 7), summed over ``positions`` independent
    columns of ``num_frames`` frames that share ``Sigma = Sigma_N(beta, gamma)``:

    ``0.5 * (positions * (tr Sigma - F - log det Sigma) + sum(mu ** 2))``.

    mu: the means of all columns, ``(B, C, F, h, w)`` with ``positions = B*C*h*w``. Returns a float64
    scalar, differentiable in mu, beta and gamma.
    """
    factor = frame_cholesky(beta, gamma, num_frames)
    log_det = 2 * factor.diagonal().log().sum()
    trace = num_frames * torch.as_tensor(beta, dtype=torch.float64, device=factor.device)
    square = torch.as_tensor(mu).double().square().sum().to(factor.device)
    return 0.5 * (positions * (trace - num_frames - log_det) + square)


MIN_MARGIN = 1e-6  # beta - 2|gamma|/(1+|gamma|) never falls below this, so Sigma's eigenvalues stay >= it
MAX_GAMMA = 1 - 1e-6  # |gamma| never reaches 1, whatever the raw parameter


def _inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


class NoiseParameters(nn.Module):
    """Trainable ``(mu, beta, gamma)`` of correlated noise, unconstrained so that ``Sigma_N`` stays positive
    definite at every step and every frame count: ``gamma = MAX_GAMMA * tanh(raw_gamma)`` and
    ``beta = 2|gamma|/(1+|gamma|) + MIN_MARGIN + softplus(raw_margin)``.

    shape: the latent shape ``(B, C, F, h, w)``; ``mu`` starts at zero and ``(beta, gamma)`` at the given
    values (default ``N(0, I)``, where the gradient in gamma is not zero).
    """

    def __init__(self, shape: tuple[int, ...], beta: float = 1.0, gamma: float = 0.0):
        super().__init__()
        check_covariance_parameters(beta, gamma)
        margin = beta - 2 * abs(gamma) / (1 + abs(gamma)) - MIN_MARGIN
        if abs(gamma) >= MAX_GAMMA or margin <= 0:
            raise ValueError(f"start from |gamma| < {MAX_GAMMA} and beta above the bound by more than {MIN_MARGIN:g}, "
                             f"got beta = {beta:g}, gamma = {gamma:g}")
        self.mu = nn.Parameter(torch.zeros(shape))
        self.raw_gamma = nn.Parameter(torch.tensor(gamma / MAX_GAMMA, dtype=torch.float64).atanh())
        self.raw_margin = nn.Parameter(torch.tensor(_inverse_softplus(margin), dtype=torch.float64))

    @property
    def gamma(self) -> torch.Tensor:
        return MAX_GAMMA * self.raw_gamma.tanh()

    @property
    def beta(self) -> torch.Tensor:
        size = self.gamma.abs()
        return 2 * size / (1 + size) + MIN_MARGIN + functional.softplus(self.raw_margin)

    def forward(self, white: torch.Tensor) -> torch.Tensor:
        """Standard normal ``white`` ``(B, C, F, h, w)`` -> ``mu + L white``, float32 like ``white``."""
        return self.mu + correlate(white, self.beta, self.gamma)

    def kl(self) -> torch.Tensor:
        """``KL(N(mu, Sigma) || N(0, I))`` over the whole latent, float64 scalar."""
        num_frames = self.mu.shape[2]
        return kl_to_standard(self.mu, self.beta, self.gamma, num_frames, self.mu.numel() // num_frames)
