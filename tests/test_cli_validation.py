"""Every entry point refuses bad input before any work: exit code 2, one line naming the option and a fix,
no model loaded, no LLM asked, no file created or changed."""

import hashlib
import json
import os
import random
import shlex
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vstar.backbones
import vstar.cli.analyze
import vstar.cli.evaluate
import vstar.pipeline
import vstar.synopsis
from vstar.cli import app
from vstar.io import write_video
from vstar.noise import OptimizedNoise
from vstar.outputs import lock_path

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
    frames = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    for name, count in (("ref.gif", 16), ("short.gif", 3), ("one.gif", 1)):
        write_video(frames[:count], tmp_path / name)
    # optimized noise for 8 frames of 32x32 on toy-shapes: latents (1, 4, 8, 8, 8)
    noise = OptimizedNoise(torch.zeros(1, 4, 8, 8, 8), 1.0, 0.0, torch.zeros(1, 4, 8, 8, 8), torch.zeros(1, 8, 8))
    noise.save(tmp_path / "noisy.noise.safetensors")
    digest = hashlib.sha256((tmp_path / "noisy.noise.safetensors").read_bytes()).hexdigest()
    (tmp_path / "noisy.json").write_text(json.dumps(
        {**sidecar, "noise": {"file": "noisy.noise.safetensors", "sha256": digest}}))

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded or an LLM asked before the input was checked")

    for module, name in ((vstar.pipeline, "load_backbone"), (vstar.backbones, "load_backbone"),
                         (vstar.pipeline.VSTARPipeline, "from_pretrained"), (vstar.cli.analyze, "load_model"),
                         (vstar.cli.evaluate, "load_model"),
                         (vstar.synopsis, "make_synopsis")):
        monkeypatch.setattr(module, name, forbidden)
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
    (["--out", "mywork", "--overwrite"], "only replaces what vstar can show it wrote"),
    (["--out", "mywork"], "already exists"),
    (["--out", "taken.mp4", "--overwrite"], "taken.json is not a file vstar wrote"),  # the user's JSON
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
    # what the registry knows of the model (tests/backbones/test_registry.py checks it against the built model)
    (["--steps", "3000"], "--steps 3000: toy-shapes was trained on 1000 timesteps, so it takes at most 999"),
    (["--steps", "1000"], "use --steps 999 or fewer"),
    (["--tar", "8D1"], "--tar 8D1: toy-shapes has temporal attention at levels init, 64, 32, 16 only; "
                       "choose levels among those, e.g. --tar 64D1"),
    (["--no-tar", "--replace-attention", "identity:32,8"], "--replace-attention identity:32,8: toy-shapes has "
                                                           "temporal attention at levels init, 64, 32, 16 only"),
    (["--model", "tiny-animatediff", "--tar", "64D1_initD1"], "tiny-animatediff has temporal attention at levels "
                                                              "64, 32, 16, 8 only"),
    (["--optimize-noise", "--reference-video", "ref.gif", "--opt-timestep", "5000"],
     "--opt-timestep must be in 0..999 (the training timesteps of toy-shapes), got 5000"),
    (["--from", "noisy.json", "--frames", "12"], "the recorded optimized noise has shape (1, 4, 8, 8, 8), this "
                                                 "generation needs (1, 4, 12, 8, 8)"),
    (["--from", "noisy.json", "--height", "64"], "needs (1, 4, 8, 16, 8)"),
    (["--seed", str(2**64)], "seed must be <= 18446744073709551615"),
    (["--offload", "fast"], "unknown offload mode 'fast'; choose model or sequential"),
    (["--offload", "model", "--device", "cpu"], "--offload model moves weights between CPU memory and a GPU"),
    (["--tar-reference-metric", "bogus"], "--tar-reference-metric must be one of ssim, mae, histogram, dreamsim"),
    (["--tar-reference-metric", "mae"], "--tar-reference-metric says how --tar-reference VIDEO is compared"),
    (["--tar-reference", "one.gif"], "has 1 frame; give a video of at least 2 frames"),
    (["--tar-reference", "mywork"], "could not read the TAR reference mywork: the folder holds no PNG frames"),
    (["--from", "."], ". is a folder; pass the sidecar .json"),
    (["--from", "ref.gif"], "ref.gif is not a text file; pass the sidecar .json"),
    (["--synopsis-file", "."], "synopsis file . is a folder"),
    (["--synopsis-file", "ref.gif"], "synopsis file ref.gif is not text (UTF-8)"),
    (["--strict"], "--strict checks what --from reproduces"),
    (["--device", "cuda"] if not __import__("torch").cuda.is_available() else ["--dtype", "fp12"], "use --device cpu"
     if not __import__("torch").cuda.is_available() else "unknown dtype"),
]


def assert_refused_before_work(workdir, args, message):
    """``vstar ARGS`` exits 2 with one line holding ``message``, at once, loading and changing nothing."""
    before = snapshot(workdir)
    start = time.perf_counter()
    result = runner.invoke(app, args)
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert elapsed < 5, f"took {elapsed:.1f} s to refuse"
    assert snapshot(workdir) == before


@pytest.mark.parametrize("extra,message", GENERATE_CASES, ids=[" ".join(c[0])[:40] for c in GENERATE_CASES])
def test_generate_refuses_bad_input_before_any_work(workdir, extra, message):
    prompt = [] if any(a in extra for a in ("--from", "--synopsis-file", "-s")) else ["a red circle"]
    assert_refused_before_work(workdir, ["generate", *prompt, *TOY, *extra], message)


ANALYZE = ["--model", "toy-shapes", "--device", "cpu", "--out", "analysis"]
ANALYZE_CASES = [
    (["short.gif", "--frames", "8"], "--frames 8: the video has 3 frames; use --frames between 2 and 3"),
    (["one.gif"], "the video has 1 frame(s); temporal attention needs at least 2: give a longer video"),
    *[(["short.gif", "--timestep", t], f"--timestep must be in 0..999 (the training timesteps of toy-shapes), got {t}")
      for t in ("5000", "1000", "-1")],
    (["short.gif", "--seed", "-5"], "--seed must be a whole number from 0 to 18446744073709551615, got -5"),
    (["--generate", "a red circle", "--tar-reference-metric", "bogus", "--tar-reference", "ref.gif"],
     "--tar-reference-metric must be one of"),
    (["short.gif", "--tar-reference-metric", "mae"], "act on a generation; add --generate PROMPT"),
    (["--generate", ""], "--generate needs a prompt"),
    (["--generate", "  "], "--generate needs a prompt"),
    (["--plot-band", "1,2", "--frames", "60000"], "--plot-band with --frames 60000: the bands are unreadable past 256"),
    (["--plot-band", "1,2", "--frames", "257"], "plot them with --frames 256 or fewer"),
    (["--generate", "a red circle", "--steps", "3000"], "--steps 3000: toy-shapes was trained on 1000 timesteps"),
    (["--generate", "a red circle", "--tar", "8D1"], "--tar 8D1: toy-shapes has temporal attention at levels init, "
                                                     "64, 32, 16 only"),
    (["--generate", "a red circle", "--no-tar", "--replace-attention", "identity:8"],
     "--replace-attention identity:8: toy-shapes has temporal attention at levels init, 64, 32, 16 only"),
    (["--generate", "a red circle", "--model", "tiny-animatediff", "--tar", "initD1"],
     "--tar initD1: tiny-animatediff has temporal attention at levels 64, 32, 16, 8 only"),
]


@pytest.mark.parametrize("extra,message", ANALYZE_CASES, ids=[" ".join(c[0])[:40] for c in ANALYZE_CASES])
def test_analyze_refuses_bad_input_before_any_work(workdir, extra, message):
    assert_refused_before_work(workdir, ["analyze", *ANALYZE, *extra], message)


EVALUATE_CASES = [
    (["missing.mp4"], "missing.mp4 does not exist"),
    (["notes.mp4"], "could not read notes.mp4: not a video that can be decoded"),
    (["empty.gif"], "could not read empty.gif: the file is empty"),
    (["mywork"], "could not read mywork: the folder holds no PNG frames"),
    (["ref.gif", "--metric", "latent"], "give --model or drop latent"),
    (["ref.gif", "--plot", "plot.bmp"], "a plot is written as"),
    (["ref.gif", "--json", "taken.json", "--overwrite"], "taken.json is not a file vstar wrote"),
    (["ref.gif", "--json", "ok.json", "--overwrite"], "ok.json is a vstar generation record, not a evaluation one"),
    (["ref.gif", "--json", "fifo.json", "--overwrite"], "is not a regular file"),
]


@pytest.mark.parametrize("extra,message", EVALUATE_CASES, ids=[" ".join(c[0])[:40] for c in EVALUATE_CASES])
def test_evaluate_refuses_bad_input_before_any_work(workdir, extra, message):
    (workdir / "notes.mp4").write_text("not a video")
    (workdir / "empty.gif").write_bytes(b"")
    os.mkfifo(workdir / "fifo.json")
    assert_refused_before_work(workdir, ["evaluate", *extra], message)


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
    # what the loaded model itself has (the CLI refuses the same from the registry before loading)
    ({"num_inference_steps": 1000}, "trained on 1000 timesteps, so it takes at most 999 denoising steps"),
    ({"tar": "8D1"}, "--tar 8D1: .* has temporal attention at levels init, 64, 32, 16 only"),
    ({"tar": None, "replace_attention": "uniform:8"}, "--replace-attention uniform:8: .* levels init, 64, 32, 16 only"),
]


@pytest.mark.parametrize("kwargs,message", PIPELINE_CASES, ids=[next(iter(c[0])) for c in PIPELINE_CASES])
def test_the_pipeline_refuses_bad_arguments_before_denoising(toy_pipeline, monkeypatch, kwargs, message):
    def forbidden(*args, **kw):
        raise AssertionError("denoising started before the arguments were checked")

    monkeypatch.setattr(toy_pipeline, "denoise", forbidden)
    call = {"prompt": "a red circle", "num_inference_steps": 2, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        toy_pipeline(call.pop("prompt"), **call)


@pytest.mark.skipif(__import__("importlib").util.find_spec("dreamsim") is not None, reason="dreamsim is installed")
@pytest.mark.parametrize("args", [["evaluate", "ref.gif", "--metric", "dreamsim"],
                                  ["generate", "a red circle", *TOY, "--tar-reference", "ref.gif",
                                   "--tar-reference-metric", "dreamsim"]])
def test_a_missing_optional_dreamsim_is_named_before_any_work(workdir, args):
    before = snapshot(workdir)
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "pip install 'vstar-video[dreamsim]'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and snapshot(workdir) == before
