"""Writing and reading videos (mp4, gif, a folder of PNGs) and the JSON sidecar, always atomically."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

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


FRAMES_MARKER = ".vstar-frames"  # inside every PNG folder vstar writes; --overwrite replaces only such folders
FRAME_NAME = re.compile(r"^frame_\d{5}\.png$")
OutputKind = Literal["video", "frames", "sidecar"]


def name_limit(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` accepts (255 where it cannot tell)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def written_by_vstar(path: Path, kind: OutputKind) -> bool:
    """Whether ``path`` is an output vstar wrote: a frames folder with the marker and only frames in it, or a
    sidecar holding a ``vstar_version``. Video files are replaced when named with ``--overwrite``."""
    if kind == "frames":
        if not (path.is_dir() and (path / FRAMES_MARKER).is_file()):
            return False
        return all(entry.name == FRAMES_MARKER or FRAME_NAME.match(entry.name) for entry in path.iterdir())
    if kind == "sidecar":
        try:
            return "vstar_version" in json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return False
    return path.is_file()


def check_writable(path: Path, overwrite: bool, kind: OutputKind = "video") -> None:
    """Fail before any work when vstar may not write ``path``: it exists (without ``overwrite``) or vstar did
    not write it, it is a symbolic link or the wrong kind of thing, its name is too long, or its folder cannot
    be written. ``kind``: a video file, a folder of PNG frames, or a JSON sidecar."""
    parent = path.parent if str(path.parent) else Path(".")
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {parent}: {existing} is not a writable folder")
    limit = name_limit(existing)
    if len(path.name.encode()) + 16 > limit:  # room for the hidden temporary name beside it
        raise ValueError(f"the output name {path.name[:40]}... is {len(path.name.encode())} bytes; this file system "
                         f"allows {limit} (vstar needs 16 of them for its temporary file): choose a shorter name")
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link; vstar does not write through links: give the real path")
    if not path.exists():
        return
    if kind == "frames" and not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a folder of PNG frames; choose another --out")
    if kind != "frames" and path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name (e.g. {path.name}.mp4) or another --out")
    if not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite (overwrite=True) or choose another path")
    if not written_by_vstar(path, kind):
        what = (f"holds files vstar did not write (no {FRAMES_MARKER} marker, or more than frame_*.png)"
                if kind == "frames" else "is not a vstar sidecar (no vstar_version)")
        raise FileExistsError(f"{path} {what}; --overwrite only replaces vstar's own outputs: choose another "
                              "--out or move it away yourself")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def lock_path(path: Path) -> Path:
    """The claim file of an output: ``.NAME.vstar-lock`` beside it."""
    return path.with_name(f".{path.name}.vstar-lock")


@contextmanager
def claim_outputs(*paths: Path) -> Iterator[None]:
    """Claim outputs before the work starts, so a second run writing them fails at once instead of at the end.

    Each claim is a lock file created exclusively beside the output, holding the process id; a claim whose
    process has ended is taken over. Claims are removed when the block ends (also on Ctrl-C and SIGTERM).
    """
    taken: list[Path] = []
    try:
        for path in paths:
            lock = lock_path(path)
            lock.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(2):
                try:
                    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    try:
                        pid = int(lock.read_text().strip() or 0)
                    except (OSError, ValueError):
                        pid = 0
                    if pid and _pid_alive(pid):
                        raise FileExistsError(f"another vstar run (process {pid}) is writing {path}; wait for it "
                                              "or choose another --out") from None
                    lock.unlink(missing_ok=True)  # a stale claim of a run that has ended
                    continue
                with os.fdopen(fd, "w") as handle:
                    handle.write(str(os.getpid()))
                taken.append(lock)
                break
        yield
    finally:
        for lock in taken:
            lock.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path, overwrite: bool, kind: OutputKind = "video") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error or signal that
    raises (Ctrl-C, SIGTERM with :func:`vstar.cli.main`) it is removed. A frames folder gets the marker."""
    check_writable(path, overwrite, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        if kind == "frames":
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
            (tmp / FRAMES_MARKER).write_text("frames written by vstar; --overwrite may replace this folder\n")
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
            os.close(fd)
            tmp = Path(name)
            tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        yield tmp
        if kind == "frames" and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
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
    with atomic_path(path, overwrite, "frames" if kind == "png" else "video") as tmp:
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
    with atomic_path(path, overwrite, "sidecar") as tmp:
        tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
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
