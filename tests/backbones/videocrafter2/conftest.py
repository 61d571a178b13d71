"""Fixtures of the VideoCrafter2 tests: the reference data recorded with the original code, converted models."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vstar.backbones.videocrafter2.components import empty_models, load_converted
from vstar.backbones.videocrafter2.config import unet_config_from_original, vae_config_from_original
from vstar.backbones.videocrafter2.convert import convert_unet_state_dict, convert_vae_state_dict

torch.set_flush_denormal(True)  # tiny random models hit denormal floats on CPU

FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "videocrafter2"


def fixture_path(name: str) -> Path:
    """A file of the reference fixtures; skips the test when the fixtures are not available."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"VideoCrafter2 reference fixtures not found at {FIXTURES}")
    return path


def load_fp32(name: str) -> dict[str, torch.Tensor]:
    """A fixture safetensors file with floating tensors cast to float32 (weights are stored as float16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(fixture_path(name)).items()}


@pytest.fixture(scope="session")
def tiny_configs() -> tuple[dict, dict]:
    """The configs of the fixtures' tiny UNet and VAE, translated from their original kwargs."""
    unet = json.loads(fixture_path("tiny/unet_config.json").read_text())["params"]
    vae = json.loads(fixture_path("tiny/vae_config.json").read_text())["params"]["ddconfig"]
    return unet_config_from_original(unet), vae_config_from_original(vae)


@pytest.fixture(scope="session")
def tiny_original_weights() -> dict[str, torch.Tensor]:
    """The fixtures' tiny UNet and VAE weights under the original keys (``model.diffusion_model.*``,
    ``first_stage_model.*``), float32."""
    return {**load_fp32("tiny/unet.safetensors"), **load_fp32("tiny/vae.safetensors")}


@pytest.fixture(scope="session")
def converted_tiny(tiny_configs, tiny_original_weights):
    """The fixtures' tiny UNet and VAE, converted from the original key layout and loaded strictly."""
    unet, vae, _ = empty_models(*tiny_configs)
    unet_source = {k: v for k, v in tiny_original_weights.items() if k.startswith("model.diffusion_model.")}
    vae_source = {k: v for k, v in tiny_original_weights.items() if k.startswith("first_stage_model.")}
    unet = load_converted(unet, convert_unet_state_dict(unet_source, unet))
    vae = load_converted(vae, convert_vae_state_dict(vae_source, vae))
    return unet, vae


@pytest.fixture(scope="session")
def unet_cases() -> dict[str, torch.Tensor]:
    """UNet inputs and outputs recorded with the original code (cases a-d and debug tensors of case a)."""
    return load_fp32("tiny/cases.safetensors")


@pytest.fixture(scope="session")
def vae_cases() -> dict[str, torch.Tensor]:
    """VAE decode/encode inputs and outputs recorded with the original code."""
    return load_fp32("tiny/vae_cases.safetensors")


@pytest.fixture(scope="session")
def manifest() -> dict:
    """Every key and shape of the full original checkpoint."""
    return json.loads(fixture_path("manifest_full.json").read_text())
