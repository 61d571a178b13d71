"""What `vstar generate`, `analyze` and `evaluate` write, replace and record: secrets stay out of sidecars,
--overwrite replaces only vstar's own files, a result is whole or absent (also on a full disk), files a sidecar
names stay in its folder, and newer sidecars are read with notes."""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vstar.io
import vstar.synopsis
from vstar.cli import app
from vstar.cli.common import recorded_command
from vstar.io import write_video
from vstar.noise.optimization import OptimizedNoise
from vstar.outputs import file_sha256
from vstar.synopsis import Synopsis

runner = CliRunner()
FAST = ["--model", "tiny-modelscope", "--steps", "1", "--frames", "3", "--seed", "3", "--quiet", "--no-memory-check"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def contents(folder):
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- secrets ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://alice:s3cret-pw@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?api_key=s3cret-pw",
                                 "https://127.0.0.1:9/v1?token=s3cret-pw&model=x"])
def test_a_secret_in_the_llm_url_never_reaches_the_sidecar(tmp_path, monkeypatch, url):
    asked = []

    def fake_llm(prompt, **options):
        asked.append(options)
        return Synopsis(prompt, ["a red circle", "a blue square"], "openai", model="m")

    monkeypatch.setattr(vstar.synopsis, "make_synopsis", fake_llm)
    out = tmp_path / "clip.mp4"
    argv = ["vstar", "generate", "a red circle turning blue", *FAST, "--llm-backend", "openai",
            "--llm-base-url", url, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    result = run(*argv[1:])
    assert result.exit_code == 0, result.output
    assert asked[0]["base_url"] == url  # the server still gets the credentials
    sidecar = (tmp_path / "clip.json").read_text()
    assert "s3cret-pw" not in sidecar and "***" in json.loads(sidecar)["command"]
    assert "s3cret-pw" not in recorded_command(["vstar", "generate", f"--llm-base-url={url}"])


# --- replacing only what vstar wrote ------------------------------------------------------------------------
@pytest.fixture
def made(tmp_path):
    """A folder with one generation of vstar (clip.mp4 + clip.json) and a short reference video."""
    assert run("generate", "a cat", *FAST, "--out", tmp_path / "clip.mp4").exit_code == 0
    write_video(np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8), tmp_path / "ref.gif")
    return tmp_path


@pytest.mark.parametrize("setup,args,message", [
    # a user's noise file where vstar would save the optimized noise
    (lambda d: (d / "clip.noise.safetensors").write_bytes(b"mine"),
     ["--optimize-noise", "--reference-video", "ref.gif", "--out", "clip.mp4"], "clip.noise.safetensors is not named"),
    # x.gif would take over clip.json, the sidecar of clip.mp4
    (lambda d: shutil.copy(d / "ref.gif", d / "clip.gif"), ["--out", "clip.gif"], "clip.json is the sidecar of"),
    (lambda d: None, ["--out", "clip.gif"], "clip.json is the sidecar of"),
    # the user edited the video since vstar wrote it
    (lambda d: (d / "clip.mp4").write_bytes((d / "clip.mp4").read_bytes() + b"!"), ["--out", "clip.mp4"],
     "has changed since vstar wrote it"),
    # a user's own video and JSON of the same names
    (lambda d: ((d / "mine.mp4").write_bytes(b"mine"), (d / "mine.json").write_text("{}")), ["--out", "mine.mp4"],
     "mine.json is not a file vstar wrote"),
])
def test_generate_overwrite_replaces_only_what_vstar_wrote(made, monkeypatch, setup, args, message):
    monkeypatch.chdir(made)
    setup(made)
    before = contents(made)
    result = run("generate", "a cat", *FAST, "--overwrite", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert contents(made) == before


def test_analyze_and_evaluate_overwrite_only_their_own_files(made, monkeypatch):
    monkeypatch.chdir(made)
    analysis = ["analyze", "--plot-band", "1,2", "--frames", "4", "--model", "tiny-modelscope", "--out", "report"]
    assert run(*analysis).exit_code == 0
    assert run(*analysis, "--overwrite").exit_code == 0  # its own figures
    (made / "report" / "bands.pdf").write_bytes(b"%PDF-1.4 a user's own figure")
    before = contents(made)
    result = run(*analysis, "--overwrite")
    assert result.exit_code == 2 and "bands.pdf is not a figure vstar wrote" in result.output
    assert contents(made) == before

    evaluation = ["evaluate", "ref.gif", "--json", "eval.json", "--plot", "eval.png"]
    assert run(*evaluation).exit_code == 0
    record = json.loads((made / "eval.json").read_text())
    assert record["kind"] == "evaluation" and record["vstar_version"]
    assert run(*evaluation, "--overwrite").exit_code == 0
    for planted, name in ((b'{"videos": []}', "eval.json"), (b"a user's picture", "eval.png")):
        (made / name).write_bytes(planted)
        before = contents(made)
        result = run(*evaluation, "--overwrite")
        assert result.exit_code == 2 and f"{name} is not a" in result.output
        assert contents(made) == before
        (made / name).unlink()
    result = run("evaluate", "ref.gif", "--json", "clip.json", "--overwrite")  # a generation's sidecar
    assert result.exit_code == 2 and "is a vstar generation record, not a evaluation one" in result.output


@pytest.mark.slow
def test_analyze_records_the_generated_video_and_replaces_it_only_unchanged(made, monkeypatch):
    monkeypatch.chdir(made)
    analysis = ["analyze", "--generate", "a cat", "--frames", "3", "--steps", "1", "--model", "tiny-modelscope",
                "--out", "report"]
    assert run(*analysis).exit_code == 0
    record = json.loads((made / "report" / "attention.json").read_text())
    assert record["kind"] == "analysis"
    assert record["files"] == {"generated.mp4": file_sha256(made / "report" / "generated.mp4")}
    assert run(*analysis, "--overwrite").exit_code == 0
    (made / "report" / "generated.mp4").write_bytes(b"a user's edit")
    result = run(*analysis, "--overwrite")
    assert result.exit_code == 2 and "generated.mp4 has changed since vstar wrote it" in result.output


# --- one result: all or nothing -----------------------------------------------------------------------------
class FullDisk:
    """Stands in for the json module in vstar.io: the sidecar's write fails as on a full disk."""

    @staticmethod
    def dumps(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("previous", [False, True])
def test_a_failing_sidecar_leaves_no_video_and_keeps_the_previous_result(tmp_path, monkeypatch, previous):
    out = tmp_path / "clip.mp4"
    if previous:
        assert run("generate", "a cat", *FAST, "--out", out).exit_code == 0
    before = contents(tmp_path)
    monkeypatch.setattr(vstar.io, "json", FullDisk)
    result = run("generate", "a dog", *FAST, "--seed", 4, "--out", out, "--overwrite")
    assert result.exit_code == 1 and "No space left on device; nothing was left behind" in result.output
    assert contents(tmp_path) == before  # no orphan video, no new video beside the old sidecar, no leftovers


def _mount_tmpfs(folder, size):
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CI has it)")


@pytest.mark.slow
def test_a_really_full_disk_leaves_the_previous_result_or_the_new_one_whole(tmp_path):
    """On a small tmpfs with less and less free space, every run either writes a whole new result (its
    sidecar names the video's sha256) or fails with exit 1 and leaves the previous result as it was."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        out = disk / "clip.mp4"
        assert run("generate", "a cat", *FAST, "--out", out).exit_code == 0
        before = contents(disk)
        page = os.statvfs(disk).f_frsize
        outcomes = []
        for free_pages in range(8):
            filler = disk / "filler"
            filler.unlink(missing_ok=True)
            stats = os.statvfs(disk)
            with open(filler, "wb") as handle:
                handle.truncate(0)
                handle.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - free_pages * page))
            result = run("generate", "a dog", *FAST, "--seed", 4, "--out", out, "--overwrite")
            filler.unlink()
            now = contents(disk)
            if result.exit_code == 0:
                sidecar = json.loads(now["clip.json"])
                assert sidecar["files"] == {"clip.mp4": file_sha256(out)} and sidecar["settings"]["seed"] == 4
                assert set(now) == {"clip.mp4", "clip.json"}
                outcomes.append("written")
                break
            assert result.exit_code == 1 and "nothing was left behind" in result.output, result.output
            assert now == before
            outcomes.append("kept")
        assert outcomes[0] == "kept" and outcomes[-1] == "written", outcomes
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- files a sidecar names ----------------------------------------------------------------------------------
def _sidecar(folder, **fields):
    data = {"vstar_version": "0.2.0", "model": "tiny-modelscope", "synopsis": ["a cat"], "prompt": "a cat",
            "settings": {"num_frames": 3, "seed": 1, "num_inference_steps": 1}, **fields}
    (folder / "old.json").write_text(json.dumps(data))
    return folder / "old.json"


def _noise_file(path, value=0.0):
    latents = torch.full((1, 4, 3, 8, 8), value)
    OptimizedNoise(latents, 1.0, 0.0, latents.clone(), torch.zeros(1, 3, 3)).save(path)
    return {"file": path.name if path.parent.name == "here" else str(path), "sha256": file_sha256(path)}


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_from_reads_noise_only_beside_the_sidecar(tmp_path, monkeypatch, where):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    entry = _noise_file(tmp_path / "outside.noise.safetensors")
    entry["file"] = "../outside.noise.safetensors" if where == "parent" else str(tmp_path / "outside.noise.safetensors")
    sidecar = _sidecar(tmp_path / "here", noise=entry)
    result = run("generate", "--from", sidecar, "--quiet", "--out", "again.mp4")
    assert result.exit_code == 2 and "is not a file name in the sidecar's folder" in result.output


def test_from_refuses_noise_with_nan(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    sidecar = _sidecar(tmp_path / "here", noise=_noise_file(tmp_path / "here" / "old.noise.safetensors", float("nan")))
    result = run("generate", "--from", sidecar, "--quiet", "--out", "again.mp4")
    assert result.exit_code == 2 and "holds NaN or infinite values" in result.output


def test_from_does_not_follow_a_recorded_model_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sidecar = _sidecar(tmp_path, model="modelscope", model_path="/somewhere/else")
    result = run("generate", "--from", sidecar, "--quiet", "--out", "again.mp4")
    assert result.exit_code == 2 and "pass --model-path DIR" in result.output


# --- newer sidecars -----------------------------------------------------------------------------------------
def test_fields_and_settings_of_a_newer_vstar_are_named_and_ignored_or_refused_with_strict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sidecar = _sidecar(tmp_path, vstar_version="9.0.0", hologram={"depth": 3},
                       settings={"num_frames": 3, "seed": 1, "num_inference_steps": 1, "warp_drive": 2})
    result = runner.invoke(app, ["generate", "--from", str(sidecar), "--out", "again.mp4", "--no-memory-check"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "newer than this vstar" in result.output
    assert "ignored what this vstar does not know in the sidecar: hologram, settings.warp_drive" in result.output
    result = run("generate", "--from", sidecar, "--strict", "--quiet", "--out", "strict.mp4")
    assert result.exit_code == 2 and "--strict" in result.output and "hologram, settings.warp_drive" in result.output
    assert not (tmp_path / "strict.mp4").exists()


def test_outputs_have_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        assert run("generate", "a cat", *FAST, "--out", tmp_path / "frames").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "frames").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "frames").iterdir()} == {0o644}
    assert stat.S_IMODE((tmp_path / "frames.json").stat().st_mode) == 0o644


# --- the identity of the weights ----------------------------------------------------------------------------
def test_sidecars_record_the_weights_and_from_warns_or_refuses_when_they_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    toy = ["--model", "toy-shapes", "--steps", "1", "--frames", "2", "--seed", "1", "--no-memory-check"]
    assert run("generate", "a red circle", *toy, "--quiet", "--out", "clip.gif").exit_code == 0
    sidecar = json.loads((tmp_path / "clip.json").read_text())
    weights = sidecar["weights"]
    assert weights["model"] == "toy-shapes" and weights["source"] == "shipped"
    assert weights["fingerprint"].startswith("sha256:") and "unet/diffusion_pytorch_model.safetensors" in weights["files"]
    assert not any(os.path.isabs(name) for name in weights["files"])

    same = run("generate", "--from", "clip.json", "--out", "same.gif")
    assert same.exit_code == 0 and "warning" not in same.output
    assert (tmp_path / "same.gif").read_bytes() == (tmp_path / "clip.gif").read_bytes()

    changed = {**sidecar, "weights": {**weights, "fingerprint": "sha256:" + "0" * 64,
                                      "files": {**weights["files"], "unet/diffusion_pytorch_model.safetensors": "sha256:0"}}}
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    warned = run("generate", "--from", "changed.json", "--quiet", "--out", "warned.gif")
    assert warned.exit_code == 0 and "warning: the weights differ from those changed.json was made with" in warned.output
    refused = run("generate", "--from", "changed.json", "--strict", "--quiet", "--out", "refused.gif")
    assert refused.exit_code == 2 and "--strict: the loaded weights differ" in refused.output
    assert not (tmp_path / "refused.gif").exists() and not (tmp_path / "refused.json").exists()

    old = {k: v for k, v in sidecar.items() if k not in ("weights", "files", "kind")} | {"vstar_version": "0.2.0"}
    (tmp_path / "old.json").write_text(json.dumps(old))  # vstar 0.2.0 recorded no weights: still reproducible
    noted = run("generate", "--from", "old.json", "--out", "replayed.gif")
    assert noted.exit_code == 0 and "note:" in noted.output and "weights" in noted.output
