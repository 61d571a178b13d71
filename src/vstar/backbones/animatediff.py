"""AnimateDiff: a Stable Diffusion 1.5 UNet plus a motion adapter, as a diffusers ``UNetMotionModel``.

The motion modules (temporal self-attention after each spatial block) add a sinusoidal positional
embedding of the frame index that exists for ``motion_max_seq_length`` frames only, so AnimateDiff
cannot generate more frames than that (and degrades past its 16 training frames).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPTextModel, CLIPTokenizer

from vstar.backbones.base import BackboneDefaults
from vstar.backbones.clip_tokenizer import offline_clip_tokenizer
from vstar.backbones.loading import (
    PIPELINE_SUBFOLDERS,
    TINY_UNET_KWARGS,
    DiffusersVideoBackbone,
    ModelSource,
    default_device,
    model_source,
    seeded,
    tiny_clip_text_encoder,
    tiny_vae,
)
from vstar.backbones.registry import get_spec

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
ADAPTER_SUBFOLDER = "motion_adapter"  # where a local model folder may keep its adapter

# The DDIM settings AnimateDiff was trained and is documented with (linear betas, not SD's scaled_linear).
ANIMATEDIFF_SCHEDULER: dict[str, Any] = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, set_alpha_to_one=False,
    steps_offset=1, timestep_spacing="linspace", prediction_type="epsilon",
)


class AnimateDiffBackbone(DiffusersVideoBackbone):
    """A ``UNetMotionModel`` (SD 1.5 UNet + motion adapter) behind the backbone interface."""

    name = "animatediff"

    def unet_encoder_hidden_states(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The per-frame context ``(B*F, S, D)`` itself: ``UNetMotionModel`` takes one embedding per frame."""
        return context


def animatediff_defaults(unet: UNetMotionModel) -> BackboneDefaults:
    """AnimateDiff's documented settings (the registry's); ``max_frames`` is the motion modules' positional
    embedding length."""
    return with_frame_limit(get_spec("animatediff").defaults, unet)


def with_frame_limit(defaults: BackboneDefaults, unet: UNetMotionModel) -> BackboneDefaults:
    """``defaults`` with ``max_frames`` set to what the UNet can run: its motion modules' positional length."""
    return replace(defaults, max_frames=int(unet.config.motion_max_seq_length))


def load_animatediff(
    base: str = DEFAULT_BASE,
    adapter: str = DEFAULT_ADAPTER,
    *,
    model_path: str | os.PathLike[str] | None = None,
    adapter_path: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    defaults: BackboneDefaults | None = None,
    cache_dir: str | None = None,
) -> AnimateDiffBackbone:
    """Load AnimateDiff from the Hugging Face hub (cache first) or local folders.

    Args:
        base: hub id of an SD 1.5 model (any fine-tune in diffusers layout).
        adapter: hub id of a motion adapter.
        model_path: a folder in diffusers layout (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
            ``scheduler/``) to load instead of ``base``. If ``unet/`` already is a ``UNetMotionModel`` (a saved
            AnimateDiff pipeline) it is used as is; otherwise the adapter comes from ``adapter_path``, else
            ``model_path/motion_adapter/``, else the hub id ``adapter``.
        adapter_path: a folder holding a saved ``MotionAdapter``.
        device: default the first CUDA GPU if there is one, else the CPU.
        dtype: default float32.
        defaults: generation settings; default AnimateDiff's (512x512, 16 frames, guidance 7.5). Their
            ``max_frames`` is always the motion adapter's limit.
        cache_dir: the hub cache to use instead of the default one.

    The scheduler is DDIM from the base model's config with AnimateDiff's settings (linear betas,
    ``clip_sample=False``, ``timestep_spacing="linspace"``, ``steps_offset=1``).

    Raises:
        ModelNotAvailableError: files are missing locally and cannot be downloaded (or HF_HUB_OFFLINE is set).
    """
    source = model_source(base, model_path, cache_dir)
    source.require(PIPELINE_SUBFOLDERS)
    unet_config = source.load(UNet2DConditionModel.load_config, "unet")
    if unet_config.get("_class_name") == UNetMotionModel.__name__:
        unet = source.load(UNetMotionModel.from_pretrained, "unet")
    else:
        motion_adapter = _adapter_source(source, adapter, adapter_path).load(MotionAdapter.from_pretrained)
        unet = motion_unet(source.load(UNet2DConditionModel.from_pretrained, "unet"), motion_adapter)
    backbone = AnimateDiffBackbone(
        unet=unet,
        vae=source.load(AutoencoderKL.from_pretrained, "vae"),
        text_encoder=source.load(CLIPTextModel.from_pretrained, "text_encoder"),
        tokenizer=source.load_tokenizer(CLIPTokenizer.from_pretrained),
        scheduler=source.load(DDIMScheduler.from_pretrained, "scheduler", **ANIMATEDIFF_SCHEDULER),
        defaults=with_frame_limit(defaults or animatediff_defaults(unet), unet),
        model_id=f"{base}+{adapter}" if model_path is None else str(model_path),
    )
    return backbone.to(device=default_device(device), dtype=dtype or torch.float32).eval()


def motion_unet(unet: UNet2DConditionModel, motion_adapter: MotionAdapter) -> UNetMotionModel:
    """``UNetMotionModel.from_unet2d`` without its spurious "modules that should be kept in float32: []"
    warning (it casts the new model to the 2D UNet's own dtype, which is harmless)."""
    logger = logging.getLogger("diffusers.models.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return UNetMotionModel.from_unet2d(unet, motion_adapter)
    finally:
        logger.setLevel(level)


def _adapter_source(base: ModelSource, adapter: str, adapter_path: str | os.PathLike[str] | None) -> ModelSource:
    """Where the motion adapter comes from: ``adapter_path``, the base folder's ``motion_adapter/``, or the hub."""
    local_copy = (f"a local copy of the motion adapter with adapter_path=DIR, or in DIR/{ADAPTER_SUBFOLDER}/ "
                  "of --model-path DIR")
    if adapter_path is not None:
        return ModelSource(adapter, Path(adapter_path).expanduser(), local_copy=local_copy)
    if base.path is not None and base.has_subfolder(ADAPTER_SUBFOLDER):
        return ModelSource(adapter, base.path / ADAPTER_SUBFOLDER, local_copy=local_copy)
    return ModelSource(adapter, cache_dir=base.cache_dir, local_copy=local_copy)


def tiny_animatediff_parts(seed: int = 0) -> dict[str, Any]:
    """The random-weight parts of :func:`tiny_animatediff`: an SD-shaped base (``unet`` is a
    ``UNet2DConditionModel``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``) and ``motion_adapter``
    (``motion_max_seq_length`` 32). Equal seeds give equal weights."""
    with seeded(seed):
        unet = UNet2DConditionModel(
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            **TINY_UNET_KWARGS,
        )
        motion_adapter = MotionAdapter(
            block_out_channels=TINY_UNET_KWARGS["block_out_channels"], motion_layers_per_block=1,
            motion_norm_num_groups=TINY_UNET_KWARGS["norm_num_groups"], motion_num_attention_heads=4,
            motion_max_seq_length=32,
        )
        vae, text_encoder = tiny_vae(), tiny_clip_text_encoder()
    return dict(unet=unet, motion_adapter=motion_adapter, vae=vae, text_encoder=text_encoder,
                tokenizer=offline_clip_tokenizer(), scheduler=DDIMScheduler(**ANIMATEDIFF_SCHEDULER))


def tiny_animatediff(seed: int = 0, device: str | torch.device | None = None) -> AnimateDiffBackbone:
    """A random-weight AnimateDiff-shaped backbone of a few MB for offline tests and demos.

    A 4-level SD-style UNet with motion modules at every level and in the middle block (at most 32 frames),
    an 8x KL VAE, a 2-layer CLIP text encoder with the real tokenizer (D = 32) and AnimateDiff's DDIM
    schedule. Defaults: 16 frames of 64x64 px.
    """
    parts = tiny_animatediff_parts(seed)
    with seeded(seed):  # from_unet2d initialises the model before copying the weights in
        unet = motion_unet(parts["unet"], parts["motion_adapter"]).eval()
    backbone = AnimateDiffBackbone(
        unet=unet, vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
        scheduler=parts["scheduler"], model_id="tiny-animatediff",
        defaults=with_frame_limit(get_spec("tiny-animatediff").defaults, unet),
    )
    return backbone.to(device or "cpu").eval()
