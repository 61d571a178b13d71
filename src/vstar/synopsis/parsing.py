"""Turning an LLM answer into a list of visual states.

Real answers come as JSON arrays (bare, in code fences, or wrapped in an object), numbered or bulleted lists,
``State 1:`` lines, markdown headings, bold titles (``**Winter's End:** The landscape ...``), or a plain
paragraph, usually surrounded by chatter. ``extract_states`` finds the states in any of these and never
raises; ``parse_states`` also fits them to the requested bounds.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from .errors import ParseError, SynopsisInputError

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.S)
_LABEL_WORDS = r"(?:state|stage|step|phase|scene|frame|keyframe|shot|sub-?prompt|prompt|part)"
# "State 1:", "**Stage 2 (Thaw)** -", "Step 3." ...; the label and its number, then an optional title.
_LABEL = re.compile(
    rf"^(?:\*\*|__)?{_LABEL_WORDS}\s*#?\s*\d{{1,3}}\s*(?:\([^)]*\))?\s*(?:\*\*|__)?\s*[:.)\-–—]*\s*(?:\*\*|__)?\s*",
    re.I,
)
_MARKER = re.compile(r"^(?:[-*•+·▪►]\s+|\d{1,3}\s*[.)\]:](?!\d)\s*|\(\d{1,3}\)\s*|[-*•+·▪►](?=\*\*))")
_HEADING = re.compile(r"^#{1,6}\s*")
_ITEM_LINE = re.compile(
    rf"^\s*(?:[-*•+·▪►]\s+|[-*•+·▪►](?=\*\*)|\d{{1,3}}\s*[.)\]:](?!\d)|\(\d{{1,3}}\)|#{{1,6}}\s|"
    rf"(?:\*\*|__)?{_LABEL_WORDS}\s*#?\s*\d{{1,3}}\b)",
    re.I,
)
_BOLD_TITLE = re.compile(r"^(\*\*|__)(?P<title>[^*_\n]{1,80}?)\1\s*(?P<sep>[:\-–—.]?)\s*")
_PLAIN_TITLE = re.compile(r"^(?P<title>[A-Z][\w'’-]*(?:\s+[A-Za-z][\w'’-]*){1,4})\s*:\s+(?=\S)")
_CHATTER = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|great|here is|here are|here's|below|i hope|hope this|"
    r"let me know|feel free|note\b|in summary|overall|this (?:synopsis|sequence|breakdown)|these (?:states|"
    r"descriptions|sub-?prompts))\b",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“'‘(]?[A-Z])")
_ARROW = re.compile(r"\s*(?:->|→|=>|⟶)\s*")
_JSON_KEYS = ("states", "synopsis", "subprompts", "sub_prompts", "prompts", "descriptions", "items", "steps")
_TEXT_KEYS = ("description", "state", "text", "prompt", "content", "subprompt", "sentence", "caption")
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "«": "»"}


def extract_states(text: str) -> list[str]:
    """All states found in ``text``, cleaned and de-duplicated, in order. Never raises.

    Every returned state is a non-empty single line with at least one letter or digit.
    """
    if not isinstance(text, str):
        return []
    text = _THINK.sub("", text)
    states = _from_json(text)
    if not states:
        states = _from_lines(text)
    return _dedupe(states)


def parse_states(text: str, *, min_states: int = 2, max_states: int = 8) -> list[str]:
    """States in an LLM answer, fitted to ``min_states..max_states``.

    Too many states are thinned evenly, always keeping the first and the last; too few raise
    :class:`ParseError`.
    """
    check_bounds(min_states, max_states)
    states = extract_states(text)
    return fit_states(states, min_states=min_states, max_states=max_states)


def check_bounds(min_states: int, max_states: int, num_states: int | None = None) -> None:
    """Raise :class:`SynopsisInputError` unless ``1 <= min_states <= num_states <= max_states``."""
    for name, value in (("min_states", min_states), ("max_states", max_states)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SynopsisInputError(f"{name} must be an integer >= 1, got {value!r}")
    if min_states > max_states:
        raise SynopsisInputError(
            f"min_states ({min_states}) is larger than max_states ({max_states}); lower min_states or raise max_states"
        )
    if num_states is not None:
        if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 1:
            raise SynopsisInputError(f"num_states must be an integer >= 1, got {num_states!r}")
        if not min_states <= num_states <= max_states:
            raise SynopsisInputError(
                f"num_states={num_states} is outside min_states..max_states ({min_states}..{max_states}); "
                "ask for a number in that range or change the bounds"
            )


def fit_states(states: list[str], *, min_states: int, max_states: int) -> list[str]:
    """``states`` thinned to at most ``max_states`` (evenly, keeping both ends); too few raise ParseError."""
    if len(states) < min_states:
        raise ParseError(
            f"found {len(states)} state(s), need at least {min_states}; ask again, use a stronger model, "
            "or lower min_states"
        )
    return thin(states, max_states)


def thin(items: list[str], count: int) -> list[str]:
    """``count`` items picked evenly from ``items``, keeping the first and the last."""
    n = len(items)
    if n <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[(i * (n - 1) + (count - 1) // 2) // (count - 1)] for i in range(count)]


# --- JSON answers -------------------------------------------------------------------------------------------


def _from_json(text: str) -> list[str]:
    blocks = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for block in blocks:
        for candidate in _json_candidates(block):
            value = _loads(candidate)
            if value is None:
                continue
            states = [s for s in (clean_state(item) for item in _json_items(value)) if s]
            if states:
                return states
    return []


def _json_candidates(block: str) -> list[str]:
    block = block.strip()
    out = [block]
    if block[:1] == '"' and block.rstrip(",")[-1:] == '"':  # "a", "b" without the brackets
        out.append(f"[{block.rstrip(',')}]")
    for opener, closer in (("[", "]"), ("{", "}")):
        start, end = block.find(opener), block.rfind(closer)
        if 0 <= start < end:
            out.append(block[start : end + 1])
    return out


def _loads(candidate: str) -> Any:
    if not candidate or candidate[0] not in "[{":
        return None
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    relaxed = re.sub(r",\s*([\]}])", r"\1", candidate)  # trailing commas
    try:
        return json.loads(relaxed)
    except ValueError:
        pass
    if len(candidate) > 20_000:
        return None
    try:  # Python-style lists with single quotes
        return ast.literal_eval(relaxed)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _json_items(value: Any, depth: int = 0) -> list[str]:
    if depth > 2:
        return []
    if isinstance(value, dict):
        for key in _JSON_KEYS:
            for k, v in value.items():
                if isinstance(k, str) and k.lower() == key and isinstance(v, list | dict):
                    return _json_items(v, depth + 1)
        text = _dict_text(value)
        return [text] if text else []
    if not isinstance(value, list | tuple):
        return []
    items: list[str] = []
    for element in value:
        if isinstance(element, str):
            items.append(element)
        elif isinstance(element, dict):
            text = _dict_text(element)
            if text:
                items.append(text)
    return items


def _dict_text(value: dict) -> str | None:
    lowered = {k.lower(): v for k, v in value.items() if isinstance(k, str)}
    for key in _TEXT_KEYS:
        if isinstance(lowered.get(key), str):
            return lowered[key]
    strings = [v for v in value.values() if isinstance(v, str)]
    return strings[-1] if len(strings) == 1 or (len(strings) == 2 and len(strings[-1]) > len(strings[0])) else None


# --- list and paragraph answers -------------------------------------------------------------------------------


def _from_lines(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("```")]
    if any(_ITEM_LINE.match(line) for line in lines):
        return _from_list(lines)
    paragraph = [line for line in (ln.strip() for ln in lines) if line and not _is_chatter(line)]
    states = [s for s in (clean_state(line) for line in paragraph) if s]
    if len(states) == 1:
        only = states[0]
        parts = _ARROW.split(only) if _ARROW.search(only) else _SENTENCE_END.split(only)
        states = [s for s in (clean_state(p) for p in parts) if s]
    return states


def _from_list(lines: list[str]) -> list[str]:
    items: list[list[str]] = []  # [text, kind] where kind is "title" when the line only names the state
    gap = False
    for raw in lines:
        line = raw.strip()
        if not line:
            gap = True
            continue
        if _ITEM_LINE.match(line):
            items.append([line, "title" if _is_title_only(line) else "text"])
            gap = False
            continue
        if not items or _is_chatter(line) or line.endswith(":"):
            gap = True
            continue
        current = items[-1]
        if current[1] == "title":
            current[0], current[1] = line, "text"
        elif not gap:
            current[0] = f"{current[0]} {line}"
        gap = False
    return [s for s in (clean_state(text) for text, kind in items if kind == "text") if s]


def _is_title_only(line: str) -> bool:
    body = _HEADING.sub("", line).strip()
    if line.lstrip().startswith("#"):
        return True
    body = _MARKER.sub("", body).strip()
    if body.endswith(":") or body.endswith(":**") or body.endswith(":__"):
        return True
    bold = _BOLD_TITLE.match(body)
    return bool(bold) and not body[bold.end() :].strip()


def _is_chatter(line: str) -> bool:
    stripped = line.strip().lstrip("*_#> ").strip()
    return bool(_CHATTER.match(stripped))


# --- one state ----------------------------------------------------------------------------------------------


def clean_state(text: str) -> str | None:
    """One state without list markers, labels, titles, quotes and markdown, on a single line (or None)."""
    if not isinstance(text, str):
        return None
    s = " ".join(text.split())
    for _ in range(4):  # markers can stack: "- 1. **State 1:** ..."
        before = s
        s = _MARKER.sub("", _HEADING.sub("", s)).strip()
        unlabelled = _LABEL.sub("", s).strip()
        s = unlabelled if any(ch.isalnum() for ch in unlabelled) else s  # "State 3" alone stays
        s = _drop_bold_title(s).strip()
        if s == before:
            break
    plain = _PLAIN_TITLE.match(s)
    if plain and len(s[plain.end() :].split()) >= 2 and _is_title_case(plain.group("title")):
        s = s[plain.end() :]
    s = s.replace("**", "").replace("__", "").replace("`", "")
    s = s.strip().rstrip(",;").strip()
    s = _strip_quotes(s).strip().rstrip(",;").strip()
    s = " ".join(s.split())
    if not any(ch.isalnum() for ch in s):
        return None
    return s


def _drop_bold_title(s: str) -> str:
    match = _BOLD_TITLE.match(s)
    if not match:
        return s
    rest = s[match.end() :].strip()
    title = match.group("title").strip()
    if rest and (match.group("sep") or title.endswith(":")):
        return rest
    return s


def _is_title_case(title: str) -> bool:
    small = {"a", "an", "the", "of", "and", "in", "on", "to", "at", "for", "with"}
    words = title.split()
    return all(w[0].isupper() or w.lower() in small for w in words if w[0].isalpha())


def _strip_quotes(s: str) -> str:
    for _ in range(2):
        if len(s) >= 2 and s[0] in _QUOTES and s[-1] == _QUOTES[s[0]]:
            s = s[1:-1].strip()
        elif len(s) >= 2 and s[0] in _QUOTES and s.count(s[0]) == 1 and _QUOTES[s[0]] not in s[1:]:
            s = s[1:].strip()  # an opening quote whose closing quote was lost
    return s


def _dedupe(states: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for state in states:
        key = "".join(ch for ch in state.lower() if ch.isalnum())
        if key and key not in seen:
            seen.add(key)
            out.append(state)
    return out
