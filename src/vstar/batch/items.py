"""The items of a batch: read from a prompt file (the paper's prompt-list JSON, JSONL, or one prompt per line),
each with a global index, the line it came from, a stable name and its own settings; and the ``--vary`` grid.

A name and a seed never depend on how a batch is split or resumed: the name is the item's own or
``NNNN-slug-of-the-prompt`` (``NNNN`` its global index), the seed the item's own or the batch seed + index.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vstar.outputs import slug

# Per-item settings (JSONL keys and --vary keys): GenerationConfig fields, TAR's options and the upscale.
# ``tar`` takes a preset name, or "off" / null for no TAR.
SETTINGS: dict[str, type] = {
    "num_frames": int, "height": int, "width": int, "num_inference_steps": int, "guidance_scale": float,
    "negative_prompt": str, "interpolation": str, "cond_fps": int, "fps": int, "tar": str, "tar_max_mode": str,
    "tar_strength": float, "tar_step_fraction": float, "replace_attention": str, "upscale": int,
}
ALIASES = {"frames": "num_frames", "steps": "num_inference_steps", "guidance": "guidance_scale"}  # the flag names
STATE_KEYS = ("synopsis", "subprompts", "states")  # the states given by hand (the paper's file: subprompts)
ITEM_KEYS = ("prompt", *STATE_KEYS, "seed", "name")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
EXAMPLE = '{"prompt": "a red circle turning into a blue square", "seed": 3, "num_frames": 16}'


@dataclass(frozen=True)
class BatchItem:
    """One prompt of a batch: its global ``index`` (0-based, in file order), the ``line`` of the file it came
    from, its ``name`` (the stem of its video and sidecar), its states when given, its own seed, and its own
    settings (keys of :data:`SETTINGS`)."""

    index: int
    line: int
    prompt: str
    name: str
    states: tuple[str, ...] | None = None
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def setting_name(key: str) -> str | None:
    """The :data:`SETTINGS` key that ``key`` names (``frames``, ``tar-strength``, ``num_frames``), or None."""
    key = key.strip().replace("-", "_")
    key = ALIASES.get(key, key)
    return key if key in SETTINGS else None


def check_setting(key: str, value: Any) -> Any:
    """``value`` when it has the type of setting ``key``; ints are accepted where floats are."""
    kind = SETTINGS[key]
    if key == "tar" and value is None:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key} must be {'a number' if kind is float else 'a whole number' if kind is int else 'text'}"
                         f", got {value!r}")
    return value


def read_items(path: Path) -> list[BatchItem]:
    """The items of the prompt file ``path``: ``.json`` (a list of prompts or of objects, as in the paper's
    prompt list), ``.jsonl`` (one object per line) or text (one prompt per line; blank lines and ``#``
    comments skipped). Any other suffix is recognised by its first character. Errors name the line."""
    if path.is_dir() or not path.is_file():
        raise FileNotFoundError(f"no prompt file at {path}; give a .json, .jsonl or .txt file of prompts")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not text (UTF-8); give a .json, .jsonl or .txt file of prompts") from None
    suffix = path.suffix.lower()
    first = text.lstrip()[:1]
    if suffix in (".jsonl", ".ndjson") or (suffix not in (".json", ".txt") and first == "{"):
        entries = _jsonl_entries(text, path)
    elif suffix == ".json" or (suffix != ".txt" and first == "["):
        entries = _json_entries(text, path)
    else:
        entries = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
                   if line.strip() and not line.strip().startswith("#")]
    if not entries:
        raise ValueError(f"{path} holds no prompts; write one prompt per line, or JSONL objects like {EXAMPLE}")
    items = [_item(index, line, entry, path) for index, (line, entry) in enumerate(entries)]
    lines: dict[str, int] = {}
    for item in items:
        if item.name in lines:
            raise ValueError(f"{path}:{item.line}: the name {item.name!r} is taken by the item on line "
                             f"{lines[item.name]}; give each item its own name")
        lines[item.name] = item.line
    return items


def _jsonl_entries(text: str, path: Path) -> list[tuple[int, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}, column {err.colno}); each line holds one "
                             f"object, e.g. {EXAMPLE}") from None
    return entries


def _json_entries(text: str, path: Path) -> list[tuple[int, Any]]:
    """The entries of a JSON list with the line each starts on."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}; a batch needs a list of prompts or of "
                         f"objects like {EXAMPLE} (or a .jsonl file)")
    decoder, entries, position = json.JSONDecoder(), [], text.index("[") + 1
    for _ in data:  # walk the text once more to find where each entry starts
        while text[position] in " \t\r\n,":
            position += 1
        entry, end = decoder.raw_decode(text, position)
        entries.append((text.count("\n", 0, position) + 1, entry))
        position = end
    return entries


def _item(index: int, line: int, entry: Any, path: Path) -> BatchItem:
    where = f"{path}:{line}"
    if isinstance(entry, str):
        entry = {"prompt": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: an item is a prompt or an object like {EXAMPLE}, got {json.dumps(entry)[:60]}")
    settings: dict[str, Any] = {}
    for key, value in entry.items():
        name = setting_name(key) if key not in ITEM_KEYS else None
        if key not in ITEM_KEYS and name is None:
            raise ValueError(f"{where}: unknown key {key!r}; an item takes {', '.join(ITEM_KEYS)} and the settings "
                             f"{', '.join(SETTINGS)}")
        if name is not None:
            if name in settings:
                raise ValueError(f"{where}: {key!r} and {name!r} set the same setting; give one")
            try:
                settings[name] = check_setting(name, value)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: every item needs a \"prompt\" (non-empty text), e.g. {EXAMPLE}")
    given = [key for key in STATE_KEYS if key in entry]
    if len(given) > 1:
        raise ValueError(f"{where}: {' and '.join(given)} both give the states; give one")
    states = entry[given[0]] if given else None
    if states is not None and (not isinstance(states, list) or not states
                               or not all(isinstance(s, str) and s.strip() for s in states)):
        raise ValueError(f"{where}: {given[0]} must be a list of non-empty texts (the visual states), got "
                         f"{json.dumps(states)[:60]}")
    seed = entry.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"{where}: seed must be a whole number >= 0, got {seed!r}")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not NAME.match(name)):
        raise ValueError(f"{where}: name {name!r} must be 1-100 letters, digits, '.', '_' or '-' (a file name "
                         "without folders), starting with a letter or digit")
    return BatchItem(index=index, line=line, prompt=prompt, name=name or f"{index:04d}-{slug(prompt)}",
                     states=tuple(states) if states is not None else None, seed=seed, settings=settings)


def item_seed(item: BatchItem, base: int) -> int:
    """The seed of ``item``: its own, else ``base`` + its global index (the same however the batch is split)."""
    return item.seed if item.seed is not None else base + item.index


@dataclass(frozen=True)
class Variant:
    """One point of a ``--vary`` grid: the sub-folder its videos go to (None without ``--vary``) and the
    settings it changes (keys of :data:`SETTINGS`, and ``seed``: the batch seed)."""

    folder: str | None
    settings: dict[str, Any]


def parse_vary(values: list[str]) -> list[Variant]:
    """``["tar=off,64D1", "steps=2,4"]`` -> every combination, each into its own sub-folder
    (``tar-off_steps-2``, ...); ``[]`` -> one variant into the batch folder itself."""
    axes: list[tuple[str, str, list[tuple[str, Any]]]] = []
    for value in values:
        key, equals, options = value.partition("=")
        name = "seed" if key.strip() == "seed" else setting_name(key)
        texts = [t.strip() for t in options.split(",")]
        if not equals or name is None or not all(texts):
            raise ValueError(f"--vary takes SETTING=V1,V2,... with a setting of {', '.join(['seed', *SETTINGS])}, "
                             f"e.g. --vary tar=off,64D1; got {value!r}")
        if any(name == other for _, other, _ in axes):
            raise ValueError(f"--vary {key.strip()} is given twice; list all its values in one --vary")
        if len(set(texts)) != len(texts):
            raise ValueError(f"--vary {value!r} repeats a value; give each once")
        axes.append((key.strip(), name, [(text, _parse_value(name, text)) for text in texts]))
    if not axes:
        return [Variant(None, {})]
    return [Variant("_".join(f"{key}-{re.sub(r'[^A-Za-z0-9.]+', '-', text)}"
                             for (key, _, _), (text, _) in zip(axes, combo, strict=True)),
                    {name: parsed for (_, name, _), (_, parsed) in zip(axes, combo, strict=True)})
            for combo in itertools.product(*(values for _, _, values in axes))]


def _parse_value(name: str, text: str) -> Any:
    kind = int if name == "seed" else SETTINGS[name]
    if kind is str:
        return None if name == "tar" and text.lower() in ("off", "none") else text
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"--vary {name}={text}: {name} takes {'whole ' if kind is int else ''}numbers, "
                         f"got {text!r}") from None
