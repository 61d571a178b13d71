import pytest
from analysis_models import sharp_unet3d


@pytest.fixture
def sharp_unet():
    return sharp_unet3d()
