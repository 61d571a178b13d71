"""The ``manual`` backend: states given by the user, as a list or in a file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import SynopsisInputError
from ..files import check_states, read_synopsis_file
from .base import Proposal, SynopsisBackend


class ManualBackend(SynopsisBackend):
    """Uses ``states`` as given, or reads them from ``file`` (JSON, YAML, text, or the paper's prompt_list.json).

    With a file holding several entries, ``select`` picks one by index or prompt; by default the entry whose
    prompt matches the synopsis prompt.
    """

    name = "manual"

    def __init__(
        self,
        states: Sequence[str] | None = None,
        *,
        file: str | Path | None = None,
        select: int | str | None = None,
    ) -> None:
        if states is None and file is None:
            raise SynopsisInputError("the manual backend needs states=[...] or file=PATH")
        if states is not None and file is not None:
            raise SynopsisInputError("give the manual backend either states or a file, not both")
        if isinstance(states, str):
            raise SynopsisInputError("states must be a list of strings, not one string; wrap it in a list")
        self.states = check_states(list(states), "states") if states is not None else None
        self.file = Path(file) if file is not None else None
        self.select = select

    def propose(self, prompt: str, *, num_states: int | None, max_states: int) -> Proposal:
        if self.states is not None:
            return Proposal(states=list(self.states))
        assert self.file is not None
        file_prompt, states = read_synopsis_file(self.file, select=self.select, prompt=prompt or None)
        return Proposal(states=states, prompt=file_prompt)
