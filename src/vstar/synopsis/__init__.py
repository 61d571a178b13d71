"""VSTAR's Video Synopsis Prompting: turn one prompt into a few visual states (pure text, no torch).

>>> from vstar.synopsis import make_synopsis
>>> make_synopsis("A landscape transitioning from winter to spring", backend="rules").states[0]
'A landscape in winter'
"""

from .backends import (
    LLMBackend,
    ManualBackend,
    OpenAIBackend,
    Proposal,
    RulesBackend,
    SynopsisBackend,
    TransformersBackend,
    get_backend,
)
from .cache import SynopsisCache
from .core import Synopsis, apply_style, load_synopsis_file, make_synopsis
from .errors import BackendError, ParseError, SynopsisError, SynopsisInputError
from .parsing import extract_states, parse_states
from .rules import decompose
from .template import INSTRUCTION_VERSION, build_messages, instruction

__all__ = [
    "INSTRUCTION_VERSION",
    "BackendError",
    "LLMBackend",
    "ManualBackend",
    "OpenAIBackend",
    "ParseError",
    "Proposal",
    "RulesBackend",
    "Synopsis",
    "SynopsisBackend",
    "SynopsisCache",
    "SynopsisError",
    "SynopsisInputError",
    "TransformersBackend",
    "apply_style",
    "build_messages",
    "decompose",
    "extract_states",
    "get_backend",
    "instruction",
    "load_synopsis_file",
    "make_synopsis",
    "parse_states",
]
