"""ModelScope family: the tiny model's schedule and loading from folders and the hub cache."""

import shutil

import pytest
import torch

from vstar.backbones.base import BackboneDefaults
from vstar.backbones.loading import ModelNotAvailableError, save_backbone
from vstar.backbones.modelscope import DEFAULT_MODEL, load_modelscope, tiny_modelscope
from vstar.backbones.registry import defaults_for_model_id, get_spec


@pytest.fixture(scope="module")
def tiny():
    return tiny_modelscope(seed=0)


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """The tiny model written in diffusers layout."""
    return save_backbone(tiny, tmp_path_factory.mktemp("tiny-modelscope"))


def test_tiny_scheduler_is_modelscopes_ddim(tiny):
    config = tiny.scheduler.config
    assert type(tiny.scheduler).__name__ == "DDIMScheduler"
    assert (config.beta_schedule, config.beta_start, config.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (config.clip_sample, config.set_alpha_to_one, config.steps_offset) == (False, False, 1)
    assert config.prediction_type == "epsilon"


def test_known_defaults_come_from_the_registry():
    modelscope = defaults_for_model_id(DEFAULT_MODEL)
    assert modelscope == get_spec("modelscope").defaults
    assert modelscope.height == 256 and modelscope.guidance_scale == 9.0 and modelscope.cond_fps is None
    zeroscope = defaults_for_model_id("cerspense/zeroscope_v2_576w")
    assert (zeroscope.height, zeroscope.width, zeroscope.num_frames) == (320, 576, 24)
    assert defaults_for_model_id("someone/else") is None


@torch.no_grad()
def test_saved_folder_loads_back_identically(tiny, saved):
    loaded = load_modelscope(model_path=saved, device="cpu")
    assert type(loaded).__name__ == "ModelScopeBackbone" and loaded.model_id == str(saved)
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    texts = ["a cat", "a dog on a skateboard"]
    weights, reference = loaded.state_dict(), tiny.state_dict()
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)
    # same weights and inputs; kernels may sum in another order for differently aligned memory
    torch.testing.assert_close(loaded.encode_text(texts), tiny.encode_text(texts), rtol=0, atol=1e-5)
    context = tiny.encode_text(texts[:1]).expand(3, -1, -1)
    torch.testing.assert_close(loaded.model_output(latents, 10, context), tiny.model_output(latents, 10, context),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(loaded.decode_latents(latents), tiny.decode_latents(latents), rtol=0, atol=1e-5)
    public = {k: v for k, v in tiny.scheduler.config.items() if not k.startswith("_")}
    assert {k: loaded.scheduler.config[k] for k in public} == public
    assert loaded.tokenizer("a photo of a cat").input_ids == tiny.tokenizer("a photo of a cat").input_ids
    # an unnamed model gets ModelScope's settings at the UNet's native size, a named one its known settings
    assert (loaded.defaults.height, loaded.defaults.width, loaded.defaults.guidance_scale) == (64, 64, 9.0)
    named = load_modelscope("cerspense/zeroscope_v2_576w", model_path=saved, device="cpu")
    assert named.defaults == get_spec("zeroscope").defaults
    assert named.model_id == "cerspense/zeroscope_v2_576w"


def test_explicit_dtype_and_defaults(saved):
    defaults = BackboneDefaults(height=128, width=192, num_frames=32)
    loaded = load_modelscope(model_path=saved, device="cpu", dtype=torch.bfloat16, defaults=defaults)
    assert loaded.dtype == torch.bfloat16 and loaded.defaults is defaults


@pytest.mark.parametrize("layout", ["empty", "missing"])
def test_folder_without_a_model_names_the_path_and_the_fix(tmp_path, layout):
    folder = tmp_path / "nothing-here" if layout == "missing" else tmp_path
    with pytest.raises(ModelNotAvailableError) as error:
        load_modelscope(model_path=folder)
    message = str(error.value)
    assert str(folder) in message and "--model-path" in message and "model_path=" in message
    assert ("does not exist" in message) if layout == "missing" else ("unet/" in message and "scheduler/" in message)
    assert isinstance(error.value, RuntimeError)


def test_folder_with_missing_weights(saved, tmp_path):
    broken = shutil.copytree(saved, tmp_path / "broken")
    for weights in (broken / "unet").glob("diffusion_pytorch_model*"):
        weights.unlink()
    with pytest.raises(ModelNotAvailableError, match=r"cannot load 'unet' of the folder .*broken"):
        load_modelscope(model_path=broken)


def test_folder_with_an_empty_tokenizer(saved, tmp_path):
    """transformers silently builds an empty tokenizer from a folder without vocabulary; we refuse it."""
    broken = shutil.copytree(saved, tmp_path / "broken")
    shutil.rmtree(broken / "tokenizer")
    (broken / "tokenizer").mkdir()
    with pytest.raises(ModelNotAvailableError, match=r"cannot load 'tokenizer' of the folder .*broken.*no tokenizer vocabulary"):
        load_modelscope(model_path=broken)


def test_hub_model_missing_offline_names_the_id_the_cache_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as error:
        load_modelscope("vstar-tests/no-such-model", cache_dir=str(tmp_path))
    message = str(error.value)
    for expected in ("'vstar-tests/no-such-model'", str(tmp_path), "HF_HUB_OFFLINE", "--model-path",
                     "huggingface-cli download vstar-tests/no-such-model"):
        assert expected in message
