"""Writing and reading videos (mp4, gif, a folder of PNGs) and the JSON sidecar; every write goes through
:mod:`vstar.outputs` (authorship checks, temporary names, all-or-nothing commits)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from vstar.outputs import StagedResult, staging

VIDEO_SUFFIXES = (".mp4", ".gif")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """``(F, H, W, 3)`` float frames in [0, 1] (or uint8) -> uint8 with rounding."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"frames must have shape (F, H, W, 3) with F, H, W >= 1, got {frames.shape}")
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


def write_video(frames: np.ndarray, path: str | Path, fps: int = 8, overwrite: bool = False,
                upscale: int = 1, *, result: StagedResult | None = None, record: Path | None = None) -> Path:
    """Write ``(F, H, W, 3)`` frames (float in [0, 1] or uint8) to ``.mp4`` (H.264), ``.gif`` or a PNG folder.

    ``upscale`` enlarges each pixel to an ``upscale`` x ``upscale`` block (for small models' tiny frames).
    With ``result`` the video is staged as part of that result (committed with it) and the temporary path
    it was written to is returned; otherwise it is written on its own and ``path`` returned. ``overwrite``
    replaces an existing video only when ``record`` (default: the sidecar beside it) names it with its
    sha256, or a frames folder that carries vstar's marker.
    """
    path = Path(path)
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    data = to_uint8(frames).repeat(upscale, axis=1).repeat(upscale, axis=2)
    kind = output_kind(path)
    with staging(result, overwrite) as staged:
        tmp = staged.stage(path, "frames" if kind == "png" else "video", record or sidecar_path(path))
        if kind == "png":
            for i, frame in enumerate(data):
                iio.imwrite(tmp / f"frame_{i:05d}.png", frame)
        elif kind == "gif":
            _write_gif(data, tmp, fps)
        else:
            iio.imwrite(tmp, data, plugin="FFMPEG", fps=fps, **MP4_OPTIONS)
    return tmp if result is not None else path


# H.264 in yuv420p plays everywhere; one x264 thread and bitexact flags make equal frames give equal bytes.
MP4_OPTIONS: dict[str, Any] = {
    "codec": "libx264", "pixelformat": "yuv420p", "macro_block_size": 2, "quality": None,
    "output_params": ["-crf", "18", "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact"],
}


VIDEO_HINT = "give an .mp4, a .gif or a folder of PNG frames"


def _changed_box(previous: np.ndarray, frame: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the smallest box holding every pixel where the ``(H, W, 3)`` frames
    differ; a 1 x 1 box at the origin when none does (a GIF frame cannot be empty)."""
    changed = np.any(previous != frame, axis=-1)  # (H, W)
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    if rows.size == 0:
        return 0, 0, 1, 1
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _write_gif(data: np.ndarray, path: Path, fps: int) -> None:
    """Write ``(F, H, W, 3)`` uint8 frames as a looping GIF that keeps all ``F`` frames.

    Pillow's ``save_all`` merges identical consecutive frames (an all-still video becomes one frame), so the
    file is put together from Pillow's GIF blocks: the first frame whole, each later one as the box where it
    differs from the one before (1 pixel when it does not), drawn over it, each with its own adaptive palette.
    GIF delays are whole centiseconds: frame ``i`` lasts ``round(100 (i + 1) / fps) - round(100 i / fps)``,
    so the video keeps its length (8 fps: 12 and 13 cs in turn).
    """
    from PIL import GifImagePlugin, Image

    ticks = np.round(np.arange(len(data) + 1) * 100 / fps).astype(int)  # centiseconds since the start
    with path.open("wb") as file:
        for i, frame in enumerate(data):
            top, left, bottom, right = _changed_box(data[i - 1], frame) if i else (0, 0, *frame.shape[:2])
            image = Image.fromarray(frame[top:bottom, left:right]).convert("P", palette=Image.Palette.ADAPTIVE)
            if i == 0:  # the canvas size, the loop and the first palette as the global one
                file.write(b"".join(GifImagePlugin.getheader(image, info={"loop": 0})[0]))
            delay = int(ticks[i + 1] - ticks[i]) * 10  # ms
            file.write(b"".join(GifImagePlugin.getdata(image, offset=(left, top), duration=delay, disposal=1,
                                                       include_color_table=i > 0)))
        file.write(b";")  # the GIF trailer


def _unreadable(name: str, reason: str, hint: str = VIDEO_HINT) -> ValueError:
    """The one-line error for a video that cannot be read: "could not read <name>: <reason>; <hint>"."""
    return ValueError(f"could not read {name}: {reason}; {hint}")


def _natural_key(name: str) -> list[str | int]:
    """Sort key that orders numbers by value: ``frame_2.png`` before ``frame_10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_png_frame(path: Path, name: str) -> np.ndarray:
    """One PNG as ``(H, W, 3)`` uint8 RGB, whatever its mode: grayscale (with alpha), palette, RGB(A), 8 or 16
    bit; alpha is dropped and 16-bit samples keep their high byte. ``name`` is how errors call the video."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # 16-bit grayscale ("I;16", or "I" in older Pillow)
                gray = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=-1)
            return np.asarray(image.convert("RGBA"))[..., :3]  # RGBA: every mode converts to it without warnings
    except MemoryError:
        raise
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError... for a damaged file or another kind
        raise _unreadable(name, f"{path.name} is not a PNG image that can be decoded (damaged or another kind "
                         "of file)") from None


def _read_png_folder(folder: Path, name: str) -> np.ndarray:
    """The PNG files of ``folder`` (in natural order, hidden files skipped) as ``(F, H, W, 3)`` uint8."""
    try:
        files = sorted((f for f in folder.iterdir() if f.suffix.lower() == ".png" and not f.name.startswith(".")
                        and f.is_file()), key=lambda f: _natural_key(f.name))
    except OSError as error:
        raise _unreadable(name, (error.strerror or "not readable").lower()) from None
    if not files:
        raise _unreadable(name, "the folder holds no PNG frames")
    frames = [_read_png_frame(files[0], name)]
    for file in files[1:]:
        frame = _read_png_frame(file, name)
        if frame.shape != frames[0].shape:
            (h0, w0), (h, w) = frames[0].shape[:2], frame.shape[:2]
            raise _unreadable(name, f"its PNG frames differ in size ({files[0].name} is {w0}x{h0}, {file.name} is "
                             f"{w}x{h})", "give PNG frames of one size")
        frames.append(frame)
    return np.stack(frames)


def _read_video_file(path: Path, name: str) -> np.ndarray:
    """An mp4 (or anything ffmpeg decodes) or a gif as ``(F, H, W, 3)`` uint8."""
    try:
        with path.open("rb") as file:
            empty = not file.read(1)
    except OSError as error:
        raise _unreadable(name, (error.strerror or "not readable").lower()) from None
    if empty:
        raise _unreadable(name, "the file is empty (0 bytes)")
    try:
        if path.suffix.lower() == ".gif":
            frames = iio.imread(path, plugin="pillow", mode="RGB")
        else:
            frames = iio.imread(path, plugin="FFMPEG")
    except MemoryError:
        raise
    except Exception:  # OSError, RuntimeError, struct.error...; ffmpeg's messages hold its whole log
        raise _unreadable(name, "not a video that can be decoded (another kind of file, truncated, damaged or "
                         "without frames)") from None
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise _unreadable(name, "it holds no frames")
    return frames


def read_video(path: str | Path, name: str | None = None) -> np.ndarray:
    """Read frames ``(F, H, W, 3)`` uint8 from an mp4/gif file or a folder of PNG frames.

    A missing path raises ``FileNotFoundError``; anything else that gives no frames (an empty, truncated,
    unreadable or non-video file, a folder without PNGs or with PNGs of different sizes) a one-line
    ``ValueError`` that names it. ``name`` is how messages call the video (default: its path), e.g.
    "the TAR reference clip.mp4".
    """
    path = Path(path)
    name = name or str(path)
    if not path.exists():
        raise FileNotFoundError(f"{name} does not exist; {VIDEO_HINT}")
    return _read_png_folder(path, name) if path.is_dir() else _read_video_file(path, name)


def sidecar_path(video_path: str | Path) -> Path:
    """``out.mp4`` -> ``out.json``; a PNG folder ``frames`` -> ``frames.json`` beside it."""
    path = Path(video_path)
    return path.with_name(path.stem + ".json") if path.suffix else path.with_name(path.name + ".json")


def write_sidecar(metadata: dict[str, Any], path: str | Path, overwrite: bool = False, *,
                  result: StagedResult | None = None) -> Path:
    """Write ``metadata`` as indented JSON (staged into ``result`` when given, else on its own)."""
    path = Path(path)
    with staging(result, overwrite) as staged:
        tmp = staged.stage(path, "sidecar")
        tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Load a sidecar; a clear error when it is missing or not a JSON object."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass the sidecar .json written next to a video")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"sidecar {path} does not exist") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file; pass the sidecar .json written next to a video") from None
    except OSError as err:
        raise ValueError(f"cannot read the sidecar {path}: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); pass the .json file written next to a video") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (the sidecar written next to a video)")
    return data
