"""Wan backbones against diffusers' own WanPipeline (one state on every frame), per-frame text against an
explicit reference (stock attention on per-frame contexts with a block-diagonal mask), the expert switch,
and the registry's full-size entries against the published configs (meta device)."""

import json

import numpy as np
import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from typer.testing import CliRunner

from vstar import VSTARPipeline
from vstar.backbones import get_spec, load_backbone
from vstar.backbones.wan import TEXT_LENGTH, cross_attentions, prompt_clean
from vstar.conditioning import interpolate_embeddings
from vstar.tar import TARConfig

TINY_WANS = ["tiny-wan", "tiny-wan2.2-a14b", "tiny-wan2.2-ti2v"]
PROMPT = "a city street from day to night"
TOLERANCE = 2e-5  # float32: batched guidance and per-frame regrouping change only the order of sums


def run_both(name, **settings):
    """The same generation by vstar (one state, TAR off) and by diffusers' WanPipeline on the same parts."""
    backbone = load_backbone(name, device="cpu")
    stock = WanPipeline(**backbone.diffusers_components())
    stock.set_progress_bar_config(disable=True)
    common = {"num_frames": 9, "height": 64, "width": 64, "num_inference_steps": 4, "guidance_scale": 5.0} | settings
    ours = VSTARPipeline(backbone)(PROMPT, tar=None, negative_prompt="blurry", progress=False,
                                   generator=torch.Generator().manual_seed(7), output_type="latent", **common)
    theirs = stock(PROMPT, negative_prompt="blurry", generator=torch.Generator().manual_seed(7),
                   output_type="latent", **common).frames
    return backbone, stock, ours, theirs, common


@pytest.mark.parametrize("name", TINY_WANS)
def test_one_state_and_no_tar_equal_diffusers_wan_pipeline(name):
    backbone, stock, ours, theirs, common = run_both(name)
    assert ours.frames.shape == theirs.shape
    scale = theirs.abs().max()
    assert (ours.frames - theirs).abs().max() <= TOLERANCE * scale
    video = backbone.decode_latents(ours.frames).permute(0, 1, 3, 4, 2).numpy()  # (B, F, H, W, 3)
    decoded = stock(PROMPT, negative_prompt="blurry", generator=torch.Generator().manual_seed(7), output_type="np",
                    **common).frames
    assert video.shape == decoded.shape == (1, 9, 64, 64, 3)
    np.testing.assert_allclose(video, decoded, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_guidance_off_and_longer_videos_equal_too():
    _, _, ours, theirs, _ = run_both("tiny-wan", guidance_scale=1.0, num_frames=17, num_inference_steps=3)
    assert (ours.frames - theirs).abs().max() <= TOLERANCE * theirs.abs().max()


class MaskedCrossAttention:
    """The reference: the stock processor with every video token attending to all L*512 text tokens under a
    block-diagonal mask that lets the tokens of latent frame f see only frame f's 512."""

    def __init__(self, inner, frames):
        self.inner, self.frames = inner, frames

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        tokens = hidden_states.shape[1]
        query_frame = torch.arange(tokens) // (tokens // self.frames)
        key_frame = torch.arange(self.frames * TEXT_LENGTH) // TEXT_LENGTH
        mask = (query_frame[:, None] == key_frame[None, :])[None, None]  # (1, 1, N, L*512)
        return self.inner(attn, hidden_states, encoder_hidden_states, mask, rotary_emb)


@pytest.mark.parametrize("mode", ["linear", "step", "slerp"])
@torch.no_grad()
def test_three_states_equal_stock_attention_on_per_frame_contexts_with_a_block_diagonal_mask(mode):
    backbone = load_backbone("tiny-wan", device="cpu").double()
    latents = torch.randn(2, 16, 5, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    states = backbone.encode_text(["a red circle", "a green triangle", "a blue square"])
    cond = interpolate_embeddings(states, 5, mode=mode)  # (5, 512, D): every latent frame its own text
    context = torch.cat([backbone.encode_text(["blurry"]).expand(5, -1, -1), cond])  # guidance order
    ours = backbone.model_output(latents, 500, context)

    transformer = backbone.transformer
    modules = cross_attentions(transformer)
    previous = {name: m.processor for name, m in modules.items()}
    for m in modules.values():
        m.set_processor(MaskedCrossAttention(m.processor, frames=5))
    try:
        reference = transformer(hidden_states=latents, timestep=torch.tensor([500.0, 500.0], dtype=torch.float64),
                                encoder_hidden_states=context.reshape(2, 5 * TEXT_LENGTH, -1), return_dict=False)[0]
    finally:
        for name, m in modules.items():
            m.set_processor(previous[name])
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-10)
    assert (ours[1, :, 0] - ours[1, :, -1]).abs().max() > 1e-6  # the frames did get different texts


def test_the_high_noise_expert_denoises_above_the_boundary_and_the_low_noise_one_below():
    backbone = load_backbone("tiny-wan2.2-a14b", device="cpu")
    calls = []
    hooks = [expert.register_forward_pre_hook(lambda m, a, k, i=i: calls.append(i), with_kwargs=True)
             for i, expert in enumerate(backbone.experts)]
    try:
        out = VSTARPipeline(backbone)(PROMPT, tar=None, num_frames=5, num_inference_steps=6, progress=False,
                                      output_type="latent", generator=torch.Generator().manual_seed(0))
    finally:
        for hook in hooks:
            hook.remove()
    backbone.scheduler.set_timesteps(6)
    boundary = 0.875 * 1000
    expected = [0 if t >= boundary else 1 for t in backbone.scheduler.timesteps for _ in range(1)]
    assert calls == expected and 0 in calls and 1 in calls and out.frames.shape[2] == 2


def test_prompts_are_cleaned_as_wan_pipeline_cleans_them():
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean as diffusers_clean

    for text in ["  a  cat &amp;amp; a\tdog \n", "caf\u00c3\u00a9 latte", "plain"]:
        assert prompt_clean(text) == diffusers_clean(text)
    assert prompt_clean("  a  cat &amp;amp; a\tdog \n") == "a cat & a dog"
    backbone = load_backbone("tiny-wan", device="cpu")
    stock = WanPipeline(**backbone.diffusers_components())
    for text in ["a cat", "  two   spaces &amp; html  ", "x" * 3000]:
        ours = backbone.encode_text([text])
        theirs = stock.encode_prompt(text, do_classifier_free_guidance=False, max_sequence_length=TEXT_LENGTH,
                                     device="cpu")[0]
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_the_parts_go_to_diffusers_and_back():
    backbone = load_backbone("tiny-wan2.2-a14b", device="cpu")
    parts = backbone.diffusers_components()
    stock = WanPipeline(**parts)
    assert stock.transformer is backbone.transformer and stock.transformer_2 is backbone.transformer_2
    assert stock.config.boundary_ratio == 0.875 and backbone.denoiser is backbone.transformer
    assert load_backbone("tiny-wan2.2-ti2v", device="cpu").expand_timesteps


# --- full-size entries: the published configs on the meta device ---------------------------------------------
COMMON = dict(patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-06, rope_max_seq_len=1024)
PUBLISHED = {  # diffusers' conversion script (scripts/convert_wan_to_diffusers.py) and the repos' config.json
    "wan2.1-t2v-1.3b": (dict(COMMON, num_attention_heads=12, in_channels=16, out_channels=16, ffn_dim=8960,
                             num_layers=30), 1_418_996_800, 1),
    "wan2.1-t2v-14b": (dict(COMMON, num_attention_heads=40, in_channels=16, out_channels=16, ffn_dim=13824,
                            num_layers=40), 14_288_491_584, 1),
    "wan2.2-ti2v-5b": (dict(COMMON, num_attention_heads=24, in_channels=48, out_channels=48, ffn_dim=14336,
                            num_layers=30), 4_999_787_712, 1),
    "wan2.2-t2v-a14b": (dict(COMMON, num_attention_heads=40, in_channels=16, out_channels=16, ffn_dim=13824,
                             num_layers=40), 14_288_491_584, 2),
}
UMT5_XXL_AND_VAE = {16: 5_680_910_336 + 126_892_531, 48: 5_680_910_336 + 704_688_668}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_full_size_entries_match_the_published_models(name):
    config, count, experts = PUBLISHED[name]
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**config)
    assert sum(p.numel() for p in transformer.parameters()) == count
    defaults = get_spec(name).defaults
    assert defaults.latent_channels == config["in_channels"]
    assert defaults.vae_scale_factor * 2 == defaults.size_multiple  # the VAE's factor times the 2x2 patch
    assert defaults.parameters == experts * count + UMT5_XXL_AND_VAE[config["in_channels"]]  # weights in memory
    assert defaults.temporal_compression == 4 and defaults.attention_layout == "spatiotemporal"
    assert defaults.latent_frames(57) == 15 and defaults.latent_frames(61) == 16
    # TAR by default on the first third of the blocks: sigma 1 latent frame, 2 from 16 latent frames (61 frames) on
    first_third = set(range(config["num_layers"] // 3))
    short, long = TARConfig.parse(defaults.tar_preset(57)), TARConfig.parse(defaults.tar_preset(61))
    assert set(short.sigmas) == set(long.sigmas) == first_third
    assert set(short.sigmas.values()) == {1.0} and set(long.sigmas.values()) == {2.0}
    assert defaults.temporal_attention_levels == tuple(range(config["num_layers"]))  # TAR names the blocks


# --- the command line ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name,tar,recorded", [
    ("tiny-wan", [], "b0D1"), ("tiny-wan2.2-a14b", [], "b0D1"), ("tiny-wan", ["--tar", "b0-1D2"], "b0-1D2"),
    ("tiny-wan", ["--no-tar"], None),
])
def test_generate_and_reproduce_offline(tmp_path, name, tar, recorded):
    from vstar.cli import app
    from vstar.io import read_video

    runner = CliRunner()
    out = tmp_path / "street.mp4"
    result = runner.invoke(app, ["generate", PROMPT, "--model", name, "--frames", "17", "--seed", "3", "--quiet",
                                 "--out", str(out), *tar])
    assert result.exit_code == 0, result.output
    assert read_video(out).shape == (17, 64, 64, 3)
    meta = json.loads((tmp_path / "street.json").read_text())
    assert meta["settings"]["tar"] == recorded  # the model's default preset for 5 latent frames unless told
    assert len(meta["synopsis"]) > 1 and meta["keyframes"][-1] == 16
    again = tmp_path / "again.mp4"
    result = runner.invoke(app, ["generate", "--from", str(tmp_path / "street.json"), "--quiet", "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("args,message", [
    (["--frames", "16"], "makes videos of 4*n+1 frames"),
    (["--height", "40"], "height must be a positive multiple of 16"),
    (["--tar", "64D1"], "--tar 64D1: tiny-wan is a video transformer, whose TAR names its blocks (0-1)"),
    (["--tar", "b2D1"], "--tar b2D1: tiny-wan has blocks 0-1 only"),
    (["--replace-attention", "identity:64"], "tiny-wan is a video transformer; name its blocks (0-1)"),
    (["--optimize-noise", "--reference-video", "x.gif"], "--optimize-noise reads temporal attention maps"),
    (["--frames", "8193"], "supports at most 4093 frames"),
    (["--frame-chunk", "2"], "--frame-chunk 2: tiny-wan attends across all frames at once"),
])
def test_bad_wan_settings_are_refused_before_loading(tmp_path, monkeypatch, args, message):
    import vstar.pipeline
    from vstar.cli import app

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(vstar.pipeline.VSTARPipeline, "from_pretrained", refuse)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["generate", PROMPT, "--model", "tiny-wan", "--quiet", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["tiny-wan2.2-a14b", "tiny-wan2.2-ti2v"])
def test_a_folder_saved_by_wan_pipeline_loads_with_its_experts_and_flags(tmp_path, name):
    from vstar.backbones.weights_identity import weights_identity

    built = load_backbone(name, device="cpu")
    WanPipeline(**built.diffusers_components()).save_pretrained(tmp_path / "copy")
    registered = {"tiny-wan2.2-a14b": "wan2.2-t2v-a14b", "tiny-wan2.2-ti2v": "wan2.2-ti2v-5b"}[name]
    loaded = load_backbone(registered, model_path=tmp_path / "copy", device="cpu")
    identity = weights_identity(loaded)
    assert identity["source"] == "path" and identity["fingerprint"].startswith("sha256:")
    assert any(f.startswith("transformer/") for f in identity["files"])
    assert any(f.startswith("transformer_2/") for f in identity["files"]) == (len(built.experts) == 2)
    assert (loaded.boundary_ratio, loaded.expand_timesteps) == (built.boundary_ratio, built.expand_timesteps)
    assert len(loaded.experts) == len(built.experts)
    for ours, theirs in zip(loaded.experts, built.experts, strict=True):
        for (key, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
            assert torch.equal(a, b), key
    texts = ["a red circle", "  a blue   square "]
    torch.testing.assert_close(loaded.encode_text(texts), built.encode_text(texts), rtol=0, atol=0)
    assert loaded.defaults == get_spec(registered).defaults


def test_a_folder_without_the_transformer_says_what_is_missing(tmp_path):
    from vstar.backbones.loading import ModelNotAvailableError
    from vstar.backbones.wan import load_wan

    (tmp_path / "vae").mkdir()
    with pytest.raises(ModelNotAvailableError, match=r"lacks transformer/.*transformer/, vae/"):
        load_wan("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", model_path=tmp_path)


def test_twice_the_training_length_and_more_run_in_one_pass():
    backbone = load_backbone("tiny-wan", device="cpu")
    out = VSTARPipeline(backbone)(PROMPT, synopsis=["a street by day", "a street at dusk", "a street at night"],
                                  num_frames=161, num_inference_steps=1, progress=False,
                                  generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (1, 161, 64, 64, 3) and out.keyframes == [0, 80, 160]  # latent frames 0, 20, 40


# --- TAR on Wan's full 3D self-attention ------------------------------------------------------------------------
def dense_tar(query, key, value, frames, matrix, strength):
    """The reference: dense float64 logits of diffusers' own q, k, v (after its projections and RoPE), the row
    maximum, the bias on latent-frame distance, softmax."""
    q, k, v = (x.double().transpose(1, 2) for x in (query, key, value))  # (B, H, N, d)
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    frame = torch.arange(q.shape[2]) // (q.shape[2] // frames)
    biased = logits + strength * logits.amax(-1, keepdim=True) * matrix.double()[frame][:, frame]
    return (biased.softmax(-1) @ v).transpose(1, 2).to(query.dtype)


@pytest.mark.parametrize("preset,strength", [("b0-1D2", 1.0), ("b1D0.5S3", 3.0)])
@torch.no_grad()
def test_tar_on_wan_equals_a_dense_float64_reference(monkeypatch, preset, strength):
    import diffusers.models.transformers.transformer_wan as wan_module

    from vstar.tar import TARConfig, apply_tar, regularization_matrix, remove_tar

    backbone = load_backbone("tiny-wan", device="cpu").double()
    latents = torch.randn(2, 16, 5, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    context = backbone.encode_text(["a red circle", "a blue square"]).repeat_interleave(5, 0)
    stock = backbone.model_output(latents, 500, context)
    config = TARConfig.parse(preset)
    apply_tar(backbone, config)
    try:
        ours = backbone.model_output(latents, 500, context)
    finally:
        remove_tar(backbone)
    sigma = config.sigmas[max(config.sigmas)]
    real = wan_module.dispatch_attention_fn
    calls = []

    def reference(query, key, value, *args, **kwargs):  # diffusers' q, k, v of every attention call
        if key.shape[1] == query.shape[1] == 5 * 16:  # a self-attention over 5 latent frames of 4x4 tokens
            block = len(calls) % 2
            calls.append(block)
            if block in config.sigmas:
                band = regularization_matrix(5, config.sigmas[block], dtype=torch.float64)
                return dense_tar(query, key, value, 5, band, config.strength_at(block))
        return real(query, key, value, *args, **kwargs)

    monkeypatch.setattr(wan_module, "dispatch_attention_fn", reference)
    expected = backbone.model_output(latents, 500, context)
    assert calls == [0, 1] and sigma > 0
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)
    assert (ours - stock).abs().max() > 1e-3 * strength


@torch.no_grad()
def test_tar_strength_zero_and_inactive_steps_are_stock_on_wan():
    from vstar.tar import apply_tar, remove_tar

    backbone = load_backbone("tiny-wan", device="cpu")
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    context = backbone.encode_text(["a red circle"]).expand(3, -1, -1)
    stock = backbone.model_output(latents, 500, context)
    state = apply_tar(backbone, "b0-1D1S0")
    try:
        torch.testing.assert_close(backbone.model_output(latents, 500, context), stock, rtol=0, atol=0)
    finally:
        remove_tar(backbone)
    state = apply_tar(backbone, "b0-1D1")
    try:
        state.active = False
        torch.testing.assert_close(backbone.model_output(latents, 500, context), stock, rtol=0, atol=0)
        state.active = True
        assert (backbone.model_output(latents, 500, context) - stock).abs().max() > 1e-4
    finally:
        remove_tar(backbone)
    assert all(type(layer.processor).__name__ == "WanAttnProcessor" for layer in backbone.temporal_attention_layers())


@torch.no_grad()
def test_recording_and_replacement_on_wan_equal_their_dense_definitions(monkeypatch):
    import diffusers.models.transformers.transformer_wan as wan_module

    from vstar.analysis import record_temporal_attention
    from vstar.analysis.replacement import replace_temporal_attention

    backbone = load_backbone("tiny-wan", device="cpu").double()
    latents = torch.randn(2, 16, 5, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    context = backbone.encode_text(["blurry", "a red circle"]).repeat_interleave(5, 0)
    real = wan_module.dispatch_attention_fn
    masses = []

    def dense(query, key, value, *args, mode=None, **kwargs):
        if key.shape[1] != query.shape[1]:  # a cross-attention
            return real(query, key, value, *args, **kwargs)
        q, k, v = (x.double().transpose(1, 2) for x in (query, key, value))  # (B, H, N, d)
        logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        frame = torch.arange(q.shape[2]) // (q.shape[2] // 5)
        same = frame[:, None] == frame[None, :]
        if mode == "identity":
            weights = logits.masked_fill(~same, float("-inf")).softmax(-1)
        elif mode == "uniform":  # a softmax inside each key frame, mass 1/5 on each
            per_frame = [logits.masked_fill(frame[None, :] != b, float("-inf")).softmax(-1) / 5 for b in range(5)]
            weights = sum(per_frame)
        else:
            weights = logits.softmax(-1)
        mass = torch.stack([weights[..., frame == b].sum(-1) for b in range(5)], -1)  # (B, H, N, 5)
        masses.append(torch.stack([mass[1, :, frame == a].mean((0, 1)) for a in range(5)]))  # the prompt's branch
        return (weights @ v).transpose(1, 2).to(query.dtype)

    for mode in (None, "identity", "uniform"):
        masses.clear()
        monkeypatch.setattr(wan_module, "dispatch_attention_fn", lambda *a, m=mode, **k: dense(*a, mode=m, **k))
        expected = backbone.model_output(latents, 500, context)
        monkeypatch.setattr(wan_module, "dispatch_attention_fn", real)
        replacing = replace_temporal_attention(backbone, mode, [0, 1]) if mode else None
        try:
            with record_temporal_attention(backbone, branch="cond") as recorder:
                out = backbone.model_output(latents, 500, context)
        finally:
            if replacing is not None:
                replacing.remove()
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
        assert recorder.unit == "block" and sorted(recorder.by_level()) == [0, 1]
        for block, recorded in recorder.by_level().items():
            torch.testing.assert_close(recorded.double(), masses[block], rtol=0, atol=1e-6)
            torch.testing.assert_close(recorded.sum(-1), torch.ones(5), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_analyze_a_real_video_and_a_generation_on_wan(tmp_path):
    from vstar.cli import app
    from vstar.io import write_video

    frames = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    write_video(frames, tmp_path / "clip.gif")
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "clip.gif"), "--generate", PROMPT, "--model",
                                      "tiny-wan", "--frames", "9", "--steps", "2", "--tar", "b0D1",
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "report" / "attention.json").read_text())
    for summary in record["videos"].values():
        assert sorted(summary["levels"]) == ["b0", "b1"]
        assert np.allclose(np.sum(summary["levels"]["b0"]["map"], axis=1), 1, atol=1e-5)
        assert len(summary["levels"]["b0"]["map"]) == 3  # 9 frames: 3 latent frames
