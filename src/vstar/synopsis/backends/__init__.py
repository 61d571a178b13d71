"""Synopsis backends behind one interface, and the registry of their names."""

from __future__ import annotations

import inspect
import os
from typing import Any

from ..errors import SynopsisInputError
from .base import LLMBackend, Proposal, SynopsisBackend
from .manual import ManualBackend
from .openai_compat import OpenAIBackend
from .rules import RulesBackend
from .transformers_local import TransformersBackend

BACKENDS: dict[str, type[SynopsisBackend]] = {
    "openai": OpenAIBackend,
    "transformers": TransformersBackend,
    "rules": RulesBackend,
    "manual": ManualBackend,
}
ALIASES = {"hf": "transformers", "huggingface": "transformers", "llm": "openai", "offline": "rules"}

__all__ = [
    "BACKENDS",
    "LLMBackend",
    "ManualBackend",
    "OpenAIBackend",
    "Proposal",
    "RulesBackend",
    "SynopsisBackend",
    "TransformersBackend",
    "get_backend",
    "resolve_auto",
]


def resolve_auto(opts: dict[str, Any]) -> str:
    """The backend ``auto`` means: manual when states are given, openai when an LLM is configured, else rules.

    An LLM counts as configured when ``base_url`` is given or ``VSTAR_LLM_BASE_URL`` / ``VSTAR_LLM_API_KEY``
    is set (``OPENAI_API_KEY`` alone does not switch ``auto`` to a paid online service).
    """
    if opts.get("states") is not None or opts.get("file") is not None:
        return "manual"
    if opts.get("base_url") or os.environ.get("VSTAR_LLM_BASE_URL") or os.environ.get("VSTAR_LLM_API_KEY"):
        return "openai"
    if opts.get("model"):
        raise SynopsisInputError(
            f"backend 'auto' cannot tell who serves the model {opts['model']!r}: choose backend='openai' (with "
            "base_url, or OPENAI_API_KEY for OpenAI) or backend='transformers' for a local Hugging Face model"
        )
    return "rules"


def get_backend(name: str | SynopsisBackend, **opts: Any) -> SynopsisBackend:
    """A backend instance from its name (``auto``, ``openai``, ``transformers``, ``rules``, ``manual``)."""
    if isinstance(name, SynopsisBackend):
        if opts:
            raise SynopsisInputError(f"options {sorted(opts)} cannot be combined with a backend instance")
        return name
    if not isinstance(name, str):
        raise SynopsisInputError(f"backend must be a name or a SynopsisBackend, got {type(name).__name__}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key == "auto":
        key = resolve_auto(opts)
    if key not in BACKENDS:
        choices = ", ".join(["auto", *BACKENDS])
        raise SynopsisInputError(f"unknown backend {name!r}; choose one of: {choices}")
    cls = BACKENDS[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise SynopsisInputError(
            f"backend {key!r} does not take the option(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(accepted) or 'no options'}"
        )
    return cls(**opts)
