"""One frozen generation config: every setting of a generation, validated once, stored in the sidecar.

:class:`GenerationConfig` is what :class:`~vstar.pipeline.VSTARPipeline` accepts and returns, what the CLI
builds in one place (flags over a sidecar over the registry's defaults) and what the sidecar stores.
A field left ``None`` means "the model's default": :meth:`GenerationConfig.resolved` fills it from the
registry's :class:`~vstar.backbones.BackboneDefaults`, the only place model defaults live.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from vstar.analysis.reference import TARReference
from vstar.analysis.replacement import names_blocks, parse_replacement
from vstar.backbones.base import BackboneDefaults
from vstar.conditioning import INTERPOLATION_MODES, InterpolationMode
from vstar.tar import TARConfig, level_name
from vstar.temporal_attention import INIT_LEVEL

DEFAULT_TAR = "64D1"
TAR_FIELDS = ("tar", "tar_max_mode", "tar_strength", "tar_step_fraction")  # how a TARConfig is stored
MODEL_TAR = "default"  # GenerationConfig.tar before resolution: the model's own preset (BackboneDefaults.tar)


MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64-bit seeds


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")


def _check_float(name: str, value: Any, minimum: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value}")


@dataclass(frozen=True)
class GenerationConfig:
    """Every setting of one generation; ``None`` = the model's default (see :meth:`resolved`).

    Attributes:
        num_frames: output frames, generated in one pass.
        height, width: frame size in pixels.
        num_inference_steps: denoising steps.
        guidance_scale: classifier-free guidance (<= 1 switches guidance off).
        negative_prompt: what the negative guidance branch encodes ("" when None).
        interpolation: between keyframe embeddings: ``"linear"``, ``"step"`` or ``"slerp"``.
        cond_fps: frame-rate conditioning of models that take it (VideoCrafter2: 28); None for the others.
        fps: playback rate of the written video.
        eta: DDIM eta (stochasticity of the sampler; 0 = deterministic DDIM).
        tar: where, how strongly and when TAR acts; None switches it off; ``"default"`` (until
            :meth:`resolved`) the model's preset (``BackboneDefaults.tar``: ``64D1`` for the UNets).
        seed: seeds the initial noise and stochastic steps (same seed, same frames).
        replace_attention: fixed temporal attention maps at some levels (paper figure 5), e.g.
            ``"identity:64,32"`` or ``"uniform:16"`` (:func:`vstar.analysis.replace_temporal_attention`).
        tar_reference: a reference video's frame similarity used as TAR's dA at the preset's levels instead of
            the Gaussian band (paper figure 9; :mod:`vstar.analysis.reference`).
    """

    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    interpolation: InterpolationMode = "linear"
    cond_fps: int | None = None
    fps: int | None = None
    eta: float | None = None
    tar: TARConfig | None | Literal["default"] = MODEL_TAR
    seed: int | None = None
    replace_attention: str | None = None
    tar_reference: TARReference | None = None

    def __post_init__(self) -> None:
        _check_int("num_frames", self.num_frames, 2)
        _check_int("height", self.height, 1)
        _check_int("width", self.width, 1)
        _check_int("num_inference_steps", self.num_inference_steps, 1)
        _check_float("guidance_scale", self.guidance_scale, 0.0)
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ValueError(f"negative_prompt must be text, got {self.negative_prompt!r}")
        if self.interpolation not in INTERPOLATION_MODES:
            raise ValueError(f"unknown interpolation mode {self.interpolation!r}; choose one of "
                             f"{', '.join(INTERPOLATION_MODES)}")
        _check_int("cond_fps", self.cond_fps, 1)
        _check_int("fps", self.fps, 1)
        _check_float("eta", self.eta, 0.0)
        if self.tar is not None and self.tar != MODEL_TAR and not isinstance(self.tar, TARConfig):
            raise ValueError(f"tar must be a TARConfig, None or 'default', got {self.tar!r}; build one with "
                             "TARConfig.parse")
        _check_int("seed", self.seed, 0, MAX_SEED)
        self.check_attention_changes()

    def check_attention_changes(self) -> None:
        """Refuse a replacement that is not ``MODE:RES,...``, one on a level TAR also sets, and a reference
        without TAR."""
        if self.replace_attention is not None:
            if not isinstance(self.replace_attention, str):
                raise ValueError(f"replace_attention must be text like 'identity:64,32', got {self.replace_attention!r}")
            _, levels = parse_replacement(self.replace_attention)
            same_unit = isinstance(self.tar, TARConfig) and (self.tar.unit == "block") == names_blocks(
                self.replace_attention)  # otherwise check_levels names the mismatch once the model is known
            both = sorted(set(levels) & set(self.tar.sigmas if same_unit else ()))
            if both:
                raise ValueError(f"--replace-attention {self.replace_attention} and TAR ({self.tar.to_preset()}) both "
                                 f"set the attention of level(s) {both}; choose other levels or pass --no-tar")
        if self.tar_reference is not None:
            if not isinstance(self.tar_reference, TARReference):
                raise ValueError(f"tar_reference must be a TARReference, got {type(self.tar_reference).__name__}")
            if self.tar is None:
                raise ValueError("--tar-reference replaces TAR's band at the preset's levels, but TAR is off (--no-tar, "
                                 "or a model whose default is off): give --tar PRESET or drop --tar-reference")

    @property
    def uses_guidance(self) -> bool:
        """Classifier-free guidance runs when ``guidance_scale > 1`` (at 1 it would equal the conditional branch)."""
        return self.guidance_scale is not None and self.guidance_scale > 1.0

    def replace(self, **changes: Any) -> GenerationConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def resolved(self, defaults: BackboneDefaults) -> GenerationConfig:
        """Every ``None`` filled from a model's ``defaults``, and ``tar="default"`` by the model's preset;
        ``cond_fps`` stays None for models without it."""
        fill = {
            "num_frames": defaults.num_frames, "height": defaults.height, "width": defaults.width,
            "num_inference_steps": defaults.num_inference_steps, "guidance_scale": defaults.guidance_scale,
            "cond_fps": defaults.cond_fps, "fps": defaults.fps, "eta": defaults.eta,
        }
        changes = {k: v for k, v in fill.items() if getattr(self, k) is None}
        if self.tar == MODEL_TAR:
            preset = defaults.tar_preset(changes.get("num_frames", self.num_frames))
            changes["tar"] = TARConfig.parse(preset) if preset is not None else None
        return self.replace(**changes)

    def check_for(self, defaults: BackboneDefaults, name: str) -> None:
        """Raise a ValueError naming the setting and the fix when the model cannot run this (resolved) config."""
        defaults.check_num_frames(self.num_frames, name)
        defaults.check_size(self.height, self.width)
        self.check_cond_fps(defaults, name)
        self.check_steps(defaults.num_train_timesteps, name)
        if defaults.temporal_attention_levels is not None:
            self.check_levels(defaults.temporal_attention_levels, name, defaults.attention_layout)

    def check_cond_fps(self, defaults: BackboneDefaults, name: str) -> None:
        """Raise a ValueError when frame-rate conditioning is asked of a model that takes none."""
        if self.cond_fps is not None and defaults.cond_fps is None:
            raise ValueError(f"{name} takes no frame-rate conditioning; drop cond_fps (--cond-fps)")

    def check_steps(self, num_train_timesteps: int, name: str) -> None:
        """Raise a ValueError for more denoising steps than a schedule of ``num_train_timesteps`` holds (DDIM's
        timesteps are offset by one, which leaves room for ``T - 1`` steps)."""
        most = num_train_timesteps - 1
        if self.num_inference_steps > most:
            raise ValueError(f"--steps {self.num_inference_steps}: {name} was trained on {num_train_timesteps} "
                             f"timesteps, so it takes at most {most} denoising steps; use --steps {most} or fewer")

    def check_levels(self, available: Collection[int], name: str, layout: str = "temporal") -> None:
        """Raise a ValueError when TAR (``--tar``) or an attention replacement (``--replace-attention``) names a
        level (block) without temporal attention in the model, whose levels with it are ``available``; for a
        video transformer (``layout="spatiotemporal"``) TAR names blocks and replacement is not available."""
        levels = sorted(available)
        if layout == "spatiotemporal":
            span = f"{levels[0]}-{levels[-1]}" if levels else "none"
            if self.tar is not None and self.tar.unit != "block":
                example = f"b0-{levels[-1] // 3}D2" if levels[-1] >= 3 else "b0D2"
                raise ValueError(f"--tar {self.tar.to_preset()}: {name} is a video transformer, whose TAR names its "
                                 f"blocks ({span}) with sigma in latent frames, e.g. --tar {example}")
            if self.replace_attention is not None and not names_blocks(self.replace_attention):
                raise ValueError(f"--replace-attention {self.replace_attention}: {name} is a video transformer; name "
                                 f"its blocks ({span}), e.g. --replace-attention identity:b0")
            for flag, value, wanted in (
                    ("--tar", self.tar.to_preset() if self.tar else None, set(self.tar.sigmas) if self.tar else set()),
                    ("--replace-attention", self.replace_attention,
                     set(parse_replacement(self.replace_attention)[1]) if self.replace_attention else set())):
                if not wanted <= set(levels):
                    raise ValueError(f"{flag} {value}: {name} has blocks {span} only; choose blocks among those")
            return
        if self.replace_attention is not None and names_blocks(self.replace_attention):
            raise ValueError(f"--replace-attention {self.replace_attention}: {name} is a UNet, whose attention is "
                             "replaced per resolution level, e.g. identity:64")
        if self.tar is not None and self.tar.unit == "block":
            raise ValueError(f"--tar {self.tar.to_preset()}: {name} is a UNet, whose TAR names resolution levels, "
                             "e.g. --tar 64D1")
        asked: list[tuple[str, str, set[int], str]] = []  # flag, value, levels, a fix's template
        if self.tar is not None:
            asked.append(("--tar", self.tar.to_preset(), set(self.tar.sigmas), "{}D1"))
        if self.replace_attention is not None:
            mode, replaced = parse_replacement(self.replace_attention)
            asked.append(("--replace-attention", self.replace_attention, set(replaced), f"{mode}:{{}}"))
        if asked and not levels:
            flag, value = asked[0][:2]
            raise ValueError(f"{flag} {value}: {name} has no temporal attention layers that vstar's TAR and "
                             f"attention tools act on yet; drop {flag}" + (" (TAR is off by default for it)"
                                                                          if flag == "--tar" else ""))
        example = level_name(next((level for level in levels if level != INIT_LEVEL), INIT_LEVEL))
        for flag, value, wanted, template in asked:
            if not wanted <= set(levels):
                raise ValueError(f"{flag} {value}: {name} has temporal attention at levels "
                                 f"{', '.join(map(level_name, levels))} only; choose levels among those, e.g. "
                                 f"{flag} {template.format(example)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; :meth:`from_dict` reads it back."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tar"}
        data["tar_reference"] = self.tar_reference.to_dict() if self.tar_reference is not None else None
        return data | tar_to_dict(self.tar)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        """Read :meth:`to_dict`'s output; unknown keys are an error naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"a generation config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"tar"}
        unknown = sorted(set(data) - names - set(TAR_FIELDS))
        if unknown:
            raise ValueError(f"unknown generation setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        values = {k: v for k, v in data.items() if k in names}
        if values.get("tar_reference") is not None:
            values["tar_reference"] = TARReference.from_dict(values["tar_reference"])
        return cls(**values, tar=tar_from_dict(data))


def tar_to_dict(tar: TARConfig | None | Literal["default"]) -> dict[str, Any]:
    """A TAR config as ``tar`` (preset, None or ``"default"``), ``tar_max_mode``, ``tar_strength``,
    ``tar_step_fraction``."""
    if tar is None or tar == MODEL_TAR:
        return dict.fromkeys(TAR_FIELDS) | {"tar": tar}
    return {"tar": tar.to_preset(), "tar_max_mode": tar.max_mode, "tar_strength": tar.strength,
            "tar_step_fraction": tar.step_fraction}


def tar_from_dict(data: dict[str, Any]) -> TARConfig | None | Literal["default"]:
    """The inverse of :func:`tar_to_dict`; a missing ``tar`` key means the paper's default preset (what
    sidecars of vstar 0.1.0, all of UNet models, meant by it)."""
    preset = data.get("tar", DEFAULT_TAR)
    if preset is None or preset == MODEL_TAR:
        return preset
    if not isinstance(preset, str):
        raise ValueError(f"tar must be a preset such as {DEFAULT_TAR!r} or null, got {preset!r}")
    options = {"max_mode": data.get("tar_max_mode"), "strength": data.get("tar_strength"),
               "step_fraction": data.get("tar_step_fraction")}
    for key in ("strength", "step_fraction"):
        _check_float(f"tar_{key}", options[key], 0.0)
    return TARConfig.parse(preset, **{k: v for k, v in options.items() if v is not None})


def known_settings() -> set[str]:
    """The keys of :meth:`GenerationConfig.to_dict` (and ``num_videos``, which sidecars of 0.1.0 recorded)."""
    return {f.name for f in dataclasses.fields(GenerationConfig)} - {"tar"} | set(TAR_FIELDS) | {"num_videos"}


def config_from_sidecar(data: dict[str, Any], defaults: BackboneDefaults) -> GenerationConfig:
    """The generation config a sidecar recorded (its ``settings``), for a model with ``defaults``.

    Sidecars of vstar 0.1.0 kept the seed and the playback rate beside ``settings`` and used ``settings.fps``
    for the frame-rate conditioning; they are read the same way (the conditioning only for models that take it).
    Settings this vstar does not know are left out (:meth:`vstar.sidecar.Sidecar.notes` names them).
    """
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"the sidecar's settings must be a JSON object, got {type(settings).__name__}")
    if data.get("vstar_version") == "0.1.0":
        settings = {k: v for k, v in settings.items() if k not in ("num_videos", "fps")} | {
            "cond_fps": settings.get("fps") if defaults.cond_fps is not None else None,
            "fps": data.get("fps"), "seed": data.get("seed"),
        }
    known = known_settings() - {"num_videos"}  # settings of a newer vstar: named by Sidecar.notes, ignored here
    return GenerationConfig.from_dict({k: v for k, v in settings.items() if k in known})
