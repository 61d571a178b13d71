"""ModelScope text-to-video and its fine-tunes (zeroscope): diffusers ``UNet3DConditionModel`` backbones.

The UNet interleaves spatial layers (run on every frame, with text cross-attention) and temporal layers
(temporal convolutions and temporal self-attention at every resolution level). It has no frame
positional embedding, so any number of frames runs; quality degrades past its 16 training frames, which
is what TAR addresses.
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from vstar.backbones.base import BackboneDefaults
from vstar.backbones.clip_tokenizer import offline_clip_tokenizer
from vstar.backbones.loading import (
    PIPELINE_SUBFOLDERS,
    TINY_UNET_KWARGS,
    DiffusersVideoBackbone,
    default_device,
    model_source,
    seeded,
    tiny_clip_text_encoder,
    tiny_vae,
)
from vstar.backbones.registry import defaults_for_model_id, get_spec

DEFAULT_MODEL = "ali-vilab/text-to-video-ms-1.7b"

# ModelScope's own scheduler settings (its scheduler_config.json); the tiny model uses them too.
MODELSCOPE_SCHEDULER: dict[str, object] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


class ModelScopeBackbone(DiffusersVideoBackbone):
    """A ``UNet3DConditionModel`` text-to-video model (ModelScope, zeroscope) behind the backbone interface."""

    name = "modelscope"

    def unet_encoder_hidden_states(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(B, S, D)``, each video's first-frame embedding: ``UNet3DConditionModel`` repeats one embedding
        per video over its frames, and the per-frame context then replaces it in every cross-attention."""
        return context[::num_frames]


def load_modelscope(
    model: str | None = None,
    *,
    model_path: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    defaults: BackboneDefaults | None = None,
    cache_dir: str | None = None,
    variant: str | None = None,
) -> ModelScopeBackbone:
    """Load a ModelScope-family model from the Hugging Face hub (cache first) or a local folder.

    Args:
        model: hub repository id, e.g. ``"cerspense/zeroscope_v2_576w"``; default
            ``"ali-vilab/text-to-video-ms-1.7b"``, or with ``model_path`` the folder's own model.
        model_path: a folder in diffusers layout (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
            ``scheduler/``) to load instead of the hub; ``model`` then only names it (and picks its defaults).
        device: default the first CUDA GPU if there is one, else the CPU.
        dtype: default float32 (float16/bfloat16 are faster on GPUs).
        defaults: generation settings; default the registry's for ``model`` (``vstar models``), else
            ModelScope's at the UNet's native size.
        cache_dir: the hub cache to use instead of the default one.
        variant: weight file variant such as ``"fp16"``.

    The scheduler is DDIM with the settings of the model's scheduler config.

    Raises:
        ModelNotAvailableError: the files are missing locally and cannot be downloaded (or HF_HUB_OFFLINE is set).
    """
    if model is None and model_path is None:
        model = DEFAULT_MODEL
    source = model_source(model or DEFAULT_MODEL, model_path, cache_dir)
    source.require(PIPELINE_SUBFOLDERS)
    weights = {"variant": variant} if variant else {}
    unet = source.load(UNet3DConditionModel.from_pretrained, "unet", **weights)
    vae = source.load(AutoencoderKL.from_pretrained, "vae", **weights)
    backbone = ModelScopeBackbone(
        unet=unet,
        vae=vae,
        text_encoder=source.load(CLIPTextModel.from_pretrained, "text_encoder", **weights),
        tokenizer=source.load_tokenizer(CLIPTokenizer.from_pretrained),
        scheduler=source.load(DDIMScheduler.from_pretrained, "scheduler"),
        defaults=defaults or defaults_for_model_id(model or "") or native_defaults(unet, vae),
        model_id=model or str(model_path),
    )
    return backbone.to(device=default_device(device), dtype=dtype or torch.float32).eval()


def native_defaults(unet: UNet3DConditionModel, vae: AutoencoderKL) -> BackboneDefaults:
    """ModelScope's settings at the UNet's native resolution (for models the registry does not know)."""
    side = int(unet.config.sample_size) * 2 ** (len(vae.config.block_out_channels) - 1)
    return replace(get_spec("modelscope").defaults, height=side, width=side)


def tiny_modelscope(seed: int = 0, device: str | torch.device | None = None) -> ModelScopeBackbone:
    """A random-weight ModelScope-shaped backbone of a few MB for offline tests and demos.

    Same architecture as the real model at toy width: a 4-level ``UNet3DConditionModel`` (temporal attention
    at every level), an 8x KL VAE, a 2-layer CLIP text encoder with the real tokenizer (D = 32) and
    ModelScope's DDIM schedule. Defaults: 16 frames of 64x64 px. Equal seeds give equal weights.
    """
    with seeded(seed):
        unet = UNet3DConditionModel(
            down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
            **TINY_UNET_KWARGS,
        )
        vae, text_encoder = tiny_vae(), tiny_clip_text_encoder()
    backbone = ModelScopeBackbone(
        unet=unet.eval(), vae=vae, text_encoder=text_encoder, tokenizer=offline_clip_tokenizer(),
        scheduler=DDIMScheduler(**MODELSCOPE_SCHEDULER),
        defaults=get_spec("tiny-modelscope").defaults,
        model_id="tiny-modelscope",
    )
    return backbone.to(device or "cpu").eval()
