"""The generation config: validation, defaults from the registry, round trips, old sidecars."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vstar.backbones import get_spec
from vstar.backbones.base import BackboneDefaults
from vstar.config import GenerationConfig, config_from_sidecar
from vstar.tar import TARConfig


@pytest.mark.parametrize("changes,message", [
    ({"num_frames": 1}, "num_frames must be >= 2"),
    ({"num_frames": 8.0}, "num_frames must be a whole number"),
    ({"num_frames": True}, "num_frames must be a whole number"),
    ({"height": 0}, "height must be >= 1"),
    ({"num_inference_steps": 0}, "num_inference_steps must be >= 1"),
    ({"guidance_scale": math.nan}, "guidance_scale must be a finite number"),
    ({"guidance_scale": math.inf}, "guidance_scale must be a finite number"),
    ({"guidance_scale": -1.0}, "guidance_scale must be a finite number >= 0"),
    ({"guidance_scale": "9"}, "guidance_scale must be a number"),
    ({"eta": -1.0}, "eta must be a finite number >= 0"),
    ({"cond_fps": -5}, "cond_fps must be >= 1"),
    ({"fps": 0}, "fps must be >= 1"),
    ({"interpolation": "cubic"}, "unknown interpolation mode"),
    ({"negative_prompt": 3}, "negative_prompt must be text"),
    ({"tar": "64D1"}, "tar must be a TARConfig"),
    ({"seed": -1}, "seed must be >= 0"),
])
def test_bad_settings_name_the_setting(changes, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**changes)


def test_resolved_fills_only_missing_settings_from_the_registry():
    vc2 = get_spec("videocrafter2").defaults
    config = GenerationConfig(num_frames=48, guidance_scale=7.0).resolved(vc2)
    assert (config.num_frames, config.guidance_scale) == (48, 7.0)
    assert (config.height, config.width, config.num_inference_steps, config.eta) == (320, 512, 25, 1.0)
    assert (config.cond_fps, config.fps) == (28, 10)  # conditioned on 28 fps, played at 10
    modelscope = GenerationConfig().resolved(get_spec("modelscope").defaults)
    assert modelscope.cond_fps is None and modelscope.fps == 8
    assert modelscope.tar == TARConfig.parse("64D1") and modelscope.interpolation == "linear"


def test_model_checks_before_loading():
    toy = get_spec("toy-shapes").defaults
    GenerationConfig().resolved(toy).check_for(toy, "toy-shapes")
    with pytest.raises(ValueError, match="height must be a positive multiple of 16.*try 32"):
        GenerationConfig(height=33).resolved(toy).check_for(toy, "toy-shapes")
    with pytest.raises(ValueError, match="takes no frame-rate conditioning"):
        GenerationConfig(cond_fps=8).resolved(toy).check_for(toy, "toy-shapes")
    with pytest.raises(ValueError, match="at most 32 frames"):
        ad = get_spec("animatediff").defaults
        GenerationConfig(num_frames=33).resolved(ad).check_for(ad, "animatediff")
    compressed = BackboneDefaults(height=32, width=32, num_frames=9, temporal_compression=4, size_multiple=8)
    with pytest.raises(ValueError, match=r"4\*n\+1 frames.*got 8; try 5 or 9"):
        GenerationConfig(num_frames=8).resolved(compressed).check_for(compressed, "wan")
    assert compressed.latent_frames(9) == 3 and compressed.output_frame(2) == 8
    assert compressed.latent_shape(2, 9, 32, 48) == (2, 4, 3, 4, 6)  # 4 channels of an 8x VAE by default


@pytest.mark.parametrize("name,changes,message", [
    ("toy-shapes", {"num_inference_steps": 1000}, "--steps 1000: toy-shapes was trained on 1000 timesteps, so it "
                                                  "takes at most 999 denoising steps; use --steps 999 or fewer"),
    ("toy-shapes", {"tar": TARConfig.parse("64D1_8D2")}, "--tar 64D1_8D2: toy-shapes has temporal attention at "
                                                         "levels init, 64, 32, 16 only; choose levels among those, "
                                                         "e.g. --tar 64D1"),
    ("toy-shapes", {"tar": None, "replace_attention": "uniform:16,8"},
     "--replace-attention uniform:16,8: toy-shapes has .* init, 64, 32, 16 only; .* e.g. --replace-attention uniform:64"),
    ("animatediff", {"tar": TARConfig.parse("64D1_initD1")}, "animatediff has temporal attention at levels 64, 32, 16, "
                                                             "8 only"),
])
def test_what_the_model_has_is_checked_before_loading(name, changes, message):
    defaults = get_spec(name).defaults
    config = GenerationConfig(**changes).resolved(defaults)
    with pytest.raises(ValueError, match=message):
        config.check_for(defaults, name)


def test_every_level_and_step_count_the_model_has_passes():
    defaults = get_spec("modelscope").defaults
    config = GenerationConfig(num_inference_steps=999, tar=TARConfig.parse("initD1_64D1_32D1_16D1"),
                              replace_attention="identity:8")
    config.resolved(defaults).check_for(defaults, "modelscope")
    unknown = BackboneDefaults(height=32, width=32, size_multiple=8)  # levels unknown before loading: checked then
    GenerationConfig(tar=TARConfig.parse("8D1")).resolved(unknown).check_for(unknown, "new-family")


settings = st.fixed_dictionaries({}, optional={
    "num_frames": st.integers(2, 512), "height": st.integers(1, 4096), "width": st.integers(1, 4096),
    "num_inference_steps": st.integers(1, 200), "guidance_scale": st.floats(0, 50, allow_subnormal=False),
    "negative_prompt": st.text(max_size=20), "interpolation": st.sampled_from(["linear", "step", "slerp"]),
    "cond_fps": st.integers(1, 60), "fps": st.integers(1, 60), "eta": st.floats(0, 1, allow_subnormal=False), "seed": st.integers(0, 2**31),
    "tar": st.one_of(st.none(), st.sampled_from(["64D1", "64D1_32D8", "64D2S0.5_initD1"]).map(TARConfig.parse)),
})


@given(settings)
def test_to_dict_from_dict_round_trip(fields):
    config = GenerationConfig(**fields)
    assert GenerationConfig.from_dict(config.to_dict()) == config


def test_from_dict_rejects_unknown_and_ill_typed_fields():
    with pytest.raises(ValueError, match="unknown generation setting.*frames"):
        GenerationConfig.from_dict({"frames": 8})
    with pytest.raises(ValueError, match="tar must be a preset"):
        GenerationConfig.from_dict({"tar": 64})
    with pytest.raises(ValueError, match="tar_strength must be a number"):
        GenerationConfig.from_dict({"tar": "64D1", "tar_strength": "strong"})


def test_sidecars_of_version_0_1_0_still_load():
    old = {
        "vstar_version": "0.1.0", "seed": 7, "fps": 5, "upscale": 2,
        "settings": {"num_frames": 48, "height": 320, "width": 512, "num_inference_steps": 25,
                     "guidance_scale": 12.0, "negative_prompt": None, "eta": 1.0, "fps": 28, "tar": "64D1_32D8",
                     "tar_max_mode": "row", "tar_strength": 1.0, "tar_step_fraction": 0.56,
                     "interpolation": "linear", "num_videos": 1},
    }
    vc2 = config_from_sidecar(old, get_spec("videocrafter2").defaults)
    assert (vc2.seed, vc2.fps, vc2.cond_fps, vc2.num_frames) == (7, 5, 28, 48)
    assert vc2.tar == TARConfig.parse("64D1_32D8")
    old["settings"]["fps"] = 8  # what 0.1.0 recorded for models without fps conditioning
    modelscope = config_from_sidecar(old, get_spec("modelscope").defaults)
    assert modelscope.cond_fps is None and modelscope.fps == 5
    new = {"vstar_version": "0.2.0", "settings": vc2.to_dict()}
    assert config_from_sidecar(new, get_spec("videocrafter2").defaults) == vc2


@pytest.mark.parametrize("model,frames,preset", [
    ("tiny-wan", 17, "b0D1"), ("tiny-wan", 57, "b0D1"), ("tiny-wan", 61, "b0D2"), ("tiny-wan", 161, "b0D2"),
    ("wan2.1-t2v-1.3b", 81, "b0-9D2"), ("wan2.1-t2v-14b", 41, "b0-12D1"), ("tiny-modelscope", 64, "64D1"),
])
def test_the_default_tar_preset_follows_the_latent_frames(model, frames, preset):
    """A model's own preset (tar="default"): Wan's sigma grows from 1 to 2 latent frames at 16 latent frames."""
    defaults = get_spec(model).defaults
    resolved = GenerationConfig(num_frames=frames).resolved(defaults)
    assert resolved.tar == TARConfig.parse(preset)
    assert GenerationConfig(num_frames=frames, tar=None).resolved(defaults).tar is None
