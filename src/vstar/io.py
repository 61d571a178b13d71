"""Writing and reading videos (mp4, gif, a folder of PNGs) and the JSON sidecar, always atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".gif")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """``(F, H, W, 3)`` float frames in [0, 1] (or uint8) -> uint8 with rounding."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (F, H, W, 3), got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def output_kind(path: Path) -> str:
    """``"mp4"``, ``"gif"`` or ``"png"`` (a path without a suffix is a folder of PNG frames)."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return suffix[1:]
    if suffix == "":
        return "png"
    raise ValueError(f"unsupported output {path}; use a .mp4 or .gif file, or a folder name for PNG frames")


def check_writable(path: Path, overwrite: bool) -> None:
    """Fail before any work when ``path`` exists (without ``overwrite``) or its folder cannot be written."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite (overwrite=True) or choose another path")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {parent}: {existing} is not a writable folder")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path, overwrite: bool, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        if is_dir and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise


def write_video(frames: np.ndarray, path: str | Path, fps: int = 8, overwrite: bool = False,
                upscale: int = 1) -> Path:
    """Write ``(F, H, W, 3)`` frames (float in [0, 1] or uint8) to ``.mp4`` (H.264), ``.gif`` or a PNG folder.

    ``upscale`` enlarges each pixel to an ``upscale`` x ``upscale`` block (for small models' tiny frames).
    """
    path = Path(path)
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    data = to_uint8(frames).repeat(upscale, axis=1).repeat(upscale, axis=2)
    kind = output_kind(path)
    with atomic_path(path, overwrite, is_dir=kind == "png") as tmp:
        if kind == "png":
            for i, frame in enumerate(data):
                iio.imwrite(tmp / f"frame_{i:05d}.png", frame)
        elif kind == "gif":
            iio.imwrite(tmp, data, extension=".gif", duration=1000 / fps, loop=0)
        else:
            iio.imwrite(tmp, data, plugin="FFMPEG", fps=fps, **MP4_OPTIONS)
    return path


# H.264 in yuv420p plays everywhere; one x264 thread and bitexact flags make equal frames give equal bytes.
MP4_OPTIONS: dict[str, Any] = {
    "codec": "libx264", "pixelformat": "yuv420p", "macro_block_size": 2, "quality": None,
    "output_params": ["-crf", "18", "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact"],
}


def read_video(path: str | Path) -> np.ndarray:
    """Read frames ``(F, H, W, 3)`` uint8 from an mp4/gif file or a folder of PNG frames."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            raise ValueError(f"{path} holds no PNG frames")
        return np.stack([iio.imread(f)[..., :3] for f in files])
    if path.suffix.lower() == ".gif":
        frames = iio.imread(path, extension=".gif", mode="RGB")
    else:
        frames = iio.imread(path, plugin="FFMPEG")
    return np.asarray(frames)[..., :3]


def sidecar_path(video_path: str | Path) -> Path:
    """``out.mp4`` -> ``out.json``; a PNG folder ``frames`` -> ``frames.json`` beside it."""
    path = Path(video_path)
    return path.with_name(path.stem + ".json") if path.suffix else path.with_name(path.name + ".json")


def write_sidecar(metadata: dict[str, Any], path: str | Path, overwrite: bool = False) -> Path:
    """Write ``metadata`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Load a sidecar; a clear error when it is missing or not a JSON object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"sidecar {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); pass the .json file written next to a video") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (the sidecar written next to a video)")
    return data
