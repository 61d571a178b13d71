"""Video Synopsis Prompting: one prompt in, a few visual states out (``make_synopsis``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import SynopsisBackend, get_backend
from .cache import SynopsisCache
from .errors import BackendError, ParseError, SynopsisInputError
from .files import read_synopsis_file
from .parsing import check_bounds, extract_states, fit_states, thin
from .template import INSTRUCTION_VERSION


@dataclass(frozen=True)
class Synopsis:
    """A video synopsis: the prompt, its visual states in temporal order, and where they came from.

    ``raw`` is the LLM's answer as received (None for the rules and manual backends); ``notes`` says what
    was adjusted or guessed (a trimmed answer, no change found in the prompt...).
    """

    prompt: str
    states: list[str]
    backend: str
    model: str | None = None
    raw: str | None = None
    notes: list[str] = field(default_factory=list)
    style: str | None = None
    instruction_version: str = INSTRUCTION_VERSION
    cached: bool = False

    def __len__(self) -> int:
        return len(self.states)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for metadata sidecars); holds no secrets."""
        return {
            "prompt": self.prompt,
            "states": list(self.states),
            "backend": self.backend,
            "model": self.model,
            "style": self.style,
            "instruction_version": self.instruction_version,
            "notes": list(self.notes),
            "raw": self.raw,
        }


def make_synopsis(
    prompt: str,
    *,
    backend: str | SynopsisBackend = "auto",
    num_states: int | None = None,
    min_states: int = 2,
    max_states: int = 8,
    style: str | None = None,
    cache: bool | str | Path = True,
    **opts: Any,
) -> Synopsis:
    """Split ``prompt`` into visual states (VSTAR's Video Synopsis Prompting).

    ``backend``: ``"auto"`` (manual if states are given, openai if an LLM is configured, else rules),
    ``"openai"``, ``"transformers"``, ``"rules"``, ``"manual"``, or a :class:`SynopsisBackend` instance;
    ``auto`` falls back to the offline rules, with a note, when the configured LLM cannot be used;
    ``opts`` go to the backend (``model``, ``base_url``, ``api_key``, ``timeout``, ``states``, ``file``,
    ``select``...). ``num_states`` asks for exactly that many states; LLM answers are fitted to
    ``min_states..max_states`` (too many are thinned evenly, too few raise :class:`ParseError`). Manual states
    are used as given. ``style`` is appended to every state (e.g. ``"realistic, best quality, 4k"``).
    ``cache``: True for the user cache dir (or ``$VSTAR_CACHE_DIR``), a directory, or False; only LLM answers
    are cached.
    """
    if not isinstance(prompt, str):
        raise SynopsisInputError(f"prompt must be a string, got {type(prompt).__name__}")
    prompt = " ".join(prompt.split())
    check_bounds(min_states, max_states, num_states)
    if style is not None and not isinstance(style, str):
        raise SynopsisInputError(f"style must be a string, got {type(style).__name__}")
    engine = get_backend(backend, **opts)
    automatic = isinstance(backend, str) and backend.strip().lower() == "auto"
    if not prompt and not (engine.name == "manual" and opts.get("file") is not None):
        raise SynopsisInputError("the prompt is empty; describe the video, e.g. 'a landscape from winter to spring'")

    notes: list[str] = []
    raw: str | None = None
    cached = False
    identity = engine.cache_identity()
    store = _cache(cache) if identity is not None else None
    key = None
    if store is not None and identity is not None:
        fields = {**identity, "prompt": prompt, "num_states": num_states, "instruction": INSTRUCTION_VERSION}
        key = store.key(fields)
        record = store.get(key)
        if record is not None:
            try:  # an entry that no longer parses is a miss: asked again and overwritten
                _states_from_answer(record["raw"], num_states, min_states, max_states, [])
                raw, cached = record["raw"], True
            except ParseError:
                pass
    if raw is None:
        try:
            proposal = engine.propose(prompt, num_states=num_states, max_states=max_states)
        except BackendError as err:
            if not automatic or engine.name == "rules":
                raise
            notes.append(f"the LLM could not be used ({err}); used the offline rules instead")
            engine, store = get_backend("rules"), None
            proposal = engine.propose(prompt, num_states=num_states, max_states=max_states)
        notes.extend(proposal.notes)
        prompt = prompt or proposal.prompt or ""
        if proposal.states is not None:
            states = list(proposal.states)
            if engine.name == "rules":
                states = thin(states, max_states)
            return _finish(prompt, states, engine, None, notes, style, cached=False)
        raw = proposal.raw or ""
    states = _states_from_answer(raw, num_states, min_states, max_states, notes)
    if store is not None and key is not None and not cached:
        store.put(key, {"raw": raw, "backend": engine.name, "model": engine.model, "prompt": prompt,
                        "num_states": num_states, "instruction": INSTRUCTION_VERSION})
    return _finish(prompt, states, engine, raw, notes, style, cached=cached)


def load_synopsis_file(
    path: str | Path, *, select: int | str | None = None, prompt: str | None = None, style: str | None = None
) -> Synopsis:
    """A manual synopsis read from a file (JSON, YAML, text, or the paper's ``prompt_list.json``).

    ``select`` picks an entry of a multi-entry file by index or prompt; ``prompt`` names the synopsis when
    the file holds only states (and prefers the entry with that prompt otherwise). States come back unchanged.
    """
    file_prompt, states = read_synopsis_file(path, select=select, prompt=prompt)
    return Synopsis(
        prompt=file_prompt if file_prompt is not None else (prompt or ""),
        states=apply_style(states, style),
        backend="manual",
        style=style,
    )


def apply_style(states: list[str], style: str | None) -> list[str]:
    """``states`` with ``", " + style`` appended to each (skipped where a state already ends with it)."""
    style = (style or "").strip().strip(",").strip()
    if not style:
        return list(states)
    out = []
    for state in states:
        base = state.rstrip().rstrip(".,;").rstrip()
        out.append(base if base.lower().endswith(style.lower()) else f"{base}, {style}")
    return out


def _states_from_answer(
    raw: str, num_states: int | None, min_states: int, max_states: int, notes: list[str]
) -> list[str]:
    found = extract_states(raw)
    upper = num_states or max_states
    try:
        states = fit_states(found, min_states=min_states, max_states=upper)
    except ParseError as exc:
        start = " ".join(raw.split())[:160]
        raise ParseError(f"the LLM answer could not be turned into states: {exc}. The answer began: {start!r}") from None
    if len(found) > upper:
        notes.append(f"the LLM gave {len(found)} states; kept {upper} evenly spaced ones")
    elif num_states is not None and len(states) < num_states:
        notes.append(f"asked for {num_states} states, the LLM gave {len(states)}")
    return states


def _finish(
    prompt: str,
    states: list[str],
    engine: SynopsisBackend,
    raw: str | None,
    notes: list[str],
    style: str | None,
    *,
    cached: bool,
) -> Synopsis:
    return Synopsis(
        prompt=prompt,
        states=apply_style(states, style),
        backend=engine.name,
        model=engine.model,
        raw=raw,
        notes=notes,
        style=style.strip().strip(",").strip() if style and style.strip().strip(",").strip() else None,
        cached=cached,
    )


def _cache(cache: bool | str | Path) -> SynopsisCache | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return SynopsisCache()
    if isinstance(cache, str | Path):
        return SynopsisCache(cache)
    raise SynopsisInputError(f"cache must be True, False or a directory, got {cache!r}")
