"""The community diffusers format of VideoCrafter2: detection, strict loading, fps conditioning, TAR, pipeline."""

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import UNet3DConditionModel
from diffusers.models.embeddings import TimestepEmbedding
from safetensors.torch import load_file, save_file

import vstar
from vstar.backbones.clip_tokenizer import offline_clip_tokenizer
from vstar.backbones.loading import (
    TINY_UNET_KWARGS,
    ModelNotAvailableError,
    seeded,
    tiny_clip_text_encoder,
    tiny_vae,
)
from vstar.backbones.modelscope import tiny_modelscope
from vstar.backbones.videocrafter2 import ConversionError, VideoCrafter2DDIMScheduler, load_videocrafter2
from vstar.backbones.videocrafter2.backbone import DEFAULTS
from vstar.backbones.videocrafter2.community import (
    COMPONENTS_REPO,
    CommunityVideoCrafter2Backbone,
    community_unet_folder,
    load_community_videocrafter2,
)
from vstar.tar import TARProcessor, temporal_attention_layers

C0 = TINY_UNET_KWARGS["block_out_channels"][0]
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def original() -> tuple[UNet3DConditionModel, TimestepEmbedding]:
    """A tiny stock UNet3D and a random fps MLP: what a community folder stores."""
    with seeded(0):
        unet = UNet3DConditionModel(
            down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
            **TINY_UNET_KWARGS,
        )
        fps_mlp = TimestepEmbedding(C0, 4 * C0, act_fn="silu")
    return unet.eval(), fps_mlp.eval()


def write_community_unet(unet: UNet3DConditionModel, fps_mlp: TimestepEmbedding, folder: Path) -> Path:
    """``folder`` in the community layout: config.json (``UNetVideoCrafter``, ``fps_cond``) and one safetensors
    file with the UNet's tensors and ``fps_embedding.*``."""
    unet.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(_class_name="UNetVideoCrafter", fps_cond=True)
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {**unet.state_dict(), **{f"fps_embedding.{k}": v for k, v in fps_mlp.state_dict().items()}}
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / WEIGHTS)
    return folder


@pytest.fixture(scope="module")
def community_dir(original, tmp_path_factory) -> Path:
    """A full community folder: unet/ plus tiny vae/, text_encoder/ and tokenizer/."""
    root = tmp_path_factory.mktemp("vc2-community")
    write_community_unet(*original, root / "unet")
    with seeded(1):
        tiny_vae().save_pretrained(root / "vae")
        tiny_clip_text_encoder().save_pretrained(root / "text_encoder")
    offline_clip_tokenizer().save_pretrained(root / "tokenizer")
    return root


@pytest.fixture()
def backbone(community_dir) -> CommunityVideoCrafter2Backbone:
    return load_videocrafter2(model_path=community_dir)


def sinusoid(fps: float, channels: int) -> torch.Tensor:
    """``(1, channels)``: VideoCrafter2's timestep embedding of ``fps`` (cos half first), written out."""
    half = channels // 2
    freqs = torch.tensor([math.exp(-math.log(10000.0) * i / half) for i in range(half)], dtype=torch.float64)
    angles = fps * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)]).float()[None]


def reference_noise(unet: UNet3DConditionModel, fps_mlp: TimestepEmbedding, latents: torch.Tensor,
                    timestep: torch.Tensor, text: torch.Tensor, fps: float | None) -> torch.Tensor:
    """The stock UNet with ``fps_mlp(sinusoid(fps))`` added to its time embedding by a hook of this test
    (``fps=None``: no fps conditioning)."""
    unet = copy.deepcopy(unet)
    if fps is not None:
        unet.time_embedding.register_forward_hook(lambda module, args, out: out + fps_mlp(sinusoid(fps, C0)))
    return unet(latents, timestep, encoder_hidden_states=text).sample


# --- detection and loading -------------------------------------------------------------------------------------

def test_detects_the_folder_and_its_unet_subfolder_only(community_dir, tmp_path):
    assert community_unet_folder(community_dir) == community_dir / "unet"
    assert community_unet_folder(community_dir / "unet") == community_dir / "unet"
    tiny_modelscope(seed=0).unet.save_pretrained(tmp_path / "modelscope" / "unet")  # UNet3D without fps_embedding
    assert community_unet_folder(tmp_path / "modelscope") is None
    assert community_unet_folder(tmp_path / "nowhere") is None


@torch.no_grad()
def test_loads_a_stock_unet_strictly_with_vc2_sampling(backbone, original, community_dir):
    unet, fps_mlp = original
    assert isinstance(backbone, CommunityVideoCrafter2Backbone) and type(backbone.unet) is UNet3DConditionModel
    assert isinstance(backbone.scheduler, VideoCrafter2DDIMScheduler)
    assert backbone.defaults == DEFAULTS and backbone.fps == 28 and backbone.defaults.eta == 1.0
    assert backbone.model_id == str(community_dir)
    for (name, a), b in zip(unet.state_dict().items(), backbone.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for (name, a), b in zip(fps_mlp.state_dict().items(), backbone.fps_embedding.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # fps reaches the UNet through a forward hook, not by replacing a module's method
    assert backbone.unet.time_embedding.post_act is None and len(backbone.unet.time_embedding._forward_hooks) == 1


def test_loads_from_model_argument_and_unet_folder_alone(community_dir, monkeypatch):
    assert isinstance(load_videocrafter2(str(community_dir)), CommunityVideoCrafter2Backbone)
    # the UNet folder alone takes the other parts from the components repo: offline, that names it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match=COMPONENTS_REPO):
        load_community_videocrafter2(community_dir / "unet", cache_dir=str(community_dir / "no-cache"))


@torch.no_grad()
def test_fps_conditioning_matches_an_independent_reference(backbone, original):
    unet, fps_mlp = original
    generator = torch.Generator().manual_seed(0)
    batch, frames = 2, 3
    latents = torch.randn(batch, 4, frames, 8, 8, generator=generator)
    text = backbone.encode_text(["a cat", "a dog"])  # (B, S, D)
    context = text.repeat_interleave(frames, dim=0)  # (B*F, S, D), the same embedding on every frame
    timestep = torch.tensor(501)
    out = {fps: backbone.model_output(latents, timestep, context, fps=fps) for fps in (28, 8)}
    ref = {fps: reference_noise(unet, fps_mlp, latents, timestep, text, fps) for fps in (28, 8, None)}
    for fps in (28, 8):
        torch.testing.assert_close(out[fps], ref[fps], rtol=1e-5, atol=1e-5)
    assert (out[28] - out[8]).abs().max() > 1e-3  # fps has an effect
    torch.testing.assert_close(out[28] - out[8], ref[28] - ref[8], rtol=1e-5, atol=1e-5)
    assert (out[28] - ref[None]).abs().max() > 1e-3  # and it is not the unconditioned UNet
    torch.testing.assert_close(backbone.model_output(latents, timestep, context), out[28])  # default fps 28
    assert backbone.fps == 28


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["bin", "shards"])
def test_reads_pickled_and_sharded_weights(community_dir, original, tmp_path, storage):
    root = tmp_path / storage
    shutil.copytree(community_dir, root)
    unet_dir = root / "unet"
    tensors = load_file(unet_dir / WEIGHTS)
    (unet_dir / WEIGHTS).unlink()
    if storage == "bin":
        torch.save(tensors, unet_dir / "diffusion_pytorch_model.bin")
    else:
        keys = sorted(tensors)
        shards = {"part-1.safetensors": keys[::2], "part-2.safetensors": keys[1::2]}
        for name, part in shards.items():
            save_file({k: tensors[k] for k in part}, unet_dir / name)
        index = {"weight_map": {k: name for name, part in shards.items() for k in part}}
        (unet_dir / f"{WEIGHTS}.index.json").write_text(json.dumps(index))
    loaded = load_videocrafter2(model_path=root)
    assert torch.equal(loaded.fps_embedding.linear_2.weight, original[1].linear_2.weight)
    assert torch.equal(loaded.unet.conv_in.weight, original[0].conv_in.weight)


# --- bad folders -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, key", [
    ("add", "down_blocks.0.extra.weight"),
    ("add", "fps_embedding.linear_3.weight"),
    ("drop", "conv_in.weight"),
    ("drop", "fps_embedding.linear_2.bias"),
])
def test_mismatching_weights_name_the_key(community_dir, tmp_path, change, key):
    root = tmp_path / "bad"
    shutil.copytree(community_dir, root)
    tensors = load_file(root / "unet" / WEIGHTS)
    if change == "add":
        tensors[key] = torch.zeros(3)
    else:
        del tensors[key]
    save_file(tensors, root / "unet" / WEIGHTS)
    with pytest.raises(ConversionError, match=key.replace(".", r"\.")) as info:
        load_videocrafter2(model_path=root)
    assert "community diffusers format" in str(info.value)


def test_missing_text_encoder_offline_names_the_repo_and_the_fix(community_dir, tmp_path, monkeypatch):
    root = tmp_path / "no-text"
    shutil.copytree(community_dir, root, ignore=shutil.ignore_patterns("text_encoder"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        load_community_videocrafter2(root, cache_dir=str(tmp_path / "cache"))
    message = str(info.value)
    for expected in (COMPONENTS_REPO, "--model-path", "text_encoder", "HF_HUB_OFFLINE", str(root)):
        assert expected in message, expected


def test_text_encoder_width_must_match_the_unet(community_dir, tmp_path):
    root = tmp_path / "wide-text"
    shutil.copytree(community_dir, root, ignore=shutil.ignore_patterns("text_encoder"))
    text_encoder = tiny_clip_text_encoder()
    text_encoder.config.hidden_size = 64
    type(text_encoder)(text_encoder.config).save_pretrained(root / "text_encoder")
    with pytest.raises(ValueError, match="64 wide .* expects 32"):
        load_videocrafter2(model_path=root)


# --- TAR and the pipeline ----------------------------------------------------------------------------------------

def test_tar_installs_on_levels_0_and_1(backbone):
    vstar.apply_tar(backbone.unet, "64D1_32D8")
    levels = {layer.level for layer in temporal_attention_layers(backbone.unet)
              if isinstance(layer.module.processor, TARProcessor)}
    assert levels == {0, 1}


@torch.no_grad()
def test_pipeline_runs_and_passes_fps(backbone):
    out = vstar.VSTARPipeline(backbone)("a cat walks", num_frames=4, num_inference_steps=2, height=64, width=64,
                                        progress=False, fps=8, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (1, 4, 64, 64, 3) and backbone.fps == 8
    assert out.frames.min() >= 0 and out.frames.max() <= 1
