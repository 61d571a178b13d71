"""Toy scenes: one filled shape on a flat background, described by a caption and rendered procedurally.

A :class:`Scene` is a point in a small vocabulary (shape x colour x size x background x position x motion);
:func:`caption` turns it into text and :func:`parse_caption` back. :func:`render_clip` draws it as an
anti-aliased ``(F, H, W, 3)`` float32 clip in ``[0, 1]``. Sizes and drift are given in pixels at 32 px and
scale with the frame size.

A :class:`Motion` passed to :func:`render_clip` moves the shape at a given speed (pixels per frame, horizontally
and vertically, bouncing off the frame edges so it always stays inside) and grows or shrinks it; the clip
still shows one state. :func:`sample_clip` draws training clips with such motion and the caption details
that stay true for the whole clip.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.1),
    "blue": (0.15, 0.3, 1.0),
    "yellow": (0.95, 0.9, 0.1),
    "white": (1.0, 1.0, 1.0),
    "purple": (0.6, 0.1, 0.8),
}
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "black": (0.0, 0.0, 0.0),
    "gray": (0.45, 0.45, 0.45),
    "navy": (0.05, 0.08, 0.3),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 4.0, "large": 6.0}  # half-extent in pixels at 32 px
POSITIONS: tuple[str, ...] = ("left", "center", "right")
POSITION_X: dict[str, float] = {"left": 0.25, "center": 0.5, "right": 0.75}  # x centre / width; y is 1/2
MOTIONS: tuple[str, ...] = ("still", "drifting left", "drifting right")
DRIFT_PIXELS = 3.0  # total horizontal travel over a clip at 32 px, centred on the position
REFERENCE_SIZE = 32  # frame side at which SIZES and DRIFT_PIXELS are given

_POSITION_PHRASES = {"left": "on the left", "center": "in the center", "right": "on the right"}
_POSITION_WORDS = {"left": "left", "right": "right", "center": "center", "centre": "center", "middle": "center"}
_SUPERSAMPLE = 4


def _check(name: str, value: str, valid: tuple[str, ...] | dict) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(valid)}")


@dataclass(frozen=True)
class Scene:
    """One shape on a background; every field is a vocabulary word (see the module constants)."""

    shape: str
    color: str
    size: str
    background: str
    position: str
    motion: str = "still"

    def __post_init__(self) -> None:
        _check("shape", self.shape, SHAPES)
        _check("color", self.color, COLORS)
        _check("size", self.size, SIZES)
        _check("background", self.background, BACKGROUNDS)
        _check("position", self.position, POSITIONS)
        _check("motion", self.motion, MOTIONS)


OPTIONAL_DETAILS: tuple[str, ...] = ("size", "background", "position", "motion")  # what a caption may leave out


def caption(scene: Scene, omit: Collection[str] = ()) -> str:
    """``"a small red circle on a black background, on the left"`` (+ ``", drifting right"`` if moving).

    ``omit`` leaves out any of :data:`OPTIONAL_DETAILS`: ``caption(scene, omit=("size", "position"))`` is
    ``"a red circle on a black background"``. Colour and shape are always named.
    """
    unknown = set(omit) - set(OPTIONAL_DETAILS)
    if unknown:
        raise ValueError(f"cannot omit {sorted(unknown)}; omit any of {', '.join(OPTIONAL_DETAILS)}")
    words = [scene.size] if "size" not in omit else []
    parts = [" ".join(["a", *words, scene.color, scene.shape])]
    if "background" not in omit:
        parts[0] += f" on a {scene.background} background"
    if "position" not in omit:
        parts.append(_POSITION_PHRASES[scene.position])
    if "motion" not in omit and scene.motion != "still":
        parts.append(scene.motion)
    return ", ".join(parts)


def parse_caption(text: str) -> Scene | None:
    """The scene a caption describes, found by its vocabulary words; ``None`` without a shape or colour.

    Tolerant of wording ("big"/"tiny", "grey", "centre"/"middle", plurals, "moving left"). Missing fields
    default to a large shape on a black background, in the center, still. With several colours or shapes
    the first one wins; the word right before "background" is read as the background, never the colour.
    """
    text = text.lower()
    shape = re.search(r"\b(" + "|".join(SHAPES) + r")s?\b", text)
    background = re.search(r"\b(black|gr[ae]y|navy)\s+background\b", text)
    without_bg = text[: background.start()] + text[background.end() :] if background else text
    color = re.search(r"\b(" + "|".join(COLORS) + r")\b", without_bg)
    if shape is None or color is None:
        return None
    size = re.search(r"\b(small|tiny|little|large|big)\b", text)
    motion = re.search(r"\b(?:drifting|moving|sliding)\s+(?:to\s+the\s+)?(left|right)\b", text)
    without_motion = text[: motion.start()] + text[motion.end() :] if motion else text
    position = re.search(r"\b(left|right|center|centre|middle)\b", without_motion)
    return Scene(
        shape=shape.group(1),
        color=color.group(1),
        size="small" if size and size.group(1) in ("small", "tiny", "little") else "large",
        background=background.group(1).replace("grey", "gray") if background else "black",
        position=_POSITION_WORDS[position.group(1)] if position else "center",
        motion=f"drifting {motion.group(1)}" if motion else "still",
    )


def _center_x(scene: Scene, t: float) -> float:
    """Shape centre x as a fraction of the width at clip time ``t`` in [0, 1]."""
    direction = {"still": 0.0, "drifting left": -1.0, "drifting right": 1.0}[scene.motion]
    return POSITION_X[scene.position] + direction * (t - 0.5) * DRIFT_PIXELS / REFERENCE_SIZE


def shape_coverage(shape: str, cx: float, cy: float, r: float, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage ``(height, width)`` float32 in [0, 1] of a shape (4x4 supersampled, box filter).

    ``(cx, cy)`` is the centre of the shape's ``2r x 2r`` bounding box in pixel units (pixel i spans
    ``[i, i + 1)``). The triangle points up: apex at ``cy - r``, base of width ``2r`` at ``cy + r``.
    """
    _check("shape", shape, SHAPES)
    x = (np.arange(width * _SUPERSAMPLE) + 0.5)[None, :] / _SUPERSAMPLE - cx
    y = (np.arange(height * _SUPERSAMPLE) + 0.5)[:, None] / _SUPERSAMPLE - cy
    if shape == "circle":
        inside = x**2 + y**2 <= r**2
    elif shape == "square":
        inside = (np.abs(x) <= r) & (np.abs(y) <= r)
    else:
        inside = (y <= r) & (np.abs(x) <= (y + r) / 2)
    return inside.reshape(height, _SUPERSAMPLE, width, _SUPERSAMPLE).mean(axis=(1, 3)).astype(np.float32)


def _draw(scene: Scene, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """The scene's shape with box centre ``(cx, cy)`` and half-extent ``r`` (pixels) on its background."""
    alpha = shape_coverage(scene.shape, cx, cy, r, size, size)[..., None]
    fg = np.asarray(COLORS[scene.color], dtype=np.float32)
    bg = np.asarray(BACKGROUNDS[scene.background], dtype=np.float32)
    return (bg * (1 - alpha) + fg * alpha).astype(np.float32)


def render_frame(scene: Scene, t: float = 0.0, size: int = 32) -> np.ndarray:
    """One frame at clip time ``t`` in [0, 1]: ``(size, size, 3)`` float32 in [0, 1]."""
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1] (fraction of the clip), got {t}")
    r = SIZES[scene.size] * size / REFERENCE_SIZE
    return _draw(scene, _center_x(scene, t) * size, 0.5 * size, r, size)


@dataclass(frozen=True)
class Motion:
    """Gradual motion of a clip's shape, in pixels per frame at 32 px (scaled with the frame size).

    ``dx`` / ``dy``: velocity (positive = right / down); ``grow``: change of the half-extent per frame
    (negative shrinks, never below 0.5 px); ``center``: ``(x, y)`` of the shape at mid-clip as fractions of
    the frame (default: the scene's position, vertically centred). The path is centred on mid-clip and
    reflected at the frame edges, so the whole shape stays inside the frame (it bounces).
    """

    dx: float = 0.0
    dy: float = 0.0
    grow: float = 0.0
    center: tuple[float, float] | None = None


def _reflect(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``x`` folded into ``[lo, hi]`` (elementwise) by reflection at both ends: a bouncing path."""
    span = np.maximum(hi - lo, 1e-9)
    phase = np.mod(x - lo, 2 * span)
    return np.where(hi > lo, lo + np.where(phase <= span, phase, 2 * span - phase), (lo + hi) / 2)


def motion_path(scene: Scene, motion: Motion, num_frames: int, size: int = 32) -> np.ndarray:
    """``(num_frames, 3)`` float64: the shape's box centre x, y and half-extent r per frame, in pixels."""
    scale = size / REFERENCE_SIZE
    u = np.arange(num_frames) - (num_frames - 1) / 2  # frames from mid-clip
    r = np.maximum(SIZES[scene.size] + motion.grow * u, 0.5) * scale
    cx, cy = motion.center if motion.center is not None else (POSITION_X[scene.position], 0.5)
    x = _reflect(cx * size + motion.dx * scale * u, r, size - r)
    y = _reflect(cy * size + motion.dy * scale * u, r, size - r)
    return np.stack([x, y, r], axis=1)


def _clip_times(num_frames: int) -> np.ndarray:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def render_clip(
    scene: Scene,
    num_frames: int = 16,
    size: int = 32,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
    motion: Motion | None = None,
) -> np.ndarray:
    """A clip ``(num_frames, size, size, 3)`` float32 in [0, 1], frame f at ``t = f / (num_frames - 1)``.

    ``noise`` > 0 adds Gaussian pixel noise of that standard deviation (drawn from ``rng``), then clips.
    Without ``motion`` the shape sits at the scene's position and drifts :data:`DRIFT_PIXELS` in all if the
    scene drifts; with a :class:`Motion` it follows :func:`motion_path` instead (the scene's position and
    motion words are then not used for rendering).
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0 (pixel standard deviation), got {noise}")
    if motion is None:
        clip = np.stack([render_frame(scene, float(t), size) for t in _clip_times(num_frames)])
    else:
        if size < 1:
            raise ValueError(f"size must be >= 1 pixel, got {size}")
        path = motion_path(scene, motion, len(_clip_times(num_frames)), size)
        clip = np.stack([_draw(scene, x, y, r, size) for x, y, r in path])
    if noise > 0:
        rng = np.random.default_rng() if rng is None else rng
        clip = np.clip(clip + rng.normal(0.0, noise, clip.shape), 0.0, 1.0).astype(np.float32)
    return clip


def render_transition(a: Scene, b: Scene, num_frames: int = 16, size: int = 32) -> np.ndarray:
    """``(num_frames, size, size, 3)`` float32: frames ``f < num_frames / 2`` show ``a``, the rest ``b``."""
    times = _clip_times(num_frames)
    return np.stack(
        [render_frame(a if f < num_frames / 2 else b, float(t), size) for f, t in enumerate(times)]
    )


def sample_scene(rng: np.random.Generator, motion_prob: float = 0.3) -> Scene:
    """A uniformly random scene; it drifts (left or right, equally likely) with probability ``motion_prob``."""
    if not 0.0 <= motion_prob <= 1.0:
        raise ValueError(f"motion_prob must be in [0, 1], got {motion_prob}")

    def pick(options: tuple[str, ...] | dict) -> str:
        return list(options)[int(rng.integers(len(options)))]

    moving = rng.random() < motion_prob
    return Scene(
        shape=pick(SHAPES),
        color=pick(COLORS),
        size=pick(SIZES),
        background=pick(BACKGROUNDS),
        position=pick(POSITIONS),
        motion=pick(MOTIONS[1:]) if moving else "still",
    )


SPEEDS: dict[str, float] = {"still": 0.0, "slow": 0.125, "medium": 0.25, "fast": 0.5}  # px per frame at 32 px
SPEED_PROBS: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)
GROWTH_PIXELS = 1.5  # total change of the half-extent over a growing or shrinking clip: stays in its size class


def _third(x: float, size: int) -> str:
    return "left" if x < size / 3 else "right" if x > 2 * size / 3 else "center"


def sample_clip(
    rng: np.random.Generator, num_frames: int, grow_prob: float = 0.25
) -> tuple[Scene, Motion, tuple[str, ...]]:
    """A random training clip: its scene, its motion and the caption details that must be left out.

    The speed is one of :data:`SPEEDS` (still with probability 0.4), horizontal, vertical or diagonal; with
    probability ``grow_prob`` the shape grows or shrinks by :data:`GROWTH_PIXELS` over the clip (so "small" and
    "large" stay true). The path never touches the frame edge (no bounce, so "drifting left" stays true). The
    scene's motion word is the horizontal direction; its position is the third the shape is in at mid-clip,
    and when the shape crosses into another third during the clip ``("position",)`` is returned: a caption
    must not name it. Still clips sit exactly at their position, like :func:`render_clip` without motion.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not 0.0 <= grow_prob <= 1.0:
        raise ValueError(f"grow_prob must be in [0, 1], got {grow_prob}")
    scene = sample_scene(rng, motion_prob=0.0)
    speed = SPEEDS[list(SPEEDS)[int(rng.choice(len(SPEEDS), p=SPEED_PROBS))]]
    direction = int(rng.integers(3))  # horizontal, vertical, diagonal
    sx, sy = (1.0 if rng.random() < 0.5 else -1.0), (1.0 if rng.random() < 0.5 else -1.0)
    dx = float({0: speed, 1: 0.0, 2: speed / np.sqrt(2)}[direction] * sx)
    dy = float({0: 0.0, 1: speed, 2: speed / np.sqrt(2)}[direction] * sy)
    span = max(num_frames - 1, 1)
    grow = (GROWTH_PIXELS / span) * (1.0 if rng.random() < 0.5 else -1.0) if rng.random() < grow_prob else 0.0
    r_max = SIZES[scene.size] + abs(grow) * span / 2
    half_x, half_y = abs(dx) * span / 2, abs(dy) * span / 2
    lo_x, hi_x = r_max + half_x + 0.5, REFERENCE_SIZE - r_max - half_x - 0.5
    lo_y, hi_y = r_max + half_y + 0.5, REFERENCE_SIZE - r_max - half_y - 0.5
    x = float(np.clip(POSITION_X[scene.position] * REFERENCE_SIZE, lo_x, hi_x))
    y = float(np.clip(REFERENCE_SIZE / 2, lo_y, hi_y))
    thirds = {_third(x - half_x - 0.5, REFERENCE_SIZE), _third(x + half_x + 0.5, REFERENCE_SIZE)}  # 0.5 px margin
    word = "drifting right" if dx > 0 else "drifting left" if dx < 0 else "still"
    scene = Scene(scene.shape, scene.color, scene.size, scene.background, _third(x, REFERENCE_SIZE), word)
    motion = Motion(dx=dx, dy=dy, grow=grow, center=(x / REFERENCE_SIZE, y / REFERENCE_SIZE))
    return scene, motion, (("position",) if len(thirds) > 1 else ())


def all_scenes() -> list[Scene]:
    """Every vocabulary combination, in the (deterministic) order of the constants."""
    return [
        Scene(shape, color, size, background, position, motion)
        for shape, color, size, background, position, motion in itertools.product(
            SHAPES, COLORS, SIZES, BACKGROUNDS, POSITIONS, MOTIONS
        )
    ]


def all_captions() -> list[str]:
    """The caption of every scene of :func:`all_scenes`, same order."""
    return [caption(scene) for scene in all_scenes()]
