"""The five parts of a VideoCrafter2 model: built empty (meta), loaded strictly, saved and read as a folder."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from vstar.outputs import MODEL_CLASS, atomic_path

from .config import (
    ORIGINAL_UNET_PARAMS,
    ORIGINAL_VAE_DDCONFIG,
    open_clip_text_config,
    unet_config_from_original,
    vae_config_from_original,
)
from .scheduler import VideoCrafter2DDIMScheduler
from .unet import VideoCrafter2UNet

M = TypeVar("M", bound=nn.Module)
Tensors = Mapping[str, torch.Tensor]


# the folder layout and the class of each part, like a diffusers model_index.json
MODEL_INDEX = {
    "unet": ["vstar.backbones.videocrafter2", "VideoCrafter2UNet"],
    "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["vstar.backbones.videocrafter2", "VideoCrafter2DDIMScheduler"],
}


@dataclass
class VideoCrafter2Components:
    """The five parts of a VideoCrafter2 model."""

    unet: VideoCrafter2UNet
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: VideoCrafter2DDIMScheduler

    def save_pretrained(self, out_dir: str | Path, overwrite: bool = False) -> None:
        """Write a diffusers-style folder: ``unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json``.

        Everything is written into a hidden folder beside ``out_dir`` and renamed into place when complete, so
        a failed or interrupted write leaves ``out_dir`` as it was. An existing ``out_dir`` must be empty, or
        (with ``overwrite``) a folder this method wrote (:mod:`vstar.outputs`).
        """
        with atomic_path(Path(out_dir), overwrite, "model") as tmp:
            for name in MODEL_INDEX:
                getattr(self, name).save_pretrained(tmp / name)
            (tmp / "model_index.json").write_text(json.dumps({"_class_name": MODEL_CLASS, **MODEL_INDEX}, indent=2) + "\n")


def empty_models(unet_config: Mapping[str, Any] | None = None, vae_config: Mapping[str, Any] | None = None,
                 text_config: CLIPTextConfig | None = None) -> tuple[VideoCrafter2UNet, AutoencoderKL, CLIPTextModel]:
    """UNet, VAE and text encoder with parameters on the ``meta`` device (no memory); full size by default."""
    with init_empty_weights():
        unet = VideoCrafter2UNet(**(unet_config or unet_config_from_original(ORIGINAL_UNET_PARAMS)))
        vae = AutoencoderKL(**(vae_config or vae_config_from_original(ORIGINAL_VAE_DDCONFIG)))
        text_encoder = CLIPTextModel(text_config or open_clip_text_config())
    return unet, vae, text_encoder


def load_converted(model: M, state_dict: Tensors, dtype: torch.dtype = torch.float32) -> M:
    """Load a converted state dict into a (meta) model strictly, cast to ``dtype``, in eval mode."""
    model.load_state_dict({k: v.to(dtype) for k, v in state_dict.items()}, strict=True, assign=True)
    return model.eval()


def load_components(folder: str | Path, torch_dtype: torch.dtype = torch.float32) -> VideoCrafter2Components:
    """Read a folder written by :meth:`VideoCrafter2Components.save_pretrained`."""
    folder = Path(folder)
    return VideoCrafter2Components(
        unet=VideoCrafter2UNet.from_pretrained(folder / "unet", torch_dtype=torch_dtype).eval(),
        vae=AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch_dtype).eval(),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch_dtype).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        scheduler=VideoCrafter2DDIMScheduler.from_pretrained(folder / "scheduler"),
    )
