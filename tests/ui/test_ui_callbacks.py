"""The page's callbacks without a browser: choices per model, states suggestion, the CLI's validation
messages, generation on every built-in model, and the sidecar round trip."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace

import pytest

from vstar.backbones.registry import get_spec, list_backbones
from vstar.ui import callbacks
from vstar.ui.callbacks import PageSettings

PROMPT = "a red circle on a black background turning into a blue square"


@pytest.fixture(autouse=True)
def offline_synopsis(monkeypatch):
    """Suggestions come from the offline rules, whatever LLM server this machine has configured."""
    for name in ("VSTAR_LLM_BASE_URL", "VSTAR_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def page(model: str = "toy-shapes", **changes) -> PageSettings:
    """The page on ``model`` with a prompt, two states and a short video (4 frames, 2 steps, seed 3)."""
    frames = 5 if get_spec(model).defaults.temporal_compression == 4 else 4
    start = callbacks.default_settings(model)
    short = {"prompt": PROMPT, "states": "A red circle\nA blue square", "frames": frames, "steps": 2, "seed": 3,
             "random_seed": False}
    return replace(start, **short | changes)


def test_models_are_those_with_weights_here_toy_shapes_first(monkeypatch):
    monkeypatch.setattr(callbacks, "weights_available", lambda spec: spec.tiny or spec.name == "modelscope")
    models = callbacks.available_models()
    tiny = sorted(spec.name for spec in list_backbones() if spec.tiny and spec.name != "toy-shapes")
    assert models == ["toy-shapes", "modelscope", *tiny]


@pytest.mark.parametrize("spec", list_backbones(), ids=lambda spec: spec.name)
def test_frame_choices_are_the_counts_the_model_accepts(spec):
    choices = callbacks.frame_choices(spec.name)
    assert spec.defaults.num_frames in choices
    for count in choices:
        spec.defaults.check_num_frames(count, spec.name)
    for count in set(range(2, choices[-1] + 1)) - set(choices):
        with pytest.raises(ValueError, match="frames"):
            spec.defaults.check_num_frames(count, spec.name)


def test_wan_frames_are_4n_plus_1_and_animatediff_stops_at_its_limit():
    assert callbacks.frame_choices("tiny-wan")[:3] == [5, 9, 13]
    assert callbacks.frame_choices("tiny-animatediff")[-1] == 32


@pytest.mark.parametrize("model", [spec.name for spec in list_backbones() if spec.tiny])
def test_tar_choices_start_with_the_models_default_and_each_is_accepted(model):
    choices = callbacks.tar_choices(model)
    defaults = get_spec(model).defaults
    assert choices[0] == (defaults.tar_preset(defaults.num_frames) or "off") and "off" in choices
    assert callbacks.model_settings(model)["tar"] == choices[0]
    for choice in choices:
        config = callbacks.generation_settings(page(model, tar=choice))
        assert (config.tar is None) == (choice == "off")


@pytest.mark.parametrize(("preset", "sigma", "expected"), [
    ("64D1_32D8", 2, "64D2_32D2"), ("64D1S0.5", 3, "64D3S0.5"), ("64D1", 0, "64D1"), ("64D1", None, "64D1"),
    ("b0-3D2", 1, "b0-3D1"), (" off ", 4, None),
])
def test_sigma_sets_every_level_of_the_preset(preset, sigma, expected):
    assert callbacks.tar_preset(preset, sigma) == expected


def test_states_are_the_non_empty_lines():
    assert callbacks.parse_states(" A red circle \n\n  \nA blue square\n") == ["A red circle", "A blue square"]


def test_suggested_states_come_from_the_offline_rules():
    synopsis = callbacks.suggest_states(PROMPT)
    assert synopsis["backend"] == "rules"
    assert synopsis["states"][0] == "A red circle on a black background"
    assert synopsis["states"][-1] == "A blue square on a black background"
    assert len(callbacks.suggest_states("a snowman melting into a puddle", num_states=4)["states"]) == 4
    with pytest.raises(ValueError, match="the prompt is empty; describe the video"):
        callbacks.suggest_states("   ")


@pytest.mark.parametrize(("changes", "message"), [
    ({"height": 33}, "height must be a positive multiple of 16 for this model, got 33; try 32"),
    ({"tar": "64X1"}, "cannot parse TAR preset '64X1'"),
    ({"tar": "b0D2"}, "--tar b0D2: toy-shapes is a UNet, whose TAR names resolution levels"),
    ({"steps": 5000}, "--steps 5000: toy-shapes was trained on 1000 timesteps, so it takes at most 999"),
    ({"upscale": 0}, "upscale must be >= 1, got 0"),
    ({"interpolation": "cubic"}, "unknown interpolation mode 'cubic'"),
])
def test_invalid_settings_give_the_clis_one_line_message(changes, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)) as err:
        callbacks.generation_settings(page(**changes))
    assert "\n" not in str(err.value)


def test_frames_that_wan_cannot_make_name_the_valid_ones():
    with pytest.raises(ValueError, match=r"tiny-wan makes videos of 4\*n\+1 frames .* got 6; try 5 or 9"):
        callbacks.generation_settings(page("tiny-wan", frames=6))


def test_settings_take_the_pages_tar_sigma_strength_and_seed():
    config = callbacks.generation_settings(page(tar="64D1_32D8", sigma=3, strength=0.5))
    assert dict(config.tar.sigmas) == {0: 3.0, 1: 3.0} and config.tar.strength == 0.5 and config.seed == 3
    assert callbacks.generation_settings(page(tar="off")).tar is None
    drawn = {callbacks.generation_settings(page(random_seed=True)).seed for _ in range(3)}
    assert len(drawn) > 1


def test_a_loaded_sidecar_keeps_what_the_page_has_no_field_for_on_its_model_only():
    recorded = {"vstar_version": "0.3.0", "model": "toy-shapes", "synopsis": ["a"],
                "settings": {"tar": "64D1", "tar_max_mode": "global", "tar_step_fraction": 0.3}}
    config = callbacks.generation_settings(page(), recorded)
    assert (config.tar.max_mode, config.tar.step_fraction) == ("global", 0.3)
    other = callbacks.generation_settings(page("tiny-modelscope"), recorded)
    assert (other.tar.max_mode, other.tar.step_fraction) == ("row", 0.56)


def test_the_sidecar_records_the_suggestion_unless_the_states_were_edited():
    suggestion = callbacks.suggest_states(PROMPT)
    unchanged = page(states="\n".join(suggestion["states"]))
    assert callbacks.synopsis_source(unchanged, suggestion)["backend"] == "rules"
    edited = callbacks.synopsis_source(page(), suggestion)
    assert edited == {"prompt": PROMPT, "states": ["A red circle", "A blue square"], "backend": "manual"}
    assert callbacks.synopsis_source(page(states=""), None)["states"] == suggestion["states"]


@pytest.mark.parametrize("model", [spec.name for spec in list_backbones() if spec.tiny])
def test_every_built_in_model_generates_in_the_page(model, tmp_path):
    steps = []
    result = callbacks.generate(page(model), tmp_path, progress=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 2), (2, 2)]
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["synopsis"] == result.states == ["A red circle", "A blue square"]
    assert sidecar["model"] == model and sidecar["command"] == "vstar ui"
    assert result.video.name in sidecar["files"] and result.video.stat().st_size > 0
    assert [caption for _, caption in result.keyframes] == [
        f"frame {k}: {state}" for k, state in zip(sidecar["keyframes"], result.states, strict=True)]
    image, upscale = result.keyframes[0][0], page(model).upscale  # enlarged like the video
    assert image.shape == (result.settings["height"] * upscale, result.settings["width"] * upscale, 3)
    assert image.dtype.name == "uint8"
    assert result.attention is not None and result.attention.stat().st_size > 0
    assert "dynamic degree" in result.metrics


def test_states_that_do_not_fit_fail_before_writing_anything(tmp_path):
    with pytest.raises(ValueError, match="3 synopsis states do not fit on 2 frames; use more frames or fewer states"):
        callbacks.generate(page(states="a\nb\nc", frames=2), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_sidecar_restores_every_setting_and_the_same_video(tmp_path):
    settings = page(tar="64D1_32D8", sigma=2, strength=0.8, interpolation="slerp", guidance=4.0,
                    negative_prompt="blurry", upscale=2)
    first = callbacks.generate(settings, tmp_path)
    restored, recorded = callbacks.settings_from_sidecar(first.sidecar)
    assert restored == replace(settings, tar="64D2_32D2", sigma=0)
    assert recorded["synopsis"] == ["A red circle", "A blue square"]
    again = callbacks.generate(restored, tmp_path, recorded=recorded)
    assert again.video != first.video
    assert hashlib.sha256(again.video.read_bytes()).digest() == hashlib.sha256(first.video.read_bytes()).digest()


def test_a_file_that_is_not_a_sidecar_is_refused(tmp_path):
    path = tmp_path / "notes.json"
    path.write_text(json.dumps({"title": "a list"}))
    with pytest.raises(ValueError, match="has no 'vstar_version'; pass a sidecar written by vstar generate"):
        callbacks.settings_from_sidecar(path)
