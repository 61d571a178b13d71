"""Per-frame conditioning reaches the UNet of every diffusers backbone in the right (branch, video, frame) order.

Runs on the tiny ModelScope and AnimateDiff backbones (``tiny`` / ``tiny_frozen`` fixtures, one per family).
"""

import pytest
import torch

from vstar.conditioning import cfg_context, interpolate_embeddings, spatial_cross_attentions

F = 4  # frames
T = 500  # a mid-schedule timestep


def _latents(backbone, batch: int, frames: int = F, seed: int = 0) -> torch.Tensor:
    side = backbone.defaults.height // backbone.vae_scale_factor
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, backbone.latent_channels, frames, side, side, generator=generator)


def _embeds(backbone, num: int, seed: int = 1) -> torch.Tensor:
    """``num`` random, clearly different text embeddings ``(num, 77, D)``."""
    dim = backbone.unet.config.cross_attention_dim
    return torch.randn(num, 77, dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_equal_per_frame_contexts_match_the_stock_unet_call(tiny, stock):
    latents, embeds = _latents(tiny, 2), _embeds(tiny, 2)
    context = embeds.repeat_interleave(F, dim=0)  # (B*F, S, D): each video's embedding on all its frames
    assert torch.equal(tiny.model_output(latents, T, context), stock(tiny, latents, T, embeds))


@torch.no_grad()
def test_frame_f_attends_to_context_f_under_guidance(tiny_frozen, stock):
    """Without temporal mixing frame f only depends on its latent and its embedding: frame f of a per-frame
    run equals frame f of a stock run whose prompt is frame f's embedding, in both guidance branches."""
    backbone = tiny_frozen
    states, negative = _embeds(backbone, 2), _embeds(backbone, 1, seed=2)
    cond = interpolate_embeddings(states, F)  # (F, S, D), all frames different
    context = cfg_context(cond, negative.expand(F, -1, -1))  # (2*F, S, D): negative branch, then positive
    latents = _latents(backbone, 2)
    out = backbone.model_output(latents, T, context)
    for f in range(F):
        reference = stock(backbone, latents, T, torch.stack([negative[0], cond[f]]))
        torch.testing.assert_close(out[:, :, f], reference[:, :, f], rtol=0, atol=1e-5)


@torch.no_grad()
def test_frozen_fixture_really_isolates_frames(tiny_frozen):
    """The premise of the ordering test: with temporal layers zeroed, changing frame 0 leaves the others alone."""
    latents, context = _latents(tiny_frozen, 1), _embeds(tiny_frozen, 1).expand(F, -1, -1)
    moved = latents.clone()
    moved[:, :, 0] += 1.0
    a, b = tiny_frozen.model_output(latents, T, context), tiny_frozen.model_output(moved, T, context)
    assert not torch.allclose(a[:, :, 0], b[:, :, 0])
    torch.testing.assert_close(a[:, :, 1:], b[:, :, 1:], rtol=0, atol=1e-5)


def _change_frame_3(backbone) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``(B, C, F, h, w)`` before and after replacing frame 3's embedding by another one."""
    latents = _latents(backbone, 1)
    context = _embeds(backbone, 1).expand(F, -1, -1).clone()
    changed = context.clone()
    changed[3] = _embeds(backbone, 1, seed=9)[0]
    return backbone.model_output(latents, T, context), backbone.model_output(latents, T, changed)


@torch.no_grad()
def test_changing_one_frames_context_changes_that_frame(tiny):
    before, after = _change_frame_3(tiny)
    assert (after[:, :, 3] - before[:, :, 3]).abs().max() > 1e-3


@torch.no_grad()
def test_without_temporal_mixing_a_frames_context_reaches_only_that_frame(tiny_frozen):
    before, after = _change_frame_3(tiny_frozen)
    assert (after[:, :, 3] - before[:, :, 3]).abs().max() > 1e-3
    torch.testing.assert_close(after[:, :, :3], before[:, :, :3], rtol=0, atol=1e-5)


@torch.no_grad()
def test_negative_branch_equals_a_stock_call_with_the_negative_embedding(tiny, stock):
    states, negative = _embeds(tiny, 3), _embeds(tiny, 1, seed=2)
    context = cfg_context(interpolate_embeddings(states, F), negative.expand(F, -1, -1))
    latents = _latents(tiny, 1).repeat(2, 1, 1, 1, 1)  # cat([latents, latents]) as under guidance
    out = tiny.model_output(latents, T, context)
    # the stock call runs a batch of 1 instead of 2: equal up to float summation order
    torch.testing.assert_close(out[:1], stock(tiny, latents[:1], T, negative), rtol=0, atol=1e-5)
    assert not torch.allclose(out[1:], out[:1])


@torch.no_grad()
def test_processors_are_restored_after_each_call(tiny):
    def processors():
        return {name: m.processor for name, m in tiny.unet.named_modules() if hasattr(m, "processor")}

    before = processors()
    tiny.model_output(_latents(tiny, 1), T, _embeds(tiny, 1).expand(F, -1, -1))
    assert processors() == before
    with pytest.raises(ValueError):
        tiny.model_output(_latents(tiny, 1), T, _embeds(tiny, 1).expand(F + 1, -1, -1))
    assert processors() == before
    assert spatial_cross_attentions(tiny.unet)  # there were cross-attentions to wrap


def test_context_with_the_wrong_number_of_rows_is_rejected(tiny):
    with pytest.raises(ValueError, match=r"\(B\*F, S, D\) = \(8, S, D\).*B=2 videos of F=4 frames"):
        tiny.model_output(_latents(tiny, 2), T, _embeds(tiny, 1).expand(F, -1, -1))
    with pytest.raises(ValueError, match="latents must have shape"):
        tiny.model_output(_latents(tiny, 1)[:, :, 0], T, _embeds(tiny, 1).expand(F, -1, -1))
