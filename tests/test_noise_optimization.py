"""Initial noise optimized toward a reference video's temporal attention (paper supplement B, equation 8) on the
small embedded toy model (a random tiny model's attention is almost uniform): the loss goes down, the result
samples and saves, bad input fails before any work."""

import numpy as np
import pytest
import torch

from vstar.analysis import record_temporal_attention
from vstar.config import GenerationConfig
from vstar.io import write_video
from vstar.noise import OptimizedNoise, optimize_initial_noise
from vstar.noise.optimization import attention_maps
from vstar.pipeline import VSTARPipeline
from vstar.toy.scenes import Motion, Scene, render_clip

CONFIG = GenerationConfig(num_frames=6, num_inference_steps=2, seed=0)


@pytest.fixture(scope="module")
def pipe():
    return VSTARPipeline.from_pretrained("toy-shapes", device="cpu")


@pytest.fixture(scope="module")
def reference():
    """A red circle moving right over 8 frames, uint8 ``(8, 32, 32, 3)``."""
    clip = render_clip(Scene("circle", "red", "large", "black", "center"), 8, motion=Motion(dx=2.0))
    return (clip * 255).astype(np.uint8)


def test_the_attention_loss_decreases_and_the_result_samples(pipe, reference):
    opt = optimize_initial_noise(pipe, reference, "a red circle", config=CONFIG, num_steps=4, progress=False)
    attention = [entry["attention"] for entry in opt.history]
    assert len(opt.history) == 5 and attention[-1] < 0.8 * attention[0], attention
    assert opt.history[0]["kl"] == pytest.approx(0.0, abs=1e-9)  # it starts at N(0, I)
    assert opt.latents.shape == opt.mu.shape == (1, 4, 6, 8, 8)
    assert opt.reference_maps.shape == (6, 6, 6)  # toy-shapes: 6 temporal attention layers at level 0
    assert 0 < opt.beta and -1 < opt.gamma < 1
    assert opt.settings["levels"] == [0] and len(opt.settings["reference_sha256"]) == 64
    out = pipe("a red circle", config=CONFIG, latents=opt.latents, output_type="latent", progress=False)
    assert torch.isfinite(out.frames).all()


def test_the_same_seed_gives_the_same_noise(pipe, reference):
    runs = [optimize_initial_noise(pipe, reference, "a red circle", config=CONFIG, num_steps=1, progress=False)
            for _ in range(2)]
    torch.testing.assert_close(runs[0].latents, runs[1].latents, rtol=0, atol=0)


def test_it_starts_from_the_noise_plain_sampling_draws(pipe, reference):
    opt = optimize_initial_noise(pipe, reference, "a red circle", config=CONFIG, num_steps=1, lr=1e-12, progress=False)
    plain = torch.randn(opt.latents.shape, generator=torch.Generator().manual_seed(CONFIG.seed))
    torch.testing.assert_close(opt.latents, plain, rtol=0, atol=1e-6)


def test_the_model_is_left_as_it_was(pipe, reference):
    flags = [p.requires_grad for p in pipe.backbone.parameters()]
    processors = {name: type(p) for name, p in pipe.backbone.unet.attn_processors.items()}
    optimize_initial_noise(pipe, reference, "a red circle", config=CONFIG, num_steps=1, progress=False)
    assert [p.requires_grad for p in pipe.backbone.parameters()] == flags
    assert {name: type(p) for name, p in pipe.backbone.unet.attn_processors.items()} == processors
    assert all(p.grad is None for p in pipe.backbone.parameters())


def test_differentiable_maps_equal_the_recorded_ones(pipe):
    backbone = pipe.backbone
    latents = torch.randn(1, 4, 6, 8, 8, requires_grad=True)
    context = backbone.encode_text(["a red circle"]).expand(6, -1, -1)
    t = torch.tensor([400])
    maps = attention_maps(backbone, latents, t, context, levels=[0])
    with torch.no_grad(), record_temporal_attention(backbone, levels=[0]) as recorder:
        backbone.model_output(latents, t, context)
    torch.testing.assert_close(maps.detach(), torch.stack(list(recorder.maps.values())), rtol=1e-5, atol=1e-6)
    maps.square().sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


def test_save_and_load_round_trip(pipe, reference, tmp_path):
    opt = optimize_initial_noise(pipe, reference, "a red circle", config=CONFIG, num_steps=1, progress=False)
    path = opt.save(tmp_path / "clip.noise.safetensors")
    back = OptimizedNoise.load(path)
    torch.testing.assert_close(back.latents, opt.latents, rtol=0, atol=0)
    torch.testing.assert_close(back.mu, opt.mu, rtol=0, atol=0)
    torch.testing.assert_close(back.reference_maps, opt.reference_maps, rtol=0, atol=0)
    assert (back.beta, back.gamma, back.history, back.settings) == (opt.beta, opt.gamma, opt.history, opt.settings)
    summary = opt.summary()
    assert summary["attention_loss"] == [opt.history[0]["attention"], opt.history[-1]["attention"]]
    (tmp_path / "bad.noise.safetensors").write_text("not tensors")
    with pytest.raises(ValueError, match="is not a vstar noise file"):
        OptimizedNoise.load(tmp_path / "bad.noise.safetensors")


def test_a_bad_reference_fails_before_any_optimization(pipe, reference, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pipe.backbone, "model_output", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(pipe.backbone, "encode_video", lambda *a, **k: calls.append(1))
    short = tmp_path / "short.gif"
    write_video(reference[:3], short)
    unreadable = tmp_path / "noise.mp4"
    unreadable.write_bytes(b"\x00not a video" * 100)
    cases = [
        (tmp_path / "missing.mp4", {}, FileNotFoundError, "missing.mp4 does not exist"),
        (short, {}, ValueError, "has 3 frame.*needs at least 6"),
        (unreadable, {}, ValueError, "could not read the reference video .*noise.mp4"),
        (reference[..., 0], {}, ValueError, r"must be frames \(N, H, W, 3\)"),
        (reference, {"num_steps": 0}, ValueError, "--opt-steps must be a whole number >= 1"),
        (reference, {"lr": -1.0}, ValueError, "--opt-lr must be a positive number"),
        (reference, {"kl_weight": float("nan")}, ValueError, "--kl-weight must be a number >= 0"),
        (reference, {"timestep": 1000}, ValueError, r"--opt-timestep must be in 0\.\.999"),
        (reference, {"levels": [7]}, ValueError, r"levels \[7\] have no temporal attention"),
        (reference, {"gamma": 1.0}, ValueError, "gamma must be in"),
    ]
    for video, kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            optimize_initial_noise(pipe, video, "a red circle", config=CONFIG, progress=False, **kwargs)
    assert calls == []
