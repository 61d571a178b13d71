"""The embedded toy model: offline loading, the training script, and a regression check of VSP on it."""

import numpy as np
import pytest
import torch

from vstar import VSTARPipeline
from vstar.backbones.loading import ModelNotAvailableError
from vstar.toy.classifier import classify_clip
from vstar.toy.model import SIZE, TEXT_WIDTH, WEIGHTS_DIR, load_toy, toy_unet, toy_vae
from vstar.toy.train import (
    CaptionEmbeddings,
    SkippedTemporalConv,
    TrainConfig,
    full_unet,
    run,
    skip_temporal_convs,
    train_vae,
    unet_learning_rate,
)


def test_shipped_weights_are_small_and_load_offline():
    files = [p for p in WEIGHTS_DIR.rglob("*") if p.is_file()]
    assert files, "the trained toy weights are missing from the package"
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20
    backbone = load_toy()
    assert backbone.unet.dtype == torch.float32 and backbone.defaults.height == SIZE
    assert backbone.encode_text(["a red circle", ""]).shape == (2, 24, TEXT_WIDTH)


def test_missing_weights_say_how_to_train(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="python -m vstar.toy.train"):
        load_toy(weights=tmp_path)


@pytest.mark.slow
def test_vsp_turns_red_into_blue_on_a_fixed_seed():
    """Regression check: with the synopsis the video starts as a red circle and ends as a blue square; the
    prompt alone on every frame does not make that transition (the failure VSP fixes)."""
    pipe = VSTARPipeline.from_pretrained("toy-shapes", device="cpu")
    prompt = "a red circle on a black background turning into a blue square"
    states = ["a large red circle on a black background, in the center",
              "a large blue square on a black background, in the center"]
    kwargs = {"num_frames": 16, "tar": "64D1", "progress": False}
    vsp = classify_clip(pipe(prompt, states, generator=torch.Generator().manual_seed(0), **kwargs).frames[0])
    assert (vsp[0].color, vsp[0].shape) == ("red", "circle")
    assert [(s.color, s.shape) for s in vsp[-4:]] == [("blue", "square")] * 4
    plain = classify_clip(pipe(prompt, generator=torch.Generator().manual_seed(0), **kwargs).frames[0])
    assert not ((plain[0].color, plain[0].shape) == ("red", "circle")
                and [(s.color, s.shape) for s in plain[-4:]] == [("blue", "square")] * 4)


def test_caption_embeddings_are_cached_per_caption():
    embed = CaptionEmbeddings()
    first = embed(["a small red circle on a black background, on the left", ""])
    assert first.shape == (2, 24, TEXT_WIDTH) and len(embed.cache) == 2
    again = embed(["", "a small red circle on a black background, on the left"])
    assert torch.equal(again[1], first[0]) and len(embed.cache) == 2


@pytest.mark.slow
def test_training_runs_resumes_and_exports(tmp_path):
    cfg = TrainConfig(workdir=tmp_path / "run", export=tmp_path / "weights", vae_steps=2, vae_batch=8,
                      unet_steps=2, unet_batch=2, frames=4, save_every=1)
    run(cfg)
    log = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert log[0] == "stage,step,loss" and any(line.startswith("unet,0,") for line in log)
    backbone = load_toy(weights=tmp_path / "weights")
    assert backbone.vae.config.scaling_factor != toy_vae().config.scaling_factor  # fitted to the latents
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["stage"] == "unet" and state["step"] == 2
    run(TrainConfig(**{**cfg.__dict__, "unet_steps": 3}), resume=True)  # one more step from the checkpoint
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 3
    resumed = load_toy(weights=tmp_path / "weights")
    assert not torch.equal(resumed.unet.conv_out.weight, backbone.unet.conv_out.weight)
    assert resumed.vae.config.scaling_factor == backbone.vae.config.scaling_factor  # kept across the resume


def test_shipped_unet_moves_information_between_frames_only_by_temporal_attention():
    for name, module in load_toy().unet.named_modules():
        if type(module).__name__ == "TemporalConvLayer":
            assert not module.conv4[-1].weight.any() and not module.conv4[-1].bias.any(), name


def test_skipping_identity_temporal_convs_keeps_the_output_and_exports_back():
    torch.manual_seed(0)
    unet = toy_unet().eval()
    for p in unet.parameters():  # make every other weight non-trivial
        if p.dim() > 1 and not p.eq(0).all():
            p.data.normal_(0, 0.2)
    args = (torch.randn(1, 4, 6, 8, 8), 10)
    kwargs = {"encoder_hidden_states": torch.randn(1, 24, TEXT_WIDTH)}
    with torch.no_grad():
        expected = unet(*args, **kwargs).sample
        skipped = skip_temporal_convs(unet)
        assert sum(isinstance(m, SkippedTemporalConv) for m in skipped.modules()) == 11  # 3 down, 2 mid, 6 up
        torch.testing.assert_close(skipped(*args, **kwargs).sample, expected)
        torch.testing.assert_close(full_unet(skipped)(*args, **kwargs).sample, expected)
    assert any(type(m).__name__ == "TemporalConvLayer" for m in full_unet(skipped).modules())


def test_only_identity_temporal_convs_can_be_skipped():
    unet = toy_unet()
    unet.down_blocks[0].temp_convs[0].conv4[-1].bias.data.fill_(0.1)
    with pytest.raises(ValueError, match="only identity temporal convolutions"):
        skip_temporal_convs(unet)


@pytest.mark.slow
def test_training_can_start_from_a_trained_vae(tmp_path):
    cfg = TrainConfig(workdir=tmp_path / "run", export=tmp_path / "weights", vae_steps=50, unet_steps=1,
                      unet_batch=2, frames=4, init_vae=str(WEIGHTS_DIR / "vae"))
    run(cfg)
    log = (tmp_path / "run" / "loss.csv").read_text()
    assert "vae," not in log  # the VAE stage was skipped
    assert "_name_or_path" not in (tmp_path / "weights" / "vae" / "config.json").read_text()
    trained, shipped = load_toy(weights=tmp_path / "weights").vae, load_toy().vae
    assert trained.config.scaling_factor == shipped.config.scaling_factor
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), shipped.state_dict().values(),
                                                 strict=True))


@pytest.mark.slow
def test_training_can_start_from_a_trained_unet(tmp_path):
    cfg = TrainConfig(workdir=tmp_path / "run", export=tmp_path / "weights", unet_steps=1, unet_batch=2,
                      frames=4, lr=0.0, init_vae=str(WEIGHTS_DIR / "vae"), init_unet=str(WEIGHTS_DIR / "unet"))
    run(cfg)  # one step at learning rate 0: the exported UNet is the one it started from
    trained, shipped = load_toy(weights=tmp_path / "weights").unet.state_dict(), load_toy().unet.state_dict()
    assert trained.keys() == shipped.keys()
    used = [k for k in shipped if ".temp_convs." not in k or ".conv4.3." in k]  # the rest multiplies by zero
    assert len(used) > 100 and all(torch.equal(trained[k], shipped[k]) for k in used)


def test_untrained_architecture_shapes():
    unet, vae = toy_unet(), toy_vae()
    with torch.no_grad():
        latents = vae.encode(torch.zeros(2, 3, SIZE, SIZE)).latent_dist.mean
        assert latents.shape == (2, 4, SIZE // 4, SIZE // 4)
        out = unet(torch.zeros(1, 4, 5, 8, 8), 10, encoder_hidden_states=torch.zeros(1, 24, TEXT_WIDTH)).sample
    assert out.shape == (1, 4, 5, 8, 8)
    assert np.isfinite(out.numpy()).all()


@pytest.mark.slow
def test_mixed_lengths_keep_frames_per_step_and_export_the_ema(tmp_path):
    cfg = TrainConfig(workdir=tmp_path / "run", export=tmp_path / "weights", vae_steps=1, vae_batch=8,
                      unet_steps=3, frames="4,8", frames_per_step=16, ema_decay=0.9, save_every=2)
    assert cfg.lengths() == [4, 8] and (cfg.batch(4), cfg.batch(8)) == (4, 2)
    assert TrainConfig(workdir=tmp_path, unet_batch=3, frames=4).batch(4) == 3  # the old single length
    run(cfg)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["ema"]["updates"] == 3 and state["ema"]["decay"] == 0.9
    exported = load_toy(weights=tmp_path / "weights").unet.state_dict()
    raw, ema = state["unet"], state["ema"]["shadow"]
    key = "conv_out.weight"
    torch.testing.assert_close(exported[key], ema[key].half().float())
    assert not torch.equal(raw[key], ema[key])
    # the EMA resumes with the weights; a learning-rate tail overrides the resumed optimizer's rate; the
    # checkpoint's UNet replaces --init-unet, which is not even read
    run(TrainConfig(**{**cfg.__dict__, "unet_steps": 4, "lr_tail": 2, "init_unet": str(tmp_path / "gone")}),
        resume=True)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["ema"]["updates"] == 4
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.lr / 2)  # step 3 of 4, tail of 2
    log = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert log[0] == "stage,step,loss" and log[1].startswith("vae,0,") and log[2].startswith("unet,0,")


def test_learning_rate_tail_falls_linearly_to_zero_at_the_last_step(tmp_path):
    cfg = TrainConfig(workdir=tmp_path, lr=1e-3, unet_steps=100, lr_tail=40)
    assert [unet_learning_rate(cfg, s) for s in (0, 60, 80, 99)] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-5])
    assert unet_learning_rate(TrainConfig(workdir=tmp_path, lr=1e-3), 10**6) == 1e-3  # no tail: constant


def test_the_learning_rate_tail_leaves_the_vae_stage_alone(tmp_path):
    cfg = TrainConfig(workdir=tmp_path, vae_steps=1, vae_batch=4, lr=1e-4, unet_steps=10, lr_tail=10)
    vae = toy_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    train_vae(vae, cfg, np.random.default_rng(0), 0, optimizer, tmp_path / "loss.csv", tmp_path / "checkpoint.pt")
    assert optimizer.param_groups[0]["lr"] == 1e-3
