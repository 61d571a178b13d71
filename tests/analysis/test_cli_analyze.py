"""`vstar analyze` on tiny models: a real clip's attention, a generation's, TAR's bands, and errors."""

import json

import numpy as np
import pytest
from synthetic_videos import pan
from typer.testing import CliRunner

from vstar.analysis.real_video import fit_frames, pick_frames
from vstar.cli import app
from vstar.io import read_video, write_video

runner = CliRunner()


def vstar(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(pan(1.0, frames=12, size=48), path)
    return path


def test_frames_are_picked_evenly_resized_and_centre_cropped():
    np.testing.assert_array_equal(pick_frames(10, 4), [0, 3, 6, 9])
    wide = np.zeros((1, 20, 40, 3), np.uint8)
    wide[:, :, 10:30] = 255  # the centre half is white
    fitted = fit_frames(wide, 10, 10)
    assert fitted.shape == (1, 10, 10, 3) and fitted.min() == 255
    with pytest.raises(ValueError, match="--frames 11: the video has 10 frames; use --frames between 2 and 10"):
        pick_frames(10, 11)
    with pytest.raises(ValueError, match="use --frames between 2 and 10"):
        pick_frames(10, 1)
    with pytest.raises(ValueError, match="the video has 1 frame.*temporal attention needs at least 2"):
        pick_frames(1, 1)


def test_analyze_a_real_clip_writes_maps_scores_and_plots(clip, tmp_path):
    out = tmp_path / "analysis"
    result = vstar("analyze", clip, "--model", "toy-shapes", "--frames", 8, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "attention.json").read_text())
    assert data["settings"] | {"timestep": 400, "frames": 8, "height": 32, "width": 32} == data["settings"]
    (entry,) = data["videos"].values()
    assert entry["source"] == str(clip) and set(entry["levels"]) == {"init", "64", "32", "16"}
    for level in entry["levels"].values():
        matrix = np.array(level["map"])
        assert matrix.shape == (8, 8) and np.allclose(matrix.sum(-1), 1, atol=1e-5)
        assert 0 <= level["band_score"] <= 7
    assert (out / "attention.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "attention.pdf").read_bytes().startswith(b"%PDF")
    again = vstar("analyze", clip, "--model", "toy-shapes", "--frames", 8, "--device", "cpu", "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_analyze_real_and_generated_side_by_side_with_bands(clip, tmp_path):
    out = tmp_path / "both"
    result = vstar("analyze", clip, "--generate", "a red circle", "--model", "tiny-modelscope", "--frames", 6,
                   "--steps", 2, "--device", "cpu", "--plot-band", "1,2,4", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "attention.json").read_text())
    assert list(data["videos"]) == ["real: clip.mp4", "generated: a red circle"]
    assert "generated: a red circle: band score (expected frame distance) per level: init" in result.output
    generated = data["videos"]["generated: a red circle"]
    assert generated["settings"]["num_frames"] == 6 and generated["settings"]["tar"] == "64D1"
    assert read_video(out / "generated.mp4").shape[0] == 6
    for name in ("bands.png", "bands.pdf", "attention.png"):
        assert (out / name).stat().st_size > 0


def test_generation_with_a_replacement_records_the_fixed_map(tmp_path):
    out = tmp_path / "replaced"
    result = vstar("analyze", "--generate", "a red circle", "--model", "tiny-modelscope", "--frames", 5, "--steps", 2,
                   "--no-tar", "--replace-attention", "identity:32", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    generated = json.loads((out / "attention.json").read_text())["videos"]["generated: a red circle"]
    assert generated["settings"]["replace_attention"] == "identity:32"
    assert generated["levels"]["32"]["band_score"] == pytest.approx(0.0, abs=1e-6)
    assert generated["levels"]["64"]["band_score"] > 0.5


def test_plot_band_alone_needs_no_model(tmp_path):
    result = vstar("analyze", "--plot-band", "1,2,4,8,16", "--frames", 16, "--out", tmp_path / "bands")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "bands").iterdir()) == ["bands.pdf", "bands.png"]


def test_analyze_refuses_bad_input_before_loading(clip, tmp_path):
    for args, message in [
        ((), "give a VIDEO"),
        ((tmp_path / "none.mp4",), "none.mp4 does not exist"),
        (("--plot-band", "1,x"), "--plot-band takes positive sigmas"),
        ((clip, "--model", "nope"), "nope"),
        ((clip, "--frames", 1), "--frames must be >= 2"),
        (("--generate", "a cat", "--model", "tiny-modelscope", "--tar", "99D1"), "cannot parse TAR preset"),
        ((clip, "--replace-attention", "identity:64"), "add --generate PROMPT"),
        (("--generate", "a cat", "--model", "tiny-modelscope", "--replace-attention", "identity:64"),
         "both set the attention of level"),
    ]:
        result = vstar("analyze", *args, "--out", tmp_path / "x")
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    result = vstar("analyze", clip, "--model", "toy-shapes", "--frames", 20, "--device", "cpu", "--out", tmp_path / "y")
    assert result.exit_code == 2 and "--frames 20: the video has 12 frames" in result.output
