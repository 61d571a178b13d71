"""The offline ``rules`` backend: deterministic decomposition of common transition phrasings.

``decompose("A landscape transitioning from winter to spring")`` gives ``["A landscape in winter",
"A landscape in late winter", "A landscape in early spring", "A landscape in spring"]``. Every state is
self-contained: it repeats the subject, and the setting or style clauses of the prompt (", in the field",
", best quality, 4k") end every state. Recognised phrasings, tried in this order:

- ``from X to Y`` (also ``till``/``until``, chains ``from X to Y till Z``), ``X changing through the seasons``
- ``the life cycle of X``, ``X is getting old`` / ``is aging`` / ``grows up``
- ``X becomes / turns into / transforms into Y`` (chains too), ``X's transformation into Y``
- ``X, starts to Y`` (``begins to``), ``X appears after Y``
- ``X melting`` (rusting, wilting, freezing, ripening, ... with or without a result: ``into a puddle``,
  ``to ashes``, ``away``): the thing, half changed, and the result or the change's natural end
- ``X is being made``, ``X is getting cooked``, ``X, making the dark sky bright``, ``X then Y``, ``X until Y``
- ``the process of X losing weight``, ``a makeup transformation``, ``the restoration of X``

Times of day, seasons, ages and life cycles are walked along the ladders of :mod:`.vocabulary`, with the
in-between stages filled in; other changes get an explicit middle state. A prompt with no recognised change
gives one state and a note saying so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import vocabulary as V
from .errors import SynopsisInputError
from .vocabulary import Stage

DEFAULT_STATES = 5  # longest synopsis the rules backend writes unless asked for more

_DET = {"a", "an", "the", "this", "that", "these", "those", "some", "several", "many", "one", "two", "three", "four",
        "five", "six", "seven", "eight", "nine", "ten", "its", "his", "her", "their", "my", "our", "your"}
_VERBS = {"run", "jump", "walk", "fly", "swim", "turn", "fall", "rise", "melt", "grow", "open", "close", "sit",
          "stand", "dance", "leave", "go", "come", "eat", "drink", "sleep", "wake", "explode", "burn"}
_PREPS = ("at", "on", "in", "by", "near", "over", "across", "along", "under", "inside", "around")
_PRONOUNS = {"it", "they", "he", "she", "this", "that", "these", "those"}


@dataclass(frozen=True)
class Node:
    """One candidate state: its text, whether the prompt named it, and whether it is a main stage."""

    text: str
    explicit: bool = False
    main: bool = True


@dataclass(frozen=True)
class RulesResult:
    """States from :func:`decompose`, the rule that produced them (None: no change found) and notes."""

    states: list[str]
    rule: str | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Ctx:
    core: str  # the clause holding the change
    scene: str  # clauses before it ("Superman flying in the sky")
    suffix: str  # clauses after it (", in the field", ", best quality, 4k")
    k: int  # states wanted
    requested: bool  # True when the caller asked for exactly k states

    def finish(self, text: str) -> str:
        text = text.strip().rstrip(",")
        text = f"{text}, {self.suffix}" if self.suffix else text
        return _cap(text)


def decompose(prompt: str, *, num_states: int | None = None, max_states: int = 8) -> RulesResult:
    """Split ``prompt`` into visual states without an LLM (deterministic, offline).

    ``num_states`` asks for that many states where the change allows it; at most ``max_states`` come back.
    """
    text = _normalize(prompt)
    if not any(ch.isalnum() for ch in text):
        raise SynopsisInputError("the prompt is empty; describe the video, e.g. 'a landscape from winter to spring'")
    k = min(num_states or DEFAULT_STATES, max_states)
    clauses = _clauses(text)
    for name, rule in _RULES:
        for i, core in enumerate(clauses):
            scene = ", ".join(clauses[:i])
            suffix = ", ".join(clauses[i + 1 :])
            ctx = _Ctx(core=core, scene=scene, suffix=suffix, k=k, requested=num_states is not None)
            nodes = rule(ctx)
            if nodes and len({_key(n.text) for n in nodes}) >= 2:
                states = _dedupe(_select(nodes, k, ctx.requested))
                notes = []
                if num_states is not None and len(states) < num_states:
                    notes.append(f"the rules backend found only {len(states)} states for this prompt")
                return RulesResult(states=states[:max_states], rule=name, notes=notes)
    return RulesResult(
        states=[_cap(text)],
        rule=None,
        notes=[
            "no change over time was detected in the prompt, so the synopsis has a single state; use an LLM "
            "backend or give the states yourself for a dynamic video"
        ],
    )


# --- path selection -------------------------------------------------------------------------------------------


def _select(nodes: list[Node], k: int, requested: bool) -> list[str]:
    """Pick about ``k`` nodes, keeping every explicit one and spreading the rest evenly."""
    nodes = list(nodes)
    if not any(n.explicit for n in nodes):
        nodes[0] = Node(nodes[0].text, True, nodes[0].main)
        nodes[-1] = Node(nodes[-1].text, True, nodes[-1].main)
    main = [n for n in nodes if n.explicit or n.main]
    if len(main) >= k or (len(main) >= 3 and not requested):
        nodes = main
    if len(nodes) <= k:
        return [n.text for n in nodes]
    anchors = [i for i, n in enumerate(nodes) if n.explicit]
    if anchors[0] != 0:
        anchors.insert(0, 0)
    if anchors[-1] != len(nodes) - 1:
        anchors.append(len(nodes) - 1)
    free = max(k - len(anchors), 0)
    gaps = [b - a - 1 for a, b in zip(anchors, anchors[1:], strict=False)]
    total = sum(gaps)
    share = [free * g // total if total else 0 for g in gaps]
    order = sorted(range(len(gaps)), key=lambda j: (-(free * gaps[j] % max(total, 1)), j))
    for j in order[: free - sum(share)]:
        share[j] += 1
    picked = set(anchors)
    for (a, _b), g, m in zip(zip(anchors, anchors[1:], strict=False), gaps, share, strict=False):
        m = min(m, g)
        picked.update(a + ((t + 1) * (g + 1) + (m + 1) // 2) // (m + 1) for t in range(m))
    return [nodes[i].text for i in sorted(picked)]


# --- rules ----------------------------------------------------------------------------------------------------

_FROM = re.compile(r"^(?P<pre>.*?)\bfrom\s+(?P<chain>.+)$", re.I)
_CHAIN = re.compile(r"\s+(?:to|till|til|until|into|through|towards?|and then|then)\s+", re.I)
_LEAD = re.compile(
    r"^(?:the\s+|a\s+)?(?:whole\s+|entire\s+|full\s+)?(?:process|seasonal cycle|cycle|evolution|progression|"
    r"transition|transformation|journey|change|story|time-?lapse|time lapse|restoration|renovation)\s+of\s+",
    re.I,
)
_TRAIL_VERB = re.compile(
    r"(?:,|\s+(?:is|are))?\s+(?:transitioning|transitions|changing|changes|going|goes|turning|turns|moving|"
    r"moves|evolving|evolves|shifting|shifts|progressing|progresses|transforming|transforms|passing|passes)$",
    re.I,
)
_DAY_AT = re.compile(r"^(?:a|one|the)\s+(?:day|night|morning|evening|afternoon)\s+(?:at|on|in|by)\s+(?P<p>.+)$", re.I)


def _rule_from_to(ctx: _Ctx) -> list[Node] | None:
    m = _FROM.match(ctx.core)
    if not m:
        return None
    points = [p.strip(" ,") for p in _CHAIN.split(m.group("chain")) if p.strip(" ,")]
    if len(points) < 2:
        return None
    subject = _subject(_join(ctx.scene, m.group("pre")))
    loc = ""
    for ladder, find in ((V.TIMES, _time_stage), (V.SEASONS, _season_stage)):
        last, tail = _split_locative(points[-1])
        found = [find(p) for p in points[:-1]] + [find(last)]
        if all(f is not None for f in found):
            loc = tail
            if not subject:
                subject = _cap(_strip_prep(loc)) if loc else "A landscape"
                loc = ""
            prefix = f"{subject} {loc}".strip() if loc else subject
            return _walk(ladder, found, lambda phrase, p=prefix: ctx.finish(f"{p} {phrase}"), cyclic=True)
    ages = [_person(p) for p in points]
    if not subject and all(a and a.pure for a in ages):
        return _age_walk(ages, ctx)
    life = _life_cycle_of_points(points)
    if not subject and life:
        return _life_nodes(life, ctx)
    if subject:
        return _ladder_nodes(points, ctx, lambda x, y, word: f"{subject}, {word} from {x} to {y}",
                             lambda p: f"{subject}, {p}")
    return _transform_nodes(points, ctx)


_THROUGH = re.compile(
    r"^(?P<x>.+?)\s+(?:(?:is\s+|are\s+)?(?:changing|changes|going|goes|evolving|evolves|growing|grows|"
    r"aging|ageing|seen|shown|passing)\s+)?(?:through(?:out)?|over|across|during)\s+(?:the\s+|all\s+(?:the\s+)?)?"
    r"(?:four\s+|passing\s+)?(?P<what>seasons|years|decades|ages|lifetime|life|course of (?:a|the) day|day|a day|"
    r"year|a year)$",
    re.I,
)


def _rule_through(ctx: _Ctx) -> list[Node] | None:
    m = _THROUGH.match(ctx.core)
    if not m:
        return None
    x, what = _join(ctx.scene, m.group("x")), m.group("what").lower()
    if what in ("seasons", "year", "a year"):
        spring = _season_stage("spring")
        found = [spring, _season_stage("winter")]  # spring round to winter
        return _walk(V.SEASONS, found, lambda phrase: ctx.finish(f"{_cap(x)} {phrase}"), cyclic=True)
    if "day" in what:
        found = [_time_stage("morning"), _time_stage("night")]
        return _walk(V.TIMES, found, lambda phrase: ctx.finish(f"{_cap(x)} {phrase}"), cyclic=True)
    owner, _, thing = x.partition("'s ")
    person = _person(owner) if thing else _person(x)
    if person:
        return _age_walk([person.at(0), person.at(4)], ctx, possessed=thing if thing else None)
    return _plain([f"{x}, new", f"{x}, years later", f"{x}, decades later"], ctx)


_LIFE = re.compile(r"^(?:the\s+)?(?:life\s*cycle|lifecycle|life|growth)\s+of\s+(?P<x>.+)$", re.I)


def _rule_life_cycle(ctx: _Ctx) -> list[Node] | None:
    m = _LIFE.match(ctx.core)
    if not m:
        return None
    noun = _strip_det(m.group("x"))
    person = _person(m.group("x"))
    if person and person.pure:
        return _age_walk([person.at(0), person.at(4)], ctx)
    cycle = _life_cycle_name(noun) or "animal"
    stages = V.LIFE_CYCLES[cycle]
    nodes = [Node(ctx.finish(s.text.format(x=noun)), s is stages[0] or s is stages[-1]) for s in stages]
    return nodes


_AGING = re.compile(
    r"^(?P<x>.+?)\s+(?:is\s+|are\s+)?(?:(?:getting|growing|grows|gets|becoming|becomes|turning|turns)\s+"
    r"(?P<old>old|older|elderly)|(?P<aging>aging|ageing|ages|aging over time)|(?:growing|grows)\s+(?P<up>up))$",
    re.I,
)


def _rule_aging(ctx: _Ctx) -> list[Node] | None:
    m = _AGING.match(ctx.core)
    if not m:
        return None
    x = _join(ctx.scene, m.group("x"))
    target = 2 if m.group("up") else 4
    person = _person(x)
    if person is None:
        noun = _strip_det(x)
        return _plain([f"{_article(a)} {a} {noun}" for a in V.GENERIC_AGES], ctx)
    start = 0 if person.age >= target else person.age
    return _age_walk([person.at(start), person.at(target)], ctx)


_TRANSFORM = re.compile(
    r"\s*,?\s*(?:(?:\band\s+)?(?:\bthen\s+)?\b(?:becomes?|becoming|(?:is\s+|gets\s+)?(?:turns?|turning|turned|"
    r"transforms?|transforming|transformed|changes?|changing|changed|morphs?|morphing|morphed|evolves?|"
    r"evolving|evolved|grows?|growing|develops?|developing)\s+into)|\bthen\s+into)\s+",
    re.I,
)
_POSSESSIVE_TRANSFORM = re.compile(
    r"^(?P<x>.+?)'s\s+(?:transformation|metamorphosis|conversion|evolution)(?:\s+(?:through|by|via)\s+"
    r"(?P<how>.+?))?\s+into\s+(?P<y>.+)$",
    re.I,
)


def _rule_transform(ctx: _Ctx) -> list[Node] | None:
    how = None
    m = _POSSESSIVE_TRANSFORM.match(ctx.core)
    if m:
        points, how = [m.group("x"), m.group("y")], m.group("how")
    else:
        points = [p.strip(" ,") for p in _TRANSFORM.split(ctx.core)]
    if len(points) < 2 or not all(points):
        return None
    if len(points) == 2 and re.fullmatch(r"[a-z-]+", points[1]) and not ctx.scene:
        return _adjective_nodes(points[0], points[1], ctx)  # "the sky becomes dark"
    ages = [_person(p) for p in points]
    if all(a and a.pure for a in ages):
        return _age_walk(ages, ctx)
    life = _life_cycle_of_points(points)
    if life:
        return _life_nodes(life, ctx)
    if ctx.scene:  # "Superman flying in the sky, sunny day becomes a dark rainy day"
        scene = ctx.scene
        return _ladder_nodes(points, ctx, _give_way(scene), lambda p: f"{scene}, {p}")
    return _transform_nodes(points, ctx, how=how)


_STARTS = re.compile(
    r"^(?P<x>.*?)[\s,]*\b(?P<it>it\s+|they\s+)?(?P<verb>starts|begins|start|begin|starting|beginning|started|began)"
    r"\s+(?:to\s+(?P<v>[\w-]+)|(?P<ving>[\w-]+ing))(?P<rest>.*)$",
    re.I,
)


def _rule_starts(ctx: _Ctx) -> list[Node] | None:
    m = _STARTS.match(ctx.core)
    if not m:
        return None
    x = _join(ctx.scene, m.group("x").strip(" ,"))
    verb = (m.group("v") or m.group("ving")).lower()
    rest = m.group("rest").rstrip()
    weather = V.WEATHER_VERBS.get(verb)
    if weather:
        scene = f"{x}{rest}" if x else "A landscape"
        return _plain([t.format(S=scene) for t in V.WEATHER[weather]], ctx)
    if not x:
        return None
    process = V.PROCESS_VERBS.get(verb)
    if verb in V.BLOOM_VERBS and _life_cycle_name(x) == "flower":  # "a peony starts to open", not a door
        process = V.PROCESSES["bloom"]
    tail = _CHANGE_TAIL.fullmatch(rest)
    if process and tail:  # "a snowman starts to melt": the change itself, from its start
        nodes = _change_nodes(process, m.group("x"), ctx, where=tail.group("where"), result=tail.group("y"))
        if nodes:
            return nodes
    pronoun = "they" if m.group("verb").lower() in ("start", "begin") else "it"
    action = f"{m.group('v')}{rest}" if m.group("v") else f"{m.group('ving')}{rest}"
    return _plain(
        [f"{x}, just before {pronoun} {_verb(pronoun, 'start')} {_to(action)}",
         f"{x}, as {pronoun} {_verb(pronoun, 'start')} {_to(action)}",
         f"{x}, as {pronoun} {_verb(pronoun, 'continue')} {_to(action)}"],
        ctx,
    )


_APPEAR = re.compile(
    r"^(?P<x>.+?)\s+(?:appears?|emerges?|forms?|shows up|comes out)(?P<where>\s+(?:in|on|over|above|across)\s+.+?)?"
    r"(?:\s+(?:after|at the end of|following)\s+(?P<y>.+))?$",
    re.I,
)


def _rule_appear(ctx: _Ctx) -> list[Node] | None:
    m = _APPEAR.match(ctx.core)
    if not m:
        return None
    x = m.group("x")
    if len(x.split()) == 1 and x[1:].islower() and not x.lower().endswith("man"):
        x = x.lower()  # "Rainbow appears" -> "a rainbow"
    x = _with_article(_lower_first(x))
    where = m.group("where") or ""
    if m.group("y"):
        y = m.group("y")
        states = [f"{_cap(y)}, before {x} appears{where}", f"{_cap(y)} ending, as {x} begins to appear{where}",
                  f"{_cap(x)} appears{where} after {_lower_first(y)}"]
    else:
        states = [f"{_cap(x)} not yet visible{where}", f"{_cap(x)} starting to appear{where}",
                  f"{_cap(x)} fully visible{where}"]
    if ctx.scene:
        states = [f"{ctx.scene}, {_lower_first(s)}" for s in states]
    return _plain(states, ctx)


_BEING = re.compile(
    r"^(?P<x>.+?)\s+(?:is\s+|are\s+)?(?:being|getting|gets)\s+(?P<v>[a-z]+(?:ed|en)|made|built|done|drawn|"
    r"written|sewn|cut|spun|knit)(?P<rest>(?:\s+.*)?)$",
    re.I,
)


def _rule_being(ctx: _Ctx) -> list[Node] | None:
    m = _BEING.match(ctx.core)
    if not m:
        return None
    x, v, rest = _join(ctx.scene, m.group("x")), m.group("v").lower(), m.group("rest")
    if "being" not in ctx.core.lower() and v not in V.COOK_VERBS | V.FINISH_VERBS:
        return _adjective_nodes(x + rest, v, ctx)  # "a man is getting tired"
    first = f"{x}{rest}, still raw" if v in V.COOK_VERBS else f"{x} in the early stage of being {v}{rest}"
    if v in V.FINISH_VERBS and _first_word(x) in ("a", "an", "the"):
        last = f"{'The' if _first_word(x) == 'the' else 'A'} finished {_strip_det(x)}{rest}"
    else:
        last = f"{x}{rest}, completely {v}"
    return _plain([first, f"{x} halfway through being {v}{rest}", last], ctx)


_GETTING = re.compile(
    r"^(?P<x>.+?)\s+(?:is\s+|are\s+)?(?:getting|growing|becoming|turning)\s+(?P<adj>[a-z-]+)(?P<rest>(?:\s+.*)?)$",
    re.I,
)


def _rule_getting(ctx: _Ctx) -> list[Node] | None:
    m = _GETTING.match(ctx.core)
    if not m or m.group("adj").lower() in ("into", "to", "up", "out", "off"):
        return None
    return _adjective_nodes(_join(ctx.scene, m.group("x")) + m.group("rest"), m.group("adj"), ctx)


_MAKING = re.compile(r"^(?P<event>.+?),?\s+making\s+(?P<obj>.+?)\s+(?P<adj>[a-z-]+)$", re.I)


def _rule_making(ctx: _Ctx) -> list[Node] | None:
    m = _MAKING.match(ctx.core)
    if not m:
        return None
    event, obj, adj = _join(ctx.scene, m.group("event")), m.group("obj"), m.group("adj").lower()
    words = obj.split()
    bare = " ".join(w for w in words if frozenset((w.lower(), adj)) not in V.OPPOSITES)
    return _plain(
        [f"{_cap(obj)}, before {_lower_first(event)}", f"{_cap(event)}, {_lower_first(bare)} turning {adj}",
         f"{_cap(event)}, {_lower_first(bare)} now {adj}"],
        ctx,
    )


_THEN = re.compile(r"\s*,?\s*\b(?:and\s+then|then|and\s+afterwards|afterwards|after\s+that)\b\s*,?\s*", re.I)


def _rule_then(ctx: _Ctx) -> list[Node] | None:
    parts = [p.strip(" ,") for p in _THEN.split(ctx.core)]
    if len(parts) < 2 or not all(parts):
        return None
    subject = _guess_subject(parts[0])
    states = [parts[0]]
    for part in parts[1:]:
        first = _first_word(part)
        own_subject = part[0].isupper() or not (first.endswith(("s", "ing", "ed")) or first in _VERBS)
        states.append(part if own_subject or not subject else f"{subject} {part}")
    if ctx.scene:
        states = [f"{ctx.scene}, {_lower_first(s)}" for s in states]
    return [Node(ctx.finish(s), explicit=True) for s in states]


_UNTIL = re.compile(r"^(?P<a>.+?),?\s+(?:until|till|'til)\s+(?P<b>.+)$", re.I)


def _rule_until(ctx: _Ctx) -> list[Node] | None:
    m = _UNTIL.match(ctx.core)
    if not m:
        return None
    a, b = _join(ctx.scene, m.group("a")), m.group("b")
    return _plain([a, f"{a}, nearly until {b}", f"{a}, and in the end {b}"], ctx)


_ADVERBS = r"slowly|gradually|quickly|rapidly|steadily|completely|fully|partly|partially"
_CHANGE_VERB = re.compile(
    rf"\b(?:(?:is|are)\s+)?(?:(?:{_ADVERBS})\s+)?(?P<v>{'|'.join(sorted(V.PROCESS_VERBS, key=len, reverse=True))})\b",
    re.I,
)
# What may follow the verb: adverbs, a particle ("away"), a result ("into a puddle"), a place ("on a beach").
_CHANGE_TAIL = re.compile(
    rf"(?:\s+(?:{_ADVERBS}))?(?:\s+(?:away|down|up|out|off|over|to nothing))?(?:\s+(?:{_ADVERBS}))?"
    rf"(?:\s+(?:into|to)\s+(?P<y>.+?))?(?P<where>\s+(?:{'|'.join(_PREPS)})\s+.+?)?(?:\s+(?:{_ADVERBS}))?",
    re.I,
)
# A thing that is itself a clause ("a candle burns until it", "a girl watching a snowman") is not the one changing.
_NOT_A_THING = re.compile(
    r"\b(?:until|till|then|while|when|after|before|because)\b|\b\w+(?:ing|s)\s+(?:a|an|the|his|her|their|its|my)\b",
    re.I,
)


def _rule_change(ctx: _Ctx) -> list[Node] | None:
    for m in _CHANGE_VERB.finditer(ctx.core):
        thing = _LEAD.sub("", ctx.core[: m.start()].strip(" ,"))  # "a time-lapse of a snowman" -> "a snowman"
        tail = _CHANGE_TAIL.fullmatch(ctx.core[m.end() :])
        if tail:
            process = V.PROCESS_VERBS[m.group("v").lower()]
            nodes = _change_nodes(process, thing, ctx, where=tail.group("where"), result=tail.group("y"))
            if nodes:
                return nodes
    return None


_PROCESS = re.compile(r"^(?:the\s+)?process\s+of\s+(?P<s>.+?)\s+(?P<ving>[a-z]+ing)\b(?P<o>.*)$", re.I)


def _rule_process(ctx: _Ctx) -> list[Node] | None:
    m = _PROCESS.match(ctx.core)
    if not m:
        return None
    s, act = _cap(m.group("s")), f"{m.group('ving')}{m.group('o')}"
    return _plain([f"{s} before {act}", f"{s} halfway through {act}", f"{s} after {act}"], ctx)


_CHANGE_NOUNS = r"transformation|makeover|renovation|restoration|metamorphosis|construction|demolition|transition"
_NOUN_CHANGE = re.compile(rf"^(?:(?:a|an|the)\s+)?(?P<what>[\w\s'-]*?)\s*\b(?P<n>{_CHANGE_NOUNS})$", re.I)
_CHANGE_OF = re.compile(rf"^(?:(?:a|an|the)\s+)?(?P<n>{_CHANGE_NOUNS})\s+of\s+(?P<x>.+)$", re.I)


def _rule_change_noun(ctx: _Ctx) -> list[Node] | None:
    m = _CHANGE_OF.match(ctx.core)
    if m:
        x, n = _cap(m.group("x")), m.group("n").lower()
        return _plain([f"{x} before its {n}", f"{x} halfway through its {n}", f"{x} after its {n}"], ctx)
    m = _NOUN_CHANGE.match(ctx.core)
    if not m:
        return None
    change = f"{m.group('what')} {m.group('n')}".strip().lower()
    art = "the" if _first_word(ctx.core) == "the" else _article(change)
    return _plain([f"Before {art} {change}", f"Midway through {art} {change}", f"After {art} {change}"], ctx)


_RULES: list[tuple[str, Callable[[_Ctx], list[Node] | None]]] = [
    ("from-to", _rule_from_to),
    ("through", _rule_through),
    ("life-cycle", _rule_life_cycle),
    ("aging", _rule_aging),
    ("transform", _rule_transform),
    ("starts-to", _rule_starts),
    ("appears", _rule_appear),
    ("being-done", _rule_being),
    ("making", _rule_making),
    ("gradual-change", _rule_change),
    ("process", _rule_process),
    ("then", _rule_then),
    ("until", _rule_until),
    ("getting", _rule_getting),
    ("change-noun", _rule_change_noun),
]


# --- node builders --------------------------------------------------------------------------------------------


def _walk(ladder: list[Stage], found: list, render: Callable[[str], str], *, cyclic: bool) -> list[Node]:
    """Nodes along ``ladder`` through the found ``(index, modifiers)`` waypoints, in order."""
    n = len(ladder)
    nodes: list[Node] = []
    for j, (index, mods) in enumerate(found):
        if j > 0:
            prev = found[j - 1][0]
            steps = (index - prev) % n if cyclic else index - prev
            if steps == 0 and len(found) == 2:
                steps = n  # "from winter to winter": the whole cycle
            for s in range(1, steps):
                stage = ladder[(prev + s) % n]
                nodes.append(Node(render(stage.text), explicit=False, main=stage.main))
        stage = ladder[index % n]
        phrase = stage.text
        if mods:
            phrase = _insert_mods(phrase, stage.key, mods)
        nodes.append(Node(render(phrase), explicit=True))
    return nodes


def _insert_mods(phrase: str, key: str, mods: list[str]) -> str:
    at = phrase.rfind(key.split()[-1])
    return f"{phrase[:at]}{' '.join(mods)} {phrase[at:]}"


def _plain(states: list[str], ctx: _Ctx) -> list[Node]:
    return [Node(ctx.finish(s), explicit=True) for s in states]


def _ladder_nodes(points, ctx, middle, render) -> list[Node]:
    """Explicit waypoints; between two of them, 1 to 3 middle states (``middle(x, y, word)``)."""
    nodes = [Node(ctx.finish(render(points[0])), explicit=True)]
    n_mid = 1 if not ctx.requested else max(0, min(3, ctx.k - len(points)))
    words = {0: [], 1: ["midway"], 2: ["early in the change", "late in the change"],
             3: ["early in the change", "midway", "late in the change"]}[n_mid if len(points) == 2 else 0]
    for x, y in zip(points, points[1:], strict=False):
        for word in words:
            nodes.append(Node(ctx.finish(middle(x, y, word)), explicit=True))
        nodes.append(Node(ctx.finish(render(y)), explicit=True))
    return nodes


def _give_way(scene: str) -> Callable[[str, str, str], str]:
    phrases = {"midway": "{x} giving way to {y}", "early in the change": "{x} starting to give way to {y}",
               "late in the change": "{y} almost replacing {x}"}
    return lambda x, y, word: f"{scene}, " + phrases[word].format(x=x, y=y)


def _transform_nodes(points: list[str], ctx: _Ctx, how: str | None = None) -> list[Node]:
    carried = _carry_setting(points)
    as_said = dict(zip(carried, points, strict=True))  # the middle states keep the prompt's wording

    def middle(x: str, y: str, word: str) -> str:
        x, y = as_said[x], as_said[y]
        if how and word == "midway":
            return f"{_cap(x)} halfway through {how} into {_lower_first(y)}"
        verb = {"midway": "turning", "early in the change": "starting to turn",
                "late in the change": "almost turned"}[word]
        return f"{_cap(x)} {verb} into {_lower_first(y)}"

    return _ladder_nodes(carried, ctx, middle, _cap)


def _carry_setting(points: list[str]) -> list[str]:
    """Later points without a setting of their own keep the first one's: "a caterpillar on a leaf" turning into
    "a butterfly" ends as "a butterfly on a leaf", so that the scene does not change with the subject."""
    _, setting = _split_locative(points[0])
    return [points[0]] + [p if not setting or _split_locative(p)[1] else f"{p} {setting}" for p in points[1:]]


def _change_nodes(process: V.Process, thing: str, ctx: _Ctx, *, where: str | None = None,
                  result: str | None = None) -> list[Node] | None:
    """Nodes of ``thing`` going through ``process`` (the ``result`` the prompt names, if any, is the end).

    The place stays after the thing in every state ("a half-melted snowman on a sunny beach"); None when
    ``thing`` names nothing that changes ("it", "a fire" burning, "a girl watching a snowman").
    """
    if _NOT_A_THING.search(thing):
        return None
    det, noun = _split_det(thing)
    if not det and noun[1:].islower() and not _first_word(noun).endswith("man"):
        noun = noun[:1].lower() + noun[1:]  # "Chocolate melting" -> "half-melted chocolate", not "Spiderman"
    noun, here = _split_locative(noun)
    place = " ".join(p for p in (here, (where or "").strip()) if p)
    kept = " ".join(w for w in noun.split() if w.lower() not in process.drop)
    head = noun.split()[-1].lower() if noun else ""
    if not kept or head in _PRONOUNS or head in process.steady:
        return None

    def state(template: str, x: str) -> str:
        text = template.format(x=f"{x} {place}".rstrip())
        if det in ("a", "an"):
            text = f"{_article(text)} {text}"
        elif det:
            text = f"{det} {text}"
        return ctx.finish(_join(ctx.scene, text))

    stages = process.stages
    # The first state keeps the prompt's wording when it already says how the thing starts ("a frozen lake").
    nodes = [Node(state("{x}" if kept != noun else stages[0].text, noun))]
    nodes += [Node(state(s.text, kept), main=s.main) for s in stages[1:]]
    if result:
        said = f"{det} {noun}".strip()
        if _first_word(result) in V.MEASURES:  # "shrinking to half its size"
            end = f"{said} {place}".rstrip() + f", now {result}"
        else:
            end = f"{result} {place}".rstrip() + f", once {said}"
        nodes[-1] = Node(ctx.finish(_join(ctx.scene, end)))
    return nodes


def _adjective_nodes(x: str, adj: str, ctx: _Ctx) -> list[Node]:
    if adj.endswith("er") and len(adj) > 4:
        return _plain([x, f"{x}, getting {adj}", f"{x}, much {adj}"], ctx)
    return _plain([f"{x}, not yet {adj}", f"{x}, getting {adj}", f"{x}, fully {adj}"], ctx)


# --- people and ages ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    gender: str  # "m", "f" or "n"
    age: int  # index into vocabulary.AGES
    before: list[str]  # other adjectives before the noun ("happy")
    noun: str | None  # a person noun the ladder cannot replace ("king"), else None
    tail: str  # words after the noun ("in the park")
    pure: bool  # nothing but determiner, age/gender words and a person noun

    def at(self, age: int) -> _Person:
        return _Person(self.gender, age, self.before, self.noun, self.tail, self.pure)

    def phrase(self) -> str:
        if self.noun:
            core = " ".join([*self.before, V.GENERIC_AGES[min(self.age, 4) * 2 // 4], self.noun])
        else:
            core = " ".join([*self.before, V.AGES[self.gender][self.age]])
        return f"{_article(core)} {core}{self.tail}"


_OTHER_PERSON_NOUNS = {"king", "queen", "prince", "princess", "father", "mother", "soldier", "farmer", "dancer"}


def _person(text: str) -> _Person | None:
    words = text.strip(" ,").split()
    if not words:
        return None
    head = None
    for i, w in enumerate(words[:5]):
        lw = w.lower().strip(",")
        if lw in V.PERSON_NOUNS or lw in _OTHER_PERSON_NOUNS or lw.rstrip("s") in ("boy", "girl"):
            head = i
    if head is None:
        return None
    lowered = [w.lower().strip(",") for w in words[: head + 1]]
    gender = "f" if set(lowered) & V.FEMALE_WORDS else "m" if set(lowered) & V.MALE_WORDS else "n"
    age = 2
    for w in lowered:
        if w in V.AGE_WORDS:
            age = V.AGE_WORDS[w] if not (w == "young" and lowered[-1] in ("man", "woman", "adult")) else 2
            if w in ("old", "elderly", "aged", "senior", "middle-aged", "teenage", "teen", "baby", "little"):
                break
    skip = _DET | set(V.AGE_WORDS) | V.MALE_WORDS | V.FEMALE_WORDS | {"person", "child", "kid", "human"}
    before = [w for w in words[:head] if w.lower() not in skip]
    noun = lowered[-1] if lowered[-1] in _OTHER_PERSON_NOUNS else None
    tail = " " + " ".join(words[head + 1 :]) if head + 1 < len(words) else ""
    pure = not before and not tail and noun is None
    return _Person(gender, age, before, noun, tail, pure)


def _age_walk(people: list[_Person | None], ctx: _Ctx, possessed: str | None = None) -> list[Node]:
    """Nodes from person to person, through every age in between (changing gender at the same age)."""
    path: list[tuple[_Person, bool]] = []
    for j, person in enumerate(people):
        assert person is not None
        if j > 0:
            prev = path[-1][0]
            if person.gender != prev.gender:
                path.append((_Person(person.gender, prev.age, prev.before, prev.noun, prev.tail, prev.pure), False))
                prev = path[-1][0]
            step = 1 if person.age > prev.age else -1
            for age in range(prev.age + step, person.age, step):
                path.append((prev.at(age), False))
        if not path or path[-1][0].phrase() != person.phrase():
            path.append((person, True))
    out = []
    for person, explicit in path:
        phrase = person.phrase()
        if possessed:
            phrase = f"{phrase}'s {possessed}"
        out.append(Node(ctx.finish(phrase), explicit=explicit))
    return out


# --- life cycles ----------------------------------------------------------------------------------------------


def _life_cycle_name(noun: str) -> str | None:
    words = [w.strip(",").lower() for w in noun.split()]
    for name in ("frog", "butterfly", "chicken", "flower", "plant"):
        table = V.LIFE_CYCLE_WORDS[name]
        if any(w in table and table[w] not in ("egg", "seed") for w in words):
            return name
    return None


def _life_cycle_of_points(points: list[str]) -> tuple[str, list[int], str] | None:
    """(cycle, stage indices, noun) when every point names a stage of one life cycle (caterpillar -> butterfly)."""
    for name in ("butterfly", "frog", "chicken", "plant", "flower"):
        table, stages = V.LIFE_CYCLE_WORDS[name], V.LIFE_CYCLES[name]
        keys = [s.key for s in stages]
        indices, noun = [], name
        for point in points:
            words = [w.lower().strip(",") for w in point.split()]
            hits = [w for w in words if w in table]
            if len(words) > 4 or not hits or table[hits[-1]] not in keys:
                break
            indices.append(keys.index(table[hits[-1]]))
            if table[hits[-1]] not in ("egg", "seed"):
                noun = hits[-1]
        else:
            specific = any(table[w] not in ("egg", "seed") for p in points for w in p.lower().split() if w in table)
            if specific and indices == sorted(indices) and len(set(indices)) == len(indices):
                return name, indices, noun
    return None


def _life_nodes(life: tuple[str, list[int], str], ctx: _Ctx) -> list[Node]:
    """Nodes of a life cycle from its first named stage to its last."""
    name, indices, noun = life
    stages = V.LIFE_CYCLES[name]
    return [
        Node(ctx.finish(stages[i].text.format(x=noun)), explicit=i in indices)
        for i in range(indices[0], indices[-1] + 1)
    ]


# --- small text helpers ---------------------------------------------------------------------------------------


def _normalize(prompt: str) -> str:
    text = " ".join(str(prompt).split())
    text = re.sub(r"\s*,\s*", ", ", text).strip(" ,")
    return text.rstrip(" .!;")


def _clauses(text: str) -> list[str]:
    """Comma clauses, with clauses that continue the previous one ("and turns into ...") merged back."""
    cont = re.compile(
        r"^(?:and|then|to|till|until|into|before|after|making|becoming|turning|transforming|which|as|from|"
        r"starts|begins|start|begin|starting|it starts|it begins)\b",
        re.I,
    )
    clauses: list[str] = []
    for part in text.split(", "):
        if clauses and cont.match(part):
            clauses[-1] = f"{clauses[-1]}, {part}"
        else:
            clauses.append(part)
    whole = ", ".join(clauses)
    return clauses if len(clauses) > 1 else [whole]


def _subject(pre: str) -> str:
    s = pre.strip(" ,")
    s = _LEAD.sub("", s)
    s = _TRAIL_VERB.sub("", s).strip(" ,")
    m = _DAY_AT.match(s)
    if m:
        s = "the " + _strip_det(m.group("p"))
    return _cap(s) if s else ""


def _split_locative(point: str) -> tuple[str, str]:
    words = point.split()
    for i, w in enumerate(words[1:], start=1):
        if w.lower() in _PREPS:
            return " ".join(words[:i]), " ".join(words[i:])
    return point, ""


def _strip_prep(loc: str) -> str:
    first, _, rest = loc.partition(" ")
    return rest if first.lower() in _PREPS else loc


def _time_stage(point: str) -> tuple[int, list[str]] | None:
    return _ladder_stage(point, V.TIMES, V.TIME_ALIASES)


def _season_stage(point: str) -> tuple[int, list[str]] | None:
    return _ladder_stage(point, V.SEASONS, V.SEASON_ALIASES)


def _ladder_stage(point: str, ladder: list[Stage], aliases: dict[str, str]) -> tuple[int, list[str]] | None:
    words = [w for w in point.lower().strip(" ,").split() if w not in _DET]
    keys = [s.key for s in ladder]
    for width in (2, 1):
        if len(words) < width:
            continue
        key = " ".join(words[-width:])
        key = aliases.get(key, key)
        if key in keys and len(words) - width <= 2:
            return keys.index(key), words[:-width]
    return None


def _guess_subject(clause: str) -> str | None:
    words = clause.split()
    start = 2 if words and words[0].lower() in _DET else 1
    for i in range(start, len(words)):
        w = words[i].lower()
        if w in ("is", "are", "was", "were", "starts", "begins", "gets") or w.endswith("ing") or (
            w.endswith("s") and not w.endswith(("ss", "'s", "us", "is"))
        ):
            return " ".join(words[:i])
    return None


def _join(a: str, b: str) -> str:
    a, b = a.strip(" ,"), b.strip(" ,")
    return f"{a}, {b}" if a and b else a or b


def _first_word(text: str) -> str:
    return text.split()[0].lower() if text.split() else ""


def _split_det(text: str) -> tuple[str, str]:
    """(determiner in lower case or "", the rest): "Two snowmen" -> ("two", "snowmen")."""
    words = text.strip(" ,").split()
    if words and words[0].lower() in _DET:
        return words[0].lower(), " ".join(words[1:])
    return "", " ".join(words)


def _strip_det(text: str) -> str:
    return _split_det(text)[1]


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    words = phrase.split()
    if not words or words[0].lower() in _DET or phrase[:1].isupper() or words[0].endswith("s"):
        return phrase
    return f"{_article(phrase)} {phrase}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if _first_word(text) in _DET else text


def _to(action: str) -> str:
    return action if action.split()[0].endswith("ing") else f"to {action}"


def _verb(pronoun: str, verb: str) -> str:
    return verb if pronoun == "they" else f"{verb}s"


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _dedupe(states: list[str]) -> list[str]:
    seen: set[str] = set()
    return [s for s in states if not (_key(s) in seen or seen.add(_key(s)))]
