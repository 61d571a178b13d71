"""The contract every backbone keeps (the diffusers ``PipelineTesterMixin`` idea): every registered tiny
backbone, and a fake new family registered from the tests, runs the same checks through the same
public interface: shapes, per-frame text order under guidance, TAR on exactly the intended layers,
strength 0 equal to stock, decoding, and seeds that reproduce."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention
from fake_family import SPEC as FAKE_SPEC

from vstar import TARConfig, VSTARPipeline, apply_tar, remove_tar, temporal_attention_layers
from vstar.backbones import BACKBONES, Backbone, load_backbone
from vstar.backbones.registry import register_backbone, unregister_backbone
from vstar.conditioning import cfg_context

NAMES = sorted([name for name, spec in BACKBONES.items() if spec.tiny] + [FAKE_SPEC.name])
T = 500


@pytest.fixture(scope="module", autouse=True)
def fake_family_registered() -> Iterator[None]:
    register_backbone(FAKE_SPEC)
    yield
    unregister_backbone(FAKE_SPEC.name)


@pytest.fixture(scope="module", params=NAMES)
def backbone(request: pytest.FixtureRequest, fake_family_registered: None) -> Backbone:
    """Each tiny backbone once per module (seed 0); tests must leave it as they found it."""
    return load_backbone(request.param, device="cpu")


def small_frames(backbone: Backbone) -> int:
    """A short valid frame count: 5 output frames, or the nearest 2n+1-style count with compression."""
    k = backbone.defaults.temporal_compression
    return 5 if k == 1 else 2 * k + 1


def inputs(backbone: Backbone, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise ``(B, C, L, h, w)`` and per-latent-frame text ``(B*L, S, D)`` (every frame different)."""
    d = backbone.defaults
    shape = backbone.latent_shape(batch, small_frames(backbone), d.height, d.width)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    texts = [f"a {c} shape, frame {i}" for i, c in enumerate(["red", "blue", "green", "white", "purple"] * 4)]
    context = backbone.encode_text(texts[: batch * shape[2]])
    return latents, context


def processors(backbone: Backbone) -> dict[str, object]:
    return {name: m.processor for name, m in backbone.denoiser.named_modules()
            if isinstance(m, Attention) or hasattr(m, "set_processor") and hasattr(m, "processor")}


@torch.no_grad()
def test_latent_shape_and_model_output_shape(backbone):
    d = backbone.defaults
    frames = small_frames(backbone)
    shape = backbone.latent_shape(2, frames, d.height, d.width)
    assert shape == (2, backbone.latent_channels, backbone.latent_frames(frames), d.height // backbone.vae_scale_factor,
                     d.width // backbone.vae_scale_factor)
    latents, context = inputs(backbone, 2)
    out = backbone.model_output(latents, T, context)
    assert out.shape == latents.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="context must have shape|encoder_hidden_states has batch"):
        backbone.model_output(latents, T, context[:-1])


class ContextSpy:
    """Wraps a cross-attention processor and keeps the text each call attends to, with the module."""

    def __init__(self, inner, seen: list[tuple[int, torch.Tensor]]):
        self.inner, self.seen = inner, seen

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        self.seen.append((id(attn), encoder_hidden_states.detach().float().clone()))
        return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


@torch.no_grad()
def test_every_cross_attention_sees_one_text_per_frame_in_guidance_order(backbone):
    """Row r of every spatial cross-attention batch, ``(branch, video, latent frame)`` with the frame
    fastest, attends to row r of the guidance context."""
    latents, cond = inputs(backbone, 1)
    uncond = backbone.encode_text(["blurry"]).expand(cond.shape[0], -1, -1)
    context = cfg_context(cond, uncond)
    cross = [m for m in backbone.modules() if getattr(m, "is_cross_attention", False) and hasattr(m, "set_processor")]
    assert cross, "text reaches the denoiser through cross-attention"
    seen: list[tuple[int, torch.Tensor]] = []
    previous = [m.processor for m in cross]
    for m in cross:  # innermost, so that it sees what the attention itself gets
        m.set_processor(ContextSpy(m.processor, seen))
    try:
        with backbone.per_frame_text(context):
            for t in (T, 999):  # early and late: every denoiser of a model with experts per noise level
                backbone.model_output(torch.cat([latents, latents]), t, context)
    finally:
        for m, processor in zip(cross, previous, strict=True):
            m.set_processor(processor)
    assert {module for module, _ in seen} == {id(m) for m in cross}
    for _, text in seen:
        if text.shape == context.shape:  # the context as it is
            assert torch.equal(text, context.float())
        else:  # embedded token by token first (a transformer's text embedder): the same rows, in the same order
            assert text.shape[:2] == context.shape[:2]
            for i in range(len(context)):
                for j in range(i):
                    assert torch.equal(text[i], text[j]) == torch.equal(context[i], context[j])


@torch.no_grad()
def test_a_frames_text_changes_only_its_guidance_branch(backbone):
    latents, cond = inputs(backbone, 1)
    uncond = backbone.encode_text([""]).expand(cond.shape[0], -1, -1)
    doubled = torch.cat([latents, latents])
    base = backbone.model_output(doubled, T, cfg_context(cond, uncond))
    replacement = backbone.encode_text(["a large yellow triangle on a gray background"])[0]
    for f in (0, latents.shape[2] - 1):
        changed = cond.clone()
        changed[f] = replacement
        out = backbone.model_output(doubled, T, cfg_context(changed, uncond))
        torch.testing.assert_close(out[0], base[0], rtol=0, atol=1e-6)  # the negative branch is untouched
        assert (out[1, :, f] - base[1, :, f]).abs().max() > 1e-4
        negative = uncond.clone()
        negative[f] = replacement
        out = backbone.model_output(doubled, T, cfg_context(cond, negative))
        torch.testing.assert_close(out[1], base[1], rtol=0, atol=1e-6)
        assert (out[0, :, f] - base[0, :, f]).abs().max() > 1e-4


def test_tar_reaches_exactly_the_layers_of_the_chosen_level(backbone):
    before = processors(backbone)
    layers = temporal_attention_layers(backbone)
    assert {layer.level for layer in layers} == set(backbone.defaults.temporal_attention_levels)
    unit = "block" if backbone.defaults.attention_layout == "spatiotemporal" else "level"
    for level in sorted({layer.level for layer in layers}):
        apply_tar(backbone, TARConfig(sigmas={level: 1.0}, unit=unit))
        try:
            now = processors(backbone)
            changed = {name for name in now if now[name] is not before[name]}
            modules = {id(layer.module) for layer in layers if layer.level == level}
            named = {name for name, m in backbone.denoiser.named_modules() if id(m) in modules}
            assert changed == named and changed
        finally:
            remove_tar(backbone)
        assert processors(backbone) == before


@torch.no_grad()
def test_tar_strength_zero_equals_stock_and_strength_one_changes_the_output(backbone):
    latents, context = inputs(backbone, 1)
    stock = backbone.model_output(latents, T, context)
    level = min(layer.level for layer in temporal_attention_layers(backbone) if layer.level >= 0)
    unit = "block" if backbone.defaults.attention_layout == "spatiotemporal" else "level"
    for strength, equal in ((0.0, True), (1.0, False)):
        apply_tar(backbone, TARConfig(sigmas={level: 1.0}, strength=strength, unit=unit))
        try:
            out = backbone.model_output(latents, T, context)
        finally:
            remove_tar(backbone)
        assert torch.equal(out, stock) == equal


@torch.no_grad()
def test_decoding_gives_the_output_frames_in_range_whatever_the_chunk(backbone):
    d = backbone.defaults
    frames = small_frames(backbone)
    latents, _ = inputs(backbone, 2)
    video = backbone.decode_latents(latents, chunk_size=2)
    assert video.shape == (2, frames, 3, d.height, d.width) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1 and video.std() > 0
    torch.testing.assert_close(backbone.decode_latents(latents, chunk_size=64), video, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        backbone.decode_latents(latents, chunk_size=0)


def test_seeds_reproduce_and_keyframes_span_the_video(backbone):
    pipe = VSTARPipeline(backbone)
    frames = small_frames(backbone)

    def run(seed: int):
        return pipe("a red circle", synopsis=["a red circle", "a blue square"], num_frames=frames,
                    num_inference_steps=2, generator=torch.Generator().manual_seed(seed), progress=False)

    a, b, c = run(0), run(0), run(1)
    assert a.frames.shape[:2] == (1, frames) and a.keyframes == [0, frames - 1]
    np.testing.assert_array_equal(a.frames, b.frames)
    assert np.abs(a.frames - c.frames).max() > 1e-4
    assert a.config.num_frames == frames and a.settings["num_frames"] == frames
