"""The one small interface every synopsis backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..template import build_messages


@dataclass(frozen=True)
class Proposal:
    """What a backend returns: an LLM answer to parse (``raw``) or finished ``states``, plus notes.

    ``prompt`` is set by backends that read the prompt from a file (``manual``).
    """

    raw: str | None = None
    states: list[str] | None = None
    notes: tuple[str, ...] = ()
    prompt: str | None = None


class SynopsisBackend(ABC):
    """Turns one prompt into a :class:`Proposal`. Subclasses set ``name`` and implement ``propose``."""

    name: ClassVar[str]

    @property
    def model(self) -> str | None:
        """The model name reported in the synopsis (None for backends without a model)."""
        return None

    def cache_identity(self) -> dict[str, Any] | None:
        """What identifies this backend's answers in the disk cache; None means "never cache"."""
        return None

    @abstractmethod
    def propose(self, prompt: str, *, num_states: int | None, max_states: int) -> Proposal:
        """States (or an answer to parse) for ``prompt``."""


class LLMBackend(SynopsisBackend):
    """A backend that asks a chat model with the VSP instruction and returns its raw answer."""

    def propose(self, prompt: str, *, num_states: int | None, max_states: int) -> Proposal:
        return Proposal(raw=self.chat(build_messages(prompt, num_states)))

    def cache_identity(self) -> dict[str, Any] | None:
        return {"backend": self.name, "model": self.model}

    @abstractmethod
    def chat(self, messages: list[dict[str, str]]) -> str:
        """The assistant's answer to OpenAI-style ``messages``."""
