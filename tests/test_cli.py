"""The `vstar` command on a tiny offline model: a playable video, a sidecar that reproduces it, errors."""

import json

import pytest
from typer.testing import CliRunner

from vstar.cli import app
from vstar.io import read_video

runner = CliRunner()
FAST = ["--model", "tiny-modelscope", "--steps", "2", "--seed", "3", "--quiet"]


def vstar(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_generate_writes_a_video_with_the_requested_frames_and_a_sidecar(tmp_path):
    out = tmp_path / "clip.mp4"
    result = vstar("generate", "a red circle turning into a blue square", "--synopsis", "a red circle",
                   "--synopsis", "a blue square", *FAST, "--frames", 10, "--fps", 5, "--upscale", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert read_video(out).shape == (10, 128, 128, 3)
    meta = json.loads((tmp_path / "clip.json").read_text())
    assert meta["prompt"] == "a red circle turning into a blue square"
    assert meta["synopsis"] == ["a red circle", "a blue square"] and meta["synopsis_source"] == "manual"
    assert meta["model"] == "tiny-modelscope" and meta["upscale"] == 2
    assert meta["settings"]["seed"] == 3 and meta["settings"]["fps"] == 5 and meta["settings"]["cond_fps"] is None
    assert meta["settings"]["num_frames"] == 10 and meta["settings"]["tar"] == "64D1"
    assert meta["keyframes"] == [0, 9] and meta["vstar_version"]


@pytest.mark.slow
def test_from_sidecar_reproduces_the_video_bit_for_bit(tmp_path):
    first = tmp_path / "first.mp4"
    assert vstar("generate", "a green triangle", *FAST, "--frames", 6, "--tar", "64D1_32D8", "--out", first).exit_code == 0
    again = tmp_path / "again.mp4"
    result = vstar("generate", "--from", tmp_path / "first.json", "--quiet", "--out", again)
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == first.read_bytes()
    meta = json.loads((tmp_path / "again.json").read_text())
    assert meta["settings"]["tar"] == "64D1_32D8" and meta["settings"]["seed"] == 3
    changed = tmp_path / "changed.mp4"
    assert vstar("generate", "--from", tmp_path / "first.json", "--seed", 4, "--quiet", "--out", changed).exit_code == 0
    assert changed.read_bytes() != first.read_bytes()


@pytest.mark.slow
def test_no_tar_is_recorded_and_reproduced(tmp_path):
    out = tmp_path / "plain.gif"
    assert vstar("generate", "a cat", *FAST, "--frames", 4, "--no-tar", "--out", out).exit_code == 0
    assert json.loads((tmp_path / "plain.json").read_text())["settings"]["tar"] is None
    again = tmp_path / "again.gif"
    assert vstar("generate", "--from", tmp_path / "plain.json", "--quiet", "--out", again).exit_code == 0
    assert json.loads((tmp_path / "again.json").read_text())["settings"]["tar"] is None
    assert read_video(again).shape[0] == 4


def test_png_folder_output(tmp_path):
    out = tmp_path / "frames"
    assert vstar("generate", "a cat", *FAST, "--frames", 3, "--out", out).exit_code == 0
    assert len(list(out.glob("*.png"))) == 3 and (tmp_path / "frames.json").exists()


def test_existing_output_needs_overwrite_and_only_vstar_outputs_are_replaced(tmp_path):
    out = tmp_path / "clip.mp4"
    assert vstar("generate", "a cat", *FAST, "--frames", 3, "--out", out).exit_code == 0
    first = out.read_bytes()
    result = vstar("generate", "a cat", *FAST, "--frames", 4, "--out", out)
    assert result.exit_code == 2 and "--overwrite" in result.output and out.read_bytes() == first
    assert vstar("generate", "a cat", *FAST, "--frames", 4, "--out", out, "--overwrite").exit_code == 0
    assert read_video(out).shape[0] == 4
    assert json.loads((tmp_path / "clip.json").read_text())["settings"]["num_frames"] == 4
    mine = tmp_path / "holiday.mp4"
    mine.write_bytes(b"keep me")
    result = vstar("generate", "a cat", *FAST, "--frames", 3, "--out", mine, "--overwrite")
    assert result.exit_code == 2 and "only replaces what vstar can show it wrote" in result.output
    assert mine.read_bytes() == b"keep me" and not (tmp_path / "holiday.json").exists()


@pytest.mark.parametrize("args,message", [
    (["generate", "", *FAST], "give a prompt"),
    (["generate", "a cat", *FAST, "--frames", "1"], "num_frames must be >= 2"),
    (["generate", "a cat", *FAST, "--tar", "64D0"], "sigma must be > 0"),
    (["generate", "a cat", *FAST, "--tar", "fast"], "cannot parse TAR preset"),
    (["generate", "a cat", "--model", "sora"], "unknown model 'sora'"),
    (["generate", "a cat", *FAST, "--from", "missing.json"], "does not exist"),
    (["generate", "a cat", *FAST, "--out", "clip.avi"], "unsupported output"),
    (["generate", "a cat", *FAST, "--model-path", "somewhere"], "takes no model path"),
    (["generate", "a cat", *FAST, "--interpolation", "cubic"], "unknown interpolation mode"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = vstar(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_bad_sidecar_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    result = vstar("generate", "--from", bad)
    assert result.exit_code == 2 and "not valid JSON" in result.output


def test_unwritable_output_path(tmp_path):
    (tmp_path / "file").write_text("x")
    result = vstar("generate", "a cat", *FAST, "--out", tmp_path / "file" / "clip.mp4")
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_models_lists_every_backbone_and_availability():
    result = vstar("models")
    assert result.exit_code == 0
    for name in ("modelscope", "zeroscope", "animatediff", "tiny-modelscope", "tiny-animatediff"):
        assert name in result.output
    assert "built-in" in result.output and "ali-vilab/text-to-video-ms-1.7b" in result.output


def test_generate_uses_vsp_by_default(tmp_path):
    out = tmp_path / "vsp.mp4"
    result = vstar("generate", "a landscape from winter to spring", *FAST, "--frames", 6, "--out", out)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "vsp.json").read_text())
    assert meta["synopsis_source"] == "rules" and len(meta["synopsis"]) >= 2
    assert all("landscape" in state.lower() for state in meta["synopsis"])
    assert "winter" in meta["synopsis"][0].lower() and "spring" in meta["synopsis"][-1].lower()
    assert meta["synopsis_info"]["instruction_version"]
    again = tmp_path / "again.mp4"  # --from reuses the recorded states and reproduces the bytes
    assert vstar("generate", "--from", tmp_path / "vsp.json", "--quiet", "--out", again).exit_code == 0
    assert again.read_bytes() == out.read_bytes()
    assert json.loads((tmp_path / "again.json").read_text())["synopsis"] == meta["synopsis"]


def test_no_vsp_uses_the_prompt_for_every_frame(tmp_path):
    out = tmp_path / "plain.mp4"
    assert vstar("generate", "a landscape from winter to spring", *FAST, "--frames", 4, "--no-vsp",
                 "--out", out).exit_code == 0
    meta = json.loads((tmp_path / "plain.json").read_text())
    assert meta["synopsis"] == ["a landscape from winter to spring"] and meta["synopsis_source"] == "none"


def test_synopsis_file_in_the_papers_format(tmp_path):
    entries = [{"prompt": "a flower blooming", "subprompts": ["a closed bud", "a flower in full bloom"]},
               {"prompt": "a city from day to night", "subprompts": ["a city by day", "a city at dusk", "a city at night"]}]
    path = tmp_path / "prompt_list.json"
    path.write_text(json.dumps(entries))
    out = tmp_path / "city.gif"
    result = vstar("generate", *FAST, "--frames", 6, "--synopsis-file", path, "--select", "1", "--out", out)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "city.json").read_text())
    assert meta["prompt"] == "a city from day to night" and meta["synopsis"] == entries[1]["subprompts"]
    assert meta["synopsis_source"] == "manual" and meta["keyframes"] == [0, 2, 5]
    (tmp_path / "broken.json").write_text('{"prompt": "x"}')
    bad = vstar("generate", *FAST, "--synopsis-file", tmp_path / "broken.json", "--out", tmp_path / "b.mp4")
    assert bad.exit_code == 2 and "Traceback" not in bad.output and not (tmp_path / "b.mp4").exists()


def test_unreachable_llm_server_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = vstar("generate", "a landscape from winter to spring", *FAST, "--llm-backend", "openai",
                   "--llm-base-url", f"http://127.0.0.1:{port}/v1", "--llm-model", "m", "--out", tmp_path / "x.mp4")
    assert result.exit_code == 1 and f"127.0.0.1:{port}" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.mp4").exists()


def test_synopsis_command_is_part_of_vstar():
    result = vstar("synopsis", "a landscape from winter to spring", "--no-cache")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 2 and all("landscape" in line.lower() for line in lines)


@pytest.mark.parametrize("model", ["tiny-videocrafter2", "tiny-animatediff"])
def test_every_tiny_family_generates_from_the_cli(tmp_path, model):
    out = tmp_path / "clip.mp4"
    result = vstar("generate", "a red circle turning into a blue square", "--model", model, "--steps", "2",
                   "--frames", 6, "--tar", "64D1_32D8", "--seed", 0, "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    assert read_video(out).shape == (6, 64, 64, 3)


def test_default_model_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = vstar("generate", "a cat", "--no-vsp", "--steps", 2, "--out", tmp_path / "x.mp4")
    assert result.exit_code == 1, result.output
    for needle in ("VideoCrafter/VideoCrafter2", "--model-path", "convert-videocrafter2", "HF_HUB_OFFLINE"):
        assert needle in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x.mp4").exists()


def test_progress_and_messages_without_quiet(tmp_path):
    out = tmp_path / "clip.gif"
    result = vstar("generate", "a red circle turning into a blue square", "--model", "tiny-modelscope", "--steps", 2,
                   "--frames", 4, "--seed", 0, "--frame-chunk", "auto", "--out", out)
    assert result.exit_code == 0, result.output
    assert "model tiny-modelscope (tiny random-weight" in result.output and "synopsis (rules)" in result.output
    assert "--frame-chunk auto: whole" in result.output  # everything fits
    assert read_video(out).shape[0] == 4


def test_frame_chunk_auto_chunks_what_does_not_fit_whole(tmp_path):
    import torch

    from vstar.backbones import get_spec
    from vstar.resources import estimate_memory

    d = get_spec("tiny-modelscope").defaults
    need = [estimate_memory(d, 6, d.height, d.width, batch=2, dtype=torch.float32, frame_chunk=c).host_bytes
            for c in (1, None)]
    cap = sum(need) / 2 / 2**30  # more than one frame at a time needs, less than all
    result = vstar("generate", "a red circle", "--model", "tiny-modelscope", "--steps", 2, "--frames", 6,
                   "--seed", 0, "--frame-chunk", "auto", "--max-memory", cap, "--out", tmp_path / "clip.gif")
    assert result.exit_code == 0, result.output
    assert "frames per spatial call" in result.output and read_video(tmp_path / "clip.gif").shape[0] == 6
    result = vstar("generate", "a red circle", *FAST, "--frames", 6, "--max-memory", cap, "--out", tmp_path / "x.gif")
    assert result.exit_code == 2 and "--frame-chunk auto" in result.output  # the advice, before any work


@pytest.mark.parametrize("args,message", [
    (["--guidance", "nan"], "guidance_scale must be a finite number"),
    (["--guidance", "inf"], "guidance_scale must be a finite number"),
    (["--frames", "0"], "num_frames must be >= 2"),
    (["--steps", "0"], "num_inference_steps must be >= 1"),
    (["--height", "33"], "height must be a positive multiple of 64"),
    (["--fps", "0"], "fps must be >= 1"),
    (["--cond-fps", "-5"], "cond_fps must be >= 1"),
    (["--cond-fps", "8"], "takes no frame-rate conditioning"),
    (["--upscale", "0"], "--upscale must be >= 1"),
    (["--interpolation", "cubic"], "unknown interpolation mode"),
    (["--tar", "64D1", "--no-tar"], "contradict"),
    (["--out", "clip.avi"], "unsupported output"),
])
def test_bad_settings_fail_before_any_model_is_loaded(tmp_path, monkeypatch, args, message):
    from vstar.pipeline import VSTARPipeline

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(VSTARPipeline, "from_pretrained", refuse)
    monkeypatch.chdir(tmp_path)
    result = vstar("generate", "a cat", "--model", "tiny-modelscope", "--quiet", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and list(tmp_path.iterdir()) == []


def test_videocrafter2_sidecar_records_conditioning_and_playback_rates(tmp_path):
    out = tmp_path / "vc2.gif"
    result = vstar("generate", "a cat", "--model", "tiny-videocrafter2", "--frames", 3, "--steps", 1, "--seed", 0,
                   "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "vc2.json").read_text())["settings"]
    assert (settings["cond_fps"], settings["fps"]) == (28, 10)
