"""The ``rules`` backend: offline, deterministic, no dependencies (see :mod:`vstar.synopsis.rules`)."""

from __future__ import annotations

from ..rules import decompose
from .base import Proposal, SynopsisBackend


class RulesBackend(SynopsisBackend):
    """Splits common transition phrasings ("from X to Y", "X becomes Y", ...) into states without an LLM."""

    name = "rules"

    def propose(self, prompt: str, *, num_states: int | None, max_states: int) -> Proposal:
        result = decompose(prompt, num_states=num_states, max_states=max_states)
        return Proposal(states=result.states, notes=tuple(result.notes))
