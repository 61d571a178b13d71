"""The performance benchmarks run at their smallest settings on the CPU, and the GPU check's command lines
are ones the scripts accept (a session with a GPU has minutes for it: it must run the first time)."""

import csv
import importlib
import shlex
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield {name: importlib.import_module(name) for name in ("tar_overhead", "scaling", "vs_freenoise",
                                                                      "wan_step", "memory_per_pixel",
                                                                      "frame_tar_overhead", "wan_presets")}
    finally:
        sys.path.remove(str(BENCHMARKS))


def gpu_check_steps() -> list[tuple[str, int, list[str]]]:
    """``(name, seconds, argv)`` of every ``step`` in gpu_check.sh, ``argv`` starting with the script."""
    text = (BENCHMARKS / "gpu_check.sh").read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["step"] and len(words) > 3:
            steps.append((words[1], int(words[2]), words[3:]))
    return steps


def test_gpu_check_runs_every_benchmark_with_arguments_they_accept_in_under_8_minutes(scripts):
    steps = gpu_check_steps()
    assert [name for name, _, _ in steps] == ["tar_overhead_tiny", "tar_overhead_full", "scaling", "vs_freenoise",
                                              "wan_step_full", "frame_tar"]
    for _, _, (script, *argv) in steps:
        args = scripts[Path(script).stem].parse_args(argv)
        assert args.device == "cuda"
    assert sum(seconds for _, seconds, _ in steps) < 8 * 60


def threads() -> list[str]:
    return ["--threads", str(torch.get_num_threads())]  # the scripts set it process-wide


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_tar_overhead_measures_every_setting(scripts, tmp_path, capsys):
    out = tmp_path / "tar.csv"
    scripts["tar_overhead"].main(["--models", "tiny-modelscope", "--frames", "8", "--presets", "64D1",
                                  "--rounds", "1", "--csv", str(out), *threads()])
    rows = read_rows(out)
    assert [row["tar"] for row in rows] == ["off", "64D1", "64D1 inactive"]
    off, tar, inactive = rows
    assert float(tar["tar_layer_seconds"]) > 0 and float(inactive["tar_layer_seconds"]) == 0
    assert float(tar["paired_time_ratio"]) == pytest.approx(1 + float(tar["extra_per_forward"]))
    assert all(float(row["peak_mib"]) > 0 for row in rows)
    assert "paired x off" in capsys.readouterr().out


def test_scaling_writes_a_table_and_a_plot(scripts, tmp_path):
    scripts["scaling"].main(["--frames", "4", "8", "--chunks", "4:16", "--rounds", "1", "--out",
                             str(tmp_path / "scaling"), *threads()])
    rows = read_rows(tmp_path / "scaling.csv")
    assert [(row["frames"], row["setting"]) for row in rows] == [
        ("4", "whole"), ("4", "chunks 4:16"), ("8", "whole"), ("8", "chunks 4:16")]
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_vs_freenoise_compares_one_pass_with_windows(scripts, capsys):
    scripts["vs_freenoise"].main(["--frames", "20", "--rounds", "1", *threads()])
    out = capsys.readouterr().out
    assert all(name in out for name in ("one pass", "one pass, TAR 64D1", "FreeNoise 16/4"))


def test_wan_step_compares_per_frame_text_with_a_plain_prompt(scripts, tmp_path, capsys):
    out = tmp_path / "wan.csv"
    scripts["wan_step"].main(["--frames", "9", "--rounds", "1", "--csv", str(out), *threads()])
    rows = read_rows(out)
    assert [(row["frames"], row["latent_frames"], row["variant"]) for row in rows] == [
        ("9", "3", "VSP"), ("9", "3", "plain")]
    vsp, plain = rows
    assert float(plain["time_ratio"]) == float(plain["memory_ratio"]) == 1
    assert float(vsp["peak_mib"]) > float(plain["peak_mib"]) > 0  # 3 x 512 text tokens per video, not 512
    assert "tiny-wan 64x64" in capsys.readouterr().out


def test_wan_step_variants_differ_only_in_the_text_path(scripts):
    """With every synopsis state equal to the prompt, the per-frame call is the plain one: the A/B compares the
    same step with per-frame text against stock cross-attention."""
    wan_step = scripts["wan_step"]
    subject = wan_step.tiny_subject("tiny-wan2.2-ti2v", "cpu", torch.float64)
    subject.states = subject.prompt.expand(len(wan_step.STATES), -1, -1)
    inputs = subject.inputs(9)
    installs = subject.installs()
    with torch.no_grad():
        installs["VSP"]()
        (vsp,) = subject.forward(inputs, per_frame=True)
        installs["plain"]()
        (plain,) = subject.forward(inputs, per_frame=False)
    torch.testing.assert_close(vsp, plain, rtol=1e-10, atol=1e-12)


def test_wan_step_full_needs_a_gpu_and_defaults_to_bf16_at_81_and_161_frames(scripts, capsys):
    args = scripts["wan_step"].parse_args(["--full"])
    assert (args.frames, args.dtype) == ([81, 161], "bfloat16")
    with pytest.raises(SystemExit, match="use --device cuda"):
        scripts["wan_step"].main(["--full"])
    with pytest.raises(SystemExit):
        scripts["wan_step"].parse_args(["--frames", "8"])
    assert "4n+1" in capsys.readouterr().err


def test_memory_per_pixel_measures_a_full_size_wan_block(scripts, capsys):
    scripts["memory_per_pixel"].main(["--full", "wan2.1-t2v-1.3b", "--frames", "9", "13", "--size", "32", "32"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    name, frames, peaks, per_pixel = line.split(", ")
    assert name == "wan2.1-t2v-1.3b (full size; 1 block(s); float32; allocator peak)" and frames == "9->13"
    low, high = (float(mib) for mib in peaks.split("->"))
    assert 0 < low < high and float(per_pixel) > 0


def test_frame_tar_overhead_measures_layers_forwards_and_a_generation(scripts, tmp_path, capsys):
    out = tmp_path / "frame_tar.csv"
    scripts["frame_tar_overhead"].main(["--frames", "2", "3", "--tokens-per-frame", "8", "--rounds", "1",
                                        "--csv", str(out), *threads()])
    rows = read_rows(out)
    variants = ["stock", "TAR augment", "TAR blocks", "TAR bias only", "record", "identity", "uniform"]
    presets = ["off", "b0-1D2", "b0D2", "b0-1D2 inactive"]
    assert [(row["part"], row["frames"], row["variant"]) for row in rows] == [
        *(("layer", frames, name) for frames in ("2", "3") for name in variants),
        *(("forward", frames, name) for frames in ("2", "3") for name in presets)]
    for row in rows:
        assert float(row["seconds"]) > 0 and float(row["time_ratio"]) > 0
        assert float(row["peak_mib"]) > 0 and float(row["memory_ratio"]) > 0
        if row["variant"] in ("stock", "off"):
            assert float(row["time_ratio"]) == float(row["memory_ratio"]) == 1
        if row["part"] == "forward":
            assert float(row["paired_time_ratio"]) > 0
    for row in rows:
        if row["variant"] in ("b0-1D2", "b0D2"):  # TAR in the first 56% of the steps
            assert float(row["generation_ratio"]) == pytest.approx(1 + 0.56 * (float(row["time_ratio"]) - 1))
        else:
            assert row["generation_ratio"] == "nan"
    inactive = [row for row in rows if row["variant"] == "b0-1D2 inactive"]
    assert all(float(row["paired_time_ratio"]) == 1 for row in inactive)  # no active TAR layer to pair
    printed = capsys.readouterr().out
    assert "one spatio-temporal self-attention layer" in printed and "tiny-wan 64x64" in printed
    assert "1 + 0.56 x (forward ratio - 1)" in printed and "mostly its per-frame text path" in printed


def test_frame_tar_overhead_full_is_wan_size_and_needs_a_gpu(scripts):
    args = scripts["frame_tar_overhead"].parse_args(["--full"])
    assert (args.tokens_per_frame, args.heads, args.head_dim, args.dtype) == (1560, 12, 128, "bfloat16")
    assert args.frames == [21, 41]
    with pytest.raises(SystemExit, match="use --device cuda"):
        scripts["frame_tar_overhead"].main(["--full"])


def test_wan_presets_measure_what_tar_does_to_the_frame_maps(scripts, tmp_path):
    out = tmp_path / "presets.csv"
    scripts["wan_presets"].main(["--frames", "9", "--videos", "1", "--steps", "2", "--presets", "off", "b0D1",
                                 "--csv", str(out)])
    off, tar = read_rows(out)
    assert (off["preset"], tar["preset"], off["latent_frames"]) == ("off", "b0D1", "3")
    assert float(off["band"]) == float(off["band active"]) > 0
    assert float(tar["band active"]) < float(off["band active"])  # TAR keeps the queries nearer their own frame
    for row in (off, tar):
        assert float(row["latent step"]) > 0 and float(row["change"]) > 0 and float(row["flicker"]) > 0
