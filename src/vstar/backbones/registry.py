"""Names -> base models: hub ids, recommended settings and the function that loads each."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from vstar.backbones.base import Backbone, BackboneDefaults
from vstar.backbones.weights_identity import Source, built_identity, files_identity, recording_loads
from vstar.devices import resolve_device, resolve_dtype


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry.

    ``loader`` is a function or ``"module:function"`` (imported on use), called as
    ``function(*model_ids, model_path=..., device=..., dtype=..., defaults=...)`` for hub models, or
    ``function(device=...)`` for models built into vstar (``tiny=True``; cast to the dtype afterwards), with
    ``seed=`` as well for the random-weight ones (``seeded=True``). ``defaults`` are the only recommended
    settings of the model: loaders and the CLI read them from here.
    """

    name: str
    family: str
    description: str
    loader: str | Callable[..., Backbone]
    defaults: BackboneDefaults
    model_ids: tuple[str, ...] = ()
    tiny: bool = False
    seeded: bool = False


VIDEOCRAFTER2_PLAYBACK_FPS = 10  # the authors' inference script writes at 10 fps; 28 is the conditioning
# Peak activation bytes per output pixel, frame and batch item of one float32 denoiser call (the memory
# estimate, vstar.resources). Measured (peak RSS slope over frames, benchmarks/memory_per_pixel.py): tiny
# models 69-113, toy-shapes ~800 (VAE factor 4); full-size UNets estimated from tiny-modelscope's figure
# scaled by width (320 vs 32 base channels).
TINY_ACTIVATION = 120.0
FULL_SIZE_ACTIVATION = 1150.0
# Resolution levels with temporal self-attention (tests/backbones/test_registry.py builds each model to check):
# ModelScope- and VideoCrafter2-style UNets have a temporal block before the down path (-1) and temporal
# attention at all 4 levels (the deepest in the middle block); AnimateDiff's motion modules sit at the 4 levels
# only; the toy UNet has 3 levels.
UNET3D_LEVELS = (-1, 0, 1, 2, 3)
MOTION_LEVELS = (0, 1, 2, 3)
TOY_LEVELS = (-1, 0, 1, 2)

# Wan (diffusers' WanPipeline defaults and the model cards): frames 4n+1 (4x temporal compression), sides
# multiples of the VAE factor times the 2x2 patch, full 3D attention in every block (TAR: blocks), a RoPE table of
# 1024 latent frames. Sizes: 480x832 (1.3B; the 14B models also 720x1280), TI2V-5B 704x1280.
WAN_FRAMES_LIMIT = 4 * 1023 + 1
# Parameter counts of the parts (tests/backbones/test_wan.py builds the published configs on the meta device):
# the whole models count transformer(s) + VAE + UMT5-XXL encoder; model offload holds the largest part at once.
UMT5_XXL = 5_680_910_336
WAN_14B = 14_288_491_584
# Wan's activation_bytes are measured at full width (benchmarks/memory_per_pixel.py --full: each published
# transformer config, random weights, one block, where a no-grad call peaks; the allocator's peak slope over 9->17
# frames at the default size, with VSP's per-frame text and what the pipeline holds), not scaled from the tiny models,
# whose 64x64 frames have 16 video tokens per latent frame against 512 text tokens (their 21-24, by peak RSS, times
# the width would read ~1400 for the 1.3B). float32 | bfloat16 x 2: 105 | 106 (1.3B), 203 | 248 (14B), 85 | 102
# (TI2V-5B; bfloat16 keeps norms and modulation in float32); the values: the larger plus ~10%. An estimate: the
# per-frame text (~10 of the 1.3B's 105 at 480x832) does not shrink with the frame, so smaller sizes need more.
WAN_14B_ACTIVATION = 275.0
# TAR on Wan: the first third of the blocks, sigma 1 latent frame, and sigma 2 from 16 latent frames (61 frames) on
# (benchmarks/wan_presets.py on tiny-wan: the first block concentrates the frame maps at least as much as both,
# sigma 1 the most at 5 latent frames, the two alike at 11, sigma 2 the most at 21).
WAN_TAR_LONG_FROM = 16
WAN21 = BackboneDefaults(height=480, width=832, num_frames=81, num_inference_steps=50, guidance_scale=5.0, fps=16,
                         max_frames=WAN_FRAMES_LIMIT, size_multiple=16, temporal_compression=4,
                         temporal_attention_levels=tuple(range(30)), latent_channels=16, vae_scale_factor=8,
                         tar="b0-9D1", tar_long="b0-9D2", tar_long_from=WAN_TAR_LONG_FROM,
                         attention_layout="spatiotemporal",
                         frame_chunking=False, activation_bytes=120.0)
WAN22_TI2V = replace(WAN21, height=704, width=1280, num_frames=121, fps=24, size_multiple=32, latent_channels=48,
                     vae_scale_factor=16, activation_bytes=115.0)
TINY_WAN = replace(WAN21, height=64, width=64, num_frames=17, num_inference_steps=4, activation_bytes=25.0,
                   parameters=2_000_000, temporal_attention_levels=(0, 1), tar="b0D1", tar_long="b0D2")

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "videocrafter2", "videocrafter2",
            "VideoCrafter2 (the paper's base model; fps-conditioned UNet, rescaled DDIM, eta 1)",
            "vstar.backbones.videocrafter2:load_videocrafter2",
            BackboneDefaults(height=320, width=512, guidance_scale=12.0, fps=VIDEOCRAFTER2_PLAYBACK_FPS, cond_fps=28,
                             eta=1.0, parameters=1_850_000_000, activation_bytes=FULL_SIZE_ACTIVATION,
                             temporal_attention_levels=UNET3D_LEVELS),
            model_ids=("VideoCrafter/VideoCrafter2",),
        ),
        BackboneSpec(
            "modelscope", "modelscope", "ModelScope text-to-video 1.7B (UNet3D, no frame positions)",
            "vstar.backbones.modelscope:load_modelscope",
            BackboneDefaults(height=256, width=256, guidance_scale=9.0, fps=8, parameters=1_830_000_000,
                             activation_bytes=FULL_SIZE_ACTIVATION, temporal_attention_levels=UNET3D_LEVELS),
            model_ids=("ali-vilab/text-to-video-ms-1.7b",),
        ),
        BackboneSpec(
            "zeroscope", "modelscope", "zeroscope v2 576w, a ModelScope fine-tune at 320x576",
            "vstar.backbones.modelscope:load_modelscope",
            BackboneDefaults(height=320, width=576, num_frames=24, guidance_scale=9.0, fps=8,
                             parameters=1_830_000_000, activation_bytes=FULL_SIZE_ACTIVATION,
                             temporal_attention_levels=UNET3D_LEVELS),
            model_ids=("cerspense/zeroscope_v2_576w",),
        ),
        BackboneSpec(
            "animatediff", "animatediff",
            "AnimateDiff motion adapter v1-5-2 on Stable Diffusion 1.5 (sinusoidal frame positions, <= 32 frames)",
            "vstar.backbones.animatediff:load_animatediff",
            BackboneDefaults(height=512, width=512, guidance_scale=7.5, fps=8, max_frames=32,
                             parameters=1_520_000_000, activation_bytes=FULL_SIZE_ACTIVATION,
                             temporal_attention_levels=MOTION_LEVELS),
            model_ids=("stable-diffusion-v1-5/stable-diffusion-v1-5", "guoyww/animatediff-motion-adapter-v1-5-2"),
        ),
        BackboneSpec(
            "toy-shapes", "modelscope",
            "embedded 32x32 model trained by vstar on procedural shape clips (offline demo and measurements)",
            "vstar.toy.model:load_toy",
            BackboneDefaults(height=32, width=32, num_inference_steps=25, guidance_scale=5.0, fps=8, size_multiple=16,
                             parameters=27_000_000, activation_bytes=800, temporal_attention_levels=TOY_LEVELS,
                             vae_scale_factor=4),
            tiny=True,
        ),
        BackboneSpec(
            "tiny-modelscope", "modelscope", "tiny random-weight ModelScope-style model built in code (tests, demo)",
            "vstar.backbones.modelscope:tiny_modelscope",
            BackboneDefaults(height=64, width=64, num_inference_steps=10, guidance_scale=9.0, fps=8,
                             parameters=3_000_000, activation_bytes=TINY_ACTIVATION,
                             temporal_attention_levels=UNET3D_LEVELS),
            tiny=True, seeded=True,
        ),
        BackboneSpec(
            "tiny-animatediff", "animatediff", "tiny random-weight AnimateDiff-style model built in code (tests)",
            "vstar.backbones.animatediff:tiny_animatediff",
            BackboneDefaults(height=64, width=64, num_inference_steps=10, guidance_scale=7.5, fps=8, max_frames=32,
                             parameters=3_000_000, activation_bytes=TINY_ACTIVATION,
                             temporal_attention_levels=MOTION_LEVELS),
            tiny=True, seeded=True,
        ),
        BackboneSpec(
            "tiny-videocrafter2", "videocrafter2", "tiny random-weight VideoCrafter2-style model built in code (tests)",
            "vstar.backbones.videocrafter2:tiny_videocrafter2",
            BackboneDefaults(height=64, width=64, num_frames=8, num_inference_steps=4, guidance_scale=12.0,
                             fps=VIDEOCRAFTER2_PLAYBACK_FPS, cond_fps=28, eta=1.0, parameters=6_000_000,
                             activation_bytes=TINY_ACTIVATION, temporal_attention_levels=UNET3D_LEVELS),
            tiny=True, seeded=True,
        ),
        BackboneSpec(
            "wan2.1-t2v-1.3b", "wan", "Wan 2.1 text-to-video 1.3B (diffusion transformer, UMT5 text, 4x8x8 VAE)",
            "vstar.backbones.wan:load_wan", replace(WAN21, parameters=7_226_799_667, largest_part=UMT5_XXL),
            model_ids=("Wan-AI/Wan2.1-T2V-1.3B-Diffusers",),
        ),
        BackboneSpec(
            "wan2.1-t2v-14b", "wan", "Wan 2.1 text-to-video 14B (480x832 or 720x1280)",
            "vstar.backbones.wan:load_wan",
            replace(WAN21, parameters=20_096_294_451, largest_part=WAN_14B, activation_bytes=WAN_14B_ACTIVATION,
                    temporal_attention_levels=tuple(range(40)), tar="b0-12D1", tar_long="b0-12D2"),
            model_ids=("Wan-AI/Wan2.1-T2V-14B-Diffusers",),
        ),
        BackboneSpec(
            "wan2.2-ti2v-5b", "wan", "Wan 2.2 TI2V 5B, text to video (48-channel 4x16x16 VAE, per-token timesteps)",
            "vstar.backbones.wan:load_wan", replace(WAN22_TI2V, parameters=11_385_386_716, largest_part=UMT5_XXL),
            model_ids=("Wan-AI/Wan2.2-TI2V-5B-Diffusers",),
        ),
        BackboneSpec(
            "wan2.2-t2v-a14b", "wan", "Wan 2.2 text-to-video A14B (two 14B experts: high and low noise)",
            "vstar.backbones.wan:load_wan",
            replace(WAN21, num_inference_steps=40, guidance_scale=4.0, parameters=34_384_786_035,
                    largest_part=WAN_14B, activation_bytes=WAN_14B_ACTIVATION,
                    temporal_attention_levels=tuple(range(40)), tar="b0-12D1", tar_long="b0-12D2"),
            model_ids=("Wan-AI/Wan2.2-T2V-A14B-Diffusers",),
        ),
        BackboneSpec(
            "tiny-wan", "wan", "tiny random-weight Wan 2.1-style model built in code (tests)",
            "vstar.backbones.wan:tiny_wan", TINY_WAN, tiny=True, seeded=True,
        ),
        BackboneSpec(
            "tiny-wan2.2-a14b", "wan", "tiny random-weight Wan 2.2 A14B-style model, two experts (tests)",
            "vstar.backbones.wan:tiny_wan22_a14b", TINY_WAN, tiny=True, seeded=True,
        ),
        BackboneSpec(
            "tiny-wan2.2-ti2v", "wan", "tiny random-weight Wan 2.2 TI2V-style model, 48-channel VAE (tests)",
            "vstar.backbones.wan:tiny_wan22_ti2v",
            replace(TINY_WAN, size_multiple=32, latent_channels=48, vae_scale_factor=16), tiny=True, seeded=True,
        ),
    )
}
DEFAULT_MODEL = "videocrafter2"


def list_backbones() -> list[BackboneSpec]:
    """All registered backbones, real ones first."""
    return sorted(BACKBONES.values(), key=lambda spec: (spec.tiny, spec.name))


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(BACKBONES)} (see `vstar models`)")
    return BACKBONES[name]


def defaults_for_model_id(model_id: str) -> BackboneDefaults | None:
    """The registered defaults of the entry whose hub ids start with ``model_id``; None when none does."""
    for spec in BACKBONES.values():
        if spec.model_ids and spec.model_ids[0] == model_id:
            return spec.defaults
    return None


def register_backbone(spec: BackboneSpec, *, replace: bool = False) -> None:
    """Add a model family's entry, so that ``load_backbone``, the pipeline and the CLI know it by name."""
    if spec.name in BACKBONES and not replace:
        raise ValueError(f"a backbone named {spec.name!r} is registered already; pass replace=True to replace it")
    BACKBONES[spec.name] = spec


def unregister_backbone(name: str) -> None:
    """Remove an entry added by :func:`register_backbone`."""
    BACKBONES.pop(get_spec(name).name)


def weights_available(spec: BackboneSpec) -> bool:
    """Whether every hub repository of ``spec`` is in the local Hugging Face cache (tiny models: always)."""
    if spec.tiny:
        return True
    from huggingface_hub import scan_cache_dir

    try:
        cached = {repo.repo_id for repo in scan_cache_dir().repos}
    except Exception:  # no cache directory yet, or an unreadable one: nothing is available
        return False
    return all(model_id in cached for model_id in spec.model_ids)


def _resolve_loader(path: str | Callable[..., Backbone]) -> Any:
    if callable(path):
        return path
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def load_backbone(name: str = DEFAULT_MODEL, *, model_path: str | Path | None = None,
                  device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                  seed: int = 0) -> Backbone:
    """Load a registered backbone by name.

    Args:
        name: a registry name (``vstar models`` lists them).
        model_path: a local copy of the model (a diffusers-format folder) to use instead of the hub.
        device: ``"cuda"``, ``"mps"``, ``"cpu"`` or None for the best available.
        dtype: ``"fp32"``, ``"fp16"``, ``"bf16"`` or None (fp16 on GPU, fp32 on CPU).
        seed: weight seed of tiny models (ignored by pretrained ones).

    The returned backbone's ``weights_identity`` attribute records which weights were loaded (see
    :mod:`vstar.backbones.weights_identity`).
    """
    spec = get_spec(name)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    loader = _resolve_loader(spec.loader)
    if spec.tiny and model_path is not None:
        raise ValueError(f"{name} is built in code and takes no model path; drop --model-path")
    with recording_loads() as loads:
        if spec.tiny:
            backbone = loader(device=torch_device, **({"seed": seed} if spec.seeded else {}))
        else:
            backbone = loader(*spec.model_ids, model_path=model_path, device=torch_device, dtype=torch_dtype,
                              defaults=spec.defaults)
    if spec.seeded:  # before the dtype cast, so that the identity does not depend on it
        identity = built_identity(name, seed, backbone)
    else:
        source: Source = "shipped" if spec.tiny else "hub" if model_path is None else "path"
        identity = files_identity(name, source, loads, model_path)
    backbone.weights_identity = identity
    return backbone.to(dtype=torch_dtype) if spec.tiny else backbone
