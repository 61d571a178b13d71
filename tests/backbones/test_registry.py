"""The registry: names, loader paths and the defaults it advertises."""

import pytest
import torch

from vstar.backbones import (
    BACKBONES,
    DEFAULT_MODEL,
    get_spec,
    list_backbones,
    load_backbone,
    weights_available,
)
from vstar.backbones.registry import _resolve_loader
from vstar.temporal_attention import unet_temporal_attention_layers


def test_every_loader_path_resolves_and_real_models_have_hub_ids():
    assert DEFAULT_MODEL == "videocrafter2"
    for spec in list_backbones():
        assert callable(_resolve_loader(spec.loader))
        assert spec.tiny or spec.model_ids


def architecture(unet, vae_blocks: int, vae_channels: int, num_train_timesteps: int) -> dict:
    """What the registry states of a model's architecture, as found in the built parts."""
    assert vae_channels == unet.config.in_channels  # the UNet denoises the VAE's latents
    levels = tuple(sorted({layer.level for layer in unet_temporal_attention_layers(unet)}))
    return {"num_train_timesteps": num_train_timesteps, "temporal_attention_levels": levels,
            "latent_channels": unet.config.in_channels, "vae_scale_factor": 2 ** (vae_blocks - 1)}


def wan_architecture(transformer_config, vae_channels: int, vae_factor: int, num_train_timesteps: int) -> dict:
    """What the registry states of a Wan model: its blocks in place of levels (TAR names the blocks)."""
    assert vae_channels == transformer_config.in_channels
    return {"num_train_timesteps": num_train_timesteps,
            "temporal_attention_levels": tuple(range(transformer_config.num_layers)),
            "latent_channels": transformer_config.in_channels, "vae_scale_factor": vae_factor}


def stated(defaults) -> dict:
    return {key: getattr(defaults, key) for key in
            ("num_train_timesteps", "temporal_attention_levels", "latent_channels", "vae_scale_factor")}


@pytest.mark.parametrize("name", [n for n, s in BACKBONES.items() if s.tiny])
def test_tiny_entries_advertise_what_the_model_uses(name):
    spec = get_spec(name)
    backbone = load_backbone(name, device="cpu")
    d = spec.defaults
    assert backbone.defaults == d
    assert weights_available(spec)
    # what the CLI checks before loading (steps, timesteps, TAR levels, recorded noise) is what the model has
    if spec.family == "wan":  # a transformer over the latents of a video VAE that states its own factor
        assert stated(d) == wan_architecture(backbone.transformer.config, backbone.vae.config.z_dim,
                                             backbone.vae.config.scale_factor_spatial,
                                             backbone.scheduler.config.num_train_timesteps)
    else:
        vae = backbone.vae.config
        assert stated(d) == architecture(backbone.unet, len(vae.block_out_channels), vae.latent_channels,
                                         backbone.scheduler.config.num_train_timesteps)
    assert set(d.temporal_attention_levels) == {layer.level for layer in backbone.temporal_attention_layers()}
    for frames, height, width in ((d.num_frames, d.height, d.width), (9, 2 * d.height, d.width)):
        assert d.latent_shape(2, frames, height, width) == backbone.latent_shape(2, frames, height, width)


# The published configs of the full-size models, as far as they decide what the registry states: unet/config.json
# of ali-vilab/text-to-video-ms-1.7b (zeroscope v2 576w is a fine-tune with the same one), of Stable Diffusion 1.5
# and guoyww/animatediff-motion-adapter-v1-5-2's config.json; their VAEs are SD's KL-f8 (4 blocks, 4 channels),
# SD 1.5's schedule has 1000 steps (ModelScope's is in vstar). VideoCrafter2's come from vstar's port of its YAML.
MODELSCOPE_UNET = dict(
    block_out_channels=(320, 640, 1280, 1280), in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3, cross_attention_dim=1024, attention_head_dim=64,
)
SD15_UNET = dict(block_out_channels=(320, 640, 1280, 1280), in_channels=4, layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8)
ANIMATEDIFF_ADAPTER = dict(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                           motion_num_attention_heads=8, motion_max_seq_length=32, use_motion_mid_block=True)
SD_VAE_BLOCKS, SD_VAE_CHANNELS, SD_TRAIN_TIMESTEPS = 4, 4, 1000


def published_architecture(name: str) -> dict:
    """The architecture of a full-size entry, its UNet built on the meta device (no memory, no weights)."""
    from diffusers import DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNet3DConditionModel

    from vstar.backbones.animatediff import motion_unet
    from vstar.backbones.modelscope import MODELSCOPE_SCHEDULER
    from vstar.backbones.videocrafter2 import VideoCrafter2DDIMScheduler, VideoCrafter2UNet
    from vstar.backbones.videocrafter2.config import (
        ORIGINAL_UNET_PARAMS,
        ORIGINAL_VAE_DDCONFIG,
        unet_config_from_original,
        vae_config_from_original,
    )

    with torch.device("meta"):
        if name == "videocrafter2":
            vae = vae_config_from_original(ORIGINAL_VAE_DDCONFIG)
            return architecture(VideoCrafter2UNet(**unet_config_from_original(ORIGINAL_UNET_PARAMS)),
                                len(vae["block_out_channels"]), vae["latent_channels"],
                                VideoCrafter2DDIMScheduler().config.num_train_timesteps)
        if name in ("modelscope", "zeroscope"):
            return architecture(UNet3DConditionModel(**MODELSCOPE_UNET), SD_VAE_BLOCKS, SD_VAE_CHANNELS,
                                DDIMScheduler(**MODELSCOPE_SCHEDULER).config.num_train_timesteps)
        if name.startswith("wan"):  # transformer/config.json of the Wan-AI repos (tests/backbones/test_wan.py)
            from diffusers import WanTransformer3DModel
            from test_wan import PUBLISHED

            transformer = WanTransformer3DModel(**PUBLISHED[name][0])
            vae_factor = 16 if name == "wan2.2-ti2v-5b" else 8  # the 48-channel Wan 2.2 VAE: 8x and a 2x2 patch
            return wan_architecture(transformer.config, transformer.config.in_channels, vae_factor,
                                    SD_TRAIN_TIMESTEPS)
        assert name == "animatediff", f"write down the published architecture of {name} here"
        unet = motion_unet(UNet2DConditionModel(**SD15_UNET), MotionAdapter(**ANIMATEDIFF_ADAPTER))
        assert unet.config.motion_max_seq_length == get_spec(name).defaults.max_frames
        return architecture(unet, SD_VAE_BLOCKS, SD_VAE_CHANNELS, SD_TRAIN_TIMESTEPS)


@pytest.mark.parametrize("name", [n for n, s in BACKBONES.items() if not s.tiny])
def test_full_size_entries_state_their_published_architecture(name):
    assert stated(get_spec(name).defaults) == published_architecture(name)


def test_videocrafter2_entry_matches_the_authors_settings():
    from vstar.backbones.videocrafter2.backbone import DEFAULTS

    assert get_spec("videocrafter2").defaults == DEFAULTS
    assert (DEFAULTS.height, DEFAULTS.width, DEFAULTS.num_inference_steps, DEFAULTS.guidance_scale,
            DEFAULTS.cond_fps, DEFAULTS.eta) == (320, 512, 25, 12.0, 28, 1.0)
    # conditioned on 28 fps, written at the authors' playback rate
    assert DEFAULTS.fps == 10


def test_errors():
    with pytest.raises(ValueError, match="unknown model 'sora'.*videocrafter2"):
        get_spec("sora")
    with pytest.raises(ValueError, match="takes no model path"):
        load_backbone("tiny-modelscope", model_path="somewhere")


def test_a_family_registers_from_outside_the_package():
    from dataclasses import replace

    from vstar.backbones.registry import register_backbone, unregister_backbone

    spec = replace(get_spec("tiny-modelscope"), name="tiny-copy", loader=lambda device, seed: "built")
    register_backbone(spec)
    try:
        assert get_spec("tiny-copy") is spec and _resolve_loader(spec.loader) is spec.loader
        with pytest.raises(ValueError, match="registered already"):
            register_backbone(spec)
        register_backbone(spec, replace=True)
    finally:
        unregister_backbone("tiny-copy")
    with pytest.raises(ValueError, match="unknown model 'tiny-copy'"):
        get_spec("tiny-copy")
