"""AnimateDiff family: frame limit, schedule, and loading base + motion adapter from folders and the hub cache."""

import pytest
import torch

from vstar.backbones.animatediff import (
    ADAPTER_SUBFOLDER,
    DEFAULT_ADAPTER,
    load_animatediff,
    tiny_animatediff,
    tiny_animatediff_parts,
)
from vstar.backbones.base import BackboneDefaults
from vstar.backbones.loading import PIPELINE_SUBFOLDERS, ModelNotAvailableError, save_backbone


@pytest.fixture(scope="module")
def tiny():
    return tiny_animatediff(seed=0)


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    """An SD-style base folder (2D ``unet/``) with the motion adapter in ``motion_adapter/``."""
    folder = tmp_path_factory.mktemp("tiny-sd-with-adapter")
    for name, part in tiny_animatediff_parts(seed=0).items():
        part.save_pretrained(folder / (ADAPTER_SUBFOLDER if name == "motion_adapter" else name))
    return folder


@torch.no_grad()
def _assert_same_model(loaded, reference):
    assert type(loaded).__name__ == "AnimateDiffBackbone"
    weights, expected = loaded.state_dict(), reference.state_dict()
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    context = reference.encode_text(["a cat"]).expand(3, -1, -1)
    torch.testing.assert_close(loaded.model_output(latents, 10, context),
                               reference.model_output(latents, 10, context), rtol=0, atol=1e-5)
    assert loaded.tokenizer("a photo of a cat").input_ids == reference.tokenizer("a photo of a cat").input_ids
    assert loaded.defaults.max_frames == 32


def test_frame_limit_is_the_motion_modules_positional_length(tiny):
    assert tiny.defaults.max_frames == tiny.unet.config.motion_max_seq_length == 32
    tiny.check_num_frames(32)
    with pytest.raises(ValueError, match=r"at most 32 frames.*got 33.*--frames 32"):
        tiny.check_num_frames(33)


@torch.no_grad()
def test_runs_up_to_the_frame_limit(tiny):
    frames = 24
    latents = torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(0))
    out = tiny.model_output(latents, 500, tiny.encode_text(["a cat"]).expand(frames, -1, -1))
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_scheduler_is_animatediffs_ddim(tiny):
    config = tiny.scheduler.config
    assert type(tiny.scheduler).__name__ == "DDIMScheduler"
    assert (config.beta_schedule, config.beta_start, config.beta_end) == ("linear", 0.00085, 0.012)
    assert (config.clip_sample, config.steps_offset, config.timestep_spacing) == (False, 1, "linspace")


def test_documented_defaults(base_and_adapter):
    loaded = load_animatediff(model_path=base_and_adapter, device="cpu")
    d = loaded.defaults
    assert (d.height, d.width, d.num_frames, d.guidance_scale, d.fps) == (512, 512, 16, 7.5, 8)


def test_given_defaults_keep_the_models_frame_limit(base_and_adapter):
    defaults = BackboneDefaults(height=256, width=384, num_frames=24)
    loaded = load_animatediff(model_path=base_and_adapter, device="cpu", defaults=defaults)
    assert (loaded.defaults.height, loaded.defaults.width, loaded.defaults.max_frames) == (256, 384, 32)


def test_base_folder_with_motion_adapter_loads_the_tiny_model(tiny, base_and_adapter):
    _assert_same_model(load_animatediff(model_path=base_and_adapter, device="cpu"), tiny)


def test_separate_adapter_path(tiny, base_and_adapter, tmp_path):
    adapter_folder = tmp_path / "adapter"
    (base_and_adapter / ADAPTER_SUBFOLDER).rename(adapter_folder)
    try:
        loaded = load_animatediff(model_path=base_and_adapter, adapter_path=adapter_folder, device="cpu")
    finally:
        adapter_folder.rename(base_and_adapter / ADAPTER_SUBFOLDER)
    _assert_same_model(loaded, tiny)


def test_saved_animatediff_unet_loads_back(tiny, tmp_path):
    """A folder whose ``unet/`` is already a UNetMotionModel (a saved AnimateDiff model) needs no adapter."""
    _assert_same_model(load_animatediff(model_path=save_backbone(tiny, tmp_path), device="cpu"), tiny)


def test_folder_without_a_model_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ModelNotAvailableError) as error:
        load_animatediff(model_path=tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "--model-path" in message
    assert all(f"{name}/" in message for name in PIPELINE_SUBFOLDERS)


def test_missing_adapter_offline_names_the_adapter(base_and_adapter, tmp_path, monkeypatch):
    """A base folder without motion_adapter/ falls back to the hub adapter, missing from an empty cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapter_folder = tmp_path / "adapter"
    (base_and_adapter / ADAPTER_SUBFOLDER).rename(adapter_folder)
    try:
        with pytest.raises(ModelNotAvailableError) as error:
            load_animatediff(model_path=base_and_adapter, cache_dir=str(tmp_path / "cache"))
    finally:
        adapter_folder.rename(base_and_adapter / ADAPTER_SUBFOLDER)
    message = str(error.value)
    assert repr(DEFAULT_ADAPTER) in message and "HF_HUB_OFFLINE" in message and str(tmp_path / "cache") in message
    assert f"{ADAPTER_SUBFOLDER}/" in message and "adapter_path=" in message


def test_hub_base_missing_offline_names_the_id_the_cache_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as error:
        load_animatediff("vstar-tests/no-such-base", cache_dir=str(tmp_path))
    message = str(error.value)
    for expected in ("'vstar-tests/no-such-base'", str(tmp_path), "--model-path",
                     "huggingface-cli download vstar-tests/no-such-base"):
        assert expected in message
