"""How much a video changes: weight-free metrics of a ``(F, H, W, 3)`` clip (paper section 4.1, figure S.1).

- :func:`flicker`: mean absolute difference of consecutive frames (pixels in [0, 1]).
- :func:`flow_magnitude`: mean optical-flow magnitude between consecutive frames, pixels per frame at the
  video's own resolution (OpenCV's DIS flow; frames smaller than 128 px are enlarged before the flow is taken
  and the flow scaled back, because DIS works on 8 px patches).
- :func:`dynamic_degree`: VBench's dynamic degree with DIS flow in place of RAFT (see the function).
- :func:`change_from_first`: per frame, mean absolute difference to frame 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MIN_FLOW_SIDE = 128  # DIS needs a few 8 px patches per side; smaller frames are enlarged for the flow
# VBench: a frame pair moves when the mean of its top 5% flow magnitudes exceeds 6 px at a 256 px short
# side; a video is dynamic when at least round(4 * F / 16) pairs move.
DYNAMIC_TOP_SHARE = 0.05
DYNAMIC_THRESHOLD_AT_256 = 6.0


def as_video(frames: np.ndarray) -> np.ndarray:
    """``(F, H, W, 3)`` uint8 or float frames -> float32 in [0, 1]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"a video must have shape (F, H, W, 3), got {frames.shape}")
    if frames.shape[0] < 1:
        raise ValueError("the video has no frames")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return np.clip(frames.astype(np.float32), 0.0, 1.0)


def _need_two(video: np.ndarray, what: str) -> None:
    if video.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 frames, got {video.shape[0]}")


def flicker(frames: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames, pixels in [0, 1] (0 for a static video)."""
    video = as_video(frames)
    _need_two(video, "flicker")
    return float(np.abs(np.diff(video, axis=0)).mean())


def change_from_first(frames: np.ndarray) -> np.ndarray:
    """``(F,)`` float64: mean absolute difference of each frame to frame 0 (pixels in [0, 1]; 0 at frame 0)."""
    video = as_video(frames)
    return np.abs(video - video[:1]).mean(axis=(1, 2, 3), dtype=np.float64)


def optical_flow(frames: np.ndarray) -> np.ndarray:
    """``(F-1, H, W, 2)`` float32 DIS flow (x, y) from each frame to the next, in pixels of the video itself."""
    video = as_video(frames)
    _need_two(video, "optical flow")
    height, width = video.shape[1:3]
    factor = max(1, math.ceil(MIN_FLOW_SIDE / min(height, width)))
    gray = [cv2.cvtColor((f * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in video]
    if factor > 1:
        gray = [cv2.resize(g, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC) for g in gray]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows = []
    for a, b in zip(gray[:-1], gray[1:], strict=True):
        flow = dis.calc(a, b, None)
        if factor > 1:
            flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) / factor
        flows.append(flow)
    return np.stack(flows).astype(np.float32)


def flow_magnitude(frames: np.ndarray, flow: np.ndarray | None = None) -> float:
    """Mean optical-flow magnitude over all pixels and consecutive pairs, in pixels per frame."""
    flow = optical_flow(frames) if flow is None else flow
    return float(np.linalg.norm(flow, axis=-1).mean())


def top_motion(flow: np.ndarray) -> np.ndarray:
    """``(F-1,)``: per frame pair, the mean of the top 5% flow magnitudes (VBench's per-pair score)."""
    magnitude = np.linalg.norm(flow, axis=-1).reshape(flow.shape[0], -1)
    count = max(1, int(magnitude.shape[1] * DYNAMIC_TOP_SHARE))
    return -np.sort(-magnitude, axis=1)[:, :count].mean(axis=1)


@dataclass(frozen=True)
class DynamicDegree:
    """VBench's dynamic degree of one video.

    dynamic: the video counts as dynamic (at least ``needed`` frame pairs move); share: the share of its
    frame pairs that move; threshold: pixels per frame at this resolution; scores: each pair's top-5% motion.
    """

    dynamic: bool
    share: float
    threshold: float
    needed: int
    scores: list[float]


def dynamic_degree(frames: np.ndarray, flow: np.ndarray | None = None) -> DynamicDegree:
    """VBench's dynamic degree with OpenCV's DIS flow in place of RAFT.

    A frame pair moves when the mean of its top 5% flow magnitudes exceeds ``6 * min(H, W) / 256`` pixels
    (VBench's threshold, scaled to the resolution: 6 px at 256 px, 0.75 px at 32 px); a video is dynamic when
    at least ``max(1, round(4 * F / 16))`` pairs move. Over many videos the dynamic degree is the share of
    dynamic videos. Calibration (``tests/analysis/test_metrics.py``): a textured square covering more than 5%
    of the frame moving v px per frame scores v within 15% at 32 to 256 px, so the threshold means "the
    fastest 5% of the frame moves faster than 2.3% of the short side per frame".
    """
    video = as_video(frames)
    flow = optical_flow(video) if flow is None else flow
    scores = top_motion(flow)
    threshold = DYNAMIC_THRESHOLD_AT_256 * min(video.shape[1:3]) / 256.0
    needed = max(1, round(4 * video.shape[0] / 16))
    moving = int((scores > threshold).sum())
    return DynamicDegree(moving >= needed, moving / len(scores), threshold, needed, [float(s) for s in scores])
