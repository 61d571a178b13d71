"""Model configurations of VideoCrafter2 (t2v 512 v2.0): the full model, and translation of the original YAML.

The original code (``lvdm``) is configured by ``UNetModel`` kwargs and an LDM ``ddconfig``; these functions turn
them into the configs of :class:`~vstar.backbones.videocrafter2.unet.VideoCrafter2UNet`, diffusers'
``AutoencoderKL`` and transformers' ``CLIPTextConfig``.
"""

from __future__ import annotations

from typing import Any

from transformers import CLIPTextConfig

# `model.params.unet_config.params` of configs/inference_t2v_512_v2.0.yaml (the defaults it relies on included).
ORIGINAL_UNET_PARAMS: dict[str, Any] = {
    "in_channels": 4, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
    "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_head_channels": 64, "transformer_depth": 1,
    "context_dim": 1024, "use_linear": True, "temporal_conv": True, "temporal_attention": True,
    "temporal_selfatt_only": True, "use_relative_position": False, "use_causal_attention": False,
    "addition_attention": True, "fps_cond": True,
}

# `model.params.first_stage_config.params.ddconfig` of the same YAML.
ORIGINAL_VAE_DDCONFIG: dict[str, Any] = {
    "double_z": True, "z_channels": 4, "resolution": 512, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
}

SCALE_FACTOR = 0.18215  # latent scaling of the first stage (``z = scale_factor * posterior.sample()``)
TEXT_MAX_LENGTH = 77

# The original options this port implements; any other value would silently change the architecture.
_REQUIRED_UNET_FLAGS = {
    "use_linear": True, "temporal_conv": True, "temporal_attention": True, "temporal_selfatt_only": True,
    "use_relative_position": False, "use_causal_attention": False, "addition_attention": True, "fps_cond": True,
    "transformer_depth": 1,
}


def unet_config_from_original(params: dict[str, Any]) -> dict[str, Any]:
    """``VideoCrafter2UNet`` kwargs from the original ``UNetModel`` kwargs (``unet_config.params``).

    Raises ValueError for original options this port does not implement (e.g. relative position).
    """
    for key, expected in _REQUIRED_UNET_FLAGS.items():
        if params.get(key, expected) != expected:
            raise ValueError(
                f"VideoCrafter2UNet implements {key}={expected!r} only, got {params[key]!r}; "
                "this checkpoint is not a VideoCrafter2 t2v 512 v2.0 model"
            )
    ch, mult = params["model_channels"], list(params["channel_mult"])
    return {
        "in_channels": params["in_channels"],
        "out_channels": params["out_channels"],
        "block_out_channels": [ch * m for m in mult],
        "layers_per_block": params["num_res_blocks"],
        # level i runs at downsampling factor 2**i; attention where that factor is listed
        "attention_levels": [2**i in params["attention_resolutions"] for i in range(len(mult))],
        "attention_head_dim": params["num_head_channels"],
        "cross_attention_dim": params["context_dim"],
    }


def vae_config_from_original(ddconfig: dict[str, Any], scaling_factor: float = SCALE_FACTOR) -> dict[str, Any]:
    """diffusers ``AutoencoderKL`` kwargs from an LDM ``ddconfig`` (KL-f8 family, no attention levels)."""
    if ddconfig.get("attn_resolutions"):
        raise ValueError(f"attn_resolutions must be empty for a KL-f8 VAE, got {ddconfig['attn_resolutions']}")
    channels = [ddconfig["ch"] * m for m in ddconfig["ch_mult"]]
    return {
        "in_channels": ddconfig["in_channels"],
        "out_channels": ddconfig["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": channels,
        "layers_per_block": ddconfig["num_res_blocks"],
        "latent_channels": ddconfig["z_channels"],
        "norm_num_groups": 32,
        "sample_size": ddconfig["resolution"],
        "scaling_factor": scaling_factor,
    }


def open_clip_text_config(width: int = 1024, layers: int = 24, heads: int = 16, vocab_size: int = 49408,
                          context_length: int = TEXT_MAX_LENGTH) -> CLIPTextConfig:
    """``CLIPTextConfig`` of the OpenCLIP text tower (ViT-H-14 by default) used at its penultimate layer.

    VideoCrafter2 runs resblocks ``0 .. layers-2`` and then ``ln_final``; a CLIP text model with
    ``layers - 1`` hidden layers computes exactly that as ``last_hidden_state`` (as diffusers' SD 2 does).
    """
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers - 1,
        num_attention_heads=heads, max_position_embeddings=context_length, hidden_act="gelu",
        layer_norm_eps=1e-5, projection_dim=width, bos_token_id=49406, eos_token_id=49407, pad_token_id=0,
    )
