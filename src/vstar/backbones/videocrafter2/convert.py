"""Strict conversion of the original VideoCrafter2 checkpoint into diffusers / transformers components.

The original ``model.ckpt`` holds one ``state_dict`` with four groups of keys:

* ``model.diffusion_model.*``  -> :class:`VideoCrafter2UNet` (renamed here, see :func:`unet_key_table`);
* ``first_stage_model.*``      -> diffusers ``AutoencoderKL`` (diffusers' own LDM VAE mapping);
* ``cond_stage_model.model.*`` -> transformers ``CLIPTextModel`` (diffusers' own OpenCLIP mapping). The last
  text block, ``text_projection`` and ``logit_scale`` are unused by the penultimate-layer encoder and dropped
  by name, as diffusers does for SD 2;
* the DDPM schedule buffers (``betas``, ``alphas_cumprod``, ..., ``scale_arr``) -> checked against
  :class:`VideoCrafter2DDIMScheduler`, not stored.

Every key must be consumed and every parameter filled with a tensor of the right shape; otherwise a
:class:`ConversionError` names the first offending key. Converting works on ``meta`` tensors too.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, convert_open_clip_checkpoint
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from .components import VideoCrafter2Components, empty_models, load_converted
from .scheduler import VideoCrafter2DDIMScheduler
from .tokenizer import openclip_tokenizer

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.model."
SCHEDULE_BUFFERS = frozenset({
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "scale_arr",
})

# ResBlock leaves: original -> diffusers ResnetBlock2D
_RESNET_LEAVES = {
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}
_RESNET, _PLAIN, _CONV1D = "resnet", "plain", "conv1d"

Tensors = Mapping[str, torch.Tensor]
# source tensors of one module -> for each source key, the target tensors it becomes (empty: unmapped)
Renamer = Callable[[dict[str, torch.Tensor]], dict[str, dict[str, torch.Tensor]]]


class ConversionError(ValueError):
    """A checkpoint key that maps nowhere, a parameter nothing maps to, or a shape mismatch."""


# --- the UNet key table ---------------------------------------------------------------------------------------

def _unit_rows(src: str, dst: str, k: int, attention: bool) -> dict[str, tuple[str, str]]:
    """Original ``TimestepEmbedSequential`` ``src`` (ResBlock[, spatial, temporal]) -> unit ``k`` of ``dst``."""
    rows = {f"{src}0.temopral_conv.": (f"{dst}temp_convs.{k}.", _PLAIN), f"{src}0.": (f"{dst}resnets.{k}.", _RESNET)}
    if attention:
        rows[f"{src}1."] = (f"{dst}attentions.{k}.", _PLAIN)
        rows[f"{src}2."] = (f"{dst}temp_attentions.{k}.", _PLAIN)
    return rows


def unet_key_table(config: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Original module prefix -> (``VideoCrafter2UNet`` module prefix, kind), for a UNet ``config``."""
    levels, layers, attention = len(config["block_out_channels"]), config["layers_per_block"], config["attention_levels"]
    table = {
        "time_embed.0.": ("time_embedding.linear_1.", _PLAIN), "time_embed.2.": ("time_embedding.linear_2.", _PLAIN),
        "fps_embedding.0.": ("fps_embedding.linear_1.", _PLAIN), "fps_embedding.2.": ("fps_embedding.linear_2.", _PLAIN),
        "input_blocks.0.0.": ("conv_in.", _PLAIN), "init_attn.0.": ("transformer_in.", _CONV1D),
        "out.0.": ("conv_norm_out.", _PLAIN), "out.2.": ("conv_out.", _PLAIN),
    }
    block = 1
    for level in range(levels):
        for k in range(layers):
            table.update(_unit_rows(f"input_blocks.{block}.", f"down_blocks.{level}.", k, attention[level]))
            block += 1
        if level < levels - 1:
            table[f"input_blocks.{block}.0.op."] = (f"down_blocks.{level}.downsamplers.0.conv.", _PLAIN)
            block += 1
    table.update(_unit_rows("middle_block.", "mid_block.", 0, True))
    table["middle_block.3.temopral_conv."] = ("mid_block.temp_convs.1.", _PLAIN)
    table["middle_block.3."] = ("mid_block.resnets.1.", _RESNET)
    block = 0
    for j, level in enumerate(reversed(range(levels))):
        for k in range(layers + 1):
            table.update(_unit_rows(f"output_blocks.{block}.", f"up_blocks.{j}.", k, attention[level]))
            if k == layers and level > 0:
                position = 3 if attention[level] else 1
                table[f"output_blocks.{block}.{position}.conv."] = (f"up_blocks.{j}.upsamplers.0.conv.", _PLAIN)
            block += 1
    return table


def _per_key(rename: Callable[[str, torch.Tensor], dict[str, torch.Tensor]]) -> Renamer:
    return lambda group: {key: rename(key, tensor) for key, tensor in group.items()}


def _unet_renamer(config: Mapping[str, Any]) -> Renamer:
    table = unet_key_table(config)

    def rename(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = key[len(UNET_PREFIX):].split(".")
        for cut in range(len(parts) - 1, 0, -1):  # longest matching module prefix
            prefix = ".".join(parts[:cut]) + "."
            if prefix not in table:
                continue
            target, kind = table[prefix]
            rest = parts[cut:]
            if kind == _RESNET:
                leaf = next((n for n in (2, 1) if ".".join(rest[:n]) in _RESNET_LEAVES), None)
                if leaf is None:
                    return {}
                rest = [_RESNET_LEAVES[".".join(rest[:leaf])], *rest[leaf:]]
            elif kind == _CONV1D and rest[0] in ("proj_in", "proj_out") and tensor.ndim == 3 and tensor.shape[2] == 1:
                tensor = tensor[:, :, 0].contiguous()  # Conv1d(k=1) -> Linear
            return {target + ".".join(rest): tensor}
        return {}

    return _per_key(rename)


def _vae_renamer(vae: AutoencoderKL) -> Renamer:
    """diffusers' LDM VAE mapping, applied to one module (weight and bias together) at a time.

    The mapping keeps the last name part (``weight``/``bias``), which attributes each output to its source key.
    """
    config = dict(vae.config)

    def rename(group: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        out = convert_ldm_vae_checkpoint(dict(group), config)
        leaf = {key: key.rsplit(".", 1)[-1] for key in group}
        return {key: {n: t for n, t in out.items() if n.rsplit(".", 1)[-1] == leaf[key]} for key in group}

    return rename


def _text_renamer(text_encoder: CLIPTextModel) -> Renamer:
    """diffusers' OpenCLIP mapping; its ``text_model.`` prefix is dropped where the model has none (transformers 5)."""
    nested = any(key.startswith("text_model.") for key in text_encoder.state_dict())

    def rename(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        out = convert_open_clip_checkpoint(text_encoder, {key: tensor}, prefix=TEXT_PREFIX)
        return out if nested else {k.removeprefix("text_model."): v for k, v in out.items()}

    return _per_key(rename)


def unused_text_keys(text_encoder: CLIPTextModel) -> frozenset[str]:
    """OpenCLIP keys the penultimate-layer encoder does not use: the last block, the projection, the logit scale."""
    last = f"{TEXT_PREFIX}transformer.resblocks.{text_encoder.config.num_hidden_layers}."
    leaves = ["ln_1", "ln_2", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"]
    keys = {f"{last}{leaf}.{p}" for leaf in leaves for p in ("weight", "bias")}
    keys |= {f"{last}attn.in_proj_weight", f"{last}attn.in_proj_bias"}
    return frozenset(keys | {f"{TEXT_PREFIX}text_projection", f"{TEXT_PREFIX}logit_scale"})


# --- strict conversion ------------------------------------------------------------------------------------------

def _by_module(source: Tensors, ignore: frozenset[str]) -> list[dict[str, torch.Tensor]]:
    """The tensors of ``source`` grouped by module (key without its last part), in order."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in source.items():
        if key not in ignore:
            groups.setdefault(key.rsplit(".", 1)[0], {})[key] = tensor
    return list(groups.values())


def _convert(source: Tensors, rename: Renamer, model: nn.Module,
             ignore: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    """Map every key of ``source`` (except ``ignore``) through ``rename`` onto ``model``'s state dict, strictly."""
    name = type(model).__name__
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    converted: dict[str, torch.Tensor] = {}
    for group in _by_module(source, ignore):
        renamed = rename(group)
        for key, tensor in group.items():
            _check_and_add(key, tensor, renamed[key], expected, converted, name)
    missing = [k for k in expected if k not in converted]
    if missing:
        raise ConversionError(f"{name} parameter {missing[0]!r} has no tensor in the checkpoint "
                              f"({len(missing)} missing in total)")
    return converted


def _check_and_add(key: str, tensor: torch.Tensor, mapped: dict[str, torch.Tensor],
                   expected: dict[str, tuple[int, ...]], converted: dict[str, torch.Tensor], name: str) -> None:
    """Add the tensors ``key`` maps to, or raise naming ``key``."""
    if not mapped:
        raise ConversionError(f"unmapped checkpoint key {key!r} (shape {tuple(tensor.shape)}): "
                              f"no {name} parameter corresponds to it")
    for new_key, value in mapped.items():
        if new_key not in expected:
            raise ConversionError(f"checkpoint key {key!r} maps to {new_key!r}, which {name} does not have")
        if new_key in converted:
            raise ConversionError(f"checkpoint key {key!r} maps to {new_key!r}, which another key filled already")
        if tuple(value.shape) != expected[new_key]:
            raise ConversionError(
                f"checkpoint key {key!r} has shape {tuple(tensor.shape)} but {name} parameter {new_key!r} "
                f"needs {expected[new_key]}; the checkpoint does not match this model config"
            )
        converted[new_key] = value


def convert_unet_state_dict(source: Tensors, unet: nn.Module) -> dict[str, torch.Tensor]:
    """``model.diffusion_model.*`` tensors -> the state dict of ``unet`` (a ``VideoCrafter2UNet``, meta is fine)."""
    return _convert(source, _unet_renamer(unet.config), unet)


def convert_vae_state_dict(source: Tensors, vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    """``first_stage_model.*`` tensors -> the state dict of ``vae``."""
    return _convert(source, _vae_renamer(vae), vae)


def convert_text_encoder_state_dict(source: Tensors, text_encoder: CLIPTextModel) -> dict[str, torch.Tensor]:
    """``cond_stage_model.model.*`` tensors -> the state dict of ``text_encoder`` (penultimate-layer CLIP)."""
    return _convert(source, _text_renamer(text_encoder), text_encoder, unused_text_keys(text_encoder))


def check_schedule(buffers: Tensors, scheduler: VideoCrafter2DDIMScheduler) -> None:
    """Raise unless the checkpoint's ``alphas_cumprod`` and ``scale_arr`` equal the scheduler's (float32)."""
    for name, ours in (("alphas_cumprod", scheduler.alphas_cumprod), ("scale_arr", scheduler.scale_arr)):
        theirs = buffers.get(name)
        if theirs is None or theirs.is_meta:
            continue
        if theirs.shape != ours.shape or not np.allclose(theirs.double().numpy(), ours, rtol=0, atol=1e-6):
            raise ConversionError(
                f"checkpoint buffer {name!r} differs from VideoCrafter2DDIMScheduler's (linear betas 0.00085..0.012, "
                f"scale_b 0.7); the checkpoint was trained with another noise schedule and is not supported"
            )


@dataclass
class CheckpointGroups:
    """The original state dict split by component; keys keep their original prefixes."""

    unet: dict[str, torch.Tensor]
    vae: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    schedule: dict[str, torch.Tensor]


def split_checkpoint(state_dict: Tensors) -> CheckpointGroups:
    """Split an original state dict (a Lightning ``state_dict`` already unwrapped) by component.

    Raises ConversionError naming the first key that belongs to no component.
    """
    groups = CheckpointGroups({}, {}, {}, {})
    for key, tensor in state_dict.items():
        if key.startswith(UNET_PREFIX):
            groups.unet[key] = tensor
        elif key.startswith(VAE_PREFIX):
            groups.vae[key] = tensor
        elif key.startswith(TEXT_PREFIX):
            groups.text_encoder[key] = tensor
        elif key in SCHEDULE_BUFFERS:
            groups.schedule[key] = tensor
        else:
            raise ConversionError(f"unmapped checkpoint key {key!r}: not part of the UNet ({UNET_PREFIX}*), VAE "
                                  f"({VAE_PREFIX}*), text encoder ({TEXT_PREFIX}*) or noise schedule")
    for name, prefix in (("unet", UNET_PREFIX), ("vae", VAE_PREFIX), ("text_encoder", TEXT_PREFIX)):
        if not getattr(groups, name):
            raise ConversionError(f"the checkpoint has no {prefix}* keys; is it a VideoCrafter2 checkpoint?")
    return groups


# --- whole checkpoints ------------------------------------------------------------------------------------------

def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an original ``.ckpt`` (Lightning, ``state_dict`` inside) or ``.safetensors`` file.

    ``.ckpt`` files are read with ``weights_only=True`` (no code from the file runs), memory-mapped when the
    file format allows it. Empty, truncated, foreign and non-tensor files raise :class:`ConversionError`.
    """
    path = Path(path)
    again = "download model.ckpt again (VideoCrafter/VideoCrafter2 on the Hugging Face Hub)"
    if path.stat().st_size == 0:
        raise ConversionError(f"{path} is empty; {again}")
    try:
        if path.suffix == ".safetensors":
            checkpoint: Any = load_file(path)
        else:
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise ConversionError(
                f"{path} holds Python objects besides tensors; vstar never runs code from a checkpoint file. Use "
                f"the official checkpoint: {again}"
            ) from None
        raise ConversionError(f"{path} is not a PyTorch checkpoint (it does not unpickle as one); {again}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, SafetensorError) as err:
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise ConversionError(f"{path} is not a readable checkpoint ({reason}); it may be truncated or another "
                              f"kind of file: {again}") from None
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ConversionError(f"{path} holds a {type(state_dict).__name__} but not a state dict of tensors; is it "
                              "a VideoCrafter2 checkpoint?")
    return state_dict


def convert_videocrafter2_checkpoint(
    ckpt_path_or_state_dict: str | Path | Tensors,
    out_dir: str | Path | None = None,
    torch_dtype: torch.dtype = torch.float32,
    unet_config: Mapping[str, Any] | None = None,
    vae_config: Mapping[str, Any] | None = None,
    text_config: CLIPTextConfig | None = None,
    overwrite: bool = False,
) -> VideoCrafter2Components:
    """Convert the original VideoCrafter2 checkpoint (file or state dict) into components, strictly.

    With ``out_dir``, also write them as a diffusers-style folder that :func:`load_videocrafter2` reads
    (``overwrite``: replacing an earlier conversion there).
    The configs default to the full t2v 512 v2.0 model. Raises ConversionError naming the first unmapped key,
    unfilled parameter or shape mismatch.
    """
    state_dict = (ckpt_path_or_state_dict if isinstance(ckpt_path_or_state_dict, Mapping)
                  else load_original_state_dict(ckpt_path_or_state_dict))
    groups = split_checkpoint(state_dict)
    scheduler = VideoCrafter2DDIMScheduler()
    check_schedule(groups.schedule, scheduler)
    unet, vae, text_encoder = empty_models(unet_config, vae_config, text_config)
    components = VideoCrafter2Components(
        unet=load_converted(unet, convert_unet_state_dict(groups.unet, unet), torch_dtype),
        vae=load_converted(vae, convert_vae_state_dict(groups.vae, vae), torch_dtype),
        text_encoder=load_converted(
            text_encoder, convert_text_encoder_state_dict(groups.text_encoder, text_encoder), torch_dtype),
        tokenizer=openclip_tokenizer(),
        scheduler=scheduler,
    )
    if out_dir is not None:
        components.save_pretrained(out_dir, overwrite)
    return components
