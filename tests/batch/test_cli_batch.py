"""`vstar batch` on the toy model: one video per item, the same as `vstar generate` makes alone, resumable,
failures recorded, --vary grids, summary.json and a gallery whose every link works."""

import json
import re
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from vstar.cli import app
from vstar.pipeline import VSTARPipeline

TOY = ["--model", "toy-shapes", "--frames", "8", "--steps", "2", "--quiet"]
ITEMS = [{"prompt": "a red circle turning into a blue square"},
         {"prompt": "a <b>green</b> triangle & a square", "synopsis": ["a green triangle", "a green square"]},
         {"prompt": "a yellow circle", "seed": 42, "name": "yellow", "num_frames": 12}]


def vstar(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    return path


def sidecar(folder, name):
    return json.loads((folder / f"{name}.json").read_text())


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for key, value in attrs if key in ("src", "href")]


def test_a_batch_makes_every_item_as_generate_would_alone(tmp_path, prompts):
    out = tmp_path / "runs"
    result = vstar("batch", prompts, "--out-dir", out, "--seed", 5, *TOY)
    assert result.exit_code == 0, result.output
    names = ["0000-a-red-circle-turning-into-a-blue-square", "0001-a-b-green-b-triangle-a-square", "yellow"]
    assert [sidecar(out, n)["settings"]["seed"] for n in names] == [5, 6, 42]
    assert sidecar(out, "yellow")["settings"]["num_frames"] == 12
    assert sidecar(out, names[1])["synopsis"] == ["a green triangle", "a green square"]
    alone = tmp_path / "alone.mp4"
    assert vstar("generate", ITEMS[0]["prompt"], "--seed", 5, *TOY, "--out", alone).exit_code == 0
    assert alone.read_bytes() == (out / f"{names[0]}.mp4").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "batch" and summary["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    assert [(r["name"], r["line"], r["output"], r["sidecar"]) for r in summary["items"]] == [
        (n, i + 1, f"{n}.mp4", f"{n}.json") for i, n in enumerate(names)]
    assert all(r["seconds"] > 0 and r["peak_memory_gib"] > 0 for r in summary["items"])

    page = (out / "index.html").read_text()
    parser = Links()
    parser.feed(page)
    assert sorted(parser.links) == sorted(f"{n}{s}" for n in names for s in (".mp4", ".json"))
    assert all((out / link).is_file() for link in parser.links)
    assert "a &lt;b&gt;green&lt;/b&gt; triangle &amp; a square" in page and "<b>green" not in page


def test_a_second_run_skips_what_is_made_and_refuses_changed_settings(tmp_path, prompts):
    out = tmp_path / "runs"
    assert vstar("batch", prompts, "--out-dir", out, *TOY).exit_code == 0
    video = out / "yellow.mp4"
    made = video.stat().st_mtime_ns
    again = vstar("batch", prompts, "--out-dir", out, *TOY)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "summary.json").read_text())["counts"] == {"done": 0, "skipped": 3, "failed": 0}
    assert video.stat().st_mtime_ns == made
    changed = vstar("batch", prompts, "--out-dir", out, *TOY, "--guidance", 2)
    assert changed.exit_code == 2
    assert re.search(r"prompts.jsonl:1: .* was made with other settings \(guidance_scale 5.0 -> 2.0\); pass "
                     r"--overwrite", changed.output)
    assert video.stat().st_mtime_ns == made
    replaced = vstar("batch", prompts, "--out-dir", out, *TOY, "--guidance", 2, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sidecar(out, "yellow")["settings"]["guidance_scale"] == 2.0


def interrupt_at(monkeypatch, prompt, error):
    """The pipeline raises ``error`` when it is asked for ``prompt``."""
    call = VSTARPipeline.__call__

    def failing(self, text, *args, **kwargs):
        if text == prompt:
            raise error
        return call(self, text, *args, **kwargs)

    monkeypatch.setattr(VSTARPipeline, "__call__", failing)


def test_an_interrupted_batch_leaves_no_partial_file_and_continues(tmp_path, prompts, monkeypatch):
    out = tmp_path / "runs"
    interrupt_at(monkeypatch, ITEMS[1]["prompt"], KeyboardInterrupt())
    vstar("batch", prompts, "--out-dir", out, *TOY)
    assert sorted(p.name for p in out.iterdir()) == ["0000-a-red-circle-turning-into-a-blue-square.json",
                                                     "0000-a-red-circle-turning-into-a-blue-square.mp4"]
    monkeypatch.undo()
    result = vstar("batch", prompts, "--out-dir", out, *TOY)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["counts"] == {"done": 2, "skipped": 1, "failed": 0}


@pytest.mark.parametrize("go_on", [False, True])
def test_a_failing_item_stops_the_batch_unless_continue_on_error(tmp_path, prompts, monkeypatch, go_on):
    out = tmp_path / "runs"
    interrupt_at(monkeypatch, ITEMS[1]["prompt"], RuntimeError("out of memory"))
    result = vstar("batch", prompts, "--out-dir", out, *TOY, *(["--continue-on-error"] if go_on else []))
    assert result.exit_code == 1
    assert "prompts.jsonl:2: out of memory" in result.output
    assert "1 of 3 videos failed" in result.output
    rows = json.loads((out / "summary.json").read_text())["items"]
    assert [r["status"] for r in rows] == (["done", "failed", "done"] if go_on else ["done", "failed"])
    assert (out / "yellow.mp4").exists() == go_on
    assert "prompts.jsonl:2: out of memory</div>" in (out / "index.html").read_text()


def test_vary_runs_every_item_under_each_value(tmp_path, prompts):
    out = tmp_path / "grid"
    result = vstar("batch", prompts, "--out-dir", out, *TOY, "--vary", "tar=off,64D1")
    assert result.exit_code == 0, result.output
    for folder, tar in (("tar-off", None), ("tar-64D1", "64D1")):
        assert [sidecar(out / folder, n)["settings"]["tar"] for n in ("yellow",)] == [tar]
        assert len(list((out / folder).glob("*.mp4"))) == 3
    parser = Links()
    parser.feed((out / "index.html").read_text())
    assert len(parser.links) == 12 and all((out / link).is_file() for link in parser.links)
    clash = vstar("batch", prompts, "--out-dir", out, *TOY, "--vary", "frames=8,16")
    assert clash.exit_code == 2 and "prompts.jsonl:3: the item sets num_frames, which --vary varies" in clash.output


@pytest.mark.parametrize(("line", "message"), [
    ('{"prompt": "ok", "num_frames": 1}', "prompts.jsonl:4: num_frames must be >= 2"),
    ('{"prompt": "ok", "tar": "99Z9"}', "prompts.jsonl:4: "),
    ('{"prompt": "ok", "synopsis": ["a", "b", "c", "d", "e", "f", "g"], "num_frames": 4}',
     "prompts.jsonl:4: 7 synopsis states do not fit on 4 frames"),
])
def test_a_bad_entry_fails_before_any_model_loads(tmp_path, prompts, monkeypatch, line, message):
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before every item was checked")

    monkeypatch.setattr(VSTARPipeline, "from_pretrained", forbidden)
    prompts.write_text(prompts.read_text() + line + "\n")
    result = vstar("batch", prompts, "--out-dir", tmp_path / "runs", *TOY)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
