"""Tiny offline backbones of both diffusers families, and the stock UNet calls their adapters must match."""

from collections.abc import Callable

import pytest
import torch
from torch import nn

from vstar.backbones.animatediff import tiny_animatediff
from vstar.backbones.base import Backbone
from vstar.backbones.modelscope import tiny_modelscope

torch.set_flush_denormal(True)

BUILDERS: dict[str, Callable[..., Backbone]] = {"modelscope": tiny_modelscope, "animatediff": tiny_animatediff}


def stock_call(backbone: Backbone, latents: torch.Tensor, t: int, embeds: torch.Tensor) -> torch.Tensor:
    """The family's UNet called the way its diffusers pipeline calls it, one embedding per video ``(B, S, D)``.

    ``UNet3DConditionModel`` repeats the embedding over frames itself; the AnimateDiff pipeline repeats it
    before calling ``UNetMotionModel``.
    """
    if backbone.name == "animatediff":
        embeds = embeds.repeat_interleave(latents.shape[2], dim=0)
    return backbone.unet(latents, t, encoder_hidden_states=embeds).sample


def freeze_temporal_mixing(unet: nn.Module) -> None:
    """Zero the output of every temporal layer (attention and convolution), so frames no longer interact:
    each temporal block becomes the identity through its residual connection."""
    frozen = 0
    for module in unet.modules():
        kind = type(module).__name__
        if kind in ("TransformerTemporalModel", "AnimateDiffTransformer3D"):
            last = module.proj_out
        elif kind == "TemporalConvLayer":
            last = module.conv4[-1]
        else:
            continue
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        frozen += 1
    assert frozen > 0, f"no temporal layers found in {type(unet).__name__}"


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def tiny(request: pytest.FixtureRequest) -> Backbone:
    """A tiny backbone of each family (seed 0), shared by the tests of a module: do not modify it."""
    return BUILDERS[request.param](seed=0)


@pytest.fixture(params=sorted(BUILDERS))
def tiny_frozen(request: pytest.FixtureRequest) -> Backbone:
    """A fresh tiny backbone of each family whose frames do not interact (see :func:`freeze_temporal_mixing`)."""
    backbone = BUILDERS[request.param](seed=0)
    freeze_temporal_mixing(backbone.unet)
    return backbone


@pytest.fixture
def stock() -> Callable[[Backbone, torch.Tensor, int, torch.Tensor], torch.Tensor]:
    """:func:`stock_call`, for tests."""
    return stock_call


@pytest.fixture(params=sorted(BUILDERS))
def build(request: pytest.FixtureRequest) -> Callable[..., Backbone]:
    """The tiny builder of each family, ``build(seed=...)``."""
    return BUILDERS[request.param]
