"""The sidecar schema: every field typed, missing or ill-typed fields named, newer versions noticed."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vstar
from vstar.sidecar import Sidecar, load_sidecar

KNOWN = {f.name for f in dataclasses.fields(Sidecar)}

VALID = {
    "vstar_version": vstar.__version__, "model": "toy-shapes", "synopsis": ["a red circle", "a blue square"],
    "prompt": "a red circle turning into a blue square", "synopsis_source": "rules",
    "synopsis_info": {"backend": "rules"}, "keyframes": [0, 15], "model_path": None, "device": "cpu",
    "dtype": "float32", "upscale": 4, "settings": {"num_frames": 16, "seed": 0}, "output": "demo.gif",
    "command": "vstar generate 'a red circle turning into a blue square'", "noise": None,
    "kind": "generation", "files": {"demo.gif": "0" * 64},
    "weights": {"model": "toy-shapes", "source": "shipped", "fingerprint": "sha256:" + "1" * 64},
}
# Values each field must refuse (no subnormal floats: the test setup flushes them to zero).
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_subnormal=False), st.text())
WRONG = {
    "vstar_version": st.one_of(st.none(), st.integers(), st.lists(st.text()), st.just("")),
    "model": st.one_of(st.none(), st.integers(), st.booleans(), st.just("  ")),
    "synopsis": st.one_of(st.none(), st.text(), st.integers(), st.just([]), st.lists(st.integers(), min_size=1),
                          st.just(["a", ""])),
    "prompt": st.one_of(st.integers(), st.booleans(), st.lists(st.text())),
    "keyframes": st.one_of(st.text(), st.lists(st.text(), min_size=1), st.just([-1]), st.just([True])),
    "upscale": st.one_of(st.text(), st.floats(allow_subnormal=False), st.just(0), st.just(True), st.none()),
    "settings": st.one_of(st.text(), st.integers(), st.lists(JSON_SCALARS)),
    "synopsis_info": st.one_of(st.text(), st.integers(), st.lists(JSON_SCALARS)),
    "device": st.one_of(st.integers(), st.lists(st.text())),
    "seed": st.one_of(st.text(), st.floats(allow_subnormal=False), st.just(-1)),
    "noise": st.one_of(st.text(), st.integers(), st.lists(JSON_SCALARS)),
    "weights": st.one_of(st.text(), st.integers(), st.lists(JSON_SCALARS)),
    "kind": st.one_of(st.integers(), st.just("analysis"), st.just("evaluation")),
    "files": st.one_of(st.text(), st.lists(st.text()), st.dictionaries(st.text(), st.integers(), min_size=1)),
}


def test_a_valid_sidecar_round_trips():
    sidecar = Sidecar.from_dict(VALID)
    assert sidecar.to_dict() | {"seed": None, "fps": None} == {**VALID, "seed": None, "fps": None}
    assert sidecar.notes() == []


@settings(max_examples=40, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(WRONG)))
def test_an_ill_typed_field_is_named(data, name):
    value = data.draw(WRONG[name])
    with pytest.raises(ValueError, match=f"'{name}'"):
        Sidecar.from_dict({**VALID, name: value})


@pytest.mark.parametrize("name", ["vstar_version", "model", "synopsis"])
def test_a_missing_required_field_is_named(name):
    data = {k: v for k, v in VALID.items() if k != name}
    with pytest.raises(ValueError, match=f"no '{name}'"):
        Sidecar.from_dict(data)


@settings(max_examples=40, deadline=None)
@given(extra=st.dictionaries(st.text(min_size=1).filter(lambda k: k not in KNOWN), JSON_SCALARS, min_size=1,
                             max_size=3))
def test_unknown_top_level_fields_are_ignored_and_named(extra):
    sidecar = Sidecar.from_dict({**VALID, **extra})
    assert sidecar.model == "toy-shapes" and sidecar.unknown() == sorted(extra)
    assert "ignored what this vstar does not know" in sidecar.notes()[-1]


def test_unknown_settings_are_named_and_left_out_of_the_config():
    from vstar.backbones import get_spec
    from vstar.config import config_from_sidecar

    data = {**VALID, "settings": {"num_frames": 16, "seed": 0, "warp_drive": 2}}
    assert Sidecar.from_dict(data).unknown() == ["settings.warp_drive"]
    assert config_from_sidecar(data, get_spec("toy-shapes").defaults).num_frames == 16


def test_a_newer_version_gets_a_notice_and_a_broken_one_too():
    assert "newer than this vstar" in Sidecar.from_dict({**VALID, "vstar_version": "99.0"}).notes()[0]
    assert "not a version number" in Sidecar.from_dict({**VALID, "vstar_version": "next"}).notes()[0]


def test_load_sidecar_names_the_file(tmp_path):
    path = tmp_path / "clip.json"
    path.write_text(json.dumps({**VALID, "upscale": "4"}))
    with pytest.raises(ValueError, match="clip.json: field 'upscale'"):
        load_sidecar(path)
