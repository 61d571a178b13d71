"""Exceptions raised by :mod:`vstar.synopsis`.

``SynopsisError`` is the base class. Bad user input raises ``SynopsisInputError``, which is also a
``ValueError``; a failing LLM server or model raises ``BackendError``; an LLM answer that cannot be turned
into states raises ``ParseError``.
"""

from __future__ import annotations


class SynopsisError(Exception):
    """Base class of every error raised by the synopsis package."""


class SynopsisInputError(SynopsisError, ValueError):
    """A bad argument, file or option given by the user."""


class BackendError(SynopsisError):
    """The LLM backend failed (unreachable server, HTTP error, timeout, missing model...)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ParseError(SynopsisError):
    """An LLM answer could not be turned into the requested number of states."""
