"""``vstar ui``: the web page (Gradio, the ``ui`` extra), served on this machine unless told otherwise."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from vstar.cli.common import friendly_errors

DEFAULT_HOST = "127.0.0.1"
UI_EXTRA_HINT = "the web page needs Gradio: pip install 'vstar-video[ui]'"


@friendly_errors
def ui(
    model: Annotated[str | None, typer.Option(help="The model the page opens on (default: toy-shapes offline, see `vstar models`).")] = None,
    host: Annotated[str, typer.Option(help="Address to serve on; 0.0.0.0 lets other machines in.")] = DEFAULT_HOST,
    port: Annotated[int | None, typer.Option(help="Port (default: 7860, or the next free one).")] = None,
    share: Annotated[bool, typer.Option("--share", help="Also serve through a temporary public gradio.live link.")] = False,
) -> None:
    """Serve the web page: a prompt, suggested states to edit, a model and a length, then the video, its sidecar,
    temporal attention and metrics. One generation runs at a time; others wait with their position shown.
    Outputs go to a per-session folder under the vstar cache; folders older than a day are removed on start."""
    from vstar.backbones.registry import get_spec
    from vstar.ui.session import clean_sessions

    if model is not None:
        get_spec(model)
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"--port must be 1-65535, got {port}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from vstar.ui.app import launch
    except ModuleNotFoundError as err:
        if err.name != "gradio":
            raise
        raise RuntimeError(UI_EXTRA_HINT) from None
    clean_sessions()
    launch(model, host, port, share)
