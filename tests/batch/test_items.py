"""Reading prompt files (three formats), stable names and seeds, line numbers in errors, the split and --vary."""

import json

import pytest

from vstar.batch import Processes, item_seed, parse_vary, read_items

PAPER_FILE = """[
    {
        "prompt": "A boy is getting old",
        "subprompts": ["A young boy", "An old man"]
    },
    {
        "prompt": "A flower blooms",
        "subprompts": ["A bud", "A flower"]
    }
]
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_papers_prompt_list_json(tmp_path):
    items = read_items(write(tmp_path, "prompts.json", PAPER_FILE))
    assert [(i.index, i.line, i.prompt, i.states) for i in items] == [
        (0, 2, "A boy is getting old", ("A young boy", "An old man")),
        (1, 6, "A flower blooms", ("A bud", "A flower"))]
    assert [i.name for i in items] == ["0000-a-boy-is-getting-old", "0001-a-flower-blooms"]


def test_jsonl_with_names_seeds_and_settings(tmp_path):
    lines = [{"prompt": "a red circle", "seed": 7, "name": "red", "frames": 16, "tar": "off"},
             {"prompt": "a blue square", "synopsis": ["a blue square", "a red square"], "guidance_scale": 3}]
    items = read_items(write(tmp_path, "p.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n"))
    assert items[0].name == "red" and items[0].seed == 7
    assert items[0].settings == {"num_frames": 16, "tar": "off"}
    assert items[1].states == ("a blue square", "a red square") and items[1].settings == {"guidance_scale": 3.0}
    assert items[1].name == "0001-a-blue-square" and items[1].line == 2


def test_text_one_prompt_per_line(tmp_path):
    items = read_items(write(tmp_path, "p.txt", "# my prompts\na red circle\n\n  a blue square  \n"))
    assert [(i.line, i.prompt, i.states) for i in items] == [(2, "a red circle", None), (4, "a blue square", None)]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("p.jsonl", '{"prompt": "ok"}\n{"prompt": "x", "frams": 8}\n', r"p.jsonl:2: unknown key 'frams'"),
    ("p.jsonl", '{"prompt": "ok"}\n\n{"prompt": "x"\n', r"p.jsonl:3: not valid JSON"),
    ("p.jsonl", '{"prompt": "ok", "num_frames": "8"}\n', r"p.jsonl:1: num_frames must be a whole number"),
    ("p.jsonl", '{"prompt": "ok", "seed": -1}\n', r"p.jsonl:1: seed must be a whole number >= 0"),
    ("p.jsonl", '{"prompt": ""}\n', r"p.jsonl:1: every item needs a \"prompt\""),
    ("p.jsonl", '{"prompt": "a", "name": "x"}\n{"prompt": "b", "name": "x"}\n', r"p.jsonl:2: the name 'x' is taken "
     r"by the item on line 1"),
    ("p.jsonl", '{"prompt": "a", "name": "../x"}\n', r"p.jsonl:1: name '../x' must be"),
    ("p.json", PAPER_FILE.replace('["A bud", "A flower"]', "[]"), r"p.json:6: subprompts must be a list of non-empty"),
    ("p.json", '{"prompt": "a"}', r"holds a JSON dict"),
    ("p.txt", "# nothing\n\n", r"holds no prompts"),
])
def test_bad_entries_name_their_line(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        read_items(write(tmp_path, name, text))


def test_seeds_and_the_split_do_not_depend_on_each_other(tmp_path):
    items = read_items(write(tmp_path, "p.jsonl", "\n".join(
        json.dumps({"prompt": f"p{i}", **({"seed": 99} if i == 2 else {})}) for i in range(7))))
    assert [item_seed(i, 10) for i in items] == [10, 11, 99, 13, 14, 15, 16]
    parts = [[i for i in items if Processes(rank, 3).owns(i.index)] for rank in range(3)]
    assert sorted(i.index for part in parts for i in part) == list(range(7))
    assert [i.index for i in parts[1]] == [1, 4]


def test_vary_makes_a_grid_of_sub_folders():
    variants = parse_vary(["tar=off,64D1", "steps=2,4"])
    assert [v.folder for v in variants] == ["tar-off_steps-2", "tar-off_steps-4", "tar-64D1_steps-2", "tar-64D1_steps-4"]
    assert variants[0].settings == {"tar": None, "num_inference_steps": 2}
    assert variants[3].settings == {"tar": "64D1", "num_inference_steps": 4}
    assert [v.folder for v in parse_vary([])] == [None]
    for bad, message in (["colour=red"], "--vary takes SETTING"), (["steps=2,x"], "takes whole numbers"), \
                        (["tar=off", "tar=64D1"], "given twice"), (["steps=2,2"], "repeats a value"):
        with pytest.raises(ValueError, match=message):
            parse_vary(bad)
