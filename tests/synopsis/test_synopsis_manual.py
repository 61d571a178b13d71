"""The manual backend and synopsis files, including the paper's prompt_list.json format."""

from __future__ import annotations

import json

import pytest

from vstar.synopsis import ManualBackend, SynopsisInputError, load_synopsis_file, make_synopsis

ENTRY = {"prompt": "A boy is getting old", "subprompts": ["a young boy", "an old man"]}


def test_paper_prompt_list_round_trips_unchanged(prompt_list, tmp_path):
    path = tmp_path / "prompt_list.json"
    path.write_text(json.dumps(prompt_list), encoding="utf-8")
    for index, entry in enumerate(prompt_list):
        by_index = load_synopsis_file(path, select=index)
        by_prompt = load_synopsis_file(path, select=entry["prompt"])
        via_api = make_synopsis(entry["prompt"], backend="manual", file=path)
        for synopsis in (by_index, by_prompt, via_api):
            assert synopsis.prompt == entry["prompt"]
            assert synopsis.states == entry["subprompts"]
            assert synopsis.backend == "manual"


def test_the_shared_file_itself_loads(prompt_list_path):
    synopsis = load_synopsis_file(prompt_list_path, select=2)
    assert len(synopsis.states) == 9  # more than max_states: manual states are never trimmed
    assert make_synopsis(synopsis.prompt, file=prompt_list_path).states == synopsis.states


def test_single_object(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(ENTRY))
    synopsis = load_synopsis_file(path)
    assert (synopsis.prompt, synopsis.states) == (ENTRY["prompt"], ENTRY["subprompts"])
    # a single entry is used whatever the synopsis prompt says
    assert make_synopsis("another prompt", backend="manual", file=path).states == ENTRY["subprompts"]


def test_plain_list_and_states_key(tmp_path):
    (tmp_path / "list.json").write_text('["a", "b", "c"]')
    (tmp_path / "states.json").write_text('{"prompt": "p", "states": ["a", "b"]}')
    assert load_synopsis_file(tmp_path / "list.json", prompt="p").states == ["a", "b", "c"]
    assert load_synopsis_file(tmp_path / "list.json", prompt="p").prompt == "p"
    assert load_synopsis_file(tmp_path / "states.json").states == ["a", "b"]


def test_yaml_and_text(tmp_path):
    (tmp_path / "s.yaml").write_text("- prompt: p1\n  subprompts: [a, b]\n- prompt: p2\n  subprompts:\n    - c\n    - d\n")
    (tmp_path / "s.txt").write_text("# my states\nA landscape in winter\n\nA landscape in spring\n")
    assert load_synopsis_file(tmp_path / "s.yaml", select="p2").states == ["c", "d"]
    assert load_synopsis_file(tmp_path / "s.txt").states == ["A landscape in winter", "A landscape in spring"]


def test_select_by_prompt_ignores_case_and_spacing(tmp_path):
    path = tmp_path / "many.json"
    path.write_text(json.dumps([ENTRY, {"prompt": "A flower starts to bloom", "subprompts": ["bud", "bloom"]}]))
    assert load_synopsis_file(path, select="a flower  starts to bloom.").states == ["bud", "bloom"]
    assert load_synopsis_file(path, select="-1").states == ["bud", "bloom"]
    assert make_synopsis("A FLOWER starts to bloom", file=path).states == ["bud", "bloom"]


def test_states_given_directly():
    synopsis = make_synopsis("p", states=["one", "two"], style="4k")
    assert synopsis.backend == "manual"
    assert synopsis.states == ["one, 4k", "two, 4k"]
    assert make_synopsis("p", backend="manual", states=["only one"]).states == ["only one"]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("{not json", ".json", r"not valid JSON \(line 1"),
        ("[1, 2]", ".json", "does not hold a synopsis"),
        ("[]", ".json", "non-empty list"),
        ('{"prompt": "p"}', ".json", 'no "subprompts"'),
        ('{"prompt": "p", "subprompts": []}', ".json", "non-empty list"),
        ('{"prompt": "p", "subprompts": ["a", ""]}', ".json", r"subprompts\[1\] must be a non-empty string"),
        ('{"prompt": 3, "subprompts": ["a"]}', ".json", '"prompt" must be a string'),
        ("a: [b", ".yaml", "not valid YAML"),
    ],
)
def test_bad_files(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(SynopsisInputError, match=message):
        load_synopsis_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(SynopsisInputError, match="synopsis file not found"):
        load_synopsis_file(tmp_path / "nope.json")


def test_ambiguous_or_wrong_selection(tmp_path):
    path = tmp_path / "many.json"
    path.write_text(json.dumps([ENTRY, {"prompt": "q", "subprompts": ["x", "y"]}]))
    with pytest.raises(SynopsisInputError, match=r"holds 2 entries.*select=<index 0..1>"):
        load_synopsis_file(path)
    with pytest.raises(SynopsisInputError, match="out of range"):
        load_synopsis_file(path, select=5)
    with pytest.raises(SynopsisInputError, match="no entry .* has the prompt 'zzz'"):
        load_synopsis_file(path, select="zzz")
    with pytest.raises(SynopsisInputError, match="no entry has the prompt 'unrelated'"):
        make_synopsis("unrelated", file=path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "needs states"), ({"states": "a b"}, "not one string"), ({"states": []}, "non-empty list"),
     ({"states": ["a", 3]}, r"states\[1\]"), ({"states": ["a"], "file": "x.json"}, "not both")],
)
def test_bad_manual_options(kwargs, message):
    with pytest.raises(SynopsisInputError, match=message):
        ManualBackend(**kwargs)
