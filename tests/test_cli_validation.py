"""Every entry point refuses bad input before any work: exit code 2, one line naming the option and a fix,
no model loaded, no LLM asked, no file created or changed."""

import json
import os
import random
import shlex
import time

import pytest
from typer.testing import CliRunner

import vstar.pipeline
import vstar.synopsis
from vstar.cli import app
from vstar.io import lock_path

runner = CliRunner()
TOY = ["--model", "toy-shapes", "--steps", "2", "--seed", "0", "--quiet"]


def snapshot(folder):
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder with a sidecar, a synopsis file and a user's folder; loading or asking is an error."""
    monkeypatch.chdir(tmp_path)
    sidecar = {"vstar_version": "0.2.0", "model": "toy-shapes", "synopsis": ["a red circle"], "prompt": "a red circle",
               "settings": {"num_frames": 8, "seed": 1}, "upscale": 1}
    (tmp_path / "ok.json").write_text(json.dumps(sidecar))
    (tmp_path / "badtype.json").write_text(json.dumps({**sidecar, "upscale": "2"}))
    (tmp_path / "nosynopsis.json").write_text(json.dumps({k: v for k, v in sidecar.items() if k != "synopsis"}))
    (tmp_path / "badsetting.json").write_text(json.dumps({**sidecar, "settings": {"num_frames": "8"}}))
    (tmp_path / "states.json").write_text(json.dumps(["a red circle", "a blue square"]))
    (tmp_path / "mywork").mkdir()
    (tmp_path / "mywork" / "thesis.tex").write_text("years of work")
    (tmp_path / "taken.json").write_text("{}")

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded or an LLM asked before the input was checked")

    monkeypatch.setattr(vstar.pipeline, "load_backbone", forbidden)
    monkeypatch.setattr(vstar.synopsis, "make_synopsis", forbidden)
    return tmp_path


GENERATE_CASES = [
    (["--frames", "0"], "num_frames must be >= 2"),
    (["--steps", "0"], "num_inference_steps must be >= 1"),
    (["--height", "33"], "multiple of 16"),
    (["--interpolation", "cubic"], "unknown interpolation mode"),
    (["--guidance", "inf"], "guidance_scale must be a finite number"),
    (["--guidance", "nan"], "guidance_scale must be a finite number"),
    (["--cond-fps", "-5"], "cond_fps must be >= 1"),
    (["--cond-fps", "8"], "takes no frame-rate conditioning"),
    (["--fps", "0"], "fps must be >= 1"),
    (["--upscale", "0"], "--upscale must be >= 1"),
    (["--frame-chunk", "0"], "--frame-chunk takes a whole number of frames >= 1 or 'auto'"),
    (["--frame-chunk", "half"], "--frame-chunk takes a whole number"),
    (["--max-memory", "0"], "--max-memory must be a positive number of GiB"),
    (["--max-memory", "inf"], "--max-memory must be a positive number of GiB"),
    (["--tar-strength", "nan"], "tar_strength must be a finite number"),
    (["--tar-step-fraction", "2"], "step_fraction must be in [0, 1]"),
    (["--tar", "64D1", "--no-tar"], "contradict"),
    (["--out", "clip.avi"], "unsupported output"),
    (["--out", "mywork", "--overwrite"], "only replaces vstar's own outputs"),
    (["--out", "mywork"], "already exists"),
    (["--out", "taken.mp4", "--overwrite"], "not a vstar sidecar"),  # taken.json beside it is the user's
    (["--out", "x" * 300 + ".mp4"], "shorter name"),
    (["--width", "100000", "--height", "100000"], "--no-memory-check"),
    (["--frames", "10000000"], "frames fit at 32x32"),
    (["--upscale", "100000"], "--no-memory-check"),
    (["--no-vsp", "-s", "a red circle"], "contradict"),
    (["-s", "a", "--synopsis-file", "states.json"], "contradict"),
    (["--select", "1"], "--select picks an entry"),
    (["-s", "a red circle", "--states", "3"], "--states is for an LLM"),
    (["-s", "a red circle", "--llm-model", "m"], "--llm-model is for an LLM"),
    (["-s", ""], "state is empty"),
    (["--no-vsp", "--style", "4k"], "--style"),
    (["--from", "badtype.json"], "field 'upscale'"),
    (["--from", "nosynopsis.json"], "no 'synopsis'"),
    (["--from", "badsetting.json"], "num_frames must be a whole number"),
    (["--frames", "4", "-s", "a", "-s", "b", "-s", "c", "-s", "d", "-s", "e"], "do not fit on 4 frames"),
    (["--device", "cuda"] if not __import__("torch").cuda.is_available() else ["--dtype", "fp12"], "use --device cpu"
     if not __import__("torch").cuda.is_available() else "unknown dtype"),
]


@pytest.mark.parametrize("extra,message", GENERATE_CASES, ids=[" ".join(c[0])[:40] for c in GENERATE_CASES])
def test_generate_refuses_bad_input_before_any_work(workdir, extra, message):
    before = snapshot(workdir)
    start = time.perf_counter()
    prompt = [] if any(a in extra for a in ("--from", "--synopsis-file", "-s")) else ["a red circle"]
    result = runner.invoke(app, ["generate", *prompt, *TOY, *extra])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert elapsed < 5, f"took {elapsed:.1f} s to refuse"
    assert snapshot(workdir) == before


def test_a_second_run_on_the_same_output_fails_at_once(workdir):
    lock_path(workdir / "clip.mp4").write_text(str(os.getpid()))  # a live run holds the output
    result = runner.invoke(app, ["generate", "a red circle", *TOY, "--out", "clip.mp4"])
    assert result.exit_code == 2 and "another vstar run" in result.output
    assert not (workdir / "clip.mp4").exists() and lock_path(workdir / "clip.mp4").exists()


@pytest.mark.slow
def test_quiet_prints_no_progress_bar_and_the_command_is_shell_quoted(tmp_path, monkeypatch):
    out = tmp_path / "clip.gif"
    args = ["generate", "a red circle; rm -rf ~", *TOY, "--frames", "4", "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["vstar", *args])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "it/s" not in result.output and "%|" not in result.output
    assert result.output.strip().splitlines() == [f"wrote {out} (4 frames) and {tmp_path / 'clip.json'}"]
    meta = json.loads((tmp_path / "clip.json").read_text())
    assert shlex.split(meta["command"])[2] == "a red circle; rm -rf ~"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "clip.json"]  # no claims left behind


SYNOPSIS_CASES = [
    (["a cat", "--states", "0"], "states"),
    (["a cat", "--min-states", "5", "--max-states", "2"], "min_states"),
    (["a cat", "--backend", "oracle"], "unknown backend"),
    (["a cat", "--backend", "openai", "--base-url", "ftp://x", "--model", "m"], "http(s) URL"),
    (["a cat", "--backend", "openai", "--base-url", "http://localhost:1/v1", "--timeout", "-1"], "timeout"),
    ([""], "empty"),
]


@pytest.mark.parametrize("args,message", SYNOPSIS_CASES)
def test_synopsis_refuses_bad_input(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VSTAR_CACHE_DIR", str(tmp_path / "cache"))
    result = runner.invoke(app, ["synopsis", *args, "--no-cache"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (random.Random(0).randbytes(4096), "not a PyTorch checkpoint"),
    (b"PK\x03\x04" + b"\x00" * 100, "not a readable checkpoint"),
])
def test_convert_refuses_broken_checkpoints_in_one_line(tmp_path, content, message):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(content)
    result = runner.invoke(app, ["convert-videocrafter2", str(ckpt), str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "weights_only=False" not in result.output and "Aborted" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


@pytest.fixture(scope="module")
def toy_pipeline():
    return vstar.pipeline.VSTARPipeline.from_pretrained("toy-shapes")


PIPELINE_CASES = [
    ({"num_frames": 8.0}, "num_frames must be a whole number"),
    ({"num_frames": True}, "num_frames must be a whole number"),
    ({"tar": 123}, "tar must be a TARConfig"),
    ({"prompt": 123}, "prompt must be text"),
    ({"synopsis": "a red circle"}, "synopsis must be a non-empty list"),
    ({"eta": -1.0}, "eta must be a finite number >= 0"),
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
    ({"height": 33}, "multiple of 16"),
    ({"interpolation": "cubic"}, "unknown interpolation mode"),
    ({"num_videos": 0}, "num_videos must be a whole number"),
    ({"output_type": "gif"}, "unknown output_type"),
    ({"frame_chunk": 0}, "frame_chunk must be a whole number >= 1"),
    ({"frame_chunk": "half"}, "or 'auto'"),
    ({"max_memory": 0}, "max_memory must be a positive number of GiB"),
    # also where no estimate is made
    ({"max_memory": -1, "frame_chunk": 2, "check_memory": False}, "max_memory must be a positive number of GiB"),
    ({"max_memory": float("inf"), "check_memory": False}, "max_memory must be a positive number of GiB"),
    ({"max_memory": "2", "check_memory": False}, "max_memory must be a positive number of GiB"),
    ({"num_frames": 64, "max_memory": 1e-6}, "not even 2 frames fit"),
    ({"frame_chunk": 4, "record_attention": True}, "leave out frame_chunk"),
    ({"num_frames": 10_000_000}, "check_memory=False"),
]


@pytest.mark.parametrize("kwargs,message", PIPELINE_CASES, ids=[next(iter(c[0])) for c in PIPELINE_CASES])
def test_the_pipeline_refuses_bad_arguments_before_denoising(toy_pipeline, monkeypatch, kwargs, message):
    def forbidden(*args, **kw):
        raise AssertionError("denoising started before the arguments were checked")

    monkeypatch.setattr(toy_pipeline, "denoise", forbidden)
    call = {"prompt": "a red circle", "num_inference_steps": 2, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        toy_pipeline(call.pop("prompt"), **call)
