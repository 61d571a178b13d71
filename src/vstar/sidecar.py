"""The JSON sidecar written next to every video, read back through a typed schema.

``vstar generate --from clip.json`` reproduces a video from it, so a sidecar is input like any other: every
field is checked for its type, a missing or ill-typed field is an error naming it, and a sidecar written by
a newer vstar is read with a notice. Fields and settings this version does not know (a newer vstar's) are
named by :meth:`Sidecar.unknown` and ignored; ``--strict`` refuses them. Sidecars of vstar 0.3.0 and later
also record the outputs' sha256 (``files``) and the identity of the weights (``weights``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

import vstar
from vstar.io import read_sidecar

_OPTIONAL_TEXT = (str, type(None))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Sidecar:
    """What a sidecar records: the states, the model and every generation setting (``settings``)."""

    vstar_version: str
    model: str
    synopsis: list[str]
    prompt: str | None = None
    synopsis_source: str | None = None
    synopsis_info: dict[str, Any] = field(default_factory=dict)
    keyframes: list[int] = field(default_factory=list)
    model_path: str | None = None
    device: str | None = None
    dtype: str | None = None
    upscale: int = 1
    settings: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    command: str | None = None
    noise: dict[str, Any] | None = None  # optimized initial noise: its file beside the sidecar, sha256, summary
    kind: str | None = None  # "generation" (vstar >= 0.3.0)
    files: dict[str, str] = field(default_factory=dict)  # the output files beside it -> sha256 (vstar >= 0.3.0)
    weights: dict[str, Any] | None = None  # vstar.backbones.weights_identity of the loaded model (vstar >= 0.3.0)
    seed: int | None = None  # vstar 0.1.0 kept seed and playback fps beside the settings
    fps: int | None = None
    ignored: tuple[str, ...] = field(default=(), compare=False)  # top-level fields this vstar does not know

    @classmethod
    def from_dict(cls, data: Any, source: str = "the sidecar") -> Sidecar:
        """Check every field's type; raise a ValueError naming the first missing or ill-typed one."""
        if not isinstance(data, dict):
            raise ValueError(f"{source} must hold a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"ignored"}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("vstar_version", "model", "synopsis"):
            if values.get(name) is None:
                raise ValueError(f"{source} has no {name!r}; pass a sidecar written by vstar generate")
        for name, value in values.items():
            problem = _field_problem(name, value)
            if problem:
                raise ValueError(f"{source}: field {name!r} {problem}, got {value!r}")
        return cls(**values, ignored=tuple(sorted(set(data) - known)))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "ignored"}

    def unknown(self) -> list[str]:
        """The fields and settings (``settings.NAME``) of this sidecar that this vstar does not know."""
        from vstar.config import known_settings

        return [*self.ignored, *(f"settings.{k}" for k in sorted(set(self.settings) - known_settings()))]

    def notes(self) -> list[str]:
        """Notices: a newer vstar wrote this sidecar; fields or settings it has that this vstar ignores."""
        notes = []
        try:
            if Version(self.vstar_version) > Version(vstar.__version__):
                notes.append(f"this sidecar was written by vstar {self.vstar_version}, newer than this vstar "
                             f"{vstar.__version__}; upgrade (pip install -U vstar-video) if a setting is not understood")
        except InvalidVersion:
            notes.append(f"the sidecar's vstar_version {self.vstar_version!r} is not a version number")
        unknown = self.unknown()
        if unknown:
            notes.append(f"ignored what this vstar does not know in the sidecar: {', '.join(unknown)} "
                         "(--strict refuses such a sidecar)")
        return notes


def _field_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be field ``name`` (None when it can)."""
    if name in ("vstar_version", "model"):
        return None if isinstance(value, str) and value.strip() else "must be non-empty text"
    if name in ("prompt", "synopsis_source", "model_path", "device", "dtype", "output", "command"):
        return None if isinstance(value, _OPTIONAL_TEXT) else "must be text or null"
    if name == "synopsis":
        ok = isinstance(value, list) and value and all(isinstance(s, str) and s.strip() for s in value)
        return None if ok else "must be a non-empty list of non-empty texts (the visual states)"
    if name == "keyframes":
        ok = isinstance(value, list) and all(_is_int(k) and k >= 0 for k in value)
        return None if ok else "must be a list of frame indices"
    if name in ("synopsis_info", "settings"):
        return None if isinstance(value, dict) else "must be a JSON object"
    if name in ("noise", "weights"):
        return None if value is None or isinstance(value, dict) else "must be a JSON object or null"
    if name == "kind":
        return None if value in (None, "generation") else "must be 'generation' (this is not a video's sidecar)"
    if name == "files":
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        return None if ok else "must map file names to sha256 texts"
    if name == "upscale":
        return None if _is_int(value) and value >= 1 else "must be a whole number >= 1"
    if name in ("seed", "fps"):
        return None if value is None or (_is_int(value) and value >= 0) else "must be a whole number or null"
    return None


def load_sidecar(path: str | Path) -> Sidecar:
    """Read and check the sidecar at ``path`` (see :class:`Sidecar`)."""
    return Sidecar.from_dict(read_sidecar(path), source=str(path))
