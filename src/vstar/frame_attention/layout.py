"""Frame-structured attention as layouts x edits: the rules edits make and the protocol layouts implement.

Every attention feature of VSTAR is a statement about how much each query frame attends to each key frame.
An *edit* (TAR, an identity/uniform replacement) states it as a :data:`FrameRule`:

- :class:`FrameBias`: add ``strength * M_i * A[f(i), f(j)]`` to the logits (``M_i`` the query row's maximum
  logit, or the head's or the sequence's: ``max_mode``), ``A`` an ``(F, F)`` matrix: TAR's Gaussian band or
  a reference video's similarity;
- :class:`FrameWeights`: fixed frame weights ``W[f(i), b]``, the softmax kept within each key frame;
- ``None``: stock attention.

A *layout* (:class:`FrameLayout`) says how a layer presents its frames and implements, once for every edit:
reading a call's inputs, attending under a rule, and the frame map under a rule (the recording). Two layouts
exist: :class:`vstar.frame_attention.temporal.TemporalLayout` (one sequence of ``F`` frames per latent pixel,
the video UNets) and :class:`vstar.frame_attention.spatiotemporal.SpatioTemporalLayout` (frame-major tokens of
all frames in one attention, the video transformers; a model family subclasses it to say how its queries,
keys and values are made). The processors (:mod:`vstar.frame_attention.processor`) put an edit on a layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

MaxMode = Literal["row", "head", "global"]
MAX_MODES: tuple[str, ...] = ("row", "head", "global")
# Narrows a recorded call to one branch of a classifier-free-guidance batch (its leading dimension).
Branch = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FrameBias:
    """TAR's rule: logits ``S_ij + strength * M_i * matrix[f(i), f(j)]``.

    ``matrix``: ``(F, F)`` (query frame x key frame). ``terms``: :func:`bias_terms` of ``matrix`` and
    ``strength`` when the edit keeps them made (computed on use otherwise).
    """

    matrix: torch.Tensor
    strength: float
    max_mode: MaxMode = "row"
    terms: tuple[torch.Tensor, torch.Tensor, float] | None = None

    def bias_terms(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        return self.terms if self.terms is not None else bias_terms(self.matrix, self.strength)


@dataclass(frozen=True)
class FrameWeights:
    """A replacement's rule: query frame ``a`` puts mass ``weights[a, b] / sum_b weights[a, b]`` on key frame
    ``b`` (``weights`` ``(F, F)``, non-negative, a positive entry in each row), softmax within the frame."""

    weights: torch.Tensor


FrameRule = FrameBias | FrameWeights | None


def bias_terms(matrix: torch.Tensor, strength: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``bias = strength * matrix``, ``bias - (1 + max(bias))`` (both ``(F, F)``) and ``max(bias) - min(bias)``:
    what the temporal layout adds to its base-2 logits (:class:`vstar.frame_attention.temporal.TemporalLayout`)."""
    bias = matrix * strength
    top = bias.max()
    return bias, bias - (1 + top), (top - bias.min()).item()


@dataclass
class LayerCall:
    """One call of a frame-structured layer, read by its layout: the latent ``frames`` it spans, the device
    and dtype of its activations, and ``finish``, which turns the attention result into the module's output
    (output projection, residual, reshapes). Each layout adds the tensors it needs."""

    frames: int
    device: torch.device
    dtype: torch.dtype
    finish: Callable[[torch.Tensor], torch.Tensor]


class FrameLayout(ABC):
    """How one kind of attention layer lays out frames; implements every edit's rule on it.

    ``kind`` names the layout (``"temporal"`` or ``"spatiotemporal"``), ``max_modes`` the maxima
    :class:`FrameBias` may take on it.
    """

    kind: ClassVar[str]
    max_modes: ClassVar[tuple[str, ...]] = MAX_MODES

    @abstractmethod
    def inputs(self, attn: Any, hidden_states: torch.Tensor, args: tuple, kwargs: dict[str, Any]) -> LayerCall:
        """Read one call of ``attn`` (the processor's arguments after the context and the mask)."""

    @abstractmethod
    def attend(self, call: LayerCall, rule: FrameBias | FrameWeights, backend: Any = None) -> torch.Tensor:
        """The attention result of ``call`` under ``rule`` (what ``call.finish`` takes). ``backend``: the
        attention backend of the processor the edit replaced, for layouts that make a fused call."""

    @abstractmethod
    def frame_mass(self, call: LayerCall, rule: FrameRule, branch: Branch,
                   max_chunk_bytes: int) -> tuple[torch.Tensor, int]:
        """The recording: the ``(F, F)`` float64 sum over heads and query tokens of each query frame's mass on
        each key frame under ``rule``, and how many ``(F, F)`` maps (rows summing to 1) it adds up. ``branch``
        narrows the call's batch; intermediate tensors stay within about ``max_chunk_bytes``. Differentiable
        when gradients are enabled."""

    def check_max_mode(self, max_mode: str) -> None:
        if max_mode not in self.max_modes:
            raise ValueError(f"unknown max_mode {max_mode!r} for {self.kind} attention; choose one of "
                             f"{', '.join(self.max_modes)}")
