"""Chunked execution of a video UNet: bounded activation memory for long single passes.

A video UNet runs its spatial layers (resnets, spatial transformers, down- and upsamplers) on
``batch*frames`` images at once, and the transformer blocks of its temporal attention on ``batch*h*w``
sequences of frames; their intermediate tensors grow with the number of frames. Each image and each
sequence is computed on its own, so :func:`chunked_execution` runs those layers, and the convolutions over
frames of the temporal conv layers, on slices of their inputs (``frames`` images or ``sequences`` sequences
at a time) and writes every slice's result into one output tensor: a layer then holds its input, its
output and one slice's intermediates. The group norms of the temporal layers still see all frames, and the
result equals the unchunked forward up to float rounding (matrix products over fewer rows may round
differently). The slicing is a diffusers model hook (:class:`diffusers.hooks.ModelHook` with ``new_forward``),
so it stacks with diffusers' own hooks (offloading, layerwise casting, caches) and comes off cleanly.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.upsampling import Upsample2D
from diffusers.utils import BaseOutput
from torch import nn

from vstar.temporal_attention import temporal_attention_layers

SPATIAL_LAYERS: tuple[type[nn.Module], ...] = (ResnetBlock2D, Transformer2DModel, Downsample2D, Upsample2D)

_frame_rows: ContextVar[slice | None] = ContextVar("vstar_frame_rows", default=None)


def frame_rows() -> slice | None:
    """The rows of ``batch*frames`` that the spatial layer running in chunks computes now (None: all rows).

    Per-frame inputs that reach a layer by other paths than its arguments (the per-frame text of
    :func:`vstar.conditioning.per_frame_context`) are sliced with it.
    """
    return _frame_rows.get()


def _slice_rows(value: Any, dim: int, rows: slice, total: int) -> Any:
    """Rows ``rows`` along ``dim`` of a tensor with ``total`` of them (one per image, sequence or latent row),
    else ``value``."""
    if isinstance(value, torch.Tensor) and value.ndim > dim and value.shape[dim] == total:
        return value.narrow(dim, rows.start, rows.stop - rows.start)
    return value


def _place(result: Any, piece: Any, dim: int, rows: slice, total: int) -> Any:
    """Copy ``piece`` (a tensor, a tuple or a diffusers output of them) into rows ``rows`` along ``dim`` of
    ``result``, allocating ``result`` with ``total`` rows at the first piece."""
    if piece is None:
        return None
    if isinstance(piece, torch.Tensor):
        if result is None:
            result = piece.new_empty((*piece.shape[:dim], total, *piece.shape[dim + 1:]))
        result.narrow(dim, rows.start, rows.stop - rows.start).copy_(piece)
        return result
    if isinstance(piece, BaseOutput):
        return type(piece)(**{k: _place(None if result is None else result[k], v, dim, rows, total)
                              for k, v in piece.items()})
    if isinstance(piece, tuple):
        return tuple(_place(None if result is None else r, p, dim, rows, total)
                     for r, p in zip(result or (None,) * len(piece), piece, strict=True))
    raise TypeError(f"cannot run a layer in chunks that returns {type(piece).__name__}")


@dataclass(frozen=True)
class _Chunking:
    """How one layer runs in slices: along ``dim`` of its first argument, ``rows(x)`` rows at a time;
    ``by_frame``: the rows are images of ``batch*frames`` (see :func:`frame_rows`)."""

    dim: int
    rows: Callable[[torch.Tensor], int]
    by_frame: bool = False


def _run_in_chunks(forward: Callable[..., Any], first: str, how: _Chunking, *args: Any, **kwargs: Any) -> Any:
    """``forward(*args, **kwargs)`` on slices of its first argument (named ``first``); tensor arguments with
    as many rows (time embeddings, per-frame text) are sliced alike."""
    x = args[0] if args else kwargs[first]
    total, size = x.shape[how.dim], how.rows(x)
    if total <= size:
        return forward(*args, **kwargs)
    result = None
    for start in range(0, total, size):
        rows = slice(start, min(start + size, total))
        token = _frame_rows.set(rows) if how.by_frame else None
        try:
            piece = forward(*(_slice_rows(a, how.dim, rows, total) for a in args),
                            **{k: _slice_rows(v, how.dim, rows, total) for k, v in kwargs.items()})
        finally:
            if token is not None:
                _frame_rows.reset(token)
        result = _place(result, piece, how.dim, rows, total)
    return result


CHUNK_HOOK = "vstar_chunked_execution"


class ChunkedForwardHook(ModelHook):
    """Runs its module's forward on slices of the first argument (:func:`_run_in_chunks`)."""

    def __init__(self, how: _Chunking) -> None:
        super().__init__()
        self.how = how

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        forward = self.fn_ref.original_forward
        first = next(iter(inspect.signature(forward).parameters))
        return _run_in_chunks(forward, first, self.how, *args, **kwargs)


def runs_in_chunks(module: nn.Module) -> bool:
    """Whether :func:`chunked_execution` has hooked ``module`` now."""
    registry = getattr(module, "_diffusers_hook", None)
    return registry is not None and registry.get_hook(CHUNK_HOOK) is not None


def _pointwise_in_space(module: nn.Module) -> bool:
    """A 3D convolution over frames only (kernel, stride 1x1 and no padding in height and width)."""
    return (isinstance(module, nn.Conv3d) and module.kernel_size[1:] == (1, 1) and module.stride[1:] == (1, 1)
            and module.padding[1:] == (0, 0))


def chunkable_layers(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]]:
    """The layers of a video UNet (or a backbone's ``unet``) that :func:`chunked_execution` runs in slices:
    spatial layers (independent per image), the transformer blocks of its temporal attention (independent
    per sequence) and its temporal convolutions (independent per latent pixel)."""
    unet = getattr(model, "unet", model)  # a backbone's denoiser, not its VAE
    temporal = {id(layer.module) for layer in temporal_attention_layers(model)}
    spatial = [m for m in unet.modules() if isinstance(m, SPATIAL_LAYERS)]
    blocks = [m for m in unet.modules() if isinstance(m, BasicTransformerBlock) and id(m.attn1) in temporal]
    convs = [m for m in unet.modules() if _pointwise_in_space(m)]
    return spatial, blocks, convs


@contextlib.contextmanager
def chunked_execution(model: nn.Module, frames: int | None = None, sequences: int | None = None) -> Iterator[None]:
    """Within the block, ``model``'s spatial layers see at most ``frames`` images (of ``batch*frames``) per
    call, and its temporal transformer blocks and temporal convolutions at most ``sequences`` sequences of
    frames (of ``batch*h*w``; a temporal convolution takes whole rows of latent pixels, at least one); None
    leaves them whole.

    ``model`` is a diffusers-style video UNet or a backbone (its ``unet``). Outputs equal the unchunked
    forward up to float rounding; smaller chunks hold less memory and cost more calls. The hooks (named
    ``CHUNK_HOOK`` in each layer's diffusers ``HookRegistry``) are removed on exit.
    """
    for name, size in (("frames", frames), ("sequences", sequences)):
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"{name} per chunk must be a positive integer or None, got {size!r}")
    spatial, blocks, convs = chunkable_layers(model)
    if not spatial:
        raise ValueError(f"{type(model).__name__} has no spatial layers (2D resnets, spatial transformers) "
                         "that vstar can run in chunks of frames")
    plan: list[tuple[nn.Module, _Chunking]] = []
    if frames is not None:
        plan += [(m, _Chunking(0, lambda x: frames, by_frame=True)) for m in spatial]
    if sequences is not None:
        plan += [(m, _Chunking(0, lambda x: sequences)) for m in blocks]
        # (B, C, F, H, W): whole rows of W latent pixels of every video
        plan += [(m, _Chunking(3, lambda x: max(1, sequences // (x.shape[0] * x.shape[4])))) for m in convs]
    if any(runs_in_chunks(m) for m, _ in plan):
        raise ValueError(f"{type(model).__name__} already runs in chunks; leave the outer chunked_execution first")
    try:
        for module, how in plan:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(ChunkedForwardHook(how), CHUNK_HOOK)
        yield
    finally:
        for module, _ in plan:
            module._diffusers_hook.remove_hook(CHUNK_HOOK, recurse=False)
