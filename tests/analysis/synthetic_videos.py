"""Synthetic ``(F, H, W, 3)`` float32 videos whose motion and change are known exactly."""

import cv2
import numpy as np


def texture(height, width, seed=0):
    """Smooth random colour texture in [0, 1] (features at about 1/32 of the size, so optical flow can lock on)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), max(1.0, height / 32))
    return (noise - noise.min()) / (noise.max() - noise.min())


def static(frames=8, size=32, seed=0):
    return np.repeat(texture(size, size, seed)[None], frames, axis=0)


def fade(frames=9, size=16):
    """Uniform colour going linearly from black to white: change_from_first[f] = f / (frames - 1)."""
    level = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    return np.broadcast_to(level[:, None, None, None], (frames, size, size, 3)).copy()


def pan(speed, frames=8, size=64, seed=0):
    """A textured picture sliding left by ``speed`` px per frame (sub-pixel shifts by bilinear warping)."""
    big = texture(size, size + int(np.ceil(speed * frames)) + 2, seed)
    shifts = [np.float32([[1, 0, -f * speed], [0, 1, 0]]) for f in range(frames)]
    return np.stack([cv2.warpAffine(big, m, (big.shape[1], size))[:, :size] for m in shifts])


def moving_square(speed, frames=8, size=64, seed=0):
    """A textured square (half the side) moving right by ``speed`` whole px per frame over a textured,
    static background."""
    side = size // 2
    background, square = texture(size, size, seed + 1), texture(side, side, seed)
    video = np.repeat(background[None], frames, axis=0)
    for f in range(frames):
        x = 1 + f * speed
        video[f, size // 4:size // 4 + side, x:x + side] = square
    return video
