"""`vstar evaluate DIR [DIR...]` over batch folders: per-item rows, mean and std per folder, paired differences
on shared items, missing items named; JSON, CSV and a plot."""

import csv
import json

import pytest
from typer.testing import CliRunner

from vstar.cli import app

TOY = ["--model", "toy-shapes", "--frames", "8", "--steps", "2", "--quiet"]


def vstar(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A --vary batch of three prompts under TAR off and on."""
    folder = tmp_path_factory.mktemp("eval")
    (folder / "p.txt").write_text("a red circle turning into a blue square\na green triangle\na yellow square\n")
    result = vstar("batch", folder / "p.txt", "--out-dir", folder / "grid", *TOY, "--vary", "tar=off,64D1")
    assert result.exit_code == 0, result.output
    return folder / "grid"


def test_folders_are_compared_item_by_item(grid, tmp_path):
    for video in (grid / "tar-64D1").glob("0002-*"):  # one item missing in the second folder
        video.unlink()
    result = vstar("evaluate", grid / "tar-off", grid / "tar-64D1", "--json", tmp_path / "e.json",
                   "--csv", tmp_path / "e.csv", "--plot", tmp_path / "e.png")
    assert result.exit_code == 0, result.output
    assert "missing in" in result.output and "0002-a-yellow-square" in result.output
    record = json.loads((tmp_path / "e.json").read_text())
    off, on = str(grid / "tar-off"), str(grid / "tar-64D1")
    assert list(record["items"]) == [off, on] and len(record["items"][off]) == 3 and len(record["items"][on]) == 2
    assert record["missing"] == {on: ["0002-a-yellow-square"]}
    flow = [v["flow_magnitude"] for v in record["items"][off].values()]
    mean = sum(flow) / 3
    assert record["aggregate"][off]["flow_magnitude"]["mean"] == pytest.approx(mean)
    assert record["aggregate"][off]["flow_magnitude"]["std"] == pytest.approx(
        (sum((f - mean) ** 2 for f in flow) / 2) ** 0.5)
    shared = list(record["items"][on])
    difference = record["differences"][f"{on} - {off}"]["change_from_first"]
    assert difference["n"] == 2 and difference["mean"] == pytest.approx(
        sum(record["items"][on][n]["change_from_first"] - record["items"][off][n]["change_from_first"]
            for n in shared) / 2)
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert [(r["folder"], r["item"]) for r in rows] == [(off, n) for n in record["items"][off]] + [(on, n) for n in shared]
    assert (tmp_path / "e.png").stat().st_size > 0


def test_a_vary_batch_stands_for_its_sub_folders(grid):
    result = vstar("evaluate", grid)
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == [f"{grid}/tar-off", f"{grid}/tar-64D1", f"{grid}/tar-64D1", "-", f"{grid}/tar-off"]


def test_videos_and_folders_do_not_mix(grid):
    video = next((grid / "tar-off").glob("*.mp4"))
    result = vstar("evaluate", grid / "tar-off", video)
    assert result.exit_code == 2 and "give videos or batch folders, not both" in result.output
    result = vstar("evaluate", video, "--csv", grid / "x.csv")
    assert result.exit_code == 2 and "--csv writes the rows of batch folders" in result.output
