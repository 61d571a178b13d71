"""The ``vstar`` command: parses flags, calls the library, prints. Errors exit with code 2 and one line.

One module per command (``generate``, ``batch``, ``synopsis``, ``analyze``, ``evaluate``, ``models``,
``convert``) and one shared module (:mod:`vstar.cli.common`); no command imports another, and each imports
torch, diffusers and the pipeline only when it runs, so ``vstar --help`` starts at once.
"""

from __future__ import annotations

import signal
from typing import Any

import typer

import vstar
from vstar.cli import analyze, batch, convert, evaluate, generate, models, synopsis, ui

app = typer.Typer(
    name="vstar", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Longer, dynamic text-to-video from pretrained diffusion models (Video Synopsis Prompting and "
         "Temporal Attention Regularization).",
)


@app.command()
def version() -> None:
    """Print the vstar version."""
    typer.echo(vstar.__version__)


app.command()(generate.generate)
app.command()(batch.batch)
app.command(help="Split a prompt into visual states (Video Synopsis Prompting).")(synopsis.synopsis)
app.command()(models.models)
app.command()(evaluate.evaluate)
app.command()(analyze.analyze)
app.command()(convert.convert_videocrafter2)
app.command()(ui.ui)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """The ``vstar`` entry point: SIGTERM unwinds like Ctrl-C, so temporary files and claims are removed."""
    signal.signal(signal.SIGTERM, _terminate)
    app()
