"""The backbone adapter: tiny builder, text encoding (tokenizer and converted OpenCLIP tower), save/load, CLI."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from vstar.backbones.videocrafter2 import (
    VideoCrafter2Backbone,
    convert_videocrafter2_checkpoint,
    load_videocrafter2,
    tiny_videocrafter2,
)
from vstar.backbones.videocrafter2.components import empty_models, load_converted
from vstar.backbones.videocrafter2.config import open_clip_text_config
from vstar.backbones.videocrafter2.convert import convert_text_encoder_state_dict
from vstar.backbones.videocrafter2.tokenizer import openclip_tokenizer, tokenize
from vstar.cli import app

WIDTH, LAYERS, HEADS = 32, 3, 4


@pytest.fixture(scope="module")
def tiny() -> VideoCrafter2Backbone:
    return tiny_videocrafter2(seed=0)


# --- tiny model ------------------------------------------------------------------------------------------------

def test_tiny_is_deterministic_per_seed_and_leaves_the_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    again = tiny_videocrafter2(seed=0)
    assert torch.equal(torch.rand(1), expected_next)
    other = tiny_videocrafter2(seed=1)
    for (name, a), b in zip(tiny.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(tiny.unet.conv_in.weight, other.unet.conv_in.weight)
    assert tiny.unet.up_blocks[3].temp_convs[0].conv4[3].weight.abs().sum() > 0  # no zero-initialised layer left


def test_tiny_text_width_and_settings(tiny):
    """Shapes, ranges and decoding are in the contract suite (tests/backbones/test_contract.py)."""
    embeds = tiny.encode_text(["a cat", "a dog", ""])
    assert embeds.shape == (3, 77, 32) and embeds.dtype == torch.float32
    assert tiny.latent_channels == 4 and tiny.vae_scale_factor == 8
    assert tiny.defaults.eta == 1.0 and tiny.defaults.cond_fps == 28 and tiny.defaults.max_frames is None


def test_per_frame_context_in_b_f_order_equals_shared_context(tiny):
    """Two videos whose frames all get their own video's embedding == one shared embedding per video."""
    generator = torch.Generator().manual_seed(2)
    latents = torch.randn(2, 4, 4, 8, 8, generator=generator)
    shared = torch.randn(2, 77, 32, generator=generator)
    with torch.no_grad():
        per_frame = tiny.model_output(latents, 501, shared.repeat_interleave(4, dim=0), fps=8)
        reference = tiny.unet(latents, 501, shared, fps=8).sample
    assert torch.allclose(per_frame, reference, atol=1e-6)


def test_frame_contexts_reach_their_frames(tiny):
    """Changing frame 2's context changes the output, with temporal layers spreading it to the other frames."""
    generator = torch.Generator().manual_seed(3)
    latents, context = torch.randn(1, 4, 4, 8, 8, generator=generator), torch.randn(4, 77, 32, generator=generator)
    changed = context.clone()
    changed[2] += 1
    with torch.no_grad():
        a, b = tiny.model_output(latents, 501, context), tiny.model_output(latents, 501, changed)
    assert (a - b)[:, :, 2].abs().max() > 1e-3


def test_bad_context_batch_and_shapes_raise(tiny):
    latents = torch.zeros(1, 4, 4, 8, 8)
    with pytest.raises(ValueError, match=r"expected B=1 .* or B\*F=4"):
        tiny.unet(latents, 1, torch.zeros(3, 77, 32))
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny.unet(torch.zeros(1, 4, 4, 12, 8), 1, torch.zeros(1, 77, 32))
    with pytest.raises(ValueError, match=r"expected a scalar or a \(1,\) tensor"):
        tiny.unet(latents, torch.tensor([1, 2]), torch.zeros(1, 77, 32))


def test_temporal_and_spatial_attention_follow_unet3d_naming(tiny):
    from diffusers.models.attention_processor import Attention

    attentions = {n: m for n, m in tiny.unet.named_modules() if isinstance(m, Attention)}
    cross = {n for n, m in attentions.items() if m.is_cross_attention}
    assert cross and all(".attentions." in n and n.endswith("attn2") for n in cross)
    temporal = [n for n in attentions if "temp_attentions" in n or n.startswith("transformer_in.")]
    assert all(not attentions[n].is_cross_attention for n in temporal)
    assert "transformer_in.transformer_blocks.0.attn2" in temporal
    assert "mid_block.temp_attentions.0.transformer_blocks.0.attn1" in temporal
    assert "up_blocks.3.temp_attentions.2.transformer_blocks.0.attn2" in temporal
    assert not any(n.startswith("up_blocks.0.") or n.startswith("down_blocks.3.") for n in attentions)


# --- text encoding ---------------------------------------------------------------------------------------------

def test_tokenizer_matches_open_clip_tokenize():
    """Ids recorded with open_clip.tokenize (open_clip_torch 3.3.0)."""
    tokens = tokenize(openclip_tokenizer(), ["a photo of a cat", "Spring!!  snow-melting, it's 3:45pm", ""])
    assert tokens.shape == (3, 77) and tokens.dtype == torch.long
    assert tokens[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0]
    assert tokens[1, :16].tolist() == [49406, 2420, 748, 2583, 268, 19247, 267, 585, 568, 274, 281, 275, 276, 990,
                                       49407, 0]
    assert tokens[2, :3].tolist() == [49406, 49407, 0] and tokens[:, -1].tolist() == [0, 0, 0]
    long = tokenize(openclip_tokenizer(), ["word " * 100])[0]
    assert long[-1] == 49407 and (long[1:-1] == 2653).all()


def original_text_state_dict(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random OpenCLIP text tower (``cond_stage_model.model.*``) of ``LAYERS`` blocks."""
    g = torch.Generator().manual_seed(seed)
    p = "cond_stage_model.model."
    sd = {f"{p}token_embedding.weight": torch.randn(vocab, WIDTH, generator=g) * 0.1,
          f"{p}positional_embedding": torch.randn(77, WIDTH, generator=g) * 0.1,
          f"{p}text_projection": torch.randn(WIDTH, WIDTH, generator=g), f"{p}logit_scale": torch.tensor(4.6),
          f"{p}ln_final.weight": 1 + 0.1 * torch.randn(WIDTH, generator=g),
          f"{p}ln_final.bias": 0.1 * torch.randn(WIDTH, generator=g)}
    for i in range(LAYERS):
        b = f"{p}transformer.resblocks.{i}."
        shapes = {"ln_1.weight": (WIDTH,), "ln_1.bias": (WIDTH,), "attn.in_proj_weight": (3 * WIDTH, WIDTH),
                  "attn.in_proj_bias": (3 * WIDTH,), "attn.out_proj.weight": (WIDTH, WIDTH),
                  "attn.out_proj.bias": (WIDTH,), "ln_2.weight": (WIDTH,), "ln_2.bias": (WIDTH,),
                  "mlp.c_fc.weight": (4 * WIDTH, WIDTH), "mlp.c_fc.bias": (4 * WIDTH,),
                  "mlp.c_proj.weight": (WIDTH, 4 * WIDTH), "mlp.c_proj.bias": (WIDTH,)}
        for name, shape in shapes.items():
            sd[b + name] = torch.randn(shape, generator=g) / math.sqrt(shape[-1])
            if name.startswith("ln_") and name.endswith("weight"):
                sd[b + name] += 1
    return sd


def reference_penultimate(sd: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """OpenCLIP's text tower run to its penultimate block, then ln_final: a literal, slow transcription."""
    p = "cond_stage_model.model."

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (WIDTH,), sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-5)

    x = sd[f"{p}token_embedding.weight"][ids] + sd[f"{p}positional_embedding"]
    n, dh = ids.shape[1], WIDTH // HEADS
    mask = torch.full((n, n), float("-inf")).triu(1)
    for i in range(LAYERS - 1):
        b = f"{p}transformer.resblocks.{i}."
        h = ln(x, b + "ln_1")
        q, k, v = (h @ sd[b + "attn.in_proj_weight"].T + sd[b + "attn.in_proj_bias"]).split(WIDTH, dim=-1)
        heads = [torch.softmax(q[..., j * dh:(j + 1) * dh] @ k[..., j * dh:(j + 1) * dh].transpose(-1, -2)
                               / math.sqrt(dh) + mask, dim=-1) @ v[..., j * dh:(j + 1) * dh] for j in range(HEADS)]
        x = x + torch.cat(heads, dim=-1) @ sd[b + "attn.out_proj.weight"].T + sd[b + "attn.out_proj.bias"]
        h = ln(x, b + "ln_2") @ sd[b + "mlp.c_fc.weight"].T + sd[b + "mlp.c_fc.bias"]
        x = x + torch.nn.functional.gelu(h) @ sd[b + "mlp.c_proj.weight"].T + sd[b + "mlp.c_proj.bias"]
    return ln(x, f"{p}ln_final")


def test_converted_text_encoder_is_openclip_penultimate_layer():
    vocab = 500
    sd = original_text_state_dict(vocab)
    config = open_clip_text_config(width=WIDTH, layers=LAYERS, heads=HEADS, vocab_size=vocab)
    _, _, text_encoder = empty_models(text_config=config)
    text_encoder = load_converted(text_encoder, convert_text_encoder_state_dict(sd, text_encoder))
    ids = torch.randint(0, vocab, (2, 77), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = text_encoder(ids).last_hidden_state
    assert (ours - reference_penultimate(sd, ids)).abs().max() < 1e-5


# --- whole checkpoints: convert, save, load, CLI ---------------------------------------------------------------

@pytest.mark.slow
def test_tiny_original_checkpoint_converts_saves_and_loads(tmp_path, tiny_configs, tiny_original_weights,
                                                           unet_cases):
    """Fixture UNet + VAE + a random text tower + schedule buffers in one original-layout file."""
    source = dict(tiny_original_weights)
    source.update(original_text_state_dict(49408))
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    source["alphas_cumprod"] = torch.tensor(np.cumprod(1 - betas), dtype=torch.float32)
    ckpt = tmp_path / "model.safetensors"
    save_file(source, ckpt)

    unet_config, vae_config = tiny_configs
    text_config = open_clip_text_config(width=WIDTH, layers=LAYERS, heads=HEADS)
    convert_videocrafter2_checkpoint(ckpt, tmp_path / "converted", unet_config=unet_config, vae_config=vae_config,
                                     text_config=text_config)
    assert sorted(p.name for p in (tmp_path / "converted").iterdir()) == [
        "model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    configs = {"unet_config": unet_config, "vae_config": vae_config, "text_config": text_config}
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_videocrafter2_checkpoint(ckpt, tmp_path / "converted", **configs)
    convert_videocrafter2_checkpoint(ckpt, tmp_path / "converted", overwrite=True, **configs)  # its own: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", "model.safetensors"]  # no leftovers

    backbone = load_videocrafter2(model_path=tmp_path / "converted")
    with torch.no_grad():
        out = backbone.model_output(unet_cases["a.x"], unet_cases["a.t"], unet_cases["a.context"], fps=28)
    assert (out - unet_cases["a.out"]).abs().max() < 1e-4
    texts = ["a photo of a cat", "snow melting!!"]
    expected = reference_penultimate(source, tokenize(openclip_tokenizer(), texts))
    assert (backbone.encode_text(texts) - expected).abs().max() < 1e-5

    # the converted folder generates through the vstar command (videocrafter2 is its default model)
    from vstar.io import read_video

    out = tmp_path / "clip.mp4"
    result = CliRunner().invoke(app, ["generate", "a red circle turning into a blue square", "--model-path",
                                      str(tmp_path / "converted"), "--height", "64", "--width", "64", "--frames", "5",
                                      "--steps", "2", "--seed", "1", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_video(out).shape == (5, 64, 64, 3)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"] == "videocrafter2" and meta["model_path"] == str(tmp_path / "converted")
    assert meta["settings"]["cond_fps"] == 28 and meta["settings"]["fps"] == 10 and meta["settings"]["eta"] == 1.0 and meta["settings"]["tar"] == "64D1"


def test_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no VideoCrafter2 checkpoint"):
        load_videocrafter2(model_path=tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        load_videocrafter2(model_path=tmp_path)


def test_cli_convert_reports_the_offending_key(tmp_path):
    ckpt = tmp_path / "bad.safetensors"
    save_file({"model.diffusion_model.conv_in.weight": torch.zeros(1), "unexpected.weight": torch.zeros(1)}, ckpt)
    result = CliRunner().invoke(app, ["convert-videocrafter2", str(ckpt), str(tmp_path / "out")])
    assert result.exit_code == 2 and "unexpected.weight" in result.output


def test_cli_convert_refuses_missing_checkpoint_and_non_empty_output(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["convert-videocrafter2", str(tmp_path / "none.ckpt"), str(tmp_path / "o")])
    assert result.exit_code == 2 and "no checkpoint file" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    (tmp_path / "m.ckpt").write_bytes(b"")
    result = runner.invoke(app, ["convert-videocrafter2", str(tmp_path / "m.ckpt"), str(tmp_path / "full")])
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = runner.invoke(app, ["convert-videocrafter2", str(tmp_path / "m.ckpt"), str(tmp_path / "full"),
                                       "--overwrite"])  # a folder of the user's: never replaced
    assert result.exit_code == 2 and "holds files vstar did not write" in result.output
    assert len(result.output.strip().splitlines()) == 1 and (tmp_path / "full" / "x").exists()
