"""make_synopsis: backend choice, bounds, style, cache, the instruction template, and the no-torch rule."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import vstar.synopsis as vs
from vstar.synopsis import (
    INSTRUCTION_VERSION,
    LLMBackend,
    SynopsisCache,
    SynopsisInputError,
    apply_style,
    build_messages,
    get_backend,
    make_synopsis,
)
from vstar.synopsis.cache import default_root

PACKAGE = Path(vs.__file__).parent


class Canned(LLMBackend):
    """A custom backend through the public interface: always answers the same text."""

    name = "canned"

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls = 0

    @property
    def model(self) -> str:
        return "canned-1"

    def chat(self, messages):
        self.calls += 1
        return self.answer


def test_instruction_is_the_papers_one_shot_template_plus_json():
    system, user = build_messages("A peony starts to bloom, in the field")
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert text.startswith('I have a prompt "A peony starts to bloom, in the field" for video generation. Can you '
                           "split the process and describe the states separately?")
    for sentence in (
        "Each state is described in only one sentence and please consider the coherency between sub-prompts.",
        "Please be straightforward and do not use a narrative style.",
        'For example, for prompt "a boy is getting old", it can be divided into two states, e.g., "a young boy" '
        'and "an old man".',
        "Based on this example, can you provide the description? The number of states is not limited to two.",
        "Answer with only a JSON array of strings",
    ):
        assert sentence in text
    assert "Use exactly 4 states." in build_messages("p", 4)[1]["content"]
    assert INSTRUCTION_VERSION


def test_custom_backend_instance():
    synopsis = make_synopsis("A boy is getting old", backend=Canned("1. a young boy\n2. an old man"), cache=False)
    assert synopsis.states == ["a young boy", "an old man"]
    assert (synopsis.backend, synopsis.model) == ("canned", "canned-1")


def test_style_is_appended_to_every_state():
    synopsis = make_synopsis("A boy is getting old", backend="rules", style=", realistic, best quality, 4k")
    assert synopsis.style == "realistic, best quality, 4k"
    assert all(s.endswith(", realistic, best quality, 4k") for s in synopsis.states)
    assert synopsis.states[0] == "A young boy, realistic, best quality, 4k"


def test_apply_style_details():
    assert apply_style(["A snowy landscape.", "A green landscape, 4k"], "4k") == [
        "A snowy landscape, 4k",
        "A green landscape, 4k",
    ]
    assert apply_style(["a"], "  ") == ["a"]
    assert apply_style(["a"], None) == ["a"]


def test_cached_llm_answers(tmp_path):
    backend = Canned('["a", "b"]')
    make_synopsis("p", backend=backend)
    again = make_synopsis("p", backend=backend)
    assert backend.calls == 1 and again.cached
    files = list((tmp_path / "cache" / "synopsis").glob("*.json"))
    record = json.loads(files[0].read_text())
    assert record["raw"] == '["a", "b"]' and record["instruction"] == INSTRUCTION_VERSION


def test_cache_dir_argument_and_broken_entries(tmp_path):
    backend = Canned('["a", "b"]')
    make_synopsis("p", backend=backend, cache=tmp_path / "elsewhere")
    [entry] = (tmp_path / "elsewhere" / "synopsis").glob("*.json")
    entry.write_text("{broken")
    assert not make_synopsis("p", backend=backend, cache=tmp_path / "elsewhere").cached
    assert backend.calls == 2


def test_cache_root(monkeypatch, tmp_path):
    assert default_root() == tmp_path / "cache"
    monkeypatch.delenv("VSTAR_CACHE_DIR")
    from platformdirs import user_cache_dir

    assert default_root() == Path(user_cache_dir("vstar"))
    assert SynopsisCache.key({"a": 1, "b": 2}) == SynopsisCache.key({"b": 2, "a": 1})


def test_rules_and_manual_are_never_cached(tmp_path):
    make_synopsis("A boy is getting old", backend="rules")
    make_synopsis("p", states=["a", "b"])
    assert not (tmp_path / "cache").exists()


def test_auto_picks_openai_when_configured(chat_server, monkeypatch):
    chat_server.answer('["a", "b"]')
    assert make_synopsis("p", base_url=chat_server.base_url, model="m").backend == "openai"
    monkeypatch.setenv("VSTAR_LLM_BASE_URL", chat_server.base_url)
    chat_server.answer('["c", "d"]')
    synopsis = make_synopsis("q")
    assert (synopsis.backend, synopsis.states) == ("openai", ["c", "d"])


def test_auto_ignores_a_lone_openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert make_synopsis("A boy is getting old").backend == "rules"


def test_synopsis_to_dict_is_json():
    synopsis = make_synopsis("A boy is getting old", backend="rules")
    data = json.loads(json.dumps(synopsis.to_dict()))
    assert data["states"] == synopsis.states and data["backend"] == "rules"
    assert len(synopsis) == len(synopsis.states)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": None}, "prompt must be a string"),
        ({"backend": "gpt"}, "unknown backend 'gpt'; choose one of: auto, openai, transformers, rules, manual"),
        ({"backend": 3}, "backend must be a name"),
        ({"min_states": 5, "max_states": 3}, r"min_states \(5\) is larger than max_states \(3\)"),
        ({"min_states": 0}, "min_states must be an integer >= 1"),
        ({"num_states": 12}, r"num_states=12 is outside min_states..max_states \(2..8\)"),
        ({"num_states": 0}, "num_states must be an integer >= 1"),
        ({"backend": "rules", "model": "x"}, "backend 'rules' does not take the option"),
        ({"model": "llama3"}, "cannot tell who serves the model 'llama3'"),
        ({"style": 4}, "style must be a string"),
        ({"cache": 3}, "cache must be True, False or a directory"),
        ({"backend": "manual", "file": "/nonexistent/synopsis.json"}, "synopsis file not found"),
    ],
)
def test_bad_input(kwargs, message):
    kwargs = {"prompt": "A boy is getting old", **kwargs}
    prompt = kwargs.pop("prompt")
    if "cache" in kwargs:
        kwargs["backend"] = Canned('["a", "b"]')
    with pytest.raises(SynopsisInputError, match=message):
        make_synopsis(prompt, **kwargs)


def test_bad_input_errors_are_value_errors():
    with pytest.raises(ValueError):
        make_synopsis("")


def test_backend_instance_with_options():
    with pytest.raises(SynopsisInputError, match="cannot be combined"):
        get_backend(Canned("x"), model="m")


def _imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_package_never_imports_torch_and_transformers_only_lazily():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert "torch" not in _imports(tree, top_level_only=False), path
        assert "transformers" not in _imports(tree, top_level_only=True), path


def test_a_cached_answer_that_no_longer_parses_is_a_miss_and_is_overwritten(tmp_path):
    backend = Canned('["a", "b"]')
    make_synopsis("p", backend=backend)
    [entry] = (tmp_path / "cache" / "synopsis").glob("*.json")
    record = json.loads(entry.read_text())
    entry.write_text(json.dumps({**record, "raw": "no states in here"}))  # e.g. written by an older parser
    healed = make_synopsis("p", backend=backend)
    assert not healed.cached and healed.states == ["a", "b"] and backend.calls == 2
    assert json.loads(entry.read_text())["raw"] == '["a", "b"]'
    assert make_synopsis("p", backend=backend).cached and backend.calls == 2


def test_auto_falls_back_to_the_rules_with_a_note_when_the_llm_is_unreachable(monkeypatch):
    monkeypatch.setenv("VSTAR_LLM_API_KEY", "sk-only-a-key")
    monkeypatch.setenv("VSTAR_LLM_BASE_URL", "http://user:hunter2@127.0.0.1:9/v1")
    synopsis = make_synopsis("a landscape from winter to spring", timeout=0.5)
    assert synopsis.backend == "rules" and len(synopsis.states) >= 2
    assert any("offline rules" in note and "cannot reach" in note for note in synopsis.notes)
    assert not any("hunter2" in note or "sk-only-a-key" in note for note in synopsis.notes)


def test_an_explicit_backend_does_not_fall_back():
    from vstar.synopsis import BackendError

    with pytest.raises(BackendError):
        make_synopsis("a landscape from winter to spring", backend="openai", base_url="http://127.0.0.1:9/v1",
                      model="m", timeout=0.5)
