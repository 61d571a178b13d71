"""The registry: names, loader paths and the defaults it advertises."""

import pytest

from vstar.backbones import (
    BACKBONES,
    DEFAULT_MODEL,
    get_spec,
    list_backbones,
    load_backbone,
    weights_available,
)
from vstar.backbones.registry import _resolve_loader


def test_every_loader_path_resolves_and_real_models_have_hub_ids():
    assert DEFAULT_MODEL == "videocrafter2"
    for spec in list_backbones():
        assert callable(_resolve_loader(spec.loader))
        assert spec.tiny or spec.model_ids


@pytest.mark.parametrize("name", [n for n, s in BACKBONES.items() if s.tiny])
def test_tiny_entries_advertise_what_the_model_uses(name):
    spec = get_spec(name)
    assert load_backbone(name, device="cpu").defaults == spec.defaults
    assert weights_available(spec)


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
