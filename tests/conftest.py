"""Shared test setup: deterministic CPU torch, and tiny offline UNets."""

import pytest
import torch

torch.set_flush_denormal(True)  # tiny random models hit denormal floats on CPU (10-100x slower)


@pytest.fixture
def unet3d():
    """A tiny ModelScope-style UNet3DConditionModel with 4 levels (temporal attention at every level)."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(0)
    return UNet3DConditionModel(
        sample_size=None, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, cross_attention_dim=8,
        attention_head_dim=4, norm_num_groups=4,
    ).eval()


@pytest.fixture
def motion_unet():
    """A tiny AnimateDiff-style UNetMotionModel (motion modules at 3 levels and in the middle block)."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=4, norm_num_groups=4,
    )
    adapter = MotionAdapter(block_out_channels=(8, 16, 16), motion_layers_per_block=1, motion_num_attention_heads=2,
                            motion_norm_num_groups=4, motion_max_seq_length=32, use_motion_mid_block=True)
    return UNetMotionModel.from_unet2d(unet2d, adapter).eval()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Synopsis caches go to a temporary folder, never to the user's cache."""
    monkeypatch.setenv("VSTAR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
