"""What the web page does, as plain functions of plain values: testable without a browser or Gradio.

The page's inputs are one :class:`PageSettings`; a generation builds its settings with the CLI's
:func:`vstar.cli.common.generation_config` and writes the video and sidecar with
:func:`vstar.cli.common.write_generation`, so the page validates and writes exactly what ``vstar generate``
does. Errors are the library's one-line ``ValueError``s; the page shows their text.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vstar.backbones.registry import BackboneSpec, get_spec, list_backbones, weights_available
from vstar.tar import PRESETS, TARConfig

if TYPE_CHECKING:
    from vstar.config import GenerationConfig
    from vstar.pipeline import VSTAROutput, VSTARPipeline

OFFLINE_MODEL = "toy-shapes"  # built in and trained: listed first, the page's default
TAR_OFF = "off"
SHOWN_SIDE = 256  # small models' frames are enlarged to about this many pixels on their short side
MIN_FRAME_CHOICES = 64  # the frame list reaches at least this many frames (or the model's limit)
UI_COMMAND = "vstar ui"  # what sidecars of the page record as their command

StepProgress = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class PageSettings:
    """Every input of the page, in the order of its components.

    ``states``: one visual state per line (empty: the synopsis backend proposes them). ``tar``: a preset or
    ``"off"``; ``sigma`` sets every level (block) of the preset to that sigma (0 or None: the preset's own).
    ``seed`` is used unless ``random_seed``; ``upscale`` enlarges each pixel of the written video.
    """

    prompt: str
    states: str
    model: str
    frames: int
    tar: str
    sigma: float | None
    strength: float
    interpolation: str
    seed: int | None
    random_seed: bool
    steps: int
    guidance: float
    negative_prompt: str
    height: int
    width: int
    upscale: int

    @classmethod
    def names(cls) -> list[str]:
        """The field names, in the order the page passes its inputs."""
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class PageResult:
    """What one generation shows: the written ``video`` and ``sidecar``, the states with their keyframes
    (``(H, W, 3)`` uint8 images, enlarged like the video), the resolved settings, the attention figure (None
    when the model has no temporal attention that vstar records) and the metrics table of ``vstar evaluate``."""

    video: Path
    sidecar: Path
    states: list[str]
    keyframes: list[tuple[np.ndarray, str]]
    settings: dict[str, Any]
    attention: Path | None
    metrics: str


def available_models() -> list[str]:
    """The registered models whose weights are here: ``toy-shapes`` first, then downloaded ones, then the tiny
    random-weight test models."""
    specs = [spec for spec in list_backbones() if weights_available(spec)]
    return sorted((spec.name for spec in specs),
                  key=lambda name: (name != OFFLINE_MODEL, get_spec(name).tiny, name))


def frame_choices(model: str) -> list[int]:
    """The frame counts ``model`` can generate (``k*n + 1`` with k-fold temporal compression), up to its limit
    or four times its default (at least :data:`MIN_FRAME_CHOICES`)."""
    defaults = get_spec(model).defaults
    k = defaults.temporal_compression
    top = max(4 * defaults.num_frames, MIN_FRAME_CHOICES)
    if defaults.max_frames is not None:
        top = min(top, defaults.max_frames)
    return list(range(k + 1 if k > 1 else 2, top + 1, k))


def default_tar(model: str) -> str:
    """The TAR preset ``vstar generate`` uses for ``model`` at its default frame count, or ``off``."""
    defaults = get_spec(model).defaults
    return defaults.tar_preset(defaults.num_frames) or TAR_OFF


def tar_choices(model: str) -> list[str]:
    """TAR presets to offer for ``model``, its default first, and ``off`` (any other preset may be typed): the
    paper's presets for a UNet, the model's own (short and long videos) for a transformer."""
    defaults = get_spec(model).defaults
    presets = [defaults.tar, defaults.tar_long] if defaults.attention_layout == "spatiotemporal" else list(PRESETS)
    return list(dict.fromkeys([default_tar(model), *(p for p in presets if p is not None), TAR_OFF]))


def default_upscale(spec: BackboneSpec) -> int:
    """How many times to enlarge ``spec``'s frames so that their short side is about :data:`SHOWN_SIDE`."""
    return max(1, SHOWN_SIDE // min(spec.defaults.height, spec.defaults.width))


def model_settings(model: str) -> dict[str, Any]:
    """The page's fields that follow the model: its defaults (frames, TAR, steps, guidance, size, upscale)."""
    spec = get_spec(model)
    d = spec.defaults
    return {"frames": d.num_frames, "tar": default_tar(model), "steps": d.num_inference_steps,
            "guidance": d.guidance_scale, "height": d.height, "width": d.width, "upscale": default_upscale(spec)}


def default_settings(model: str) -> PageSettings:
    """The page as it opens on ``model``: no prompt, its defaults, TAR at strength 1, a random seed."""
    return PageSettings(prompt="", states="", model=model, sigma=0, strength=1.0, interpolation="linear",
                        seed=0, random_seed=True, negative_prompt="", **model_settings(model))


def parse_states(text: str | None) -> list[str]:
    """The visual states of the page's text: one per non-empty line, stripped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def suggest_states(prompt: str, num_states: int | None = None) -> dict[str, Any]:
    """The states the configured synopsis backend proposes for ``prompt`` (offline rules unless an
    OpenAI-compatible server is configured, see ``vstar synopsis``), as :meth:`Synopsis.to_dict`."""
    from vstar.synopsis import make_synopsis

    if not (prompt or "").strip():
        raise ValueError("the prompt is empty; describe the video, e.g. 'a landscape from winter to spring'")
    return make_synopsis(prompt, backend="auto", num_states=num_states).to_dict()


def tar_preset(preset: str, sigma: float | None) -> str | None:
    """``preset`` with every level (block) at ``sigma`` when given (not 0 or None); None for ``off``."""
    preset = (preset or "").strip()
    if preset.lower() == TAR_OFF:
        return None
    if not sigma:
        return preset
    tar = TARConfig.parse(preset)
    return TARConfig(sigmas=dict.fromkeys(tar.sigmas, float(sigma)), level_strengths=tar.level_strengths,
                     unit=tar.unit).to_preset()


def generation_settings(settings: PageSettings, recorded: dict[str, Any] | None = None) -> GenerationConfig:
    """The resolved, validated settings of a generation: the page's fields over a loaded sidecar
    (``recorded``, used when it was made with the same model) over the model's defaults, through the CLI's
    :func:`~vstar.cli.common.generation_config`; the seed drawn when ``random_seed``."""
    from vstar.cli.common import generation_config, setting_flags, tar_flags

    if settings.upscale is None or settings.upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {settings.upscale}")
    preset = tar_preset(settings.tar, settings.sigma)
    seed = random.randrange(2**31) if settings.random_seed or settings.seed is None else int(settings.seed)
    flags = setting_flags(frames=settings.frames, height=settings.height, width=settings.width, steps=settings.steps,
                          guidance=settings.guidance, negative_prompt=settings.negative_prompt or None,
                          interpolation=settings.interpolation, cond_fps=None, fps=None, seed=seed)
    tar = tar_flags(preset, preset is None, None, settings.strength, None)
    same_model = recorded is not None and recorded.get("model") == settings.model
    return generation_config(flags, tar, recorded if same_model else {}, settings.model)


def synopsis_source(settings: PageSettings, suggested: dict[str, Any] | None) -> dict[str, Any]:
    """The synopsis of a generation as the sidecar records it: the suggestion when its states are used
    unchanged, the page's states (``manual``) when edited, a new suggestion when there are none."""
    states = parse_states(settings.states)
    if not states:
        return suggest_states(settings.prompt)
    if suggested is not None and suggested.get("states") == states and suggested.get("prompt") == settings.prompt:
        return suggested
    return {"prompt": settings.prompt or None, "states": states, "backend": "manual"}


@functools.lru_cache(maxsize=1)
def loaded_pipeline(model: str) -> tuple[VSTARPipeline, Any]:
    """The pipeline of ``model`` and the identity of its weights, kept while the same model is asked for."""
    from vstar.backbones.weights_identity import weights_identity
    from vstar.pipeline import VSTARPipeline

    pipe = VSTARPipeline.from_pretrained(model)
    return pipe, weights_identity(pipe.backbone)


def next_output(folder: Path, prompt: str, seed: int) -> Path:
    """A new ``NNN-<prompt>-<seed>.mp4`` in ``folder`` (numbered after the videos already there)."""
    from vstar.outputs import slug

    number = len(list(folder.glob("*.mp4"))) + 1
    while (path := folder / f"{number:03d}-{slug(prompt)}-{seed}.mp4").exists() or path.with_suffix(".json").exists():
        number += 1
    return path


def generate(settings: PageSettings, folder: Path, suggested: dict[str, Any] | None = None,
             recorded: dict[str, Any] | None = None, progress: StepProgress | None = None) -> PageResult:
    """Generate the page's video into ``folder`` (a session folder) with its sidecar, record the temporal
    attention and measure the video; ``progress(done, total)`` after every denoising step."""
    from vstar.cli.common import write_generation
    from vstar.outputs import claim_outputs

    config = generation_settings(settings, recorded)
    source = synopsis_source(settings, suggested)
    out = next_output(folder, source["prompt"] or source["states"][0], config.seed)
    sidecar = out.with_suffix(".json")
    pipe, weights = loaded_pipeline(settings.model)
    records = bool(pipe.backbone.temporal_attention_layers())

    def step_done(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> None:
        if progress is not None:
            progress(step + 1, config.num_inference_steps)

    with claim_outputs(out, sidecar):
        result = pipe(source["prompt"], source["states"], config=config, progress=False,
                      callback_on_step_end=step_done, record_attention=records)
        write_generation(result, out, config=config, source=source, model=settings.model, model_path=None,
                         pipe=pipe, upscale=settings.upscale, weights=weights, overwrite=False, command=UI_COMMAND)
    frames = result.frames[0]
    return PageResult(
        video=out, sidecar=sidecar, states=result.states,
        keyframes=keyframe_images(frames, result.keyframes, result.states, settings.upscale),
        settings=result.config.to_dict(),
        attention=attention_plot(result, settings.model, out.with_name(f"{out.stem}-attention.png")) if records else None,
        metrics=metrics_table(frames),
    )


def keyframe_images(frames: np.ndarray, keyframes: Sequence[int], states: Sequence[str],
                    upscale: int) -> list[tuple[np.ndarray, str]]:
    """Each state's keyframe of ``frames`` ``(F, H, W, 3)`` in [0, 1] as an enlarged uint8 image with its
    caption ``"frame N: state"``."""
    from vstar.io import to_uint8

    images = to_uint8(frames[list(keyframes)]).repeat(upscale, axis=1).repeat(upscale, axis=2)
    return [(image, f"frame {k}: {state}") for image, k, state in zip(images, keyframes, states, strict=True)]


def attention_plot(result: VSTAROutput, model: str, path: Path) -> Path:
    """The recorded temporal attention of ``result`` per level (a transformer's per range of blocks) as the
    heatmaps of ``vstar analyze``, written to ``path``."""
    from vstar.analysis.plots import attention_figure, block_ranges, save_figure

    recorder = result.attention
    by_level = recorder.by_level()
    shown = block_ranges(by_level) if recorder.unit == "block" else by_level
    figure = attention_figure({"generated": shown}, title=f"temporal attention per {recorder.unit} ({model})",
                              unit=recorder.unit)
    return save_figure(figure, path)


def metrics_table(frames: np.ndarray) -> str:
    """The measurements of ``vstar evaluate`` for ``frames`` ``(F, H, W, 3)`` as its summary table."""
    from vstar.analysis.evaluation import evaluate_video, summary_table

    return summary_table([evaluate_video(frames)], ["video"])


def settings_from_sidecar(path: str | Path) -> tuple[PageSettings, dict[str, Any]]:
    """The page's fields that reproduce the sidecar at ``path``, and the sidecar as data (its settings the page
    has no field for, such as TAR's max mode, are kept from it: see :func:`generation_settings`)."""
    from vstar.config import config_from_sidecar
    from vstar.sidecar import load_sidecar

    recorded = load_sidecar(path)
    spec = get_spec(recorded.model)
    config = config_from_sidecar(recorded.to_dict(), spec.defaults).resolved(spec.defaults)
    tar = config.tar
    settings = PageSettings(
        prompt=recorded.prompt or "", states="\n".join(recorded.synopsis), model=recorded.model,
        frames=config.num_frames, tar=tar.to_preset() if tar is not None else TAR_OFF, sigma=0,
        strength=tar.strength if tar is not None else 1.0, interpolation=config.interpolation,
        seed=config.seed, random_seed=config.seed is None, steps=config.num_inference_steps,
        guidance=config.guidance_scale, negative_prompt=config.negative_prompt or "", height=config.height,
        width=config.width, upscale=recorded.upscale,
    )
    return settings, recorded.to_dict()
