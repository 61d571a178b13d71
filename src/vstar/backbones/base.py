"""The adapter interface every base-model family implements.

The VSTAR pipeline owns the loop (:mod:`vstar.sampling`); a backbone answers every model-specific question
it asks: the latent shape for a frame count and size (including temporal compression), which sizes and
frame counts are valid, how texts are encoded, how per-frame text reaches the denoiser, where its temporal
attention is (for TAR and attention recording), one denoiser call, how latents are decoded, and which
scheduler adapter samples it. Adding a model family means writing one subclass and a registry entry.

UNet families share :class:`vstar.backbones.unet_family.UNetBackbone`, which answers most of these from
the UNet's config and module names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from diffusers.utils.torch_utils import get_module_execution_device
from torch import nn

if TYPE_CHECKING:
    from vstar.sampling import SchedulerAdapter
    from vstar.temporal_attention import TemporalAttentionLayer


@dataclass(frozen=True)
class BackboneDefaults:
    """A model family's recommended generation settings (what its authors use) and its hard limits.

    ``fps`` is the playback rate of written videos; ``cond_fps`` the frame-rate conditioning of models that
    take one (VideoCrafter2: 28), None for the others. ``size_multiple``: height and width must be multiples
    of it (VAE factor x denoiser downsampling). ``temporal_compression`` k: latent frame l > 0 decodes to k
    output frames, latent frame 0 to one, so valid frame counts are ``k*n + 1`` (every count when k = 1).
    ``parameters`` and ``activation_bytes`` feed the memory estimate made before any work
    (:mod:`vstar.resources`): the weight count, and the peak activation memory of one denoiser call per
    output pixel of one frame of one batch item at float32 (0 = unknown, no estimate).

    What the model's architecture fixes, so that settings it cannot run are refused before it loads (the
    registry's tests check each against the built model): ``num_train_timesteps``, the training timesteps
    of its noise schedule; ``temporal_attention_levels``, the resolution levels with temporal self-attention
    (0 = highest resolution, the paper's "64"; -1 = the block before the down path), None when unknown
    before loading; ``latent_channels`` and ``vae_scale_factor`` (pixels per latent pixel), which with
    ``temporal_compression`` give the latent shape. The defaults are those of SD-style KL-f8 models.
    ``tar``: the TAR preset a generation uses when none is asked for (the paper's ``64D1`` for the UNets;
    None for a model whose attention TAR does not act on); ``tar_long`` replaces it from ``tar_long_from``
    latent frames on (:meth:`tar_preset`). ``frame_chunking``: whether the denoiser can run in
    chunks of frames (:mod:`vstar.chunking`: a UNet's spatial and temporal layers; not a transformer whose
    attention spans all frames).
    """

    height: int
    width: int
    num_frames: int = 16
    num_inference_steps: int = 25
    guidance_scale: float = 9.0
    fps: int = 8
    cond_fps: int | None = None
    max_frames: int | None = None  # hard limit (a fixed-length frame position table), None = unbounded
    eta: float = 0.0  # DDIM eta
    size_multiple: int = 64
    temporal_compression: int = 1
    parameters: int = 0
    activation_bytes: float = 0.0
    num_train_timesteps: int = 1000
    temporal_attention_levels: tuple[int, ...] | None = None
    latent_channels: int = 4
    vae_scale_factor: int = 8
    tar: str | None = "64D1"
    tar_long: str | None = None
    tar_long_from: int = 0
    frame_chunking: bool = True
    largest_part: int = 0  # parameters of the largest part (what model offload holds at once); 0 = all of them
    attention_layout: str = "temporal"  # "spatiotemporal": temporal_attention_levels are transformer blocks

    def tar_preset(self, num_frames: int) -> str | None:
        """The default TAR preset for ``num_frames`` frames: ``tar_long`` from ``tar_long_from`` latent frames
        on, else ``tar``."""
        if self.tar_long is not None and self.latent_frames(num_frames) >= self.tar_long_from:
            return self.tar_long
        return self.tar

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` output frames (equal without temporal compression)."""
        k = self.temporal_compression
        return num_frames if k == 1 else (num_frames - 1) // k + 1

    def output_frame(self, latent_frame: int) -> int:
        """The last output frame that latent frame ``latent_frame`` decodes to (``k * l``)."""
        return latent_frame * self.temporal_compression

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """``(B, C, latent frames, h, w)`` of the initial noise for ``batch`` videos, known before loading."""
        return noise_shape(batch, self.latent_channels, self.latent_frames(num_frames), height, width,
                           self.vae_scale_factor)

    def check_num_frames(self, num_frames: int, name: str) -> None:
        """Raise a ValueError naming the fix when the family cannot generate ``num_frames`` frames."""
        k = self.temporal_compression
        if k > 1 and (num_frames - 1) % k:
            lower = (num_frames - 1) // k * k + 1
            raise ValueError(f"{name} makes videos of {k}*n+1 frames (it compresses {k} frames into one latent "
                             f"frame), got {num_frames}; try {max(lower, k + 1)} or {lower + k}")
        limit = self.max_frames
        if limit is not None and num_frames > limit:
            raise ValueError(
                f"{name} supports at most {limit} frames (its frame positional embeddings have {limit} entries), "
                f"got {num_frames}; use --frames {limit} or a backbone without frame positional embeddings "
                "(modelscope, videocrafter2)"
            )

    def check_size(self, height: int, width: int) -> None:
        """Raise a ValueError with the nearest valid value when a side is not a positive ``size_multiple``."""
        check_size_multiple(height, width, self.size_multiple)

    def check_frame_chunk(self, frame_chunk: object, name: str) -> None:
        """Raise a ValueError for a fixed frame chunk (a whole number) on a model that cannot run in chunks."""
        if isinstance(frame_chunk, int) and not self.frame_chunking:
            raise ValueError(f"--frame-chunk {frame_chunk}: {name} attends across all frames at once, so vstar cannot "
                             "run it in chunks of frames; drop --frame-chunk (frame_chunk=) or use 'auto', which "
                             "keeps it whole")

    def check_states_fit(self, count: int, num_frames: int, fix: str = "use more frames or fewer states") -> None:
        """Raise a ValueError when ``count`` synopsis states cannot each have a latent frame of ``num_frames``
        frames; ``fix`` says what to change."""
        if count > self.latent_frames(num_frames):
            raise ValueError(f"{count} synopsis states do not fit on {num_frames} frames; {fix}")

    def latent_frames_fit(self, num_frames: int) -> int:
        """The largest valid frame count (``k*n + 1`` with temporal compression ``k``) up to ``num_frames``."""
        k = self.temporal_compression
        return num_frames if k == 1 else max(1, (num_frames - 1) // k * k + 1)

    def check_temporal_attention(self, name: str, what: str, layouts: tuple[str, ...] = ("temporal",)) -> None:
        """Raise a ValueError when ``what`` (e.g. "--optimize-noise") needs temporal attention of one of
        ``layouts`` that ``name`` lacks."""
        if self.attention_layout not in layouts or self.temporal_attention_levels == ():
            raise ValueError(f"{what} reads temporal attention maps, and {name} has no temporal attention layers "
                             "that vstar records yet (its self-attention spans all frames); use a UNet model such "
                             "as modelscope, videocrafter2 or toy-shapes")


def noise_shape(batch: int, channels: int, latent_frames: int, height: int, width: int, scale: int) -> tuple[int, ...]:
    """``(B, C, L, h, w)``: the latents of ``batch`` videos of ``height x width`` pixels, ``scale`` pixels per
    latent pixel."""
    return (batch, channels, latent_frames, height // scale, width // scale)


def check_size_multiple(height: int, width: int, factor: int) -> None:
    """Raise a ValueError with the nearest valid value when a side is not a positive multiple of ``factor``."""
    for label, value in (("height", height), ("width", width)):
        if value < factor or value % factor:
            nearest = max(factor, round(value / factor) * factor)
            raise ValueError(f"{label} must be a positive multiple of {factor} for this model, got {value}; "
                             f"try {nearest}")


class Backbone(nn.Module):
    """A loaded base model: denoiser, VAE, text encoder, tokenizer and scheduler behind one interface.

    Subclasses set the components in ``__init__`` and implement :meth:`encode_text`, :meth:`model_output`,
    :meth:`decode_latents` and :meth:`temporal_attention_layers`; the rest has defaults that fit models
    whose denoiser takes per-frame text directly and whose ``defaults`` describe their geometry.
    """

    name: str = "backbone"
    denoiser_attribute: str = "model"  # the submodule name of the denoiser ("unet", "transformer", ...)

    def __init__(self, denoiser: nn.Module, vae: nn.Module, text_encoder: nn.Module, tokenizer: Any,
                 scheduler: Any, defaults: BackboneDefaults, model_id: str | None = None):
        super().__init__()
        self.add_module(self.denoiser_attribute, denoiser)
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.defaults = defaults
        self.model_id = model_id

    @property
    def denoiser(self) -> nn.Module:
        """The network the sampling loop calls (a UNet, a video transformer, ...)."""
        return getattr(self, self.denoiser_attribute)

    @property
    def device(self) -> torch.device:
        """Where the denoiser runs (its offload hook's execution device when its weights wait on the CPU)."""
        return get_module_execution_device(self.denoiser)

    def offload_parts(self) -> list[nn.Module]:
        """The parts in the order a generation calls them (what CPU offloading hooks chain)."""
        return [self.text_encoder, self.denoiser, self.vae]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    # --- geometry ----------------------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return int(self.denoiser.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        """Spatial downsampling of the VAE (8 for SD-style KL-f8 autoencoders)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` output frames; synopsis keyframes are placed on these."""
        return self.defaults.latent_frames(num_frames)

    def output_frame(self, latent_frame: int) -> int:
        """The last output frame that a latent frame decodes to (the frame a keyframe is reported at)."""
        return self.defaults.output_frame(latent_frame)

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """``(B, C, latent frames, h, w)`` of the initial noise for ``batch`` videos (from the loaded model)."""
        return noise_shape(batch, self.latent_channels, self.latent_frames(num_frames), height, width,
                           self.vae_scale_factor)

    def check_num_frames(self, num_frames: int) -> None:
        """Raise a clear ValueError when the family cannot generate ``num_frames`` frames."""
        self.defaults.check_num_frames(num_frames, self.name)

    def check_size(self, height: int, width: int) -> None:
        """Raise a clear ValueError when the model cannot generate ``height`` x ``width`` frames."""
        self.defaults.check_size(height, width)

    # --- text ------------------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Encode ``K`` texts into cross-attention embeddings ``(K, S, D)`` on the denoiser's device/dtype."""
        raise NotImplementedError

    @contextlib.contextmanager
    def per_frame_text(self, context: torch.Tensor) -> Iterator[None]:
        """Within the block, :meth:`model_output` calls with ``context`` need no further set-up.

        Installed once per generation by the pipeline. The default does nothing: it fits denoisers that take
        one embedding per frame in their ``forward``; families that route text through processors override it.
        """
        yield

    # --- the denoiser ----------------------------------------------------------------------------------
    def model_output(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                     fps: int | None = None) -> torch.Tensor:
        """One denoiser call in the scheduler's parameterisation (noise, velocity, ...).

        latents: ``(B, C, L, h, w)``; timestep: scalar or ``(B,)``; context: ``(B*L, S, D)`` with the latent
        frame index varying fastest (one embedding per latent frame, ``(b l)`` order). ``fps``: frame-rate
        conditioning for families that take it. Returns ``(B, C, L, h, w)``.
        """
        raise NotImplementedError

    def check_context(self, latents: torch.Tensor, context: torch.Tensor) -> None:
        """Raise a ValueError unless ``latents`` is ``(B, C, L, h, w)`` and ``context`` ``(B*L, S, D)``."""
        if latents.ndim != 5:
            raise ValueError(f"latents must have shape (B, C, F, h, w), got {tuple(latents.shape)}")
        batch, num_frames = latents.shape[0], latents.shape[2]
        if context.ndim != 3 or context.shape[0] != batch * num_frames:
            raise ValueError(
                f"context must have shape (B*F, S, D) = ({batch * num_frames}, S, D) for latents with B={batch} "
                f"videos of F={num_frames} frames, got {tuple(context.shape)}; give one embedding per frame"
            )

    def temporal_attention_layers(self) -> list[TemporalAttentionLayer]:
        """The temporal self-attention layers that TAR and attention recording attach to."""
        raise NotImplementedError

    # --- sampling and decoding -------------------------------------------------------------------------
    def scheduler_adapter(self, eta: float = 0.0) -> SchedulerAdapter:
        """The adapter that steps this model's scheduler (diffusers conventions by default)."""
        from vstar.sampling import DiffusersScheduler

        return DiffusersScheduler(self.scheduler, eta=eta)

    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        """Decode ``(B, C, L, h, w)`` latents a few frames at a time into video ``(B, F, 3, H, W)`` in [0, 1]."""
        raise NotImplementedError

    def encode_video(self, video: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        """Encode video ``(B, F, 3, H, W)`` in [0, 1] into latents ``(B, C, L, h, w)`` at the denoiser's scale
        (the VAE's mean, deterministic); used to analyse real videos. Families without an encoder raise."""
        raise NotImplementedError(f"{self.name} has no video encoder in vstar; analyse real videos with a UNet "
                                  "family (modelscope, animatediff, videocrafter2, toy-shapes)")

