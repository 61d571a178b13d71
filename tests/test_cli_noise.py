"""`vstar generate --reference-video REF --optimize-noise`: the noise file and sidecar entry, `--from`
reproducing the video, and options refused before any model loads."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vstar.cli import app
from vstar.io import read_video, write_video
from vstar.noise import OptimizedNoise
from vstar.noise.cli import noise_path
from vstar.pipeline import VSTARPipeline
from vstar.toy.scenes import Motion, Scene, render_clip

runner = CliRunner()
FAST = ["--model", "toy-shapes", "--frames", "6", "--steps", "2", "--seed", "3", "--no-vsp", "--quiet",
        "--device", "cpu"]


def vstar(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "moving.gif"
    clip = render_clip(Scene("circle", "red", "large", "black", "center"), 8, motion=Motion(dx=2.0))
    write_video((clip * 255).astype(np.uint8), path)
    return path


def test_noise_file_names():
    assert noise_path(Path("out/clip.mp4")) == Path("out/clip.noise.safetensors")
    assert noise_path(Path("out/frames")) == Path("out/frames.noise.safetensors")


@pytest.mark.slow
def test_optimized_noise_is_saved_recorded_and_reproduced_by_from(reference, tmp_path):
    first = tmp_path / "first.mp4"
    result = vstar("generate", "a red circle", *FAST, "--reference-video", reference, "--optimize-noise",
                   "--opt-steps", 2, "--out", first)
    assert result.exit_code == 0, result.output
    noise = json.loads((tmp_path / "first.json").read_text())["noise"]
    assert noise["file"] == "first.noise.safetensors" and noise["steps"] == 2 and noise["levels"] == [0]
    assert noise["reference_sha256"] == hashlib.sha256(reference.read_bytes()).hexdigest()
    assert noise["sha256"] == hashlib.sha256((tmp_path / "first.noise.safetensors").read_bytes()).hexdigest()
    assert len(noise["attention_loss"]) == 2 and 0 < noise["beta"] and -1 < noise["gamma"] < 1

    again = tmp_path / "again.mp4"
    result = vstar("generate", "--from", tmp_path / "first.json", "--quiet", "--out", again)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_video(again), read_video(first))
    # the reproduction stands on its own: its sidecar names its own copy of the noise
    assert json.loads((tmp_path / "again.json").read_text())["noise"]["file"] == "again.noise.safetensors"
    torch.testing.assert_close(OptimizedNoise.load(tmp_path / "again.noise.safetensors").latents,
                               OptimizedNoise.load(tmp_path / "first.noise.safetensors").latents, rtol=0, atol=0)

    plain = tmp_path / "plain.mp4"
    assert vstar("generate", "a red circle", *FAST, "--out", plain).exit_code == 0
    assert not np.array_equal(read_video(plain), read_video(first))
    assert json.loads((tmp_path / "plain.json").read_text())["noise"] is None

    result = vstar("generate", "--from", tmp_path / "first.json", "--frames", 8, "--quiet", "--out", tmp_path / "8.mp4")
    assert result.exit_code == 2 and "keep the recorded --frames" in result.output

    (tmp_path / "first.noise.safetensors").write_bytes(b"changed")
    result = vstar("generate", "--from", tmp_path / "first.json", "--quiet", "--out", tmp_path / "third.mp4")
    assert result.exit_code == 2 and "is not the noise file first.json was made with" in result.output


def test_bad_noise_options_fail_before_loading(reference, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(VSTARPipeline, "from_pretrained", no_loading)
    short = tmp_path / "short.gif"
    write_video(read_video(reference)[:3], short)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    out = ["--out", tmp_path / "x.mp4"]
    cases = [
        (["--optimize-noise"], "--optimize-noise needs --reference-video"),
        (["--reference-video", reference], "--reference-video is for --optimize-noise"),
        (["--opt-steps", 5, "--kl-weight", 2], "--opt-steps, --kl-weight are for --optimize-noise"),
        (["--optimize-noise", "--reference-video", tmp_path / "none.mp4"], "none.mp4 does not exist"),
        (["--optimize-noise", "--reference-video", short], "has 3 frame"),
        (["--optimize-noise", "--reference-video", text], "could not read the reference video"),
        (["--optimize-noise", "--reference-video", reference, "--opt-steps", 0], "--opt-steps must be"),
        (["--optimize-noise", "--reference-video", reference, "--opt-lr", -1], "--opt-lr must be"),
        (["--optimize-noise", "--reference-video", reference, "--opt-timestep", -1],
         "--opt-timestep must be in 0..999 (the training timesteps of toy-shapes), got -1"),
    ]
    for args, message in cases:
        result = vstar("generate", "a red circle", *FAST, *args, *out)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert not (tmp_path / "x.mp4").exists()
