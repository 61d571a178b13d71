"""``vstar synopsis PROMPT``: print the visual states of a prompt (Video Synopsis Prompting); no torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vstar.synopsis.core import make_synopsis
from vstar.synopsis.errors import SynopsisError, SynopsisInputError


def synopsis(
    prompt: Annotated[str | None, typer.Argument(help="The video prompt, e.g. 'a landscape from winter to spring'.")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="auto, openai, transformers, rules or manual.")] = "auto",
    model: Annotated[str | None, typer.Option("--model", "-m", help="LLM name (openai) or Hub id / path (transformers).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server, e.g. http://localhost:11434/v1.")] = None,
    states: Annotated[int | None, typer.Option("--states", "-n", help="Ask for exactly this many states.")] = None,
    min_states: Annotated[int, typer.Option("--min-states", help="Fewest states accepted from an LLM.")] = 2,
    max_states: Annotated[int, typer.Option("--max-states", help="Most states kept.")] = 8,
    style: Annotated[str | None, typer.Option("--style", help="Appended to every state, e.g. 'realistic, best quality, 4k'.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the states from a JSON/YAML/text file (manual).")] = None,
    select: Annotated[str | None, typer.Option("--select", help="Entry of a multi-entry --file: index or prompt.")] = None,
    manual_state: Annotated[list[str] | None, typer.Option("--manual-state", help="A state given by hand; repeat it (manual).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds to wait for the LLM server.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the answer cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON with prompt, states, backend and model.")] = False,
) -> None:
    """Print the states of a prompt's synopsis, one per line (or as JSON)."""
    opts: dict[str, Any] = {"model": model, "base_url": base_url, "timeout": timeout, "file": file,
                            "select": select, "states": manual_state or None}
    opts = {k: v for k, v in opts.items() if v is not None}
    try:
        if prompt is None and file is None:
            raise SynopsisInputError("give a prompt, e.g. vstar synopsis 'a landscape from winter to spring'")
        result = make_synopsis(
            prompt or "",
            backend=backend,
            num_states=states,
            min_states=min_states,
            max_states=max_states,
            style=style,
            cache=not no_cache,
            **opts,
        )
    except (SynopsisInputError, ValueError, TypeError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    except SynopsisError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # never show a traceback to the user
        typer.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        payload = {"prompt": result.prompt, "states": result.states, "backend": result.backend, "model": result.model}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        for state in result.states:
            typer.echo(state)
