"""`vstar evaluate` on synthetic videos written to disk: the JSON schema, the table, the plot, errors."""

import json

import numpy as np
import pytest
from synthetic_videos import fade, pan, static
from typer.testing import CliRunner

from vstar.cli import app
from vstar.io import write_video

runner = CliRunner()


def vstar(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def videos(tmp_path):
    paths = {"still": tmp_path / "still", "fade": tmp_path / "fade.gif", "pan": tmp_path / "pan.mp4"}
    write_video(static(frames=6, size=32), paths["still"])
    write_video(fade(frames=6, size=32), paths["fade"])
    write_video(pan(1.0, frames=6, size=64), paths["pan"])
    return paths


def test_evaluate_writes_the_json_schema_and_a_plot(videos, tmp_path):
    out, plot = tmp_path / "metrics.json", tmp_path / "metrics.png"
    result = vstar("evaluate", videos["still"], videos["fade"], videos["pan"], "--json", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "flicker" in result.output and "still" in result.output and "pan.mp4" in result.output
    still, fading, panning = json.loads(out.read_text())["videos"]
    assert still["path"] == str(videos["still"]) and still["frames"] == 6
    assert still["flicker"] == 0 and still["dynamic_degree"] == 0 and not still["dynamic"]
    for metric in ("ssim", "mae", "histogram"):
        np.testing.assert_allclose(still["similarity"][metric], np.ones((6, 6)), atol=1e-6)
        assert set(still["similarity_by_interval"][metric]) == {"1", "2", "3", "4", "5"}
    np.testing.assert_allclose(fading["change_from_first"], np.arange(6) / 5, atol=2 / 255)
    assert panning["flow_magnitude"] == pytest.approx(1.0, rel=0.15)  # through H.264 and back
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_evaluate_checks_everything_before_reading_a_video(videos, tmp_path):
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    for args, message in [
        (("--metric", "lpips"), "unknown similarity metric 'lpips'"),
        (("--metric", "latent"), "give --model"),
        (("--plot", tmp_path / "plot.jpg"), "plot.png"),
        (("--json", existing), "--overwrite"),
        (("--model", "no-such-model"), "no-such-model"),
    ]:
        result = vstar("evaluate", videos["still"], *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    result = vstar("evaluate", tmp_path / "missing.mp4")
    assert result.exit_code == 2 and "missing.mp4 does not exist" in result.output


def test_evaluate_latent_similarity_with_a_model(videos, tmp_path):
    out = tmp_path / "latent.json"
    result = vstar("evaluate", videos["pan"], "--metric", "latent", "--model", "tiny-modelscope", "--device", "cpu",
                   "--json", out)
    assert result.exit_code == 0, result.output
    matrix = np.array(json.loads(out.read_text())["videos"][0]["similarity"]["latent"])
    assert matrix.shape == (6, 6) and np.allclose(np.diag(matrix), 1)
