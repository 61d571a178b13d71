"""Reading states written by hand: JSON, YAML, plain text, and the paper's ``prompt_list.json`` format.

Accepted shapes (JSON or YAML):

- a list of states: ``["a young boy", "an old man"]``
- one entry: ``{"prompt": "a boy is getting old", "subprompts": ["a young boy", "an old man"]}``
  (``"states"`` works in place of ``"subprompts"``)
- a list of entries, as in the paper's ``prompt_list.json``; one is picked by index or by prompt

A ``.txt`` file holds one state per line (blank lines and ``#`` comments are skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SynopsisInputError

_SHAPES = 'a list of states, {"prompt": ..., "subprompts": [...]}, or a list of such entries'


def check_states(states: Any, where: str) -> list[str]:
    """``states`` unchanged if it is a non-empty list of non-empty strings, else a clear error."""
    if not isinstance(states, list) or not states:
        raise SynopsisInputError(f"{where} must be a non-empty list of strings, got {_describe(states)}")
    for i, state in enumerate(states):
        if not isinstance(state, str) or not state.strip():
            raise SynopsisInputError(f"{where}[{i}] must be a non-empty string, got {state!r}")
    return states


def read_synopsis_file(
    path: str | Path, *, select: int | str | None = None, prompt: str | None = None
) -> tuple[str | None, list[str]]:
    """(prompt or None, states) from a synopsis file.

    ``select`` (an index, or a prompt) picks an entry of a multi-entry file, strictly; ``prompt`` is only a
    preference: the entry with that prompt when the file has several.
    """
    path = Path(path)
    data = _read(path)
    if isinstance(data, list) and all(isinstance(item, str) for item in data):
        return None, check_states(data, str(path))
    if isinstance(data, dict):
        if select is not None and not _selects_entry(select, data, 0):
            raise SynopsisInputError(f"{path} holds one entry, and select={select!r} does not match it")
        return _entry(data, f"{path}")
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return _entry(*_pick(data, path, select, prompt))
    raise SynopsisInputError(f"{path} does not hold a synopsis; expected {_SHAPES}, got {_describe(data)}")


def _read(path: Path) -> Any:
    if path.is_dir():
        raise SynopsisInputError(f"synopsis file {path} is a folder; give a .json, .yaml or .txt file of states")
    if not path.is_file():
        raise SynopsisInputError(f"synopsis file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SynopsisInputError(f"synopsis file {path} is not text (UTF-8); give a .json, .yaml or .txt file "
                                 "of states") from None
    except OSError as exc:
        raise SynopsisInputError(f"cannot read synopsis file {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _yaml(text, path)
    if suffix == ".txt" or (suffix != ".json" and text.lstrip()[:1] not in ("[", "{")):
        lines = [ln.strip() for ln in text.splitlines()]
        return [ln for ln in lines if ln and not ln.startswith("#")]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SynopsisInputError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); expected {_SHAPES}"
        ) from None


def _yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise SynopsisInputError(f"reading {path} needs PyYAML: pip install pyyaml (or use JSON)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SynopsisInputError(f"{path} is not valid YAML: {exc}") from None


def _pick(entries: list[dict], path: Path, select: int | str | None, prompt: str | None) -> tuple[dict, str]:
    n = len(entries)
    if select is not None:
        if isinstance(select, bool):
            raise SynopsisInputError(f"select must be an index or a prompt, got {select!r}")
        if isinstance(select, int) or (isinstance(select, str) and select.strip().lstrip("-").isdigit()):
            index = int(select)
            if not -n <= index < n:
                raise SynopsisInputError(f"select={index} is out of range: {path} has {n} entries (0..{n - 1})")
            return entries[index], f"{path}[{index % n}]"
        matches = [i for i, e in enumerate(entries) if _selects_entry(select, e, i)]
        if not matches:
            raise SynopsisInputError(
                f"no entry of {path} has the prompt {select!r}; select one by index 0..{n - 1} or by one of "
                f"its prompts, e.g. {_examples(entries)}"
            )
        return entries[matches[0]], f"{path}[{matches[0]}]"
    if prompt is not None:
        matches = [i for i, e in enumerate(entries) if _selects_entry(prompt, e, i)]
        if matches:
            return entries[matches[0]], f"{path}[{matches[0]}]"
    if n == 1:
        return entries[0], f"{path}[0]"
    wanted = f"no entry has the prompt {prompt!r}; " if prompt else ""
    raise SynopsisInputError(
        f"{path} holds {n} entries; {wanted}pick one with select=<index 0..{n - 1}> or select=<prompt>, "
        f"e.g. {_examples(entries)}"
    )


def _entry(entry: dict, where: str) -> tuple[str | None, list[str]]:
    states = entry.get("subprompts", entry.get("states"))
    if states is None:
        raise SynopsisInputError(f'{where} has no "subprompts" (or "states") list; expected {_SHAPES}')
    prompt = entry.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise SynopsisInputError(f'{where}: "prompt" must be a string, got {_describe(prompt)}')
    key = "subprompts" if "subprompts" in entry else "states"
    return prompt, check_states(states, f"{where}.{key}")


def _selects_entry(select: int | str, entry: dict, index: int) -> bool:
    if isinstance(select, int):
        return select == index
    prompt = entry.get("prompt")
    return isinstance(prompt, str) and _norm(prompt) == _norm(select)


def _norm(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(" .")


def _examples(entries: list[dict]) -> str:
    prompts = [repr(e.get("prompt")) for e in entries[:3] if isinstance(e.get("prompt"), str)]
    return ", ".join(prompts) if prompts else "0"


def _describe(value: Any) -> str:
    if isinstance(value, list | dict | str):
        return f"{type(value).__name__} of length {len(value)}" if value else f"an empty {type(value).__name__}"
    return type(value).__name__
