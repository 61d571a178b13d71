"""The offline rules backend: the paper's 30 prompts and the common transition phrasings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vstar.synopsis import SynopsisInputError, decompose, make_synopsis

# For each of the paper's prompts, the words that name its subject: every state must mention one of them.
SUBJECTS = {
    "The process of a lava eruption, from smoke emission to lava cooling": {"lava", "volcano", "eruption"},
    "A boy is getting old": {"boy", "man"},
    "A young boy becomes an old man, and turns into a young girl": {"boy", "man", "girl", "woman"},
    "Spiderman on the beach from morning to evening": {"spiderman", "spider-man"},
    "Superman flying in the sky, sunny day becomes a dark rainy day, best quality, 4k, realistic": {"superman"},
    "A Ferrari driving on the road, starts to snow": {"ferrari"},
    "A peony starts to bloom, in the field": {"peony"},
    "Rainbow appears after the rainy day": {"rainbow"},
    "The seasonal cycle of a lake from frozen winter to autumn,a shot at eye level": {"lake"},
    "A day at the beach from dawn till dusk": {"beach"},
    "A caterpillar transforming into a butterfly": {"caterpillar", "butterfly"},
    "A flower starts to bloom": {"flower"},
    "A pizza is being made": {"pizza"},
    "A mural being painted on a city wall": {"mural"},
    "A landscape transitioning from winter to spring": {"landscape"},
    "A young girl is aging": {"girl", "woman"},
    "The sun rises from the sea, making the dark sky bright": {"sun"},
    "A night sky changing from dusk till dawn": {"sky"},
    "From sunrise to sunset at the beach": {"beach"},
    "A makeup transformation": {"makeup"},
    "The life cycle of a frog": {"frog"},
    "The seasonal cycle of a lake from frozen winter to summer": {"lake"},
    "The process of a woman losing 50kg of weight": {"woman"},
    "A female person's hairstyle changing through the years": {"hairstyle"},
    "A tree's transformation through carving into a sculpture": {"tree", "sculpture"},
    "The restoration of a classic car from rusted relic to showroom condition": {"car"},
    "A tree through the seasons": {"tree"},
    "Meat in the pan is getting cooked": {"meat"},
    "A rose flower starts to bloom, snowy landscape": {"rose"},
    "A camel in the desert from sunrise to sunset till a dark evening": {"camel"},
}


def _mentions(state: str, words: set[str]) -> bool:
    lowered = state.lower()
    return any(word in lowered for word in words)


def test_all_30_paper_prompts(prompt_list):
    assert len(prompt_list) == 30
    unhandled = []
    for entry in prompt_list:
        prompt = entry["prompt"]
        result = decompose(prompt)
        states = result.states
        subject = SUBJECTS[prompt]
        ok = (
            result.rule is not None
            and len(states) >= 2
            and len({s.lower() for s in states}) == len(states)
            and all(_mentions(s, subject) for s in states)
        )
        if not ok:
            unhandled.append((prompt, states))
    assert not unhandled, f"{len(unhandled)} of 30 prompts not handled: {unhandled}"


def test_subject_table_matches_the_data(prompt_list):
    assert {e["prompt"] for e in prompt_list} == set(SUBJECTS)


@pytest.mark.parametrize(
    ("prompt", "first", "last"),
    [
        ("A landscape transitioning from winter to spring", "A landscape in winter", "A landscape in spring"),
        ("Spiderman on the beach from morning to evening", "Spiderman on the beach in the morning",
         "Spiderman on the beach in the evening"),
        ("A night sky changing from dusk till dawn", "A night sky at dusk", "A night sky at dawn"),
        ("From sunrise to sunset at the beach", "The beach at sunrise", "The beach at sunset"),
        ("A day at the beach from dawn till dusk", "The beach at dawn", "The beach at dusk"),
        ("A camel in the desert from sunrise to sunset till a dark evening", "A camel in the desert at sunrise",
         "A camel in the desert in the dark evening"),
        ("A boy is getting old", "A young boy", "An old man"),
        ("A young girl is aging", "A young girl", "An old woman"),
        ("A tree through the seasons", "A tree in spring", "A tree in winter"),
        ("The life cycle of a frog", "Frog eggs", "A fully grown frog"),
        ("A caterpillar transforming into a butterfly", "A caterpillar", "A butterfly"),
        ("A young boy becomes an old man, and turns into a young girl", "A young boy", "A young girl"),
    ],
)
def test_order_runs_from_start_to_end(prompt, first, last):
    states = decompose(prompt).states
    assert states[0].startswith(first)
    assert states[-1].startswith(last)


def test_intermediate_stages_are_filled_in():
    assert decompose("A landscape transitioning from winter to spring").states == [
        "A landscape in winter",
        "A landscape in late winter",
        "A landscape in early spring",
        "A landscape in spring",
    ]
    states = decompose("A young boy becomes an old man, and turns into a young girl").states
    assert "An old man" in states and len(states) >= 4


@pytest.mark.parametrize(
    ("prompt", "tail"),
    [
        ("Superman flying in the sky, sunny day becomes a dark rainy day, best quality, 4k, realistic",
         ", best quality, 4k, realistic"),
        ("A peony starts to bloom, in the field", ", in the field"),
        ("The seasonal cycle of a lake from frozen winter to autumn,a shot at eye level", ", a shot at eye level"),
        ("A rose flower starts to bloom, snowy landscape", ", snowy landscape"),
    ],
)
def test_setting_and_style_clauses_end_every_state(prompt, tail):
    states = decompose(prompt).states
    assert len(states) >= 2
    assert all(s.endswith(tail) for s in states)


def test_scene_clause_starts_every_state():
    states = decompose("Superman flying in the sky, sunny day becomes a dark rainy day").states
    assert all(s.startswith("Superman flying in the sky") for s in states)
    assert "sunny day" in states[0] and "dark rainy day" in states[-1]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("A seed turns into a tree", ["A tree seed in the soil", "A fully grown tree"]),
        ("A car transforms into a robot", ["A car", "A car turning into a robot", "A robot"]),
        ("A puppy becomes a dog", ["A puppy", "A puppy turning into a dog", "A dog"]),
        ("a red circle on a black background turning into a blue square",
         ["A red circle on a black background", "A red circle on a black background turning into a blue square",
          "A blue square on a black background"]),
        ("A caterpillar on a leaf turns into a butterfly in the air",
         ["A caterpillar on a leaf", "A caterpillar on a leaf turning into a butterfly in the air",
          "A butterfly in the air"]),
        ("Water in a glass turns into ice, then into steam", ["Water in a glass", "Ice in a glass",
                                                              "Steam in a glass"]),
        ("A boy runs then jumps into the pool", ["A boy runs", "A boy jumps into the pool"]),
        ("Ice melts, then water boils", ["Ice melts", "Water boils"]),
        ("A dog starts to run, in the park", ["A dog, just before it starts to run, in the park",
                                              "A dog, as it starts to run, in the park",
                                              "A dog, as it continues to run, in the park"]),
        ("It starts to rain", ["A landscape under a cloudy sky", "A landscape, as the first raindrops fall",
                               "A landscape in heavy rain"]),
        ("The life cycle of a dog", ["A newborn dog", "A young dog", "An adult dog", "An old dog"]),
        ("A man is getting old", ["A young man", "A middle-aged man", "An old man"]),
        ("A candle burns until it melts away", ["A candle burns", "A candle burns, nearly until it melts away",
                                                "A candle burns, and in the end it melts away"]),
        ("A city from day to night", ["A city at midday", "A city in the afternoon", "A city at sunset",
                                      "A city in the evening", "A city at night"]),
        ("The sky is getting dark", ["The sky, not yet dark", "The sky, getting dark", "The sky, fully dark"]),
        ("A castle is being built on a hill", ["A castle in the early stage of being built on a hill",
                                               "A castle halfway through being built on a hill",
                                               "A finished castle on a hill"]),
    ],
)
def test_phrasings(prompt, expected):
    states = decompose(prompt).states
    if len(expected) == 2 and len(states) > 2:  # only the ends are pinned
        assert [states[0], states[-1]] == expected
    else:
        assert states == expected


# Gradual changes of a thing: (prompt, its subject, a word of its result, number of states by default).
CHANGES = [
    ("a snowman melting into a puddle", "snowman", "puddle", 3),
    ("a log burning to ashes", "log", "ashes", 3),
    ("an old car rusting away", "old car", "rusted wreck", 3),
    ("a bridge rusting", "bridge", "rusted", 3),
    ("a rose wilting", "rose", "wilted", 3),
    ("a lake freezing over", "lake", "frozen", 3),
    ("a frozen lake thawing", "frozen lake", "thawed", 3),
    ("a sugar cube dissolving in a cup of tea", "sugar cube", "dissolved", 3),
    ("an apple rotting", "apple", "rotten", 3),
    ("a dead leaf decaying on the forest floor", "dead leaf", "decayed", 3),
    ("a peony blooming", "peony", "full bloom", 3),
    ("a banana ripening", "banana", "fully ripe", 3),
    ("a puddle evaporating in the sun", "puddle", "evaporated", 3),
    ("a sandcastle eroding", "sandcastle", "eroded", 3),
    ("an old stone wall crumbling to dust", "old stone wall", "dust", 3),
    ("a wool sweater shrinking", "wool sweater", "shrunken", 3),
    ("a balloon inflating", "balloon", "fully inflated", 3),
    ("a balloon deflating", "balloon", "deflated", 3),
    ("a tree growing", "tree", "fully grown", 3),
    ("an old photograph fading away", "old photograph", "faded", 3),
    ("a house burning down", "house", "burnt-out", 3),
    ("ice cubes melting on a sunny beach", "ice cubes", "melted", 3),
    ("two snowmen slowly melting into puddles on a sunny beach", "two snowmen", "puddles", 3),
    ("the snowmen are melting", "snowmen", "melted", 3),
    ("a time-lapse of a banana rotting", "banana", "rotten", 3),
    ("A snowman starts to melt", "snowman", "melted", 3),
    ("a woman aging", "woman", "old woman", 3),
    # Life cycles have more stages of their own.
    ("a caterpillar turning into a butterfly", "caterpillar", "butterfly", 4),
    ("a seed growing into a tree", "seed", "grown tree", 4),
]


@pytest.mark.parametrize(("prompt", "subject", "result", "count"), CHANGES)
def test_gradual_change_goes_from_the_thing_to_its_result(prompt, subject, result, count):
    states = decompose(prompt).states
    assert len(states) == count
    assert subject in states[0].lower()
    assert result in states[-1].lower()
    assert result not in states[0].lower()
    for middle in states[1:-1]:
        assert middle not in (states[0], states[-1])
    assert all(s[:1].isupper() for s in states)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a snowman melting into a puddle", ["A snowman", "A half-melted snowman", "A puddle, once a snowman"]),
        ("a snowman on a sunny beach melting into a puddle",
         ["A snowman on a sunny beach", "A half-melted snowman on a sunny beach",
          "A puddle on a sunny beach, once a snowman"]),
        ("a log burning", ["A log", "A half-burnt log in flames", "A charred, burnt-out log"]),
        ("an old car rusting away", ["An old car", "A partly rusted old car", "An old car, now a rusted wreck"]),
        # Words that stop being true go once the change has begun; a missing start is filled in.
        ("a shiny new car rusting in the rain",
         ["A shiny new car in the rain", "A partly rusted car in the rain", "A car in the rain, now a rusted wreck"]),
        ("a lake thawing", ["A frozen lake", "A half-thawed lake", "A completely thawed lake"]),
        ("a sweater shrinking to half its size",
         ["A sweater", "A noticeably shrunken sweater", "A sweater, now half its size"]),
        ("Chocolate melting in a pan",
         ["Chocolate in a pan", "Half-melted chocolate in a pan", "Chocolate in a pan melted into a puddle"]),
        ("On a sunny beach, a snowman melting",
         ["On a sunny beach, a snowman", "On a sunny beach, a half-melted snowman",
          "On a sunny beach, a snowman melted into a puddle"]),
        ("A peony starts to bloom", ["A peony in tight bud, petals still closed",
                                     "A peony in half bloom, petals unfolding", "A peony in full bloom"]),
        ("a cherry tree blossoming in a park",
         ["A cherry tree in a park in tight bud, petals still closed",
          "A cherry tree in a park in half bloom, petals unfolding", "A cherry tree in a park in full bloom"]),
    ],
)
def test_gradual_change_states(prompt, expected):
    assert decompose(prompt).states == expected


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("ice cubes melting on a sunny beach", "on a sunny beach"),
        ("a snowman melting into a puddle, best quality, 4k", ", best quality, 4k"),
        ("a banana ripening on a kitchen table, realistic", "on a kitchen table, realistic"),
        ("Superman flying in the sky, a snowman melting", "Superman flying in the sky, "),
    ],
)
def test_gradual_change_keeps_the_scene_in_every_state(prompt, words):
    states = decompose(prompt).states
    assert len(states) == 3
    assert all(words in s for s in states)


STATIC = [
    "a cat playing piano",
    "a red circle on a black background",
    "a burning candle on a table",
    "a fire burning in a fireplace",
    "a frozen lake at sunset",
    "melted cheese on a pizza",
    "a rusty old car in a field",
    "a field of blooming flowers",
    "a dry riverbed under a blue sky",
    "a dog with rust-coloured fur",
    "a woman reading in the fading light",
]


@pytest.mark.parametrize("prompt", STATIC)
def test_static_prompts_stay_one_state(prompt):
    result = decompose(prompt)
    assert result.states == [prompt[:1].upper() + prompt[1:]]
    assert result.rule is None


def test_a_change_inside_another_phrasing_is_left_to_it():
    assert decompose("A candle burns until it melts away").rule == "until"
    assert decompose("Ice melts, then water boils").rule == "then"
    assert decompose("A door starts to open").states[0] == "A door, just before it starts to open"


def test_gradual_change_honours_num_states():
    prompt = "a log burning to ashes"
    for n in (2, 3, 4, 5):
        states = decompose(prompt, num_states=n).states
        assert len(states) == n
        assert states[0] == "A log" and states[-1] == "Ashes, once a log"
    assert decompose(prompt, num_states=4).states[1:3] == ["A log starting to burn", "An almost fully burnt log"]
    result = decompose(prompt, num_states=7)
    assert len(result.states) == 5 and "only 5" in result.notes[0]
    assert len(decompose("a peony blooming", num_states=4).states) == 4


def test_generic_from_to_keeps_subject_and_names_both_ends():
    states = decompose("A classic car from rusted relic to showroom condition").states
    assert states == [
        "A classic car, rusted relic",
        "A classic car, midway from rusted relic to showroom condition",
        "A classic car, showroom condition",
    ]


def test_no_change_gives_one_state_and_says_so():
    result = decompose("A cat sitting on a sofa")
    assert result.states == ["A cat sitting on a sofa"]
    assert result.rule is None
    assert "no change" in result.notes[0]
    synopsis = make_synopsis("A cat sitting on a sofa", backend="rules")
    assert synopsis.states == ["A cat sitting on a sofa"] and synopsis.notes


def test_num_states_is_honoured_where_the_change_allows_it():
    prompt = "A landscape transitioning from winter to spring"
    assert [len(decompose(prompt, num_states=n).states) for n in (2, 3, 4)] == [2, 3, 4]
    assert decompose(prompt, num_states=2).states == ["A landscape in winter", "A landscape in spring"]
    lake = decompose("A lake from winter to autumn", num_states=7).states
    assert len(lake) == 7 and lake[0] == "A lake in winter" and lake[-1] == "A lake in autumn"
    generic = decompose("A car from rusted to shiny", num_states=5).states
    assert len(generic) == 5


def test_asking_for_more_than_the_change_has_adds_a_note():
    result = decompose("A boy runs then jumps", num_states=6)
    assert len(result.states) == 2 and "only 2" in result.notes[0]


def test_max_states_caps_the_answer():
    assert len(decompose("A young boy becomes an old man, and turns into a young girl", max_states=3).states) == 3
    assert len(make_synopsis("A boy is getting old", backend="rules", max_states=2).states) == 2


def test_deterministic():
    prompt = "A camel in the desert from sunrise to sunset till a dark evening"
    assert decompose(prompt) == decompose(prompt)


def test_rules_is_the_auto_default():
    synopsis = make_synopsis("A boy is getting old")
    assert synopsis.backend == "rules" and synopsis.model is None and synopsis.raw is None


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_prompt(prompt):
    with pytest.raises(SynopsisInputError, match="prompt is empty"):
        decompose(prompt)


WORDS = st.sampled_from(
    ["from", "to", "till", "then", "becomes", "turns into", "starts to", "the life cycle of", "is getting old",
     "until", "a", "boy", "winter", "spring", "dawn", ",", "'s", "being", "made", "appears after", "making",
     "through the seasons", "process of", "transformation", "dark", "bright", "melting", "rusting away",
     "into", "on a", "is burning", "fire", "   "]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(WORDS, st.text(max_size=12)), min_size=1, max_size=12).map(" ".join))
def test_never_crashes_and_gives_clean_states(prompt):
    if not any(ch.isalnum() for ch in prompt):
        with pytest.raises(SynopsisInputError, match="prompt is empty"):
            decompose(prompt)
        return
    result = decompose(prompt, max_states=6)
    assert 1 <= len(result.states) <= 6
    for state in result.states:
        assert state.strip() and len(state.splitlines()) == 1
    assert (result.rule is None) == bool(result.notes and "no change" in result.notes[0])
