"""A small disk cache of LLM answers, so that the same request is not paid for twice.

Entries live in ``<cache root>/synopsis/<sha256>.json``; the root is ``$VSTAR_CACHE_DIR`` when set, else the
user cache dir (``platformdirs``). The key covers the backend, model, server, prompt, number of states and
instruction version. Only the raw answer is stored (never an API key); it is re-parsed on every hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

ENV_VAR = "VSTAR_CACHE_DIR"


def default_root() -> Path:
    """The vstar cache root: ``$VSTAR_CACHE_DIR`` or the platform's user cache dir for vstar."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("vstar"))


class SynopsisCache:
    """Raw LLM answers on disk, keyed by a dict of request fields."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.directory = (Path(root).expanduser() if root is not None else default_root()) / "synopsis"

    @staticmethod
    def key(fields: dict[str, Any]) -> str:
        """A stable hex digest of ``fields`` (JSON-serialisable values)."""
        blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record, or None when absent or unreadable (a broken entry counts as a miss)."""
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("raw"), str) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` atomically; a cache that cannot be written is silently skipped."""
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, ensure_ascii=False, indent=1)
            os.replace(tmp, self.path(key))
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
