"""Small ordered vocabularies the rules backend walks along: times of day, seasons, ages, life cycles.

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

# A flower opening, for "X starts to bloom". "{X}" is the flower as named, capitalised.
BLOOM = [
    Stage("closed", "{X} as a tightly closed bud"),
    Stage("opening", "{X} with its bud starting to open"),
    Stage("half", "{X} half open, petals unfolding"),
    Stage("full", "{X} in full bloom"),
]
BLOOM_VERBS = {"bloom", "blossom", "open", "flower", "unfold", "blooming", "blossoming", "opening", "flowering"}

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
