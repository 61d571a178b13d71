"""Chunked execution of a video UNet: bounded activation memory for long single passes.

A video UNet runs its spatial layers (resnets, spatial transformers, down- and upsamplers) on
``batch*frames`` images at once, and the transformer blocks of its temporal attention on ``batch*h*w``
sequences of frames; their intermediate tensors grow with the number of frames. Each image and each
sequence is computed on its own, so :func:`chunked_execution` runs those layers, and the convolutions over
frames of the temporal conv layers, on slices of their inputs (``frames`` images or ``sequences`` sequences
at a time) and writes every slice's result into one output tensor: a layer then holds its input, its
output and one slice's intermediates. A temporal transformer (group norm, input projection, blocks, output
projection) runs whole on slices of rows of latent pixels: its group norm's statistics span all frames and
pixels of a video, so they are computed first, over the whole input, and every slice is normalised with
them. The group norms inside the temporal convolution layers still see all frames. The result equals the
unchunked forward up to float rounding (matrix products over fewer rows may round differently). The slicing
is a diffusers model hook (:class:`diffusers.hooks.ModelHook` with ``new_forward``), so it stacks with
diffusers' own hooks (offloading, layerwise casting, caches) and comes off cleanly.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

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
FROZEN_NORM_HOOK = "vstar_group_norm_statistics"


def forward_signature(module: nn.Module) -> inspect.Signature:
    """The signature of ``module``'s own ``forward`` without ``self`` (its class's: hooks that other libraries
    put on the module wrap ``forward`` as ``(*args, **kwargs)``)."""
    return _class_forward_signature(type(module))


@functools.cache
def _class_forward_signature(cls: type[nn.Module]) -> inspect.Signature:
    signature = inspect.signature(cls.forward)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


class ChunkedForwardHook(ModelHook):
    """Runs its module's forward on slices of the first argument (:func:`_run_in_chunks`)."""

    def __init__(self, how: _Chunking) -> None:
        super().__init__()
        self.how = how

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        first = next(iter(forward_signature(module).parameters))
        return _run_in_chunks(self.fn_ref.original_forward, first, self.how, *args, **kwargs)


def group_statistics(frames: torch.Tensor, num_frames: int, groups: int, eps: float,
                     rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and ``1 / sqrt(var + eps)`` ``(videos, groups)`` of frame batches ``(B*F, C, H, W)``, as a
    ``GroupNorm(groups)`` over ``(B, C, F, H, W)`` takes them, from slices of ``rows`` rows of pixels (two
    passes, in float32 or float64 for float64 inputs)."""
    videos, channels, height, width = frames.shape[0] // num_frames, *frames.shape[1:]
    view = frames.view(videos, num_frames, groups, channels // groups, height, width)
    dtype = torch.promote_types(frames.dtype, torch.float32)
    count, dims = frames.numel() // (videos * groups), (1, 3, 4, 5)
    slices = [view[..., start:start + rows, :] for start in range(0, height, rows)]
    mean = sum(piece.sum(dims, dtype=dtype) for piece in slices) / count
    centred = mean[:, None, :, None, None, None]
    var = sum((piece.to(dtype) - centred).square_().sum(dims) for piece in slices) / count
    return mean, torch.rsqrt(var + eps)


class FrozenGroupNormHook(ModelHook):
    """A ``GroupNorm`` over ``(B, C, F, h, W)`` slices that normalises with given per-video statistics
    (:func:`group_statistics` of the whole input) instead of the slice's own."""

    def __init__(self, mean: torch.Tensor, inv_std: torch.Tensor, num_frames: int) -> None:
        super().__init__()
        self.mean, self.inv_std, self.num_frames = mean, inv_std, num_frames

    def new_forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[0] != self.mean.shape[0] or x.shape[2] != self.num_frames:
            raise RuntimeError(
                f"a temporal transformer's group norm got {tuple(x.shape)}, not (videos={self.mean.shape[0]}, "
                f"channels, frames={self.num_frames}, rows, width): vstar cannot run it in slices of rows; "
                "run without sequence chunks (sequences=None)"
            )
        # one pass, as torch's own group norm: x * scale + shift per (video, channel)
        videos, channels = x.shape[:2]
        per_group = channels // module.num_groups
        scale = self.inv_std.repeat_interleave(per_group, dim=1)  # (B, C)
        shift = -self.mean.repeat_interleave(per_group, dim=1) * scale
        if module.affine:
            scale, shift = scale * module.weight, shift * module.weight + module.bias
        shape = (videos, channels, 1, 1, 1)
        return torch.addcmul(shift.view(shape), x.to(scale.dtype), scale.view(shape)).to(x.dtype)


def rows_per_slice(sequences: int, videos: int, width: int) -> int:
    """Whole rows of ``width`` latent pixels of every video in a slice of at most ``sequences`` sequences
    of frames (at least one row)."""
    return max(1, sequences // (videos * width))


class RowChunkedTransformerHook(ModelHook):
    """Runs a temporal transformer (``forward(hidden_states (B*F, C, H, W), ..., num_frames=F)`` with a
    ``GroupNorm`` ``norm`` over ``(B, C, F, H, W)``) on slices of rows of pixels, at most ``sequences``
    sequences of frames per slice, its norm frozen to the whole input's statistics."""

    def __init__(self, sequences: int) -> None:
        super().__init__()
        self.sequences = sequences

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        forward = self.fn_ref.original_forward
        bound = forward_signature(module).bind(*args, **kwargs)
        bound.apply_defaults()
        first = next(iter(bound.arguments))
        frames, num_frames = bound.arguments[first], bound.arguments["num_frames"]
        videos, width = frames.shape[0] // num_frames, frames.shape[3]
        rows = rows_per_slice(self.sequences, videos, width)
        if rows >= frames.shape[2]:
            return forward(*args, **kwargs)
        norm = module.norm
        mean, inv_std = group_statistics(frames, num_frames, norm.num_groups, norm.eps, rows)
        registry = HookRegistry.check_if_exists_or_initialize(norm)
        registry.register_hook(FrozenGroupNormHook(mean, inv_std, num_frames), FROZEN_NORM_HOOK)
        try:
            return _run_in_chunks(forward, first, _Chunking(2, lambda x: rows), *args, **kwargs)
        finally:
            registry.remove_hook(FROZEN_NORM_HOOK, recurse=False)


def runs_in_chunks(module: nn.Module) -> bool:
    """Whether :func:`chunked_execution` has hooked ``module`` now."""
    registry = getattr(module, "_diffusers_hook", None)
    return registry is not None and registry.get_hook(CHUNK_HOOK) is not None


def _pointwise_in_space(module: nn.Module) -> bool:
    """A 3D convolution over frames only (kernel, stride 1x1 and no padding in height and width)."""
    return (isinstance(module, nn.Conv3d) and module.kernel_size[1:] == (1, 1) and module.stride[1:] == (1, 1)
            and module.padding[1:] == (0, 0))


class ChunkableLayers(NamedTuple):
    """The layers of a video UNet that :func:`chunked_execution` runs in slices."""

    spatial: list[nn.Module]  # resnets, spatial transformers, down- and upsamplers: independent per image
    blocks: list[nn.Module]  # transformer blocks of the temporal attention: independent per sequence of frames
    convs: list[nn.Module]  # 3D convolutions over frames only: independent per latent pixel
    transformers: list[nn.Module]  # temporal transformers around the blocks: per pixel but for their group norm


def _temporal_transformer(module: nn.Module, blocks: set[int]) -> bool:
    """A module with a ``GroupNorm`` ``norm``, a ``num_frames`` argument and temporal blocks among its
    ``transformer_blocks`` (diffusers' ``TransformerTemporalModel`` and ``AnimateDiffTransformer3D``)."""
    return (isinstance(getattr(module, "norm", None), nn.GroupNorm)
            and any(id(block) in blocks for block in getattr(module, "transformer_blocks", ()))
            and "num_frames" in forward_signature(module).parameters)


def chunkable_layers(model: nn.Module) -> ChunkableLayers:
    """The layers of a video UNet (or a backbone's ``unet``) that :func:`chunked_execution` runs in slices."""
    unet = getattr(model, "unet", model)  # a backbone's denoiser, not its VAE
    temporal = {id(layer.module) for layer in temporal_attention_layers(model)}
    spatial = [m for m in unet.modules() if isinstance(m, SPATIAL_LAYERS)]
    blocks = [m for m in unet.modules() if isinstance(m, BasicTransformerBlock) and id(m.attn1) in temporal]
    convs = [m for m in unet.modules() if _pointwise_in_space(m)]
    block_ids = {id(block) for block in blocks}
    transformers = [m for m in unet.modules() if _temporal_transformer(m, block_ids)]
    return ChunkableLayers(spatial, blocks, convs, transformers)


@contextlib.contextmanager
def chunked_execution(model: nn.Module, frames: int | None = None, sequences: int | None = None) -> Iterator[None]:
    """Within the block, ``model``'s spatial layers see at most ``frames`` images (of ``batch*frames``) per
    call, and its temporal transformers, their blocks and its temporal convolutions at most ``sequences``
    sequences of frames (of ``batch*h*w``; a temporal transformer or convolution takes whole rows of latent
    pixels, at least one); None leaves them whole.

    ``model`` is a diffusers-style video UNet or a backbone (its ``unet``). Outputs equal the unchunked
    forward up to float rounding; smaller chunks hold less memory and cost more calls. The hooks (named
    ``CHUNK_HOOK`` in each layer's diffusers ``HookRegistry``) are removed on exit.
    """
    for name, size in (("frames", frames), ("sequences", sequences)):
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"{name} per chunk must be a positive integer or None, got {size!r}")
    spatial, blocks, convs, transformers = chunkable_layers(model)
    if not spatial:
        raise ValueError(f"{type(model).__name__} has no spatial layers (2D resnets, spatial transformers) "
                         "that vstar can run in chunks of frames")
    plan: list[tuple[nn.Module, ModelHook]] = []
    if frames is not None:
        plan += [(m, ChunkedForwardHook(_Chunking(0, lambda x: frames, by_frame=True))) for m in spatial]
    if sequences is not None:
        plan += [(m, ChunkedForwardHook(_Chunking(0, lambda x: sequences))) for m in blocks]
        # (B, C, F, H, W): whole rows of W latent pixels of every video
        plan += [(m, ChunkedForwardHook(_Chunking(3, lambda x: rows_per_slice(sequences, x.shape[0], x.shape[4]))))
                 for m in convs]
        plan += [(m, RowChunkedTransformerHook(sequences)) for m in transformers]
    if any(runs_in_chunks(m) for m, _ in plan):
        raise ValueError(f"{type(model).__name__} already runs in chunks; leave the outer chunked_execution first")
    try:
        for module, hook in plan:
            HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, CHUNK_HOOK)
        yield
    finally:
        for module, _ in plan:
            module._diffusers_hook.remove_hook(CHUNK_HOOK, recurse=False)
