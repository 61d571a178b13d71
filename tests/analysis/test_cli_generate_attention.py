"""`vstar generate --replace-attention / --tar-reference`: recorded in the sidecar, reproduced by --from,
bad input refused before a model is loaded."""

import json

import numpy as np
import pytest
from synthetic_videos import pan
from typer.testing import CliRunner

from vstar.cli import app
from vstar.io import read_video, write_video

runner = CliRunner()
FAST = ["--model", "tiny-modelscope", "--steps", "2", "--seed", "3", "--frames", "6", "--quiet"]


def vstar(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.mp4"
    write_video(pan(3.0, frames=5, size=32), path)
    return path


def test_both_are_recorded_and_reproduced(tmp_path, reference):
    first = tmp_path / "first.mp4"
    result = vstar("generate", "a red circle", *FAST, "--replace-attention", "uniform:16", "--tar-reference",
                   reference, "--tar-reference-metric", "mae", "--out", first)
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "first.json").read_text())["settings"]
    assert settings["replace_attention"] == "uniform:16"
    assert settings["tar_reference"]["metric"] == "mae" and len(settings["tar_reference"]["similarity"]) == 5
    reference.unlink()  # --from needs only the sidecar
    again = tmp_path / "again.mp4"
    assert vstar("generate", "--from", tmp_path / "first.json", "--quiet", "--out", again).exit_code == 0
    np.testing.assert_array_equal(read_video(again), read_video(first))
    plain = tmp_path / "plain.mp4"
    result = vstar("generate", "--from", tmp_path / "first.json", "--replace-attention", "none", "--quiet",
                   "--out", plain)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "plain.json").read_text())["settings"]["replace_attention"] is None
    assert not np.array_equal(read_video(plain), read_video(first))


@pytest.mark.parametrize("args,message", [
    (["--replace-attention", "identity:64"], "both set the attention of level"),
    (["--replace-attention", "sideways:64"], "cannot parse attention replacement"),
    (["--tar-reference", "missing.mp4"], "the TAR reference missing.mp4 does not exist"),
    (["--tar-reference", "TEXT"], "could not read the TAR reference"),
    (["--tar-reference", "REF", "--no-tar"], "but TAR is off"),
    (["--tar-reference", "REF", "--tar-reference-metric", "latent"], "--tar-reference-metric must be one of"),
])
def test_bad_input_fails_before_loading(tmp_path, reference, monkeypatch, args, message):
    def no_loading(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("vstar.pipeline.VSTARPipeline.from_pretrained", no_loading)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    args = [{"REF": str(reference), "TEXT": str(text)}.get(a, a) for a in args]
    result = vstar("generate", "a red circle", *FAST, *args, "--out", tmp_path / "x.mp4")
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.json").exists()
