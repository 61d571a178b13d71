"""Parsing LLM answers into states: the formats real models return, and properties on arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vstar.synopsis import ParseError, SynopsisInputError, extract_states, parse_states
from vstar.synopsis.parsing import clean_state, thin

TWO = ["A young boy", "An old man"]

FORMATS = {
    "json array": '["A young boy", "An old man"]',
    "json with trailing comma": '[\n  "A young boy",\n  "An old man",\n]',
    "python list": "['A young boy', 'An old man']",
    "fenced json": "```json\n[\"A young boy\", \"An old man\"]\n```",
    "fenced without language": "Here you go:\n```\n[\"A young boy\", \"An old man\"]\n```\nAnything else?",
    "json object": '{"synopsis": ["A young boy", "An old man"]}',
    "json objects with descriptions": '[{"title": "Youth", "description": "A young boy"}, '
    '{"title": "Age", "description": "An old man"}]',
    "json inside chatter": 'Of course! ["A young boy", "An old man"] Hope it helps.',
    "numbered dot": "1. A young boy\n2. An old man",
    "numbered paren": "1) A young boy\n2) An old man",
    "bulleted dash": "- A young boy\n- An old man",
    "bulleted star": "* A young boy\n* An old man",
    "bullet dot": "• A young boy\n• An old man",
    "state prefixes": "State 1: A young boy\nState 2: An old man",
    "stage prefixes with bullets": "- Stage 1 - A young boy\n- Stage 2 - An old man",
    "bold state labels": "**State 1:** A young boy\n**State 2:** An old man",
    "bold titles": "1. **Childhood:** A young boy\n2. **Old Age:** An old man",
    "bold titles colon outside": "1. **Childhood**: A young boy\n2. **Old Age**: An old man",
    "plain titles": "1. Early Childhood: A young boy\n2. Late Old Age: An old man",
    "headings": "### State 1: Childhood\nA young boy\n\n### State 2: Old age\nAn old man",
    "title line then description": "1. **Childhood**\n   A young boy\n2. **Old Age**\n   An old man",
    "quoted items": '1. "A young boy"\n2. "An old man"',
    "chatter around list": "Sure! Here are the states:\n\n1. A young boy\n2. An old man\n\nLet me know if you "
    "need anything else.",
    "paragraph of sentences": "A young boy. An old man.",
    "arrows": "A young boy -> An old man",
    "think block": "<think>Maybe 1. a baby\n2. a toddler</think>\n1. A young boy\n2. An old man",
    "duplicates": "1. A young boy\n2. a young boy.\n3. An old man\n4. An old man",
    "empty items": "1. A young boy\n2. \n3. **  **\n4. An old man",
    "one item per line": "A young boy\nAn old man",
    "list inside a text fence": "```text\n1. A young boy\n2. An old man\n```",
    "quoted items without brackets": '"A young boy", "An old man"',
}


@pytest.mark.parametrize("answer", FORMATS.values(), ids=FORMATS.keys())
def test_formats(answer):
    states = [s.rstrip(".") for s in parse_states(answer)]
    assert states == TWO


def test_wrapped_list_items_are_joined():
    answer = "1. A young boy playing\n   in the park\n2. An old man"
    assert parse_states(answer) == ["A young boy playing in the park", "An old man"]


def test_paper_figure_3_titles_are_dropped():
    answer = "1. **Winter's End:** The landscape is covered in a thick layer of snow, with bare trees.  \n" \
             "2. **Thaw's First Touch:** Snow begins to melt, revealing patches of ground."
    assert parse_states(answer) == [
        "The landscape is covered in a thick layer of snow, with bare trees.",
        "Snow begins to melt, revealing patches of ground.",
    ]


def test_bold_subject_without_separator_is_kept():
    assert clean_state("**A young boy** smiling in a park") == "A young boy smiling in a park"


def test_colons_inside_a_sentence_are_kept():
    assert clean_state("A shot at eye level, the lake: frozen and white") == "A shot at eye level, the lake: frozen and white"


def test_trailing_chatter_after_the_last_item_is_dropped():
    answer = "1. A young boy\n2. An old man\nI hope this helps!"
    assert parse_states(answer) == TWO


def test_too_many_states_are_thinned_evenly():
    answer = "\n".join(f"{i + 1}. state {chr(97 + i)}" for i in range(10))
    assert parse_states(answer, max_states=4) == ["state a", "state d", "state g", "state j"]


def test_thin_keeps_ends_and_order():
    items = list("abcdefghij")
    for k in range(1, 11):
        picked = thin(items, k)
        assert len(picked) == k and picked == sorted(picked) and picked[0] == "a"
        if k > 1:
            assert picked[-1] == "j"


def test_too_few_states_raise():
    with pytest.raises(ParseError, match="found 1 state.*at least 2"):
        parse_states("Just one state here")
    with pytest.raises(ParseError, match="found 0 state"):
        parse_states("")
    assert parse_states("Just one state here", min_states=1) == ["Just one state here"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_states": 0}, "min_states must be an integer >= 1"), ({"min_states": 5, "max_states": 3}, "larger than"),
     ({"max_states": 2.5}, "max_states must be an integer")],
)
def test_bad_bounds(kwargs, message):
    with pytest.raises(SynopsisInputError, match=message):
        parse_states("1. a\n2. b", **kwargs)


def _is_clean(state: str) -> bool:
    return bool(state) and state == state.strip() and len(state.splitlines()) == 1 and any(c.isalnum() for c in state)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_extract_never_crashes_and_states_are_single_lines(text):
    states = extract_states(text)
    assert all(_is_clean(s) for s in states)
    assert len({s.lower() for s in states}) == len(states)


LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
MARKUP = st.sampled_from(["1. ", "- ", "* ", "State 2: ", "**Title:** ", "### ", "```json\n", "```", '"', "[", "]",
                          ", ", "\n", "\n\n", "<think>", "</think>", "{\"states\": ", "}", "\u2028", "\x0b"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(LINE, MARKUP), max_size=30).map("".join))
def test_list_like_garbage_never_crashes(text):
    for bounds in ((1, 8), (2, 3)):
        try:
            states = parse_states(text, min_states=bounds[0], max_states=bounds[1])
        except ParseError:
            continue
        assert bounds[0] <= len(states) <= bounds[1]
        assert all(_is_clean(s) for s in states)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abcdefghij klmno,.'", min_size=1, max_size=30).filter(lambda s: any(c.isalpha() for c in s)),
                min_size=1, max_size=10))
def test_numbered_lists_round_trip(items):
    answer = "\n".join(f"{i + 1}. {item}" for i, item in enumerate(items))
    states = extract_states(answer)
    assert all(_is_clean(s) for s in states)
    assert len(states) <= len(items)
