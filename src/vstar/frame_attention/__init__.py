"""Frame-structured attention: TAR, the replacements and recording as edits of how much each query frame
attends to each key frame. :mod:`vstar.frame_attention.spatiotemporal` is the layout of the video
transformers (frame-major tokens, one attention over all frames)."""

from vstar.frame_attention.spatiotemporal import (
    FrameAttention,
    augmented_attention,
    frame_attention_map,
    frame_blocks,
    replaced_attention,
    replacement_weights,
    row_max_logits,
    tar_attention,
    tar_bias,
)

__all__ = [
    "FrameAttention", "augmented_attention", "frame_attention_map", "frame_blocks", "replaced_attention",
    "replacement_weights", "row_max_logits", "tar_attention", "tar_bias",
]
