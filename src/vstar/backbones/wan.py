"""Wan 2.1 and 2.2 text-to-video (diffusers' ``WanTransformer3DModel``, ``AutoencoderKLWan``, UMT5) as backbones.

Wan is a diffusion transformer: after the ``(1, 2, 2)`` patch embedding its video tokens are frame-major
(token ``f*H'*W' + h*W' + w``), every block's self-attention (``attn1``) sees all tokens with 3D RoPE, and its
cross-attention (``attn2``) sees one 512-token text context (after the transformer's ``text_embedder``) for
every token. Per-frame synopsis text enters there: the text of latent frame ``f`` is passed frame-major along
the text axis (``(B, L*512, D)``, embedded token by token by ``text_embedder``), and a processor wrapped
around each ``attn2`` processor (:class:`PerFrameCrossAttention`) runs the cross-attention as ``B*L``
attentions of one latent frame's ``H'*W'`` queries against that frame's 512 keys. The wrapped processor
does the projections and the attention call, so the attention backend a user chose
(``set_attention_backend``) is kept; with one text on every frame the result is stock cross-attention.

Families: Wan 2.1 (16-channel VAE, 4x temporal and 8x spatial compression), Wan 2.2 TI2V-5B (48-channel
VAE with 16x spatial compression and one timestep per token, ``expand_timesteps``; text-to-video only), and
Wan 2.2 A14B (two experts: ``transformer`` for timesteps at or above ``boundary_ratio * 1000``,
``transformer_2`` below). Prompts are encoded as ``WanPipeline`` encodes them (cleaned, 512 UMT5 tokens, the
padding's states zeroed), and sampling uses the model's own ``UniPCMultistepScheduler`` in flow mode.

TAR, the identity/uniform replacement and the attention recording act on the full 3D self-attention
(``attn1``) through its frame-structured layout (:class:`WanLayout`): TAR as a bias on the latent-frame
distance between query and key, scaled by the query row's maximum logit, on the blocks a preset names (e.g.
``b0-9D2``). Not handled: image input.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from diffusers.utils.torch_utils import get_module_execution_device
from torch import nn
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from vstar.backbones.base import Backbone, BackboneDefaults
from vstar.backbones.clip_tokenizer import VOCAB_SIZE, offline_clip_tokenizer
from vstar.backbones.loading import default_device, model_source, seeded
from vstar.backbones.registry import defaults_for_model_id, get_spec
from vstar.frame_attention.spatiotemporal import SpatioTemporalCall, SpatioTemporalLayout
from vstar.sampling import FlowMatchScheduler, SchedulerAdapter
from vstar.temporal_attention import TemporalAttentionLayer

TEXT_LENGTH = 512  # UMT5 tokens per prompt, as WanPipeline encodes them
WAN_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def prompt_clean(text: str) -> str:
    """WanPipeline's prompt cleaning: ftfy's fixes when installed, HTML unescaped twice, whitespace folded."""
    with contextlib.suppress(ImportError):
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class PerFrameCrossAttention:
    """Wraps a Wan cross-attention processor so that each latent frame attends to its own text.

    ``encoder_hidden_states`` holds ``L`` texts of :data:`TEXT_LENGTH` tokens frame-major,
    ``(B, L*512, D)``; the ``N = L*H'*W'`` frame-major video tokens ``(B, N, D)`` are regrouped as ``B*L``
    sequences of ``H'*W'`` and the wrapped processor attends each to its frame's 512 keys. Cross-attention has
    no mask and no positional encoding, so the regrouping is exact.
    """

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, rotary_emb: Any = None, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] % TEXT_LENGTH:
            raise ValueError(f"per-frame text must be (B, L*{TEXT_LENGTH}, D), got "
                             f"{None if encoder_hidden_states is None else tuple(encoder_hidden_states.shape)}")
        batch, tokens, width = hidden_states.shape
        frames = encoder_hidden_states.shape[1] // TEXT_LENGTH
        if tokens % frames:
            raise ValueError(f"{tokens} video tokens do not split into {frames} latent frames")
        per_frame = hidden_states.reshape(batch * frames, tokens // frames, width)
        texts = encoder_hidden_states.reshape(batch * frames, TEXT_LENGTH, encoder_hidden_states.shape[-1])
        out = self.inner(attn, per_frame, texts, attention_mask, rotary_emb, **kwargs)
        return out.reshape(batch, tokens, -1)


@dataclass
class FrameGrid:
    """How many latent frames the transformer call in progress has (set by :meth:`WanBackbone.model_output`):
    self-attention tokens are frame-major, ``N = frames * tokens per frame``."""

    frames: int | None = None


@dataclass(frozen=True)
class WanSelfAttention(TemporalAttentionLayer):
    """A Wan block's full 3D self-attention as a frame-structured layer (level = block index)."""

    grid: FrameGrid = field(default_factory=FrameGrid)

    @property
    def frame_layout(self) -> WanLayout:
        return WanLayout(self.grid)


def self_attention_inputs(attn: nn.Module, hidden_states: torch.Tensor,
                          rotary_emb: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Wan's queries, keys and values ``(B, N, H, d)`` of a self-attention: projections, RMS norms, 3D RoPE."""
    if getattr(attn, "fused_projections", False):
        query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    query, key = attn.norm_q(query), attn.norm_k(key)
    query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
    if rotary_emb is not None:
        query, key = rotate(query, *rotary_emb), rotate(key, *rotary_emb)
    return query, key, value


class WanLayout(SpatioTemporalLayout):
    """The spatio-temporal layout of Wan's self-attention (``attn1``): Wan's projections, RMS norms and 3D RoPE
    (:func:`self_attention_inputs`), the output projection, and the latent frames of the transformer call in
    progress (``grid``, set by :meth:`WanBackbone.model_output`). TAR, the replacements and the recording
    are the layout's (:class:`~vstar.frame_attention.spatiotemporal.SpatioTemporalLayout`)."""

    def __init__(self, grid: FrameGrid):
        self.grid = grid

    def inputs(self, attn: Any, hidden_states: torch.Tensor, args: tuple,
               kwargs: dict[str, Any]) -> SpatioTemporalCall:
        frames = self.grid.frames
        if frames is None or hidden_states.shape[1] % frames:
            raise ValueError("frame-structured attention on Wan needs the latent frames of the call: run the "
                             "transformer through WanBackbone.model_output")
        rotary_emb = args[0] if args else kwargs.get("rotary_emb")
        query, key, value = self_attention_inputs(attn, hidden_states, rotary_emb)

        def finish(out: torch.Tensor) -> torch.Tensor:
            """``(B, N, H, d)`` -> the module's output (heads merged, output projection)."""
            return attn.to_out[1](attn.to_out[0](out.flatten(2, 3).type_as(hidden_states)))

        return SpatioTemporalCall(frames, query.device, query.dtype, finish, query, key, value)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on ``(B, N, H, d)``: each channel pair ``(x0, x1)`` turned by the pair's angle,
    whose cosine and sine the tables hold at the pair's even and odd channel."""
    pairs = x.unflatten(-1, (-1, 2))
    first, second = pairs[..., 0], pairs[..., 1]
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack((first * c - second * s, first * s + second * c), dim=-1).flatten(-2).type_as(x)


def cross_attentions(transformer: nn.Module) -> dict[str, nn.Module]:
    """Every block's text cross-attention (``blocks.i.attn2``) of a ``WanTransformer3DModel``, by name."""
    return {f"blocks.{i}.attn2": block.attn2 for i, block in enumerate(transformer.blocks)}


class WanBackbone(Backbone):
    """A Wan text-to-video model behind the backbone interface, its parts under diffusers' names.

    ``tokenizer``, ``text_encoder``, ``vae``, ``transformer`` (the denoiser), ``scheduler``, and where the model
    has them ``transformer_2`` (the low-noise expert), ``boundary_ratio`` and ``expand_timesteps``: the same
    parts ``WanPipeline`` takes, so they can be handed to it and back (:meth:`diffusers_components`).
    """

    name = "wan"
    denoiser_attribute = "transformer"

    def __init__(self, transformer: WanTransformer3DModel, vae: AutoencoderKLWan, text_encoder: nn.Module,
                 tokenizer: Any, scheduler: Any, defaults: BackboneDefaults, model_id: str | None = None, *,
                 transformer_2: WanTransformer3DModel | None = None, boundary_ratio: float | None = None,
                 expand_timesteps: bool = False):
        super().__init__(transformer, vae, text_encoder, tokenizer, scheduler, defaults, model_id)
        if (transformer_2 is None) != (boundary_ratio is None):
            raise ValueError("a two-expert Wan model needs both transformer_2 and boundary_ratio")
        self.transformer_2 = transformer_2
        self.boundary_ratio = boundary_ratio
        self.expand_timesteps = expand_timesteps
        self._per_frame_installed = 0
        self.grid = FrameGrid()  # the latent frames of the call in progress, for frame-structured attention

    @property
    def experts(self) -> list[WanTransformer3DModel]:
        """The transformers that denoise: ``transformer`` and, for Wan 2.2 A14B, ``transformer_2``."""
        return [m for m in (self.transformer, self.transformer_2) if m is not None]

    def offload_parts(self) -> list[nn.Module]:
        """Text encoder, the experts, VAE: the order a generation calls them."""
        return [self.text_encoder, *self.experts, self.vae]

    def diffusers_components(self) -> dict[str, Any]:
        """The keyword arguments of ``diffusers.WanPipeline`` for these parts."""
        return {"tokenizer": self.tokenizer, "text_encoder": self.text_encoder, "vae": self.vae,
                "transformer": self.transformer, "scheduler": self.scheduler, "transformer_2": self.transformer_2,
                "boundary_ratio": self.boundary_ratio, "expand_timesteps": self.expand_timesteps}

    # --- geometry ----------------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return int(self.vae.config.scale_factor_spatial)

    # --- text --------------------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``K`` texts -> ``(K, 512, D)`` UMT5 states as ``WanPipeline`` computes them: cleaned prompts, 512
        tokens, the states of padding tokens set to zero; on the transformer's device and dtype."""
        if not texts:
            raise ValueError("encode_text needs at least one text, got an empty list")
        tokens = self.tokenizer([prompt_clean(t) for t in texts], padding="max_length", max_length=TEXT_LENGTH,
                                truncation=True, add_special_tokens=True, return_attention_mask=True,
                                return_tensors="pt")
        device = get_module_execution_device(self.text_encoder)
        states = self.text_encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device)).last_hidden_state
        kept = tokens.attention_mask.to(device).gt(0).unsqueeze(-1)
        return torch.where(kept, states, torch.zeros_like(states)).to(device=self.device, dtype=self.dtype)

    @contextlib.contextmanager
    def per_frame_text(self, context: torch.Tensor) -> Iterator[None]:
        """Wrap every ``attn2`` processor of every expert in :class:`PerFrameCrossAttention`; restored on exit."""
        modules = {f"{i}.{name}": m for i, expert in enumerate(self.experts)
                   for name, m in cross_attentions(expert).items()}
        previous = {name: m.processor for name, m in modules.items()}
        try:
            for m in modules.values():
                m.set_processor(PerFrameCrossAttention(m.processor))
            self._per_frame_installed += 1
            yield
        finally:
            self._per_frame_installed -= 1
            for name, m in modules.items():
                m.set_processor(previous[name])

    # --- the denoiser ------------------------------------------------------------------------------------
    def expert_for(self, timestep: torch.Tensor | float) -> WanTransformer3DModel:
        """The transformer that denoises at ``timestep``: ``transformer_2`` below ``boundary_ratio * T``."""
        if self.transformer_2 is None:
            return self.transformer
        boundary = self.boundary_ratio * self.scheduler.config.num_train_timesteps
        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        return self.transformer if t >= boundary else self.transformer_2

    def model_output(self, latents: torch.Tensor, timestep: torch.Tensor | int, context: torch.Tensor,
                     fps: int | None = None) -> torch.Tensor:
        """The flow velocity ``(B, C, L, h, w)`` with latent frame ``l`` of video ``b`` reading ``context[b*L+l]``.

        context: ``(B*L, 512, D)``, latent frame fastest (under guidance: negative branch first). Outside
        :meth:`per_frame_text` the processors are installed for this call. ``fps`` is ignored.
        """
        self.check_context(latents, context)
        if not self._per_frame_installed:
            with self.per_frame_text(context):
                return self.model_output(latents, timestep, context, fps)
        batch, _, frames, height, width = latents.shape
        expert = self.expert_for(timestep)
        t = torch.as_tensor(timestep, device=latents.device).flatten()
        t = t.expand(batch) if t.numel() == 1 else t
        if self.expand_timesteps:  # Wan 2.2 TI2V: one timestep per video token
            _, patch_h, patch_w = expert.config.patch_size
            t = t[:, None].expand(batch, frames * (height // patch_h) * (width // patch_w))
        text = context.to(device=latents.device, dtype=self.dtype).reshape(batch, frames * TEXT_LENGTH, -1)
        self.grid.frames = frames // expert.config.patch_size[0]
        return expert(hidden_states=latents.to(self.dtype), timestep=t, encoder_hidden_states=text,
                      return_dict=False)[0]

    def temporal_attention_layers(self) -> list[TemporalAttentionLayer]:
        """Every expert's full 3D self-attention (``blocks.b.attn1``) as a frame-structured layer whose level is
        its block index ``b`` (TAR presets name blocks, e.g. ``b0-9D2``; see :class:`WanSelfAttention`)."""
        prefix = ["transformer", "transformer_2"]
        return [WanSelfAttention(f"{prefix[i]}.blocks.{b}.attn1", b, block.attn1, self.grid)
                for i, expert in enumerate(self.experts) for b, block in enumerate(expert.blocks)]

    # --- sampling and decoding ---------------------------------------------------------------------------
    def scheduler_adapter(self, eta: float = 0.0) -> SchedulerAdapter:
        """Flow matching with the model's own scheduler (UniPC with flow sigmas and its shift)."""
        return FlowMatchScheduler(self.scheduler)

    def _latent_statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(like.device, like.dtype)
        std = torch.tensor(config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, std

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        """``(B, C, L, h, w)`` -> video ``(B, F, 3, H, W)`` in [0, 1], one video at a time (Wan's VAE decodes
        latent frame by latent frame with a causal cache, so ``chunk_size`` changes nothing but is checked;
        ``vae.enable_tiling()`` bounds the memory spatially)."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        vae_dtype = next(self.vae.parameters()).dtype
        videos = []
        for one in latents.split(1):
            z = one.to(device=get_module_execution_device(self.vae), dtype=vae_dtype)
            mean, std = self._latent_statistics(z)
            video = self.vae.decode(z * std + mean, return_dict=False)[0]  # (1, 3, F, H, W) in [-1, 1]
            videos.append(((video.float() + 1) / 2).clamp(0, 1).permute(0, 2, 1, 3, 4))
        return torch.cat(videos)

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor, chunk_size: int = 4) -> torch.Tensor:
        """Video ``(B, F, 3, H, W)`` in [0, 1] -> normalized latents ``(B, C, L, h, w)`` (the VAE's mean)."""
        vae_dtype = next(self.vae.parameters()).dtype
        pixels = (video.permute(0, 2, 1, 3, 4) * 2 - 1).to(device=get_module_execution_device(self.vae), dtype=vae_dtype)
        z = self.vae.encode(pixels).latent_dist.mode()
        mean, std = self._latent_statistics(z)
        return ((z - mean) / std).to(self.dtype)


# --- loading ---------------------------------------------------------------------------------------------

def wan_scheduler(flow_shift: float = 3.0) -> UniPCMultistepScheduler:
    """The scheduler the Wan repositories ship: UniPC over flow sigmas shifted by ``flow_shift`` (3.0 at 480p,
    5.0 at 720p), flow prediction, 1000 training timesteps."""
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                   flow_shift=flow_shift)


def load_wan(
    model: str | None = None,
    *,
    model_path: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    defaults: BackboneDefaults | None = None,
    cache_dir: str | None = None,
) -> WanBackbone:
    """Load a Wan model in diffusers layout from the Hugging Face hub (cache first) or a local folder.

    Args:
        model: hub repository id, e.g. ``"Wan-AI/Wan2.1-T2V-1.3B-Diffusers"``.
        model_path: a folder in diffusers layout (``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
            ``scheduler/``, ``model_index.json``; ``transformer_2/`` for Wan 2.2 A14B) instead of the hub.
        device: default the first CUDA GPU if there is one, else the CPU.
        dtype: of the transformers and the text encoder (default float32; bfloat16 on GPUs); the VAE stays
            float32 as the Wan examples keep it.
        defaults: generation settings; default the registry's for ``model``.

    ``boundary_ratio`` and ``expand_timesteps`` come from ``model_index.json``; ``transformer_2`` is loaded
    when the index names one.
    """
    if model is None and model_path is None:
        raise ValueError("load_wan needs a hub id (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers) or a model_path")
    source = replace(model_source(model or str(model_path), model_path, cache_dir), local_copy=(
        f"a local copy in diffusers layout ({', '.join(s + '/' for s in WAN_SUBFOLDERS)}, model_index.json) "
        "with --model-path DIR (model_path=DIR in Python)"))
    source.require(WAN_SUBFOLDERS)
    index = source.load(_read_model_index)
    dtype = dtype or torch.float32
    weights = {"torch_dtype": dtype}
    two_experts = (index.get("transformer_2") or [None])[0] is not None
    backbone = WanBackbone(
        transformer=source.load(WanTransformer3DModel.from_pretrained, "transformer", **weights),
        vae=source.load(AutoencoderKLWan.from_pretrained, "vae", torch_dtype=torch.float32),
        text_encoder=source.load(UMT5EncoderModel.from_pretrained, "text_encoder", **weights),
        tokenizer=source.load_tokenizer(AutoTokenizer.from_pretrained),
        scheduler=source.load(UniPCMultistepScheduler.from_pretrained, "scheduler"),
        defaults=defaults or defaults_for_model_id(model or "") or get_spec("wan2.1-t2v-1.3b").defaults,
        model_id=model or str(model_path),
        transformer_2=source.load(WanTransformer3DModel.from_pretrained, "transformer_2", **weights)
        if two_experts else None,
        boundary_ratio=index.get("boundary_ratio") if two_experts else None,
        expand_timesteps=bool(index.get("expand_timesteps", False)),
    )
    return backbone.to(device=default_device(device)).eval()


def _read_model_index(location: str, **kwargs: Any) -> dict[str, Any]:
    """``model_index.json`` of a local folder or a hub repository (through the hub cache)."""
    if Path(location).is_dir():
        return json.loads((Path(location) / "model_index.json").read_text())
    from huggingface_hub import hf_hub_download

    kwargs.pop("subfolder", None)
    return json.loads(Path(hf_hub_download(location, "model_index.json", **kwargs)).read_text())


# --- tiny random-weight models (offline tests and demos) -------------------------------------------------

TINY_TEXT = 32  # UMT5 width of the tiny models


def tiny_transformer(in_channels: int) -> WanTransformer3DModel:
    """A 2-block ``WanTransformer3DModel`` of width 24 (2 heads of 12: RoPE splits a head 4/4/4 channels)."""
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                 in_channels=in_channels, out_channels=in_channels, text_dim=TINY_TEXT,
                                 freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True,
                                 qk_norm="rms_norm_across_heads", rope_max_seq_len=1024).eval()


def tiny_text_encoder() -> UMT5EncoderModel:
    """A 1-layer UMT5 encoder (width 32) over the CLIP vocabulary, which the offline tokenizer uses."""
    config = UMT5Config(vocab_size=VOCAB_SIZE, d_model=TINY_TEXT, d_ff=2 * TINY_TEXT, num_layers=1, num_heads=2,
                        d_kv=TINY_TEXT // 2, relative_attention_num_buckets=8)
    return UMT5EncoderModel(config).eval()


def tiny_vae(ti2v: bool = False) -> AutoencoderKLWan:
    """Wan's causal video VAE at width 8: 4x temporal compression; 16 channels and 8x spatial (Wan 2.1), or the
    Wan 2.2 TI2V layout, 48 channels and 16x spatial (residual blocks over 2x2-patchified pixels)."""
    if not ti2v:
        return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1).eval()
    return AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
                            latents_mean=[0.0] * 48, latents_std=[1.0] * 48).eval()


def _tiny(name: str, seed: int, device: str | torch.device | None, *, experts: int = 1,
          ti2v: bool = False) -> WanBackbone:
    with seeded(seed):
        vae = tiny_vae(ti2v)
        transformers = [tiny_transformer(vae.config.z_dim) for _ in range(experts)]
        text_encoder = tiny_text_encoder()
    backbone = WanBackbone(
        transformer=transformers[0], vae=vae, text_encoder=text_encoder, tokenizer=offline_clip_tokenizer(),
        scheduler=wan_scheduler(), defaults=get_spec(name).defaults, model_id=name,
        transformer_2=transformers[1] if experts == 2 else None, boundary_ratio=0.875 if experts == 2 else None,
        expand_timesteps=ti2v,
    )
    return backbone.to(device or "cpu").eval()


def tiny_wan(seed: int = 0, device: str | torch.device | None = None) -> WanBackbone:
    """A random-weight Wan 2.1-shaped backbone for offline tests: one expert, 16-channel VAE."""
    return _tiny("tiny-wan", seed, device)


def tiny_wan22_a14b(seed: int = 0, device: str | torch.device | None = None) -> WanBackbone:
    """A random-weight Wan 2.2 A14B-shaped backbone: two experts switched at ``boundary_ratio`` 0.875."""
    return _tiny("tiny-wan2.2-a14b", seed, device, experts=2)


def tiny_wan22_ti2v(seed: int = 0, device: str | torch.device | None = None) -> WanBackbone:
    """A random-weight Wan 2.2 TI2V-5B-shaped backbone: 48-channel VAE, 16x spatial, per-token timesteps."""
    return _tiny("tiny-wan2.2-ti2v", seed, device, ti2v=True)
