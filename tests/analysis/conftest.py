import pytest
from analysis_models import sharp_unet3d

from vstar import VSTARPipeline


@pytest.fixture
def sharp_unet():
    return sharp_unet3d()


@pytest.fixture(scope="module")
def pipe():
    """The tiny random-weight ModelScope pipeline on the CPU (shared by a module's tests)."""
    return VSTARPipeline.from_pretrained("tiny-modelscope", device="cpu")
