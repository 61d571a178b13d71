"""The Gradio side of the page without a browser: error display, fields that follow the model, sidecar loading."""

import json

import gradio as gr
import pytest

from vstar.ui.app import build_app, field_updates, load_sidecar, page_errors
from vstar.ui.callbacks import PageSettings


def test_page_errors_show_input_errors_and_leave_bugs_alone():
    def bad_height() -> None:
        raise ValueError("height must be a positive multiple of 16 for this model, got 33; try 32")

    def bug() -> None:
        raise KeyError("states")

    with pytest.raises(gr.Error) as shown:
        page_errors(bad_height)()
    assert shown.value.message == "height must be a positive multiple of 16 for this model, got 33; try 32"
    with pytest.raises(KeyError):
        page_errors(bug)()


def test_choosing_a_model_offers_its_frames_and_tar_and_fills_its_defaults():
    frames, tar, steps, guidance, height, width, upscale = field_updates("tiny-wan")
    assert frames["choices"][:3] == [5, 9, 13] and frames["value"] == 17
    assert tar["value"] == tar["choices"][0]
    assert (height, width, upscale) == (64, 64, 4)


def test_a_loaded_sidecar_fills_every_field_and_is_kept(tmp_path):
    path = tmp_path / "clip.json"
    path.write_text(json.dumps({"vstar_version": "0.3.0", "model": "tiny-wan", "prompt": "a ball",
                                "synopsis": ["a ball high", "a ball low"], "settings": {"num_frames": 9}}))
    values = load_sidecar(str(path))
    fields = dict(zip([*PageSettings.names(), "recorded"], values, strict=True))
    assert fields["states"] == "a ball high\na ball low" and fields["frames"]["value"] == 9
    assert fields["recorded"]["model"] == "tiny-wan"
    with pytest.raises(ValueError, match="no sidecar was uploaded"):
        load_sidecar(None)


def test_the_page_opens_on_the_asked_model():
    page = build_app("tiny-modelscope")
    model = next(block for block in page.blocks.values() if getattr(block, "elem_id", None) == "model")
    assert model.value == "tiny-modelscope"
