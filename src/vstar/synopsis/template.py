"""The instruction sent to an LLM: the paper's one-shot template (VSTAR supp. C) plus a JSON request.

Bump ``INSTRUCTION_VERSION`` whenever the text produced here changes: it is part of the cache key, so cached
answers to an older instruction are not reused.
"""

from __future__ import annotations

INSTRUCTION_VERSION = "vsp-1"

SYSTEM_MESSAGE = (
    "You write video synopses for a text-to-video model: you split a prompt into the successive visual "
    "states of the video."
)

# Supplement C of the paper, with the user's prompt in place of "A landscape transitioning from winter to spring".
_ONE_SHOT = (
    'I have a prompt "{prompt}" for video generation. Can you split the process and describe the states '
    "separately? Each state is described in only one sentence and please consider the coherency between "
    "sub-prompts. Please be straightforward and do not use a narrative style. For example, for prompt "
    '"a boy is getting old", it can be divided into two states, e.g., "a young boy" and "an old man".\n'
    "Based on this example, can you provide the description? {count}"
)

_JSON_REQUEST = (
    "Answer with only a JSON array of strings, one string per state, in temporal order, and nothing else, "
    'e.g. ["a young boy", "an old man"].'
)


def instruction(prompt: str, num_states: int | None = None) -> str:
    """The user message asking for a synopsis of ``prompt`` (optionally with exactly ``num_states`` states)."""
    if num_states is None:
        count = "The number of states is not limited to two."
    else:
        count = f"Use exactly {num_states} states."
    return _ONE_SHOT.format(prompt=prompt.strip(), count=count) + "\n" + _JSON_REQUEST


def build_messages(prompt: str, num_states: int | None = None) -> list[dict[str, str]]:
    """Chat messages (OpenAI format: ``[{"role": ..., "content": ...}]``) for one synopsis request."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": instruction(prompt, num_states)},
    ]
