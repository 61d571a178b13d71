"""Strict checkpoint conversion: the full key set onto full-size (meta) models, and clear errors."""

import numpy as np
import pytest
import torch

from vstar.backbones.videocrafter2.components import empty_models
from vstar.backbones.videocrafter2.convert import (
    ConversionError,
    check_schedule,
    convert_unet_state_dict,
    convert_videocrafter2_checkpoint,
    load_original_state_dict,
    split_checkpoint,
    unused_text_keys,
)
from vstar.backbones.videocrafter2.scheduler import VideoCrafter2DDIMScheduler

FULL_PARAMS = {"unet": 1_413_284_420, "vae": 83_653_863, "text_encoder": 340_387_840}


def meta_state_dict(manifest: dict) -> dict[str, torch.Tensor]:
    """Every tensor of the full original checkpoint as a meta tensor of the recorded shape."""
    return {t["key"]: torch.empty(t["shape"], device="meta") for group in manifest["tensors"].values()
            for t in group}


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.slow
def test_full_checkpoint_converts_onto_full_size_models(manifest):
    """All 2026 weight tensors (+13 schedule buffers) map onto the full UNet, VAE and text encoder."""
    source = meta_state_dict(manifest)
    groups = split_checkpoint(source)
    assert (len(groups.unet), len(groups.vae), len(groups.text_encoder), len(groups.schedule)) == (1484, 248, 294, 13)

    components = convert_videocrafter2_checkpoint(source)  # strict: raises on any unmapped key or bad shape

    assert {name: numel(getattr(components, name)) for name in FULL_PARAMS} == FULL_PARAMS
    assert numel(components.unet) == manifest["counts"]["model.diffusion_model."]["elements"]
    assert numel(components.vae) == manifest["counts"]["first_stage_model."]["elements"]
    dropped = unused_text_keys(components.text_encoder)
    assert len(dropped) == 14 and dropped <= set(groups.text_encoder)  # last block, text_projection, logit_scale
    dropped_elements = sum(source[k].numel() for k in dropped)
    assert numel(components.text_encoder) + dropped_elements == manifest["counts"]["cond_stage_model."]["elements"]


def test_full_text_encoder_is_the_penultimate_layer_tower():
    _, _, text_encoder = empty_models()
    config = text_encoder.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (23, 1024, 16)
    assert config.hidden_act == "gelu" and config.vocab_size == 49408


@pytest.fixture(scope="module")
def full_unet():
    return empty_models()[0]


@pytest.fixture(scope="module")
def full_unet_source(manifest):
    return {k: v for k, v in meta_state_dict(manifest).items() if k.startswith("model.diffusion_model.")}


def test_unmapped_key_is_named(full_unet, full_unet_source):
    source = {**full_unet_source, "model.diffusion_model.input_blocks.1.0.in_layers.9.weight": torch.empty(320)}
    with pytest.raises(ConversionError, match=r"unmapped checkpoint key 'model\.diffusion_model\.input_blocks\.1\.0"
                                              r"\.in_layers\.9\.weight'"):
        convert_unet_state_dict(source, full_unet)


def test_key_of_no_component_is_named(manifest):
    source = {**meta_state_dict(manifest), "model_ema.decay": torch.empty(())}
    with pytest.raises(ConversionError, match=r"unmapped checkpoint key 'model_ema\.decay'"):
        split_checkpoint(source)


def test_wrong_shape_names_the_key_and_both_shapes(full_unet, full_unet_source):
    key = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight"
    source = {**full_unet_source, key: torch.empty(1280, 768, device="meta")}
    with pytest.raises(ConversionError, match=rf"{key.replace('.', '[.]')}' has shape \(1280, 768\).*"
                                              r"mid_block\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight"
                                              r"' needs \(1280, 1024\)"):
        convert_unet_state_dict(source, full_unet)


def test_missing_tensor_names_the_parameter(full_unet, full_unet_source):
    source = dict(full_unet_source)
    del source["model.diffusion_model.init_attn.0.proj_out.bias"]
    with pytest.raises(ConversionError, match=r"parameter 'transformer_in\.proj_out\.bias' has no tensor"):
        convert_unet_state_dict(source, full_unet)


def test_text_block_beyond_the_tower_is_unmapped(manifest):
    source = meta_state_dict(manifest)
    source["cond_stage_model.model.transformer.resblocks.24.ln_1.weight"] = torch.empty(1024, device="meta")
    with pytest.raises(ConversionError, match=r"resblocks\.24\.ln_1\.weight"):
        convert_videocrafter2_checkpoint(source)


def test_schedule_buffers_are_checked_against_the_scheduler():
    scheduler = VideoCrafter2DDIMScheduler()
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    buffers = {
        "alphas_cumprod": torch.tensor(np.cumprod(1 - betas), dtype=torch.float32),
        "scale_arr": torch.tensor(np.concatenate([np.linspace(1.0, 0.7, 400), np.full(1000, 0.7)]),
                                  dtype=torch.float32),
    }
    check_schedule(buffers, scheduler)
    buffers["scale_arr"] = torch.ones(1400)
    with pytest.raises(ConversionError, match="scale_arr"):
        check_schedule(buffers, scheduler)


def test_lightning_ckpt_state_dict_is_unwrapped(tmp_path):
    tensors = {"model.diffusion_model.out.2.bias": torch.arange(4.0), "betas": torch.ones(3)}
    torch.save({"state_dict": tensors, "epoch": 3}, tmp_path / "model.ckpt")
    loaded = load_original_state_dict(tmp_path / "model.ckpt")
    assert loaded.keys() == tensors.keys() and torch.equal(loaded["betas"], tensors["betas"])


def test_ckpt_with_arbitrary_objects_is_refused(tmp_path):
    torch.save({"state_dict": {}, "hyper_parameters": ConversionError("x")}, tmp_path / "model.ckpt")
    with pytest.raises(ConversionError, match="never runs code") as err:
        load_original_state_dict(tmp_path / "model.ckpt")
    assert "weights_only=False" not in str(err.value)  # never suggest unpickling an untrusted file


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (bytes(range(256)) * 20, "not a PyTorch checkpoint"),
    ("truncated", "not a readable checkpoint"),
    ("list", "not a state dict of tensors"),
])
def test_broken_checkpoint_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if content == "truncated":
        torch.save({"state_dict": {"w": torch.ones(4096)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "list":
        torch.save([torch.ones(2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConversionError, match=message) as err:
        load_original_state_dict(path)
    assert "\n" not in str(err.value) and "weights_only=False" not in str(err.value)


def test_broken_safetensors_file_gets_one_line_error(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ConversionError, match="not a readable checkpoint"):
        load_original_state_dict(path)
