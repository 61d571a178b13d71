"""Small ordered vocabularies the rules backend walks along: times of day, seasons, ages, life cycles, and the
gradual changes a thing goes through (melting, rusting, ripening).

A ladder is a list of ``Stage(key, text, main)``: ``key`` is what a prompt may name, ``text`` how a state
says it, and ``main`` marks the stages worth keeping when a path has to be shortened (``"at dawn"`` is
dropped before ``"at midday"``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    key: str
    text: str
    main: bool = True


# Times of day, a cycle. ``text`` is the phrase appended to the subject.
TIMES = [
    Stage("dawn", "at dawn", main=False),
    Stage("sunrise", "at sunrise"),
    Stage("morning", "in the morning"),
    Stage("midday", "at midday"),
    Stage("afternoon", "in the afternoon"),
    Stage("sunset", "at sunset"),
    Stage("dusk", "at dusk", main=False),
    Stage("evening", "in the evening"),
    Stage("night", "at night"),
    Stage("midnight", "at midnight", main=False),
]
TIME_ALIASES = {
    "noon": "midday",
    "daybreak": "dawn",
    "first light": "dawn",
    "sunup": "sunrise",
    "sundown": "sunset",
    "twilight": "dusk",
    "nightfall": "dusk",
    "nighttime": "night",
    "daytime": "midday",
    "mid-day": "midday",
    "day": "midday",
}

# Seasons, a cycle.
SEASONS = [
    Stage("winter", "in winter"),
    Stage("late winter", "in late winter", main=False),
    Stage("early spring", "in early spring", main=False),
    Stage("spring", "in spring"),
    Stage("late spring", "in late spring", main=False),
    Stage("early summer", "in early summer", main=False),
    Stage("summer", "in summer"),
    Stage("late summer", "in late summer", main=False),
    Stage("early autumn", "in early autumn", main=False),
    Stage("autumn", "in autumn"),
    Stage("late autumn", "in late autumn", main=False),
    Stage("early winter", "in early winter", main=False),
]
SEASON_ALIASES = {"fall": "autumn", "early fall": "early autumn", "late fall": "late autumn"}

# Ages of a person, by gender ("m", "f", or "n" for unknown). Index 0 is a child, 4 is old.
AGES = {
    "m": ["young boy", "teenage boy", "young man", "middle-aged man", "old man"],
    "f": ["young girl", "teenage girl", "young woman", "middle-aged woman", "old woman"],
    "n": ["young child", "teenager", "young adult", "middle-aged adult", "elderly person"],
}
MALE_WORDS = {"boy", "man", "guy", "gentleman", "male", "men", "boys", "father", "grandfather", "grandpa"}
FEMALE_WORDS = {"girl", "woman", "lady", "female", "women", "girls", "mother", "grandmother", "grandma"}
# Person nouns a ladder phrase can replace; other person nouns (a king) keep their noun.
PERSON_NOUNS = {
    "boy", "man", "guy", "girl", "woman", "lady", "person", "child", "kid", "teenager", "teen", "adult",
    "human", "baby", "gentleman", "infant", "toddler",
}
AGE_WORDS = {
    "baby": 0, "infant": 0, "toddler": 0, "little": 0, "young": 0, "child": 0, "kid": 0, "boy": 0, "girl": 0,
    "teen": 1, "teenage": 1, "teenager": 1, "adolescent": 1,
    "man": 2, "woman": 2, "adult": 2, "lady": 2, "gentleman": 2, "person": 2, "human": 2, "guy": 2,
    "middle-aged": 3,
    "old": 4, "elderly": 4, "aged": 4, "senior": 4, "grandfather": 4, "grandmother": 4, "grandpa": 4, "grandma": 4,
}
GENERIC_AGES = ["young", "middle-aged", "old"]

# Life cycles. "{x}" is the organism as named in the prompt.
LIFE_CYCLES: dict[str, list[Stage]] = {
    "frog": [
        Stage("egg", "Frog eggs floating in the water, each with a tiny black dot"),
        Stage("tadpole", "A frog tadpole with a long tail, swimming in the water"),
        Stage("legs", "A frog tadpole growing hind legs, its tail still long"),
        Stage("froglet", "A young frog with a short tail stub"),
        Stage("frog", "A fully grown frog without a tail"),
    ],
    "butterfly": [
        Stage("egg", "A butterfly egg on a green leaf"),
        Stage("caterpillar", "A caterpillar crawling on a leaf, munching"),
        Stage("chrysalis", "A caterpillar hanging wrapped in a chrysalis"),
        Stage("emerging", "A butterfly emerging from its chrysalis"),
        Stage("butterfly", "A butterfly spreading its new wings"),
    ],
    "chicken": [
        Stage("egg", "A {x} egg in a nest"),
        Stage("hatching", "A {x} chick hatching from its egg"),
        Stage("chick", "A fluffy {x} chick"),
        Stage("young", "A young {x}"),
        Stage("adult", "A fully grown {x}"),
    ],
    "plant": [
        Stage("seed", "A {x} seed in the soil"),
        Stage("sprout", "A {x} seedling sprouting from the soil"),
        Stage("sapling", "A young {x} sapling"),
        Stage("adult", "A fully grown {x}"),
    ],
    "flower": [
        Stage("seed", "A {x} seed in the soil"),
        Stage("sprout", "A {x} seedling sprouting from the soil"),
        Stage("bud", "A {x} plant with a closed bud"),
        Stage("bloom", "A {x} in full bloom"),
        Stage("wilt", "A wilting {x}, petals falling"),
    ],
    "animal": [
        Stage("newborn", "A newborn {x}"),
        Stage("young", "A young {x}"),
        Stage("adult", "An adult {x}"),
        Stage("old", "An old {x}"),
    ],
}
# Words of a prompt that pick a life cycle, and the stage a word names inside it.
LIFE_CYCLE_WORDS = {
    "frog": {"frog": "frog", "toad": "frog", "tadpole": "tadpole", "froglet": "froglet", "eggs": "egg",
             "egg": "egg", "spawn": "egg"},
    "butterfly": {"butterfly": "butterfly", "moth": "butterfly", "caterpillar": "caterpillar",
                  "larva": "caterpillar", "chrysalis": "chrysalis", "pupa": "chrysalis", "cocoon": "chrysalis",
                  "egg": "egg", "eggs": "egg"},
    "chicken": {"chicken": "adult", "hen": "adult", "rooster": "adult", "chick": "chick", "duck": "adult",
                "bird": "adult", "egg": "egg", "eggs": "egg"},
    "plant": {"tree": "adult", "oak": "adult", "pine": "adult", "plant": "adult", "seed": "seed",
              "sprout": "sprout", "seedling": "sprout", "sapling": "sapling"},
    "flower": {"flower": "bloom", "rose": "bloom", "peony": "bloom", "tulip": "bloom", "sunflower": "bloom",
               "daisy": "bloom", "lily": "bloom", "orchid": "bloom", "lotus": "bloom", "bud": "bud",
               "seed": "seed"},
}

# Weather arriving, for "..., starts to snow". "{S}" is the scene.
WEATHER = {
    "snow": ["{S} under a clear sky", "{S}, as the first snowflakes fall", "{S} in heavy snow"],
    "rain": ["{S} under a cloudy sky", "{S}, as the first raindrops fall", "{S} in heavy rain"],
    "hail": ["{S} under a dark sky", "{S}, as the first hailstones fall", "{S} in a heavy hailstorm"],
}
WEATHER_VERBS = {"snow": "snow", "snowing": "snow", "rain": "rain", "raining": "rain", "hail": "hail",
                 "hailing": "hail", "pour": "rain", "pouring": "rain", "drizzle": "rain"}

# Adjective pairs: "making the dark sky bright" drops "dark" from the sky once it is bright.
OPPOSITES = {
    frozenset(p)
    for p in [("dark", "bright"), ("dark", "light"), ("cold", "warm"), ("cold", "hot"), ("empty", "full"),
              ("dry", "wet"), ("clean", "dirty"), ("small", "big"), ("small", "large"), ("quiet", "loud"),
              ("green", "brown"), ("calm", "rough"), ("black", "white"), ("raw", "cooked")]
}

# Past participles whose end state reads best as "a finished X".
FINISH_VERBS = {
    "made", "built", "constructed", "assembled", "painted", "drawn", "written", "knitted", "sewn", "carved",
    "sculpted", "decorated", "prepared", "created", "formed", "designed", "woven",
}
COOK_VERBS = {"cooked", "grilled", "fried", "roasted", "baked", "boiled", "seared", "steamed", "toasted"}


@dataclass(frozen=True)
class Process:
    """A gradual change of a thing ("a snowman melting"), as stages from the thing before it to its end.

    A stage's ``text`` holds ``{x}``, the thing as the prompt names it without its determiner (which goes back
    in front: "a half-melted snowman", "two half-melted snowmen"). ``forms`` are the verb forms that name the
    change, ``drop`` the words of the thing that stop being true once it has begun ("frozen" for a thawing
    lake) and ``steady`` the things the verb describes without changing them ("a fire burning").
    """

    forms: tuple[str, ...]
    stages: tuple[Stage, ...]
    drop: frozenset[str] = frozenset()
    steady: frozenset[str] = frozenset()


def _gradual(forms: str, done: str, end: str, *, start: str = "{x}", half: str = "", drop: str = "",
             steady: str = "") -> Process:
    """The common shape: the thing, starting to change, half ``done``, almost fully ``done``, its end."""
    return Process(
        forms=tuple(forms.split()),
        stages=(
            Stage("start", start),
            Stage("early", f"{{x}} starting to {forms.split()[0]}", main=False),
            Stage("half", half or f"half-{done} {{x}}"),
            Stage("late", f"almost fully {done} {{x}}", main=False),
            Stage("end", end),
        ),
        drop=frozenset(drop.split()),
        steady=frozenset(steady.split()),
    )


# Gradual changes by name; a prompt's result ("melting into a puddle") replaces the end stage.
PROCESSES: dict[str, Process] = {
    "melt": _gradual("melt melts melting", "melted", "{x} melted into a puddle"),
    "burn": _gradual("burn burns burning", "burnt", "charred, burnt-out {x}", half="half-burnt {x} in flames",
                     steady="fire fires flame flames campfire bonfire wildfire torch torches fireplace sun"),
    "rust": _gradual("rust rusts rusting", "rusted", "{x}, now a rusted wreck", half="partly rusted {x}",
                     drop="shiny new brand-new gleaming polished"),
    "corrode": _gradual("corrode corrodes corroding", "corroded", "heavily corroded {x}",
                        half="partly corroded {x}", drop="shiny new brand-new gleaming polished"),
    "wilt": _gradual("wilt wilts wilting", "wilted", "wilted {x}, dry and drooping", drop="fresh blooming vibrant"),
    "wither": _gradual("wither withers withering", "withered", "withered {x}, dry and brown",
                       drop="fresh green lush vibrant"),
    "freeze": _gradual("freeze freezes freezing", "frozen", "completely frozen {x}, covered in ice", drop="liquid"),
    "thaw": _gradual("thaw thaws thawing", "thawed", "completely thawed {x}", start="frozen {x}",
                     drop="frozen icy ice-covered snow-covered"),
    "dissolve": _gradual("dissolve dissolves dissolving", "dissolved", "fully dissolved {x}, almost invisible"),
    "evaporate": _gradual("evaporate evaporates evaporating", "evaporated",
                          "{x} evaporated, leaving only a dry stain"),
    "erode": _gradual("erode erodes eroding", "eroded", "heavily eroded {x}, worn almost flat",
                      half="partly eroded {x}"),
    "crumble": _gradual("crumble crumbles crumbling", "crumbled", "{x} crumbled to pieces", drop="intact"),
    "decay": _gradual("decay decays decaying", "decayed", "fully decayed {x}, barely recognisable",
                      drop="fresh new"),
    "rot": _gradual("rot rots rotting", "rotten", "completely rotten {x}, black and mouldy", drop="fresh ripe"),
    "ripen": _gradual("ripen ripens ripening", "ripened", "fully ripe {x}", start="unripe {x}",
                      half="half-ripe {x}", drop="unripe green raw"),
    "grow": _gradual("grow grows growing", "grown", "fully grown {x}", start="small {x}",
                     drop="small tiny little young"),
    "shrink": _gradual("shrink shrinks shrinking", "shrunken", "tiny, shrunken {x}", half="noticeably shrunken {x}",
                       drop="big large huge giant"),
    "inflate": _gradual("inflate inflates inflating", "inflated", "fully inflated {x}", start="flat, empty {x}",
                        drop="deflated flat empty"),
    "deflate": _gradual("deflate deflates deflating", "deflated", "completely deflated {x}, lying flat",
                        start="fully inflated {x}", drop="inflated full"),
    "fade": _gradual("fade fades fading", "faded", "completely faded {x}, colours washed out",
                     drop="vivid bright colourful colorful"),
    "dry": _gradual("dry dries drying", "dried", "completely dried {x}", drop="wet damp soaked"),
    # Flowers opening (a peony, a cherry tree, a meadow): its own stages, not the common shape.
    "bloom": Process(
        forms=("bloom", "blooms", "blooming", "blossom", "blossoms", "blossoming", "flowering"),
        stages=(
            Stage("closed", "{x} in tight bud, petals still closed"),
            Stage("opening", "{x} in bud, first petals showing", main=False),
            Stage("half", "{x} in half bloom, petals unfolding"),
            Stage("full", "{x} in full bloom"),
        ),
        drop=frozenset({"closed"}),
    ),
}
PROCESS_VERBS = {form: process for process in PROCESSES.values() for form in process.forms}
# More verbs that, after "starts to", mean a flower blooming ("a peony starts to open").
BLOOM_VERBS = {"open", "opening", "unfold", "unfolding", "flower"}
# First words of a result that is a measure of the thing, not a thing ("shrinking to half its size").
MEASURES = {"half", "twice", "double", "its", "their", "his", "her"}
