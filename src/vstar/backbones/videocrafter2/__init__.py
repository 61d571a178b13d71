"""VideoCrafter2 (t2v 512 v2.0): a clean-room port of its UNet, checkpoint conversion, rescaled DDIM sampler and
the backbone adapter of vstar."""

from .backbone import VideoCrafter2Backbone, load_videocrafter2, tiny_videocrafter2
from .components import VideoCrafter2Components
from .convert import ConversionError, convert_videocrafter2_checkpoint
from .scheduler import VideoCrafter2DDIMScheduler
from .unet import VideoCrafter2UNet

__all__ = [
    "ConversionError",
    "VideoCrafter2Backbone",
    "VideoCrafter2Components",
    "VideoCrafter2DDIMScheduler",
    "VideoCrafter2UNet",
    "convert_videocrafter2_checkpoint",
    "load_videocrafter2",
    "tiny_videocrafter2",
]
