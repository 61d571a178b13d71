"""`torchrun --nproc_per_node 2 -m vstar batch` on the CPU (gloo): the two processes split the items by global
index and together make exactly what one process makes; a run with a killed process is completed by the next."""

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from vstar.cli import app

pytestmark = pytest.mark.slow
TOY = ["--model", "toy-shapes", "--frames", "8", "--steps", "2", "--quiet", "--device", "cpu"]
PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle moving right", "a small red square"]
# Run vstar in each process, but let rank 1 kill itself (SIGKILL: no clean-up) when it reaches its second item.
KILLER = """
import os, signal, sys
import vstar.pipeline
call = vstar.pipeline.VSTARPipeline.__call__
def dying(self, prompt, *args, **kwargs):
    if os.environ["RANK"] == "1" and prompt == {victim!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    return call(self, prompt, *args, **kwargs)
vstar.pipeline.VSTARPipeline.__call__ = dying
from vstar.cli import main
sys.argv[0] = "vstar"
main()
"""


def torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def made(folder):
    """Each video's bytes and its sidecar's settings, by name."""
    return {p.stem: (p.read_bytes(), {k: v for k, v in json.loads(p.with_suffix(".json").read_text()).items()
                                      if k not in ("command", "device")})
            for p in sorted(folder.glob("*.mp4"))}


def test_two_processes_make_what_one_makes_and_a_killed_run_is_completed(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the torchrun processes: float sums depend on how many threads split them
    try:
        one = CliRunner().invoke(app, ["batch", str(prompts), "--out-dir", str(tmp_path / "one"), *TOY])
    finally:
        torch.set_num_threads(threads)
    assert one.exit_code == 0, one.output

    two = torchrun("-m", "vstar", "batch", prompts, "--out-dir", tmp_path / "two", *TOY, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert made(tmp_path / "two") == made(tmp_path / "one") and len(made(tmp_path / "one")) == len(PROMPTS)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and [r["index"] for r in summary["items"]] == list(range(len(PROMPTS)))

    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(victim=PROMPTS[3]))  # index 3: rank 1's second item
    killed = torchrun(script, "batch", prompts, "--out-dir", tmp_path / "three", *TOY, cwd=tmp_path)
    assert killed.returncode != 0
    shown = {p.name for p in (tmp_path / "three").iterdir() if not p.name.startswith(".")}
    assert "0001-a-blue-square.mp4" in shown and not any(n.startswith("0003") for n in shown)
    videos = {n.removesuffix(".mp4") for n in shown if n.endswith(".mp4")}
    assert {n.removesuffix(".json") for n in shown if n.endswith(".json")} == videos  # whole pairs only

    resumed = torchrun("-m", "vstar", "batch", prompts, "--out-dir", tmp_path / "three", *TOY, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert made(tmp_path / "three") == made(tmp_path / "one")
    counts = json.loads((tmp_path / "three" / "summary.json").read_text())["counts"]
    assert counts["failed"] == 0 and counts["skipped"] >= 1 and counts["done"] >= 1
