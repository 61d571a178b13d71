"""Frame-structured attention: TAR, the replacements and recording as edits of how much each query frame
attends to each key frame, on two layouts.

- :mod:`~vstar.frame_attention.layout`: the rules edits make (:class:`FrameBias`, :class:`FrameWeights`) and the
  protocol a layout implements (:class:`FrameLayout`);
- :mod:`~vstar.frame_attention.temporal`: the video UNets' temporal layout (``F`` frames per latent pixel);
- :mod:`~vstar.frame_attention.spatiotemporal`: the video transformers' layout (frame-major tokens, one
  attention over all frames), exact and without ``N x N``;
- :mod:`~vstar.frame_attention.processor`: :class:`FrameAttentionProcessor`, an edit on a layout (TAR and the
  replacement are its subclasses).
"""

from vstar.frame_attention.layout import FrameBias, FrameLayout, FrameRule, FrameWeights, LayerCall
from vstar.frame_attention.processor import FrameAttentionProcessor
from vstar.frame_attention.spatiotemporal import (
    FrameAttention,
    SpatioTemporalLayout,
    augmented_attention,
    frame_attention_map,
    frame_blocks,
    replaced_attention,
    replacement_weights,
    row_max_logits,
    tar_attention,
    tar_bias,
)
from vstar.frame_attention.temporal import TemporalLayout

__all__ = [
    "FrameAttention", "FrameAttentionProcessor", "FrameBias", "FrameLayout", "FrameRule", "FrameWeights",
    "LayerCall", "SpatioTemporalLayout", "TemporalLayout", "augmented_attention", "frame_attention_map",
    "frame_blocks", "replaced_attention", "replacement_weights", "row_max_logits", "tar_attention", "tar_bias",
]
