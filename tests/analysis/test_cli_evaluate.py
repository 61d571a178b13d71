"""`vstar evaluate` on synthetic videos written to disk: the JSON schema, the table, the plot, errors."""

import json
import re

import numpy as np
import pytest
from synthetic_videos import fade, pan, static
from typer.testing import CliRunner

from vstar.analysis.evaluation import summary_table
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


def cells(line):
    """``(text, end column)`` of each cell of a table line (cells hold single spaces, gaps are wider)."""
    return [(m.group(), m.end()) for m in re.finditer(r"\S+(?: \S+)*", line)]


def assert_table(table, names):
    """Labels in the first column, one right-aligned column per name, at least two spaces between cells."""
    header, *rows = table.splitlines()
    assert [text for text, _ in cells(header)] == names, header
    ends = [end for _, end in cells(header)]
    label_width = max(len(cells(row)[0][0]) for row in rows)
    for row in rows:
        (label, _), *values = cells(row)
        assert row.startswith(label) and [end for _, end in values] == ends, (header, row)
        starts = [end - len(text) for text, end in values]
        assert starts[0] >= label_width + 2 and all(b - a >= 2 for a, b in zip(ends[:-1], starts[1:], strict=True)), row


def test_summary_columns_fit_long_names_and_values():
    result = {"frames": 16, "flicker": 0.0123, "flow_magnitude": 12.345, "dynamic_degree": 0.5, "dynamic": True,
              "change_from_first": [0.0, 0.25], "similarity": {"histogram": [[1.0, 0.5]]},
              "similarity_by_interval": {"histogram": {"1": [0.4, 0.5, 0.6]}}}
    names = ["a.mp4", "a generated video with a rather long name.mp4", "b.gif"]
    table = summary_table([result, {**result, "dynamic": False}, result], names)
    assert_table(table, names)
    assert "0.50 (dynamic)  0.50" not in table  # a short name is widened to its longest value, not squeezed
    assert [text for text, _ in cells(table.splitlines()[4])] == ["dynamic degree", "0.50 (dynamic)", "0.50",
                                                                  "0.50 (dynamic)"]


def test_evaluate_table_with_a_long_file_name(videos, tmp_path):
    long_name = tmp_path / "the_still_scene_from_the_first_experiment_of_the_paper"
    videos["still"].rename(long_name)
    result = vstar("evaluate", long_name, videos["pan"], videos["fade"])
    assert result.exit_code == 0, result.output
    assert_table(result.output.rstrip("\n"), [long_name.name, "pan.mp4", "fade.gif"])


def test_evaluate_reports_a_bad_video_in_one_line(videos, tmp_path):
    text, empty, no_pngs = tmp_path / "notes.mp4", tmp_path / "empty.gif", tmp_path / "nothing"
    text.write_text("not a video")
    empty.write_bytes(b"")
    no_pngs.mkdir()
    for bad, reason in [(text, "not a video"), (empty, "empty"), (no_pngs, "holds no PNG frames")]:
        result = vstar("evaluate", videos["pan"], bad)
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"error: could not read {bad}: ") and reason in result.output
        assert result.output.count("\n") == 1 and "ffmpeg" not in result.output.lower(), result.output
