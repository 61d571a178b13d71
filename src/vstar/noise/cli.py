"""``vstar generate --reference-video REF.mp4 --optimize-noise``: the options, checked before any model loads,
and the noise file written next to the video (``NAME.noise.safetensors``) that ``--from`` samples from again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vstar.analysis.real_video import check_train_timestep
from vstar.noise.optimization import (
    DEFAULT_KL_WEIGHT,
    DEFAULT_LR,
    DEFAULT_STEPS,
    OptimizedNoise,
    check_settings,
    load_reference,
    optimize_initial_noise,
)
from vstar.outputs import StagedResult, file_sha256

if TYPE_CHECKING:
    from vstar.backbones.registry import BackboneSpec
    from vstar.config import GenerationConfig
    from vstar.pipeline import VSTARPipeline


@dataclass(frozen=True)
class NoiseOptions:
    """What ``--optimize-noise`` and its tuning flags ask for (``timestep`` None: the analysis default)."""

    reference: Path
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    kl_weight: float = DEFAULT_KL_WEIGHT
    timestep: int | None = None

    def optimize(self, pipe: VSTARPipeline, prompt: str | None, states: list[str], config: GenerationConfig,
                 progress: bool) -> OptimizedNoise:
        """Run :func:`~vstar.noise.optimize_initial_noise` with these options for the generation's text."""
        timing = {} if self.timestep is None else {"timestep": self.timestep}
        return optimize_initial_noise(pipe, self.reference, prompt, states, config=config, num_steps=self.steps,
                                      lr=self.lr, kl_weight=self.kl_weight, progress=progress, **timing)


def noise_options(reference_video: Path | None, optimize: bool, steps: int | None, lr: float | None,
                  kl_weight: float | None, timestep: int | None, config: GenerationConfig,
                  spec: BackboneSpec) -> NoiseOptions | None:
    """The checked options for the model of ``spec`` (None without ``--optimize-noise``). The reference is read
    here, so a missing, unreadable or too short one fails before anything loads, as does a timestep outside the
    registry's training timesteps."""
    tuning = {"--reference-video": reference_video, "--opt-steps": steps, "--opt-lr": lr, "--kl-weight": kl_weight,
              "--opt-timestep": timestep}
    given = [flag for flag, value in tuning.items() if value is not None]
    if not optimize:
        if given:
            raise ValueError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --optimize-noise; add "
                             "--optimize-noise (with --reference-video REF.mp4) or drop "
                             f"{'it' if len(given) == 1 else 'them'}")
        return None
    if reference_video is None:
        raise ValueError("--optimize-noise needs --reference-video REF.mp4: the real video whose temporal attention "
                         "the initial noise should match")
    options = NoiseOptions(reference_video, DEFAULT_STEPS if steps is None else steps, DEFAULT_LR if lr is None else lr,
                           DEFAULT_KL_WEIGHT if kl_weight is None else kl_weight, timestep)
    check_settings(options.steps, options.lr, options.kl_weight)
    spec.defaults.check_temporal_attention(spec.name, "--optimize-noise")
    if timestep is not None:
        check_train_timestep(timestep, spec.defaults.num_train_timesteps, spec.name, "--opt-timestep")
    load_reference(reference_video, config.num_frames, config.height, config.width)
    return options


def noise_path(out: Path) -> Path:
    """``clip.mp4`` -> ``clip.noise.safetensors``; a PNG folder ``frames`` -> ``frames.noise.safetensors``."""
    return out.with_name(f"{out.stem if out.suffix else out.name}.noise.safetensors")


def save_noise(noise: OptimizedNoise, path: Path, result: StagedResult, record: Path) -> dict[str, Any]:
    """Stage ``noise`` as ``path`` in ``result`` (``record``: the sidecar that will name it); return the
    sidecar's ``noise`` entry (the file's name and sha256 and :meth:`OptimizedNoise.summary`)."""
    tmp = result.stage(path, "noise", record)
    noise.save(tmp)
    return {"file": path.name, "sha256": file_sha256(tmp), **noise.summary()}


def recorded_noise(entry: dict[str, Any], sidecar: Path) -> OptimizedNoise:
    """The optimized noise that a sidecar's ``noise`` entry names (a file in the sidecar's folder: a bare
    name, never a path elsewhere), after checking that the file is the one that was written and that it holds
    finite numbers."""
    name = entry.get("file")
    if not isinstance(name, str) or not isinstance(entry.get("sha256"), str):
        raise ValueError(f"{sidecar}: the noise entry needs 'file' and 'sha256'; pass a sidecar written by vstar")
    if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(f"{sidecar}: the noise file {name!r} is not a file name in the sidecar's folder; vstar "
                         "reads only files beside a sidecar (optimize again with --optimize-noise)")
    path = sidecar.parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; --from {sidecar.name} samples from the optimized noise "
                                "saved beside it (or give --optimize-noise --reference-video REF again)")
    if file_sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} is not the noise file {sidecar.name} was made with (its sha256 differs)")
    noise = OptimizedNoise.load(path)
    if not torch.isfinite(noise.latents).all():
        raise ValueError(f"{path} holds NaN or infinite values; optimize again with --optimize-noise")
    return noise


def check_noise_shape(noise: OptimizedNoise, spec: BackboneSpec, config: GenerationConfig) -> None:
    """Raise a ValueError when recorded noise does not fit this generation's frames and size on the model of
    ``spec`` (its latent shape is known from the registry, so this runs before the model loads)."""
    shape = spec.defaults.latent_shape(1, config.num_frames, config.height, config.width)
    if tuple(noise.latents.shape) != shape:
        raise ValueError(f"the recorded optimized noise has shape {tuple(noise.latents.shape)}, this generation needs "
                         f"{shape}; keep the recorded --frames/--height/--width or optimize again with "
                         "--optimize-noise --reference-video REF")
