"""VideoCrafter2 in the community diffusers format: a stock ``UNet3DConditionModel`` plus an fps embedding.

Community conversions of VideoCrafter2 store its UNet as diffusers' own ``UNet3DConditionModel`` (config and
weights in ``unet/``) with two extra modules: a sinusoidal projection of the frame rate (no weights) and an MLP,
``fps_embedding.linear_1/linear_2``, whose output is added to the timestep embedding. The text encoder,
tokenizer and VAE are zeroscope's (ModelScope's OpenCLIP-H text tower as a 1024-wide ``CLIPTextModel``).

Here the UNet is built from its config and loaded strictly; the fps MLP lives on the backbone and reaches the
UNet through a forward hook on ``unet.time_embedding``::

    emb = time_embedding(time_proj(t)) + fps_embedding(fps_proj(fps))      # (B, 4 * C0), before the
                                                                           # UNet repeats it over frames

Because the module names are diffusers' own (``transformer_in``, ``temp_attentions``), per-frame conditioning
and TAR work exactly as on ModelScope. Sampling uses VideoCrafter2's rescaled DDIM and its defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet3DConditionModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from ..base import BackboneDefaults
from ..loading import DiffusersVideoBackbone, ModelNotAvailableError, ModelSource
from ..weights_identity import LoadedFiles, record_loaded, weight_files
from .backbone import DEFAULTS
from .convert import ConversionError
from .scheduler import VideoCrafter2DDIMScheduler

COMPONENTS_REPO = "cerspense/zeroscope_v2_576w"  # text encoder, tokenizer and VAE of the community format
UNET_CLASS_NAMES = frozenset({"UNet3DConditionModel", "UNetVideoCrafter"})
FPS_PREFIX = "fps_embedding."
WEIGHTS_NAME = "diffusion_pytorch_model"
CONFIG_EXTRA_KEYS = frozenset({"fps_cond"})  # community keys that UNet3DConditionModel does not take


# --- finding the format ------------------------------------------------------------------------------------------

def unet_weight_files(unet_dir: Path) -> list[Path]:
    """The weight files of a diffusers model folder: ``diffusion_pytorch_model.safetensors``/``.bin`` (or the
    shards named by its ``.index.json``), else their ``fp16`` variant; an empty list when there are none."""
    return weight_files(unet_dir) or weight_files(unet_dir, "fp16")


def weight_keys(files: list[Path]) -> list[str]:
    """The tensor names stored in ``files``, read without loading ``.safetensors`` tensors."""
    keys: list[str] = []
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                keys.extend(handle.keys())
        else:
            keys.extend(torch.load(file, map_location="cpu", mmap=True, weights_only=True))
    return keys


def load_weights(files: list[Path]) -> dict[str, torch.Tensor]:
    """All tensors of ``files`` (safetensors or PyTorch pickles) on the CPU."""
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            tensors.update(load_file(str(file)))
        else:
            tensors.update(torch.load(file, map_location="cpu", mmap=True, weights_only=True))
    return tensors


def community_unet_folder(path: str | Path) -> Path | None:
    """The UNet folder of a community-format VideoCrafter2 at ``path`` (``path/unet`` or ``path`` itself), or None.

    It qualifies when its ``config.json`` names ``UNet3DConditionModel`` (or ``UNetVideoCrafter``) and its
    weights hold ``fps_embedding.*`` tensors.
    """
    path = Path(path)
    for folder in (path / "unet", path):
        config = folder / "config.json"
        if not config.is_file():
            continue
        try:
            class_name = json.loads(config.read_text()).get("_class_name")
        except (json.JSONDecodeError, AttributeError):
            continue
        if class_name in UNET_CLASS_NAMES and any(
                key.startswith(FPS_PREFIX) for key in weight_keys(unet_weight_files(folder))):
            return folder
    return None


# --- building the UNet and the fps embedding ---------------------------------------------------------------------

def unet_config(unet_dir: Path) -> dict[str, Any]:
    """The folder's UNet config without diffusers' ``_`` metadata and the community's extra keys."""
    config = json.loads((unet_dir / "config.json").read_text())
    return {k: v for k, v in config.items() if not k.startswith("_") and k not in CONFIG_EXTRA_KEYS}


def fps_projection(unet: UNet3DConditionModel) -> Timesteps:
    """The community's sinusoidal fps projection, ``fps (B,) -> (B, C0)`` float32 (``C0 = block_out_channels[0]``,
    cos first, like VideoCrafter2's ``timestep_embedding``); it has no weights."""
    return Timesteps(int(unet.config.block_out_channels[0]), flip_sin_to_cos=True, downscale_freq_shift=0)


def fps_embedding_for(unet: UNet3DConditionModel) -> TimestepEmbedding:
    """A randomly initialised fps MLP ``(B, C0) -> (B, 4 * C0)`` with the UNet's activation, the width of its
    timestep embedding."""
    channels = int(unet.config.block_out_channels[0])
    return TimestepEmbedding(channels, channels * 4, act_fn=unet.config.act_fn)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, where: Path,
                     prefix: str = "") -> None:
    """Raise :class:`ConversionError` naming the first unexpected key, missing parameter or wrong shape (keys are
    named as stored: ``prefix`` + the model's key)."""
    expected = model.state_dict()
    fix = (f"{where} is not a VideoCrafter2 UNet in the community diffusers format (a stock "
           "UNet3DConditionModel plus fps_embedding.linear_1/linear_2)")
    for key, tensor in state_dict.items():
        if key not in expected:
            raise ConversionError(f"unexpected key {prefix + key!r} in the weights of {where}: it is no parameter of {what}; "
                                  f"{fix}")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ConversionError(f"{prefix + key!r} has shape {tuple(tensor.shape)} in {where} but {what} expects "
                                  f"{tuple(expected[key].shape)}; {fix}")
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise ConversionError(f"{where} lacks {len(missing)} weights of {what}, the first is {prefix + missing[0]!r}; {fix}")


def load_community_unet(unet_dir: str | Path, dtype: torch.dtype = torch.float32,
                        ) -> tuple[UNet3DConditionModel, TimestepEmbedding]:
    """A stock ``UNet3DConditionModel`` and the fps ``TimestepEmbedding`` of a community UNet folder, both loaded
    strictly (every stored tensor used, every parameter set, shapes checked) and cast to ``dtype``, in eval mode.

    Raises:
        ConversionError: a key that is neither a UNet parameter nor ``fps_embedding.*``, a missing parameter, or a
            shape mismatch; the message names the key.
        FileNotFoundError: the folder has no config or weights.
    """
    unet_dir = Path(unet_dir)
    files = unet_weight_files(unet_dir)
    if not (unet_dir / "config.json").is_file() or not files:
        raise FileNotFoundError(f"{unet_dir} needs config.json and {WEIGHTS_NAME}.safetensors (or .bin)")
    with init_empty_weights():
        unet = UNet3DConditionModel.from_config(unet_config(unet_dir))
    fps_embedding = fps_embedding_for(unet)
    weights = {key: tensor.to(dtype) for key, tensor in load_weights(files).items()}
    fps_weights = {key[len(FPS_PREFIX):]: weights.pop(key) for key in list(weights) if key.startswith(FPS_PREFIX)}
    check_state_dict(unet, weights, "diffusers' UNet3DConditionModel built from its config.json", unet_dir)
    check_state_dict(fps_embedding, fps_weights, "the fps embedding", unet_dir, FPS_PREFIX)
    unet.load_state_dict(weights, strict=True, assign=True)
    on_meta = [name for name, tensor in [*unet.named_parameters(), *unet.named_buffers()] if tensor.is_meta]
    if on_meta:  # a buffer that is neither stored nor rebuilt by from_config
        raise ConversionError(f"{unet_dir} does not set {on_meta[0]!r} of the UNet")
    fps_embedding.load_state_dict(fps_weights, strict=True)
    return unet.eval(), fps_embedding.to(dtype).eval()


# --- the backbone ------------------------------------------------------------------------------------------------

class CommunityVideoCrafter2Backbone(DiffusersVideoBackbone):
    """VideoCrafter2 as a stock ``UNet3DConditionModel`` with fps conditioning added by a forward hook.

    Text encoding, the per-frame UNet call and VAE decoding are those of the diffusers backbones (ModelScope-style);
    the scheduler is VideoCrafter2's rescaled DDIM. ``fps`` is the frame rate the hook adds to the timestep
    embedding: :meth:`model_output` sets it on every call (default ``defaults.cond_fps``), so it also applies when
    ``unet`` is called directly afterwards.
    """

    name = "videocrafter2"

    def __init__(self, unet: UNet3DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, fps_embedding: TimestepEmbedding,
                 scheduler: VideoCrafter2DDIMScheduler | None = None, defaults: BackboneDefaults = DEFAULTS,
                 model_id: str | None = None):
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler or VideoCrafter2DDIMScheduler(), defaults,
                         model_id)
        self.fps_proj = fps_projection(unet)
        self.fps_embedding = fps_embedding
        self.fps: float = float(defaults.cond_fps)
        self.fps_hook = unet.time_embedding.register_forward_hook(self.add_fps_embedding)

    def add_fps_embedding(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        """Forward hook of ``unet.time_embedding``: its output ``(B, 4 * C0)`` plus the embedding of :attr:`fps`,
        repeated over the B videos (the UNet repeats the sum over frames afterwards)."""
        fps = torch.full((output.shape[0],), self.fps, dtype=torch.float64, device=output.device)
        weight = self.fps_embedding.linear_1.weight
        return output + self.fps_embedding(self.fps_proj(fps).to(weight.dtype)).to(output.dtype)

    def unet_encoder_hidden_states(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(B, S, D)``, each video's first-frame embedding (see
        :meth:`vstar.backbones.modelscope.ModelScopeBackbone.unet_encoder_hidden_states`)."""
        return context[::num_frames]

    def model_output(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                     fps: int | None = None) -> torch.Tensor:
        """latents ``(B, C, F, h, w)``, context ``(B*F, S, D)`` (``(b f)`` order) -> noise ``(B, C, F, h, w)``,
        conditioned on ``fps`` (default ``defaults.cond_fps``, 28 for VideoCrafter2)."""
        self.fps = float(self.defaults.cond_fps if fps is None else fps)
        return super().model_output(latents, timestep, context)


def load_community_videocrafter2(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    defaults: BackboneDefaults | None = None,
    cache_dir: str | None = None,
    model_id: str | None = None,
) -> CommunityVideoCrafter2Backbone:
    """Load a community-format VideoCrafter2 folder (see :func:`community_unet_folder`).

    ``path`` holds ``unet/`` and optionally ``vae/``, ``text_encoder/``, ``tokenizer/`` (or is the UNet folder
    itself); missing parts come from :data:`COMPONENTS_REPO` through the Hugging Face cache (``cache_dir``) or a
    download. A ``scheduler/`` folder is ignored: sampling uses :class:`VideoCrafter2DDIMScheduler`. ``device``
    defaults to the CPU, ``dtype`` to float32.

    Raises:
        ModelNotAvailableError: a part missing from ``path`` is neither cached nor downloadable.
        ConversionError: the UNet weights do not match the format (the message names the key).
        ValueError: ``path`` is not in the community format, or the text encoder does not fit the UNet.
    """
    path = Path(path).expanduser()
    unet_dir = community_unet_folder(path)
    if unet_dir is None:
        raise ValueError(f"{path} is not a community-format VideoCrafter2: it needs unet/config.json naming "
                         f"{' or '.join(sorted(UNET_CLASS_NAMES))} and weights with {FPS_PREFIX}* tensors")
    dtype = dtype or torch.float32
    unet, fps_embedding = load_community_unet(unet_dir, dtype)
    record_loaded(LoadedFiles(path, (*unet_weight_files(unet_dir), unet_dir / "config.json")))
    local = ModelSource(model_id or str(path), path=path)
    hub = ModelSource(COMPONENTS_REPO, cache_dir=cache_dir, local_copy=(
        "a folder with the community VideoCrafter2 UNet in unet/ and the text_encoder/, tokenizer/ and vae/ of "
        f"{COMPONENTS_REPO} next to it, with --model-path DIR (model_path=DIR in Python)"))

    def source(subfolder: str) -> ModelSource:
        return local if unet_dir != path and local.has_subfolder(subfolder) else hub

    try:
        text_encoder = source("text_encoder").load(CLIPTextModel.from_pretrained, "text_encoder")
        tokenizer = source("tokenizer").load_tokenizer(CLIPTokenizer.from_pretrained)
        vae = source("vae").load(AutoencoderKL.from_pretrained, "vae")
    except ModelNotAvailableError as error:
        raise ModelNotAvailableError(
            f"{path} has no complete text_encoder/, tokenizer/ and vae/, so they are taken from {COMPONENTS_REPO} "
            f"(the text encoder, tokenizer and VAE of the community format): {error}") from error
    width, context_dim = text_encoder.config.hidden_size, unet.config.cross_attention_dim
    if width != context_dim:
        raise ValueError(f"the text encoder is {width} wide but the UNet's cross-attention expects {context_dim}; "
                         f"use the text encoder of {COMPONENTS_REPO} (or the one saved with this UNet)")
    backbone = CommunityVideoCrafter2Backbone(unet, vae, text_encoder, tokenizer, fps_embedding,
                                              defaults=defaults or DEFAULTS, model_id=model_id or str(path))
    return backbone.to(device=device or "cpu", dtype=dtype).eval()
