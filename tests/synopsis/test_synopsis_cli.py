"""The `synopsis` command of the vstar app."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from vstar.cli import app as vstar_app


@pytest.fixture
def app() -> typer.Typer:
    return vstar_app


def run(app, *args):
    return CliRunner().invoke(app, ["synopsis", *args])


def test_prints_one_state_per_line(app):
    result = run(app, "A landscape transitioning from winter to spring")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "A landscape in winter",
        "A landscape in late winter",
        "A landscape in early spring",
        "A landscape in spring",
    ]


def test_json_output(app):
    result = run(app, "A boy is getting old", "--json", "--states", "2", "--style", "4k")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == {"prompt": "A boy is getting old", "states": ["A young boy, 4k", "An old man, 4k"],
                    "backend": "rules", "model": None}


def test_openai_backend_flags(app, chat_server, tmp_path):
    chat_server.answer("1. **Youth:** A young boy\n2. **Age:** An old man")
    args = ["A boy is getting old", "--backend", "openai", "--model", "m1", "--base-url", chat_server.base_url]
    result = run(app, *args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["states"] == ["A young boy", "An old man"]
    assert json.loads(result.stdout)["model"] == "m1"
    assert chat_server.requests[0].body["model"] == "m1"
    assert run(app, *args).exit_code == 0 and len(chat_server.requests) == 1  # served from the cache
    chat_server.answer('["x", "y"]')
    assert run(app, *args, "--no-cache").stdout.splitlines() == ["x", "y"]


def test_manual_file_and_states(app, tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"prompt": "p1", "subprompts": ["a", "b"]}, {"prompt": "p2", "subprompts": ["c"]}]))
    assert run(app, "--file", str(path), "--select", "1").stdout.splitlines() == ["c"]
    assert run(app, "p1", "--file", str(path)).stdout.splitlines() == ["a", "b"]
    result = run(app, "p", "--manual-state", "one", "--manual-state", "two")
    assert result.stdout.splitlines() == ["one", "two"]


def test_single_state_note_goes_to_stderr(app):
    result = run(app, "A cat sitting on a sofa")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["A cat sitting on a sofa"]
    assert "note: no change" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a prompt"),
        (["   "], "prompt is empty"),
        (["p", "--backend", "nope"], "unknown backend 'nope'"),
        (["p", "--min-states", "5", "--max-states", "2"], "larger than max_states"),
        (["p", "--states", "20"], "outside min_states..max_states"),
        (["p", "--file", "/nonexistent/f.json"], "synopsis file not found"),
        (["p", "--model", "llama3"], "cannot tell who serves"),
        (["p", "--backend", "openai", "--base-url", "localhost:1234"], "base_url must be an http"),
        (["p", "--states", "many"], "Invalid value"),
    ],
)
def test_bad_input_exits_2_without_traceback(app, args, message):
    result = run(app, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


def test_backend_failure_exits_1(app, chat_server):
    chat_server.reply(401, {"error": {"message": "bad key"}})
    result = run(app, "p", "--backend", "openai", "--base-url", chat_server.base_url, "--model", "m")
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "HTTP 401" in result.stderr
    assert "Traceback" not in result.output


def test_unparseable_answer_exits_1(app, chat_server):
    chat_server.answer("Sorry, I can't do that.")
    result = run(app, "p", "--base-url", chat_server.base_url, "--model", "m")
    assert result.exit_code == 1
    assert "could not be turned into states" in result.stderr
