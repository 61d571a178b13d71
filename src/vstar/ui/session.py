"""Per-visitor output folders of the web page: ``<vstar cache>/ui/<session>/``, old ones cleaned on start.

The cache root is the one the synopsis cache uses (``$VSTAR_CACHE_DIR`` or the platform's user cache dir), so
one variable moves everything vstar keeps.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from vstar.synopsis.cache import default_root

MAX_AGE_S = 24 * 3600.0  # session folders untouched for longer are removed when the page starts


def ui_root(root: str | Path | None = None) -> Path:
    """Where the page keeps its session folders: ``root`` (default: the vstar cache root) / ``ui``."""
    return (Path(root).expanduser() if root is not None else default_root()) / "ui"


def session_dir(session_id: str, root: str | Path | None = None) -> Path:
    """The (created) output folder of one visitor's session; ``session_id`` is Gradio's session hash."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", session_id or ""):
        raise ValueError(f"a session id is 1-64 letters, digits, '-' or '_', got {session_id!r}")
    folder = ui_root(root) / session_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def clean_sessions(root: str | Path | None = None, max_age_s: float = MAX_AGE_S,
                   now: float | None = None) -> list[Path]:
    """Remove the session folders whose newest file (or the folder itself) is older than ``max_age_s``
    seconds; returns the removed folders. A missing root is nothing to clean."""
    base = ui_root(root)
    if not base.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - max_age_s
    removed = []
    for folder in base.iterdir():
        if not folder.is_dir():
            continue
        newest = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
        if newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
