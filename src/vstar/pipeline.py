"""The VSTAR pipeline: one denoising pass over all frames with per-frame text and TAR (orchestration only)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any, Literal

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from vstar.analysis.recording import AttentionRecorder, record_temporal_attention
from vstar.analysis.reference import TARReference, reference_band, reference_from_video
from vstar.analysis.replacement import parse_replacement, replace_temporal_attention
from vstar.backbones import Backbone, load_backbone
from vstar.chunking import chunked_execution
from vstar.conditioning import InterpolationMode, cfg_context, interpolate_embeddings, keyframe_indices
from vstar.config import GenerationConfig
from vstar.offload import enable_offload
from vstar.resources import check_max_memory, choose_frame_chunk
from vstar.resources import check_memory as memory_check
from vstar.sampling import classifier_free_guidance, sample
from vstar.tar import TARConfig, apply_tar, remove_tar

OutputType = Literal["np", "pt", "latent"]
StepCallback = Callable[["VSTARPipeline", int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor] | None]


@dataclass
class VSTAROutput:
    """What a generation returns.

    frames: ``(B, F, H, W, 3)`` float32 numpy in [0, 1] (``output_type="np"``), ``(B, F, 3, H, W)`` tensor
    (``"pt"``) or the final latents ``(B, C, L, h, w)`` (``"latent"``).
    states: the synopsis states used; keyframes: the output frame of each state (states sit on latent
    frames; with k-fold temporal compression latent frame l is reported as output frame k*l, the last of
    the frames it decodes to); settings: every resolved setting as plain data; config: the resolved
    :class:`~vstar.config.GenerationConfig`. attention: the temporal attention recorded during the
    generation (``record_attention=True``; :class:`~vstar.analysis.AttentionRecorder`: ``maps``, ``levels``,
    ``per_step``, ``by_level()``), else None.
    """

    frames: np.ndarray | torch.Tensor
    states: list[str]
    keyframes: list[int]
    settings: dict[str, Any] = field(default_factory=dict)
    config: GenerationConfig | None = None
    attention: AttentionRecorder | None = None


def states_from(prompt: str | None, synopsis: Sequence[str] | Any | None) -> list[str]:
    """The visual states to condition on: the synopsis (a list of strings or an object with ``.states``),
    else the single prompt for every frame."""
    if synopsis is not None:
        states = list(getattr(synopsis, "states", synopsis))
        if isinstance(synopsis, str) or not states or not all(isinstance(s, str) and s.strip() for s in states):
            raise ValueError("synopsis must be a non-empty list of non-empty state prompts, e.g. "
                             "['a landscape in winter', 'a landscape in spring']")
        return [s.strip() for s in states]
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}; pass the states as synopsis=[...]")
    if prompt is None or not prompt.strip():
        raise ValueError("prompt is empty; describe the video, e.g. 'a landscape from winter to spring'")
    return [prompt.strip()]


def check_generator(generator: Any, num_videos: int) -> None:
    """Raise a ValueError unless ``generator`` is None, a ``torch.Generator`` or a list of ``num_videos`` of them."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != num_videos:
            raise ValueError(f"generator is a list of {len(generator)} generators for {num_videos} video(s); give "
                             "one per video")
        return
    raise ValueError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(42)) or a list of "
                     f"them, got {type(generator).__name__}; or set a seed with config=GenerationConfig(seed=42)")


class VSTARPipeline:
    """Text-to-video with Video Synopsis Prompting and Temporal Attention Regularization over any backbone.

    >>> pipe = VSTARPipeline.from_pretrained("modelscope")
    >>> out = pipe("a landscape from winter to spring", synopsis=["a landscape in winter", "... in spring"],
    ...            num_frames=48, tar="64D1_32D8", generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    @classmethod
    def from_pretrained(cls, name: str = "videocrafter2", *, model_path: str | Path | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        seed: int = 0) -> VSTARPipeline:
        """Load a registered backbone (``vstar.list_backbones()``) and wrap it."""
        return cls(load_backbone(name, model_path=model_path, device=device, dtype=dtype, seed=seed))

    @property
    def device(self) -> torch.device:
        """Where the denoiser runs (the GPU also when its weights wait in CPU memory)."""
        return self.backbone.device

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> None:
        """Keep the weights in CPU memory; each part moves whole to ``device`` when it runs (diffusers' method of
        the same name; :func:`vstar.offload.enable_offload`)."""
        enable_offload(self.backbone, "model", device)

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> None:
        """Keep the weights in CPU memory and move one layer at a time to ``device``: least memory, slowest."""
        enable_offload(self.backbone, "sequential", device)

    def check_config(self, config: GenerationConfig) -> None:
        """Raise a ValueError when this backbone cannot run the resolved ``config`` (frames, size, fps, steps, and
        the levels of TAR and attention replacement), judged by the loaded model itself."""
        backbone = self.backbone
        backbone.check_num_frames(config.num_frames)
        backbone.check_size(config.height, config.width)
        config.check_cond_fps(backbone.defaults, backbone.name)
        config.check_steps(backbone.scheduler.config.num_train_timesteps, backbone.name)
        layers = backbone.temporal_attention_layers()
        config.check_levels({layer.level for layer in layers}, backbone.name,
                            layers[0].layout if layers else "temporal")

    def encode_states(self, states: Sequence[str], negative_prompt: str | None, num_latent_frames: int,
                      interpolation: InterpolationMode, use_cfg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-latent-frame embeddings ``(L, S, D)`` of the states, and of the negative prompt under CFG."""
        cond = interpolate_embeddings(self.backbone.encode_text(list(states)), num_latent_frames, mode=interpolation)
        if not use_cfg:
            return cond, None
        uncond = self.backbone.encode_text([negative_prompt or ""]).expand(num_latent_frames, -1, -1)
        return cond, uncond

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | None = None,
        synopsis: Sequence[str] | Any | None = None,
        *,
        config: GenerationConfig | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        tar: str | TARConfig | None | EllipsisType = ...,
        interpolation: InterpolationMode | None = None,
        fps: int | None = None,
        eta: float | None = None,
        num_videos: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: OutputType = "np",
        decode_chunk_size: int = 4,
        progress: bool = True,
        callback_on_step_end: StepCallback | None = None,
        check_memory: bool = True,
        record_attention: bool | str = False,
        replace_attention: str | None = None,
        tar_reference: TARReference | str | Path | None = None,
        frame_chunk: int | Literal["auto"] | None = None,
        max_memory: float | None = None,
    ) -> VSTAROutput:
        """Generate ``num_videos`` videos of ``num_frames`` frames in one pass.

        Args:
            prompt: the video description; used for every frame when no ``synopsis`` is given.
            synopsis: visual states (K prompts) placed on evenly spaced keyframes and interpolated per frame.
                With temporal compression the keyframes are latent frames (see :class:`VSTAROutput`).
            config: all settings at once (:class:`~vstar.config.GenerationConfig`); the keyword arguments
                below override its fields when given.
            tar: a preset like ``"64D1"`` / ``"64D1_32D8"``, a :class:`TARConfig`, or None to switch TAR off;
                default the config's (``"64D1"``).
            interpolation: ``"linear"``, ``"step"`` or ``"slerp"`` between keyframe embeddings.
            fps: frame-rate conditioning for backbones that take it (VideoCrafter2; the config's ``cond_fps``).
            generator: seeds the initial noise and stochastic sampler steps (same seed, same frames); a list
                gives each of the ``num_videos`` videos its own seed. Default: one seeded with ``config.seed``
                when set.
            latents: initial noise ``(num_videos, C, L, h, w)`` instead of drawing it.
            callback_on_step_end: ``fn(pipeline, step, t, {"latents": ...})``; may return new latents.
            check_memory: refuse sizes whose memory estimate exceeds free memory (:mod:`vstar.resources`)
                before any work; False tries anyway.
            record_attention: record the temporal attention of every layer and step into ``out.attention``
                (:func:`vstar.analysis.record_temporal_attention`); True records the prompt's branch under
                guidance (``"cond"``), or name the branch: ``"cond"``, ``"uncond"``, ``"all"``.
            replace_attention: fixed temporal attention at some levels (paper figure 5), e.g.
                ``"identity:64,32"`` or ``"uniform:16"``; the config's ``replace_attention``.
            tar_reference: TAR's dA from a reference video's frame similarity (paper figure 9): a
                :class:`~vstar.analysis.reference.TARReference` or a video path (SSIM similarity).
            frame_chunk: run the denoiser's spatial layers on this many images (of ``batch*frames``) at a
                time and its temporal layers on as many latent pixels (:func:`vstar.chunking.chunked_execution`):
                less activation memory for long videos, the same video up to float rounding; ``"auto"``: the
                largest chunk the memory estimate says fits, whole when the whole forward fits
                (:func:`vstar.resources.choose_frame_chunk`). The memory check counts the chunking.
            max_memory: GiB the memory check and ``frame_chunk="auto"`` may assume free on the model's device
                (the host on the CPU), at most what is free.
            Missing sizes and sampler settings come from the registry's defaults of the backbone.
        """
        backbone = self.backbone
        states = states_from(prompt, synopsis)
        overrides = {
            "num_frames": num_frames, "height": height, "width": width, "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale, "negative_prompt": negative_prompt, "interpolation": interpolation,
            "cond_fps": fps, "eta": eta,
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if tar is not ...:
            overrides["tar"] = TARConfig.parse(tar) if isinstance(tar, str) else tar
        if replace_attention is not None:
            overrides["replace_attention"] = replace_attention
        if tar_reference is not None:
            overrides["tar_reference"] = (tar_reference if isinstance(tar_reference, TARReference)
                                          else reference_from_video(tar_reference))
        config = (config or GenerationConfig()).replace(**overrides).resolved(backbone.defaults)
        if not isinstance(num_videos, int) or isinstance(num_videos, bool) or num_videos < 1:
            raise ValueError(f"num_videos must be a whole number >= 1, got {num_videos!r}")
        if frame_chunk is not None and frame_chunk != "auto" and (
                not isinstance(frame_chunk, int) or isinstance(frame_chunk, bool) or frame_chunk < 1):
            raise ValueError("frame_chunk must be a whole number >= 1 (images per spatial call) or 'auto', "
                             f"got {frame_chunk!r}")
        backbone.defaults.check_frame_chunk(frame_chunk, backbone.name)
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"unknown output_type {output_type!r}; choose np, pt or latent")
        check_max_memory(max_memory)  # also where no estimate is made (check_memory=False, a fixed frame_chunk)
        self.check_config(config)
        memory = {"batch": num_videos * (2 if config.uses_guidance else 1), "dtype": backbone.dtype,
                  "device": self.device, "max_memory": max_memory, "weights_loaded": True}
        if frame_chunk == "auto":
            frame_chunk = choose_frame_chunk(backbone.defaults, config.num_frames, config.height, config.width,
                                             **memory)
        if frame_chunk is not None and record_attention:
            raise ValueError("record_attention needs whole temporal attention calls; leave out frame_chunk")
        if check_memory:
            memory_check(backbone.defaults, backbone.name, config.num_frames, config.height, config.width,
                         frame_chunk=frame_chunk, **memory)
        backbone.defaults.check_states_fit(len(states), config.num_frames)
        num_latent_frames = backbone.latent_frames(config.num_frames)
        shape = backbone.latent_shape(num_videos, config.num_frames, config.height, config.width)
        if latents is not None and (not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape):
            raise ValueError(f"latents must be a tensor of shape {shape}, got "
                             f"{tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__}")
        if latents is not None and not torch.isfinite(latents).all():
            raise ValueError("latents hold NaN or infinite values; give finite initial noise (or none: it is drawn)")
        check_generator(generator, num_videos)
        if generator is None and config.seed is not None:
            generator = torch.Generator().manual_seed(config.seed)

        cond, uncond = self.encode_states(states, config.negative_prompt, num_latent_frames, config.interpolation,
                                          config.uses_guidance)
        context = cfg_context(cond, uncond, num_videos)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        recorder = None
        if record_attention:
            branch = record_attention if isinstance(record_attention, str) else (
                "cond" if config.uses_guidance else "all")
            recorder = record_temporal_attention(backbone, branch=branch)
        with contextlib.ExitStack() as chunking:
            if frame_chunk is not None:  # a temporal slice holds as many latent pixels as a spatial one
                sequences = max(1, frame_chunk * shape[-2] * shape[-1] // shape[2])
                chunking.enter_context(chunked_execution(backbone, frames=frame_chunk, sequences=sequences))
            latents = self.denoise(latents.to(self.device, torch.float32), context, config, generator, progress,
                                   callback_on_step_end, recorder)
        if not torch.isfinite(latents).all():
            raise RuntimeError(f"the denoiser produced NaN or infinite values ({backbone.dtype} on {self.device}); "
                               "try --dtype fp32 or bf16 (dtype=...), or a lower guidance scale")

        keyframes = [backbone.output_frame(k) for k in keyframe_indices(len(states), num_latent_frames)]
        settings = config.to_dict() | {"num_videos": num_videos}
        if output_type == "latent":
            return VSTAROutput(latents, states, keyframes, settings, config, recorder)
        video = backbone.decode_latents(latents, chunk_size=decode_chunk_size).float().clamp(0, 1).cpu()
        frames = video.permute(0, 1, 3, 4, 2).numpy() if output_type == "np" else video
        return VSTAROutput(frames, states, keyframes, settings, config, recorder)

    def denoise(self, noise: torch.Tensor, context: torch.Tensor, config: GenerationConfig,
                generator: torch.Generator | list[torch.Generator] | None, progress: bool = True,
                callback_on_step_end: StepCallback | None = None,
                recorder: AttentionRecorder | None = None) -> torch.Tensor:
        """The sampling loop over ``noise`` ``(B, C, L, h, w)`` with per-frame ``context`` (CFG order) and TAR
        gated on the early steps; returns the final latents. A ``recorder`` is installed after TAR (so it
        sees TAR's band) and removed before it; so is the config's attention replacement."""
        backbone, tar = self.backbone, config.tar
        active_steps = tar.active_steps(config.num_inference_steps) if tar is not None else 0
        tar_state = None

        def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return backbone.model_output(x.to(backbone.dtype), t, context, fps=config.cond_fps).float()

        def on_step_start(i: int, t: torch.Tensor) -> None:
            if tar_state is not None:
                tar_state.active = i < active_steps

        def on_step_end(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            if callback_on_step_end is None:
                return latents
            update = callback_on_step_end(self, i, t, {"latents": latents})
            return (update or {}).get("latents", latents)

        guided = classifier_free_guidance(model, config.guidance_scale) if config.uses_guidance else model
        with contextlib.ExitStack() as installed:  # removed in reverse order, also on errors
            if tar is not None:
                matrix = (reference_band(config.tar_reference, noise.shape[2])
                          if config.tar_reference is not None else None)
                tar_state = apply_tar(backbone, tar, matrix=matrix)
                installed.callback(remove_tar, backbone)
            if config.replace_attention is not None:
                installed.enter_context(replace_temporal_attention(backbone, *parse_replacement(config.replace_attention)))
            installed.enter_context(backbone.per_frame_text(context))
            if recorder is not None:
                installed.enter_context(recorder)
            return sample(guided, noise, backbone.scheduler_adapter(config.eta), config.num_inference_steps,
                          generator=generator, on_step_start=on_step_start, on_step_end=on_step_end,
                          progress=progress)
