"""Read a toy frame's visual state back from its pixels (hand-written rules, no learned weights).

The background is the named background nearest to the median border pixel. Foreground pixels are those
farther from the measured background colour than half the shape's contrast (at least ``MIN_CONTRAST``),
which puts the mask edge on the true edge even for blurry frames; only the largest 8-connected blob is
kept. Colour is the named colour nearest to the median of the blob's core. Shape, position and size come
from the blob's soft coverage map: the template (circle, square or triangle of the same area and centroid)
closest to it, the centroid x in thirds, and that template's extent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .scenes import BACKGROUNDS, COLORS, REFERENCE_SIZE, SHAPES, SIZES, Scene, shape_coverage

MIN_CONTRAST = 0.25  # RGB distance from the background below which a pixel is never foreground
MIN_FOREGROUND = 0.01  # fraction of the frame below which no shape is read
_AREA_PER_R2 = {"circle": np.pi, "square": 4.0, "triangle": 2.0}  # area of each shape over r**2
STATE_KEYS: tuple[str, ...] = ("color", "shape", "position", "background", "size")


@dataclass(frozen=True)
class FrameState:
    """What one frame shows; the shape fields are ``None`` when the foreground is too small to read."""

    color: str | None
    shape: str | None
    position: str | None
    background: str
    size: str | None
    foreground_fraction: float


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[float, float, float]]) -> str:
    names = list(palette)
    dist = np.linalg.norm(np.asarray([palette[n] for n in names]) - rgb, axis=1)
    return names[int(np.argmin(dist))]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected blob of a boolean ``(H, W)`` mask.

    Min-label propagation: every pixel starts labelled with its own flat index, repeatedly takes the
    smallest label among its neighbours and then the label of the pixel its label points to (pointer
    jumping, so long blobs converge in few rounds).
    """
    h, w = mask.shape
    big = h * w  # label of background pixels; index big of `flat` holds it
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        updated = labels.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                np.minimum(updated, padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], out=updated)
        updated[~mask] = big
        flat = np.append(updated.ravel(), big)
        updated = flat[flat[updated]]
        if np.array_equal(updated, labels):
            break
        labels = updated
    ids, counts = np.unique(labels[mask], return_counts=True)
    return labels == ids[np.argmax(counts)]


def _box_blur(image: np.ndarray) -> np.ndarray:
    """3x3 box filter of an ``(H, W)`` array, edges replicated."""
    h, w = image.shape
    padded = np.pad(image, 1, mode="edge")
    return sum(padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9


def _fit_shape(alpha: np.ndarray) -> tuple[str, float, float, float]:
    """Best template for a soft ``(H, W)`` coverage map: ``(shape, r, centre_x, centre_y)`` in pixels.

    Each shape's template gets the map's area and centroid (both unchanged by blur); it is compared, sharp
    and blurred once or twice, to the map by L1 distance, and the closest shape wins.
    """
    h, w = alpha.shape
    area = float(alpha.sum())
    centre_x = float((alpha.sum(axis=0) * (np.arange(w) + 0.5)).sum() / area)
    centre_y = float((alpha.sum(axis=1) * (np.arange(h) + 0.5)).sum() / area)
    best, best_score, best_r = SHAPES[0], np.inf, 0.0
    for shape in SHAPES:
        r = float(np.sqrt(area / _AREA_PER_R2[shape]))
        dy = r / 3 if shape == "triangle" else 0.0  # a triangle's centroid lies r/3 below its box centre
        template = shape_coverage(shape, centre_x, centre_y - dy, r, h, w)
        blurred = _box_blur(template)
        score = min(np.abs(alpha - t).sum() for t in (template, blurred, _box_blur(blurred)))
        if score < best_score:
            best, best_score, best_r = shape, score, r
    return best, best_r, centre_x, centre_y


def _as_float(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame must have shape (H, W, 3), got {frame.shape}")
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255.0
    return np.clip(np.nan_to_num(frame.astype(np.float32)), 0.0, 1.0)


def classify_frame(frame: np.ndarray) -> FrameState:
    """The visual state of one ``(H, W, 3)`` frame, float in [0, 1] or uint8."""
    image = _as_float(frame)
    h, w, _ = image.shape
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    bg_rgb = np.median(border, axis=0)
    background = _nearest(bg_rgb, BACKGROUNDS)

    dist = np.linalg.norm(image - bg_rgb, axis=-1)  # (H, W)
    contrast = float(np.percentile(dist, 99))
    mask = dist > max(MIN_CONTRAST, 0.5 * contrast)
    if mask.any():
        mask = _largest_component(mask)
    fraction = float(mask.mean())
    if fraction < MIN_FOREGROUND:
        return FrameState(None, None, None, background, None, fraction)

    core = mask & (dist >= np.median(dist[mask]))  # the upper half, away from blended edge pixels
    color = _nearest(np.median(image[core], axis=0), COLORS)

    # Soft coverage of the blob: 0 at the border's noise level, 1 at the core's contrast, kept only in the
    # blob's bounding box grown by 2 px (room for blur) so that other blobs and far noise don't count.
    full = float(np.median(dist[core]))
    noise = min(float(np.median(np.linalg.norm(border - bg_rgb, axis=-1))), 0.5 * full)
    ys, xs = np.nonzero(mask)
    window = np.zeros_like(mask)
    window[max(ys.min() - 2, 0) : ys.max() + 3, max(xs.min() - 2, 0) : xs.max() + 3] = True
    alpha = np.where(window, np.clip((dist - noise) / (full - noise), 0.0, 1.0), 0.0)
    shape, r, centre_x, _ = _fit_shape(alpha)

    position = "left" if centre_x < w / 3 else "right" if centre_x > 2 * w / 3 else "center"
    diameter = 2 * r * REFERENCE_SIZE / w  # pixels at 32 px
    size = "small" if diameter < SIZES["small"] + SIZES["large"] else "large"  # midway between diameters
    return FrameState(color, shape, position, background, size, fraction)


def classify_clip(frames: np.ndarray) -> list[FrameState]:
    """The state of every frame of an ``(F, H, W, 3)`` clip."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape (F, H, W, 3), got {frames.shape}")
    return [classify_frame(frame) for frame in frames]


def _check_keys(keys: Sequence[str]) -> None:
    bad = [k for k in keys if k not in STATE_KEYS]
    if bad or not keys:
        raise ValueError(f"keys must be a non-empty subset of {STATE_KEYS}, got {tuple(keys)}")


def matches(state: FrameState, scene: Scene, keys: Sequence[str] = ("color", "shape")) -> bool:
    """Whether ``state`` agrees with ``scene`` on every field in ``keys``."""
    _check_keys(keys)
    return all(getattr(state, k) == getattr(scene, k) for k in keys)


def shows(
    frames: np.ndarray,
    scene: Scene,
    keys: Sequence[str] = ("color", "shape"),
    min_share: float = 0.5,
) -> bool:
    """Whether at least ``min_share`` of the ``(F, H, W, 3)`` frames match ``scene`` on ``keys``."""
    _check_keys(keys)
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be in [0, 1], got {min_share}")
    states = classify_clip(frames)
    if not states:
        raise ValueError("frames is empty; pass at least one frame")
    return sum(matches(s, scene, keys) for s in states) / len(states) >= min_share


CLEAN_TOLERANCE = 0.2  # RGB distance from the border colour above which a background pixel is "off"
CLEAN_MAX_OFF = 0.03  # share of off background pixels below which a frame is clean


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` grown by ``pixels`` in the 8-neighbourhood (a square structuring element)."""
    h, w = mask.shape
    for _ in range(pixels):
        padded = np.pad(mask, 1)
        mask = np.logical_or.reduce([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                                     for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    return mask


def background_off_share(frame: np.ndarray, tolerance: float = CLEAN_TOLERANCE, margin: int = 1) -> float:
    """Share of a frame's background pixels farther than ``tolerance`` (RGB distance) from its border colour.

    The border colour is the median border pixel; the shape is the classifier's largest blob grown by
    ``margin`` pixels (its anti-aliased edge), and every other pixel counts as background. Speckles, stray
    blobs and a non-uniform background raise the share; ``1.0`` when no shape is found.
    """
    image = _as_float(frame)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    dist = np.linalg.norm(image - np.median(border, axis=0), axis=-1)
    contrast = float(np.percentile(dist, 99))
    mask = dist > max(MIN_CONTRAST, 0.5 * contrast)
    if not mask.any():
        return 1.0
    shape = _largest_component(mask)
    if shape.mean() < MIN_FOREGROUND:
        return 1.0
    background = ~_dilate(shape, margin)
    if not background.any():
        return 1.0
    return float((dist[background] > tolerance).mean())


def is_clean(frame: np.ndarray, max_off: float = CLEAN_MAX_OFF, tolerance: float = CLEAN_TOLERANCE) -> bool:
    """One shape on a uniform background: fewer than ``max_off`` of the background pixels are farther than
    ``tolerance`` from the border colour (see :func:`background_off_share`)."""
    return background_off_share(frame, tolerance) < max_off
