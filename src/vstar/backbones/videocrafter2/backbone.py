"""The VideoCrafter2 backbone adapter, its loader and a tiny random-weight version for tests and demos."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from ..base import Backbone, BackboneDefaults
from ..loading import ModelSource
from ..registry import get_spec
from ..unet_family import UNetBackbone
from ..weights_identity import LoadedFiles, folder_files, record_loaded
from .components import MODEL_INDEX, VideoCrafter2Components, load_components
from .config import open_clip_text_config
from .convert import convert_videocrafter2_checkpoint
from .scheduler import VideoCrafter2DDIMScheduler
from .tokenizer import openclip_tokenizer, tokenize
from .unet import VideoCrafter2UNet

HUB_REPO = "VideoCrafter/VideoCrafter2"
HUB_FILENAME = "model.ckpt"

# scripts/run_text2video.sh of the authors, with VSTAR's 25 steps (the registry holds them)
DEFAULTS = get_spec("videocrafter2").defaults


class VideoCrafter2Backbone(UNetBackbone):
    """VideoCrafter2 (t2v 512 v2.0): fps-conditioned 3D UNet, KL-f8 VAE, OpenCLIP ViT-H-14 penultimate layer.

    Its UNet takes one text embedding per frame in ``forward``, so per-frame text needs no set-up.
    """

    name = "videocrafter2"

    def __init__(self, unet: VideoCrafter2UNet, vae: AutoencoderKL, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, scheduler: VideoCrafter2DDIMScheduler,
                 defaults: BackboneDefaults = DEFAULTS, model_id: str | None = HUB_REPO):
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler, defaults, model_id)

    @classmethod
    def from_components(cls, components: VideoCrafter2Components, defaults: BackboneDefaults = DEFAULTS,
                        model_id: str | None = HUB_REPO) -> VideoCrafter2Backbone:
        return cls(components.unet, components.vae, components.text_encoder, components.tokenizer,
                   components.scheduler, defaults, model_id)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``K`` texts -> ``(K, 77, D)``: OpenCLIP tokens, text tower up to its penultimate block, ``ln_final``."""
        device = self.text_encoder.device
        hidden = self.text_encoder(tokenize(self.tokenizer, texts).to(device)).last_hidden_state
        return hidden.to(device=self.device, dtype=self.dtype)

    def model_output(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                     fps: int | None = None) -> torch.Tensor:
        """latents ``(B, C, F, h, w)``, context ``(B*F, S, D)`` (``(b f)`` order) or ``(B, S, D)`` shared by the
        frames of a video -> noise ``(B, C, F, h, w)``, conditioned on frame rate ``fps`` (default
        ``defaults.cond_fps``, 28)."""
        fps = self.defaults.cond_fps if fps is None else fps
        return self.unet(latents, timestep, context, fps=fps).sample


def load_videocrafter2(
    model: str | Path = HUB_REPO,
    *,
    model_path: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    defaults: BackboneDefaults | None = None,
) -> Backbone:
    """Load VideoCrafter2 from a converted folder, an original ``.ckpt``/``.safetensors`` file, or the Hub.

    ``model`` is a Hub repo id whose ``model.ckpt`` is downloaded (the default, about 10 GB) or a local path;
    ``model_path`` (a local path) takes precedence. Original checkpoints are converted in memory; convert once
    with ``vstar convert-videocrafter2`` to load faster. A folder in the community diffusers format loads as a
    :class:`~vstar.backbones.videocrafter2.community.CommunityVideoCrafter2Backbone`. ``dtype`` defaults to float32.
    """
    path = Path(model_path if model_path is not None else model)
    if path.is_dir():
        from .community import community_unet_folder, load_community_videocrafter2

        if community_unet_folder(path) is not None:
            return load_community_videocrafter2(path, device=device, dtype=dtype, defaults=defaults,
                                                model_id=str(path))
    if model_path is None and not path.exists():
        from huggingface_hub import hf_hub_download

        source = ModelSource(str(model), local_copy=(
            f"the original {HUB_FILENAME} or a folder written by `vstar convert-videocrafter2` with "
            "--model-path PATH (model_path=PATH in Python)"))
        path = Path(source.load(lambda repo_id, **kwargs: hf_hub_download(repo_id, HUB_FILENAME, **kwargs)))
    torch_dtype = dtype or torch.float32
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise FileNotFoundError(f"{path} has no model_index.json; pass a folder written by "
                                    "`vstar convert-videocrafter2` or the original model.ckpt")
        components = load_components(path, torch_dtype)
        for component in MODEL_INDEX:
            record_loaded(folder_files(path, component))
    elif path.is_file():
        components = convert_videocrafter2_checkpoint(path, torch_dtype=torch_dtype)
        record_loaded(LoadedFiles(path.parent, (path,)))
    else:
        raise FileNotFoundError(f"no VideoCrafter2 checkpoint or converted folder at {path}")
    backbone = VideoCrafter2Backbone.from_components(components, defaults or DEFAULTS, model_id=str(model))
    return backbone.to(device or "cpu")


# --- tiny random model -----------------------------------------------------------------------------------------

TINY_UNET_CONFIG = {
    "block_out_channels": (32, 64, 32, 32), "layers_per_block": 2, "attention_levels": (True, True, True, False),
    "attention_head_dim": 8, "cross_attention_dim": 32,
}
TINY_VAE_CONFIG = {
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": (32, 64, 32, 32), "layers_per_block": 2, "latent_channels": 4, "norm_num_groups": 32,
    "sample_size": 64, "scaling_factor": 0.18215,
}


def _redraw_zero_weights(model: nn.Module, generator: torch.Generator) -> None:
    """Give zero-initialised layers (e.g. the last temporal conv) random weights, so every part has an effect."""
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not weight.any():
            bound = (weight[0].numel()) ** -0.5
            with torch.no_grad():
                weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)


def tiny_videocrafter2(seed: int = 0, device: str | torch.device | None = None) -> VideoCrafter2Backbone:
    """A VideoCrafter2-architecture backbone with tiny random weights (about 5.5 M parameters), built offline.

    Same seed, same weights. The tokenizer is the real OpenCLIP one; use sizes that are multiples of 64 pixels.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = VideoCrafter2UNet(**TINY_UNET_CONFIG)
        vae = AutoencoderKL(**TINY_VAE_CONFIG)
        text_encoder = CLIPTextModel(open_clip_text_config(width=32, layers=3, heads=4))
    generator = torch.Generator().manual_seed(seed)
    _redraw_zero_weights(unet, generator)
    backbone = VideoCrafter2Backbone(unet.eval(), vae.eval(), text_encoder.eval(), openclip_tokenizer(),
                                     VideoCrafter2DDIMScheduler(), get_spec("tiny-videocrafter2").defaults,
                                     model_id="tiny-videocrafter2")
    return backbone.to(device or "cpu")
