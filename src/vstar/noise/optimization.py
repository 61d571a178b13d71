"""Optimization-based temporal nursing (paper supplement B, equation 8): initial noise whose temporal attention
matches that of a real reference video.

>>> opt = optimize_initial_noise(pipe, "reference.mp4", "a red circle moving right", num_steps=20)
>>> video = pipe("a red circle moving right", latents=opt.latents).frames

The reference is read, fitted to the generation's size and frame count, VAE-encoded and noised to
``timestep`` (as ``vstar analyze`` does); one denoiser pass records its maps ``A_ref,t`` at ``levels``. The
candidate noise ``eps = mu + L(beta, gamma) z`` (``z`` standard normal, drawn once from the generator) is
seen by the denoiser at the same timestep with the same per-frame text, and ``(mu, beta, gamma)`` follow
Adam on ``L = ||A_ref,t - A_t|| + kl_weight * KL / n``: the Frobenius norm over the chosen layers' ``(F, F)``
maps (averaged over heads and pixels) plus the KL of equation 7 per latent element (``n`` elements, so that
one ``kl_weight`` fits every latent size; the paper's lambda is ``kl_weight / n``). Both passes run without
classifier-free guidance and without TAR (the model's own attention is what the noise shapes); sampling from
the optimized noise then uses VSP and TAR as configured. Gradients flow from the chosen levels' attention
probabilities only (each chunk checkpointed), through the layers before them; the denoiser's weights get none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from tqdm.auto import tqdm

from vstar.analysis.real_video import (
    DEFAULT_TIMESTEP,
    check_timestep,
    noised_video_latents,
    prepare_video,
)
from vstar.analysis.recording import chosen_layers, record_temporal_attention
from vstar.conditioning import cfg_context
from vstar.config import GenerationConfig
from vstar.io import read_video
from vstar.noise.gaussian import NoiseParameters, check_covariance_parameters

if TYPE_CHECKING:
    from vstar.backbones import Backbone
    from vstar.pipeline import VSTARPipeline

DEFAULT_STEPS = 20
DEFAULT_LR = 0.05
DEFAULT_KL_WEIGHT = 1.0
DEFAULT_LEVELS: tuple[int, ...] = (0,)  # the paper's "64": the highest-resolution temporal attention


@dataclass
class OptimizedNoise:
    """What :func:`optimize_initial_noise` returns.

    mu: ``(1, C, L, h, w)`` float32 CPU; beta, gamma: the optimized covariance parameters (equation 5);
    latents: ``mu + L(beta, gamma) z``, the initial noise to sample from (``pipe(..., latents=latents)``),
    ``(1, C, L, h, w)`` float32 CPU; reference_maps: the reference's maps ``A_ref,t`` that were matched,
    ``(layers, F, F)`` float32 CPU, layers of the chosen levels in model order; history: one ``{"attention", "kl", "loss"}`` per evaluation (the first
    before any update, the last after the final one; ``kl`` per latent element); settings: how it was made
    (steps, lr, kl_weight, timestep, levels, the reference's path and sha256).
    """

    mu: torch.Tensor
    beta: float
    gamma: float
    latents: torch.Tensor
    reference_maps: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Plain data for a sidecar: the parameters in brief, the losses before and after, the settings."""
        first, last = self.history[0], self.history[-1]
        return {
            "beta": self.beta, "gamma": self.gamma, "mu_mean": float(self.mu.mean()), "mu_std": float(self.mu.std()),
            "attention_loss": [first["attention"], last["attention"]], "kl": [first["kl"], last["kl"]],
            **self.settings,
        }

    def save(self, path: str | Path) -> Path:
        """Write the tensors (``mu``, ``latents``, ``reference_maps``, ``beta``, ``gamma``) and, as metadata, the
        history and settings to a safetensors file; :meth:`load` reads it back."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"mu": self.mu.contiguous(), "latents": self.latents.contiguous(),
                   "reference_maps": self.reference_maps.contiguous(),
                   "beta": torch.tensor(self.beta, dtype=torch.float64),
                   "gamma": torch.tensor(self.gamma, dtype=torch.float64)}
        save_file(tensors, str(path), metadata={"history": json.dumps(self.history),
                                                "settings": json.dumps(self.settings)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> OptimizedNoise:
        """Read a file written by :meth:`save`; a clear error when it is missing or not one."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; it holds the optimized noise of the video to reproduce")
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
                metadata = handle.metadata() or {}
            return cls(tensors["mu"], float(tensors["beta"]), float(tensors["gamma"]), tensors["latents"],
                       tensors["reference_maps"], json.loads(metadata["history"]), json.loads(metadata["settings"]))
        except Exception as error:  # safetensors raises several types for a damaged file
            raise ValueError(f"{path} is not a vstar noise file ({error})") from error


def reference_digest(reference: str | Path | np.ndarray) -> str:
    """The sha256 of a reference video: of the file's bytes, of a PNG folder's frames in name order, or of an
    array's shape and bytes."""
    digest = hashlib.sha256()
    if isinstance(reference, np.ndarray):
        digest.update(repr(reference.shape).encode() + np.ascontiguousarray(reference).tobytes())
        return digest.hexdigest()
    path = Path(reference)
    for file in sorted(path.glob("*.png")) if path.is_dir() else [path]:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def load_reference(reference: str | Path | np.ndarray, num_frames: int, height: int, width: int) -> torch.Tensor:
    """A reference video (a path to an .mp4, a .gif or a PNG folder, or ``(N, H0, W0, 3)`` uint8 frames) as
    ``(1, F, 3, height, width)`` float32 in [0, 1]: ``num_frames`` evenly picked frames, resized and
    centre-cropped. Raises a clear error for a missing or unreadable file and for too few frames."""
    if isinstance(reference, np.ndarray):
        frames, name = reference, "the reference video"
    else:
        name = f"the reference video {reference}"
        frames = read_video(reference, name)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must be frames (N, H, W, 3), got shape {tuple(frames.shape)}")
    if len(frames) < max(num_frames, 2):
        raise ValueError(f"{name} has {len(frames)} frame(s); matching {num_frames} generated frames needs at least "
                         f"{max(num_frames, 2)} (use a longer reference or fewer --frames)")
    return prepare_video(frames, num_frames, height, width)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block no parameter of ``module`` requires gradients (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def attention_maps(backbone: Backbone, latents: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                   levels: Sequence[int], fps: int | None = None) -> torch.Tensor:
    """The temporal attention ``(layers, F, F)`` float32 of one denoiser call on ``latents`` ``(1, C, L, h, w)``
    at ``timestep`` with per-frame ``context`` ``(L, S, D)``, at ``levels``, layers in model order; each map is
    averaged over heads and pixels. Differentiable in ``latents`` when gradients are enabled."""
    with record_temporal_attention(backbone, levels=levels, differentiable=True) as recorder:
        backbone.model_output(latents.to(backbone.dtype), timestep, context, fps=fps)
    maps = recorder.maps
    return torch.stack([maps[layer.name] for layer in recorder.layers])


def check_settings(num_steps: int, lr: float, kl_weight: float) -> None:
    """Refuse non-positive steps or learning rate and a negative KL weight, naming the flag."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"--opt-steps must be a whole number >= 1, got {num_steps!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"--opt-lr must be a positive number, got {lr!r}")
    if not (isinstance(kl_weight, int | float) and math.isfinite(kl_weight) and kl_weight >= 0):
        raise ValueError(f"--kl-weight must be a number >= 0 (0 lets the noise drift from N(0, I)), got {kl_weight!r}")


def optimize_initial_noise(
    pipe: VSTARPipeline,
    reference_video: str | Path | np.ndarray,
    prompt: str | None = None,
    synopsis: Sequence[str] | Any | None = None,
    *,
    config: GenerationConfig | None = None,
    num_steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    kl_weight: float = DEFAULT_KL_WEIGHT,
    timestep: int = DEFAULT_TIMESTEP,
    levels: Sequence[int] = DEFAULT_LEVELS,
    beta: float = 1.0,
    gamma: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> OptimizedNoise:
    """Optimize the initial noise of one video so that its temporal attention matches ``reference_video``'s.

    Args:
        pipe: the pipeline whose backbone generates; its weights are left untouched.
        reference_video: a path (.mp4, .gif, PNG folder) or ``(N, H, W, 3)`` uint8 frames with at least
            ``num_frames`` frames; checked before any model work.
        prompt, synopsis: the text the generation uses (as in :class:`~vstar.pipeline.VSTARPipeline`); both
            denoiser passes see its per-frame embeddings.
        config: the generation's settings (frames, size, interpolation, seed); model defaults fill the rest.
        num_steps: Adam iterations K; lr: Adam's learning rate; kl_weight: the weight of the KL per latent
            element; timestep: the training timestep of both passes (0 .. num_train_timesteps - 1).
        levels: temporal attention levels to match (0 = highest resolution, the paper's "64").
        beta, gamma: the covariance to start from (default ``N(0, I)``).
        generator: draws ``z`` (default: seeded with ``config.seed``, else unseeded); the reference's noise
            uses ``config.seed`` (or 0).

    Returns:
        :class:`OptimizedNoise` with ``latents`` ``(1, C, L, h, w)`` for ``pipe(..., latents=...)``.
    """
    from vstar.pipeline import states_from

    backbone = pipe.backbone
    check_settings(num_steps, lr, kl_weight)
    check_covariance_parameters(beta, gamma)
    check_timestep(backbone, timestep, "--opt-timestep")
    chosen_layers(backbone, levels)
    config = (config or GenerationConfig()).resolved(backbone.defaults)
    pipe.check_config(config)
    states = states_from(prompt, synopsis)
    video = load_reference(reference_video, config.num_frames, config.height, config.width)
    seed = config.seed if config.seed is not None else 0
    if generator is None and config.seed is not None:
        generator = torch.Generator().manual_seed(config.seed)

    num_latent = backbone.latent_frames(config.num_frames)
    with torch.no_grad():
        cond, _ = pipe.encode_states(states, None, num_latent, config.interpolation, use_cfg=False)
        context = cfg_context(cond, None)
        noisy, t = noised_video_latents(backbone, video, timestep, seed)
        with backbone.per_frame_text(context):
            reference = attention_maps(backbone, noisy, t, context, levels, config.cond_fps)

    shape = backbone.latent_shape(1, config.num_frames, config.height, config.width)
    white = randn_tensor(shape, generator=generator, device=backbone.device, dtype=torch.float32)
    params = NoiseParameters(shape, beta, gamma).to(backbone.device)
    optimizer = torch.optim.Adam(params.parameters(), lr=lr)
    history: list[dict[str, float]] = []

    def evaluate() -> torch.Tensor:
        maps = attention_maps(backbone, params(white), t, context, levels, config.cond_fps)
        attention = (maps - reference).norm()
        kl = params.kl() / white.numel()
        loss = attention + kl_weight * kl
        history.append({name: float(value.detach()) for name, value in
                        (("attention", attention), ("kl", kl), ("loss", loss))})
        return loss

    bar = tqdm(range(num_steps), desc="optimizing noise", disable=not progress)
    with frozen(backbone), backbone.per_frame_text(context), torch.enable_grad():
        for _ in bar:
            optimizer.zero_grad(set_to_none=True)
            evaluate().backward()
            optimizer.step()
            bar.set_postfix(attention=f"{history[-1]['attention']:.4f}", kl=f"{history[-1]['kl']:.4f}")
        with torch.no_grad():
            evaluate()
            latents = params(white)
    settings = {"steps": num_steps, "lr": lr, "kl_weight": kl_weight, "timestep": timestep, "levels": list(levels),
                "reference": "frames" if isinstance(reference_video, np.ndarray) else str(reference_video),
                "reference_sha256": reference_digest(reference_video)}
    return OptimizedNoise(params.mu.detach().cpu(), float(params.beta.detach()), float(params.gamma.detach()),
                          latents.cpu(), reference.cpu(), history, settings)
