"""Temporal attention analysis (paper sections 3.3 and 4.1): record the maps a model uses, replace them,
score them, and measure how dynamic a video is."""

from vstar.analysis.recording import AttentionRecorder, record_temporal_attention
from vstar.analysis.replacement import AttentionReplacement, ReplacementProcessor, replace_temporal_attention
from vstar.analysis.scores import band_score, diagonal_mass

__all__ = [
    "AttentionRecorder", "AttentionReplacement", "ReplacementProcessor", "band_score", "diagonal_mass",
    "record_temporal_attention", "replace_temporal_attention",
]
