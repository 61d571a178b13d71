"""Temporal attention analysis (paper sections 3.3 and 4.1): record the maps a model uses, replace them,
score them, and measure how dynamic a video is."""

from vstar.analysis.evaluation import evaluate_video
from vstar.analysis.metrics import DynamicDegree, change_from_first, dynamic_degree, flicker, flow_magnitude
from vstar.analysis.recording import AttentionRecorder, record_temporal_attention
from vstar.analysis.replacement import AttentionReplacement, ReplacementProcessor, replace_temporal_attention
from vstar.analysis.scores import band_score, diagonal_mass
from vstar.analysis.similarity import METRICS, similarity_by_interval, similarity_matrix

__all__ = [
    "METRICS", "AttentionRecorder", "AttentionReplacement", "DynamicDegree", "ReplacementProcessor", "band_score",
    "change_from_first", "diagonal_mass", "dynamic_degree", "evaluate_video", "flicker", "flow_magnitude",
    "record_temporal_attention", "replace_temporal_attention", "similarity_by_interval", "similarity_matrix",
]
