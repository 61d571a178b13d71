"""Train the embedded toy model on procedural clips: first the VAE on frames, then the UNet on latents.

    python -m vstar.toy.train --workdir runs/toy [--minutes 45] [--resume] [--init-vae PATH | --vae-from PATH]
        [--init-unet PATH]
        [--frames 8,16,24] [--frames-per-step 192] [--ema-decay 0.999] [--lr-tail STEPS] [--device cpu|cuda]

Seeded and resumable (a checkpoint every ``--save-every`` steps in the work folder, EMA weights included;
``--lr-tail`` sets the learning rate of every step from the schedule, also after a resume);
writes ``loss.csv`` there and, at the end, float16 weights in diffusers layout to ``--export`` (the packaged
weights folder by default); the exported UNet is the EMA of the trained one. Each training clip shows one
scene with its caption, like real text-to-video data, and moves gradually (several speeds, some growing or
shrinking, see :func:`~vstar.toy.scenes.sample_clip`); captions leave out details at random so that short
prompts ("a blue square") are in the training distribution. Clip lengths are mixed: every step draws one of
``--frames`` and a batch of that many frames per clip, ``--frames-per-step`` frames in all.
The UNet's temporal convolutions stay identities (see :func:`~vstar.toy.model.toy_unet`), so they are skipped
while training.
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
from torch import nn
from tqdm.auto import tqdm

from vstar.backbones.loading import token_states
from vstar.backbones.modelscope import MODELSCOPE_SCHEDULER
from vstar.toy.model import SIZE, WEIGHTS_DIR, minilm_text_encoder, toy_unet, toy_vae
from vstar.toy.scenes import OPTIONAL_DETAILS, caption, render_clip, sample_clip

CFG_DROP = 0.1  # share of captions replaced by "" so that classifier-free guidance works
OMIT_DETAIL = 0.3  # chance that a caption leaves out each of size, background, position and motion


@dataclass
class TrainConfig:
    workdir: Path
    export: Path = WEIGHTS_DIR
    seed: int = 0
    vae_steps: int = 1500
    vae_batch: int = 64
    unet_steps: int = 20_000
    unet_batch: int = 16  # clips per step at the shortest length when frames_per_step is 0
    frames: str = "8"  # clip lengths, comma-separated; each step uses one, drawn at random
    frames_per_step: int = 0  # frames per UNet step (batch = this // length); 0: unet_batch x shortest length
    ema_decay: float = 0.999  # EMA of the UNet weights (exported); 0 exports the raw weights
    minutes: float = 45.0  # wall-clock budget of the UNet stage; training stops at whichever comes first
    lr: float = 5e-4
    lr_tail: int = 0  # the UNet learning rate falls linearly to 0 over the last lr_tail of unet_steps (0: constant)
    noise: float = 0.02  # pixel noise of the rendered clips
    save_every: int = 200
    init_vae: str = ""  # a trained VAE folder (diffusers layout) to use as is instead of training one
    vae_from: str = ""  # a trained VAE folder to start the VAE stage from (fine-tuning for vae_steps)
    init_unet: str = ""  # a trained UNet folder (diffusers layout) to start the UNet stage from (fine-tuning)
    vae_kl: float = 1e-6  # KL weight of the VAE loss
    device: str = "cpu"

    def lengths(self) -> list[int]:
        """The clip lengths of :attr:`frames` (an int is one length)."""
        lengths = [int(f) for f in str(self.frames).split(",") if f.strip()]
        if not lengths or min(lengths) < 1:
            raise ValueError(f"frames must be comma-separated lengths >= 1, got {self.frames!r}")
        return lengths

    def batch(self, length: int) -> int:
        """Clips per step of ``length`` frames, so that every step sees about the same number of frames."""
        per_step = self.frames_per_step or self.unet_batch * min(self.lengths())
        return max(1, round(per_step / length))


class CaptionEmbeddings:
    """MiniLM per-token states ``(S, D)`` of captions, computed once per distinct caption with the same
    :func:`~vstar.backbones.loading.token_states` the backbone samples with."""

    def __init__(self) -> None:
        self.tokenizer, self.encoder = minilm_text_encoder()
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self.cache})
        if missing:
            for text, states in zip(missing, token_states(self.tokenizer, self.encoder, missing), strict=True):
                self.cache[text] = states
        return torch.stack([self.cache[t] for t in texts])


def render_batch(rng: np.random.Generator, batch: int, frames: int, noise: float) -> tuple[torch.Tensor, list[str]]:
    """``batch`` one-scene moving clips as ``(B, F, 3, H, W)`` in [-1, 1] and their captions, some details left
    out (and the position whenever the shape crosses into another third)."""
    clips, captions = [], []
    for _ in range(batch):
        scene, motion, must_omit = sample_clip(rng, frames)
        clips.append(render_clip(scene, num_frames=frames, size=SIZE, rng=rng, noise=noise, motion=motion))
        omit = [d for d in OPTIONAL_DETAILS if rng.random() < OMIT_DETAIL or d in must_omit]
        captions.append(caption(scene, omit=omit))
    video = torch.from_numpy(np.stack(clips)).float().permute(0, 1, 4, 2, 3) * 2 - 1
    return video, captions


class EMA:
    """Exponential moving average of a module's parameters (with the usual warm-up of the decay)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1 - decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}

    def copy_to(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` holding the averaged weights (``module`` itself is unchanged)."""
        averaged = copy.deepcopy(module)
        averaged.load_state_dict(self.shadow)
        return averaged


class SkippedTemporalConv(nn.Module):
    """Stands in for a ``TemporalConvLayer`` whose output layer is zero, i.e. an identity: same result, no work."""

    def forward(self, hidden_states: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        return hidden_states


def skip_temporal_convs(unet: UNet3DConditionModel) -> UNet3DConditionModel:
    """Replace the (identity) temporal convolutions of ``unet`` by :class:`SkippedTemporalConv`, in place."""
    for block in (*unet.down_blocks, unet.mid_block, *unet.up_blocks):
        for i, conv in enumerate(block.temp_convs):
            if isinstance(conv, SkippedTemporalConv):
                continue
            output = conv.conv4[-1]
            if output.weight.any() or output.bias.any():
                raise ValueError("only identity temporal convolutions (zero output layer) can be skipped")
            block.temp_convs[i] = SkippedTemporalConv()
    return unet


def full_unet(trained: UNet3DConditionModel) -> UNet3DConditionModel:
    """A plain ``toy_unet()`` (identity temporal convolutions) with the weights of a skip-trained UNet."""
    unet = toy_unet()
    missing, unexpected = unet.load_state_dict(trained.state_dict(), strict=False)
    if unexpected or any(".temp_convs." not in key for key in missing):
        raise RuntimeError(f"UNet weights do not fit toy_unet(): missing {missing}, unexpected {unexpected}")
    return unet.eval()


def load_trained_unet(folder: str) -> UNet3DConditionModel:
    """A skip-trainable :func:`~vstar.toy.model.toy_unet` with the weights of an exported toy UNet folder;
    its temporal convolutions must be identities (as every exported toy UNet's are)."""
    trained = UNet3DConditionModel.from_pretrained(folder, torch_dtype=torch.float32)
    unet = toy_unet()
    unet.load_state_dict(trained.state_dict())  # checks the architecture
    return skip_temporal_convs(unet)


def save_checkpoint(path: Path, **state: object) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def append_loss(path: Path, stage: str, step: int, loss: float) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["stage", "step", "loss"])
        writer.writerow([stage, step, f"{loss:.6f}"])


def train_vae(vae: AutoencoderKL, cfg: TrainConfig, rng: np.random.Generator, start: int,
              optimizer: torch.optim.Optimizer, log: Path, checkpoint: Path) -> None:
    """Reconstruction (L2 + 0.1 L1) with a small KL term (``vae_kl``) on single frames of moving clips."""
    vae.train()
    for step in tqdm(range(start, cfg.vae_steps), desc="vae", initial=start, total=cfg.vae_steps):
        video, _ = render_batch(rng, max(cfg.vae_batch // 4, 1), 24, cfg.noise)  # frames 0, 6, 12, 18 of
        frames = video[:, ::6].flatten(0, 1).to(cfg.device)  # 24-frame clips: shapes anywhere on their path
        posterior = vae.encode(frames).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, frames) + 0.1 * F.l1_loss(recon, frames) + cfg.vae_kl * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            append_loss(log, "vae", step, loss.item())
        if (step + 1) % cfg.save_every == 0:
            save_checkpoint(checkpoint, stage="vae", step=step + 1, vae=vae.state_dict(),
                            optimizer=optimizer.state_dict(), rng=rng.bit_generator.state,
                            torch_rng=torch.get_rng_state())
    vae.eval()


@torch.no_grad()
def latent_scale(vae: AutoencoderKL, rng: np.random.Generator) -> float:
    """1 / std of the latents, so that the diffusion model sees unit-variance inputs (SD's scaling_factor)."""
    video, _ = render_batch(rng, 64, 4, 0.0)
    device = next(vae.parameters()).device
    return float(1.0 / vae.encode(video.flatten(0, 1).to(device)).latent_dist.mean.std())


def unet_checkpoint(path: Path, step: int, vae: AutoencoderKL, unet: UNet3DConditionModel, ema: EMA,
                    optimizer: torch.optim.Optimizer, rng: np.random.Generator) -> None:
    save_checkpoint(path, stage="unet", step=step, vae=vae.state_dict(), unet=unet.state_dict(),
                    ema=ema.state_dict(), latent_scale=vae.config.scaling_factor,
                    optimizer=optimizer.state_dict(), rng=rng.bit_generator.state,
                    torch_rng=torch.get_rng_state())


def unet_learning_rate(cfg: TrainConfig, step: int) -> float:
    """``cfg.lr``, falling linearly over the last ``cfg.lr_tail`` steps to 0 at ``cfg.unet_steps``."""
    if cfg.lr_tail <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (cfg.unet_steps - step) / cfg.lr_tail)


def train_unet(unet: UNet3DConditionModel, vae: AutoencoderKL, cfg: TrainConfig, rng: np.random.Generator,
               start: int, optimizer: torch.optim.Optimizer, log: Path, checkpoint: Path, ema: EMA) -> int:
    """Epsilon prediction on VAE latents with the ModelScope noise schedule, one clip length per step;
    returns the steps done in all."""
    noise_schedule = DDPMScheduler(**{k: v for k, v in MODELSCOPE_SCHEDULER.items() if k != "set_alpha_to_one"})
    embed = CaptionEmbeddings()
    scale = vae.config.scaling_factor
    deadline = time.monotonic() + cfg.minutes * 60
    unet.train()
    done = start
    progress = tqdm(range(start, cfg.unet_steps), desc="unet", initial=start, total=cfg.unet_steps)
    lengths = cfg.lengths()
    for step in progress:
        if time.monotonic() > deadline:
            break
        frames = lengths[int(rng.integers(len(lengths)))]
        batch = cfg.batch(frames)
        video, captions = render_batch(rng, batch, frames, cfg.noise)
        captions = ["" if rng.random() < CFG_DROP else c for c in captions]
        with torch.no_grad():
            latents = vae.encode(video.flatten(0, 1).to(cfg.device)).latent_dist.mean * scale
        latents = latents.unflatten(0, (batch, frames)).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
        noise = torch.randn(latents.shape).to(cfg.device)  # drawn on the CPU: same numbers on every device
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,))
        noisy = noise_schedule.add_noise(latents, noise, t.to(cfg.device))
        states = embed(captions).to(cfg.device)
        loss = F.mse_loss(unet(noisy, t.to(cfg.device), encoder_hidden_states=states).sample, noise)
        for group in optimizer.param_groups:  # also overrides a resumed optimizer's rate
            group["lr"] = unet_learning_rate(cfg, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        ema.update(unet)
        progress.set_postfix(loss=f"{loss.item():.4f}", frames=frames)
        done = step + 1
        if step % 25 == 0:
            append_loss(log, "unet", step, loss.item())
        if (step + 1) % cfg.save_every == 0:
            unet_checkpoint(checkpoint, step + 1, vae, unet, ema, optimizer, rng)
    unet.eval()
    return done


def run(cfg: TrainConfig, resume: bool = False) -> None:
    """Both stages, resuming from ``workdir/checkpoint.pt`` when asked; exports float16 weights at the end."""
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint, log = cfg.workdir / "checkpoint.pt", cfg.workdir / "loss.csv"
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    state = (torch.load(checkpoint, weights_only=False, map_location=cfg.device)
             if resume and checkpoint.exists() else None)
    resumes_unet = state is not None and state["stage"] == "unet"  # the checkpoint replaces any --init-unet
    vae = toy_vae()
    unet = (load_trained_unet(cfg.init_unet) if cfg.init_unet and not resumes_unet
            else skip_temporal_convs(toy_unet()))
    if cfg.vae_from:
        vae.load_state_dict(AutoencoderKL.from_pretrained(cfg.vae_from, torch_dtype=torch.float32).state_dict())
    vae, unet = vae.to(cfg.device), unet.to(cfg.device)
    ema = EMA(unet, cfg.ema_decay)
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    unet_opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    if state is not None:
        vae.load_state_dict(state["vae"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if resumes_unet:
            unet.load_state_dict(state["unet"])
            unet_opt.load_state_dict(state["optimizer"])
            ema = EMA(unet, cfg.ema_decay)  # a checkpoint without EMA starts it from the trained weights
            if "ema" in state:
                ema.load_state_dict(state["ema"])
        else:
            vae_opt.load_state_dict(state["optimizer"])
    elif log.exists():
        log.unlink()
    if cfg.init_vae and state is None:
        trained = AutoencoderKL.from_pretrained(cfg.init_vae, torch_dtype=torch.float32)
        vae.load_state_dict(trained.state_dict())  # into toy_vae(): checks the architecture, keeps no path
        vae.register_to_config(scaling_factor=trained.config.scaling_factor)
        vae.eval()
        unet_start = 0
    elif state is None or state["stage"] == "vae":
        train_vae(vae, cfg, rng, state["step"] if state else 0, vae_opt, log, checkpoint)
        vae.register_to_config(scaling_factor=latent_scale(vae, rng))
        unet_start = 0
    else:
        vae.eval()
        vae.register_to_config(scaling_factor=state["latent_scale"])
        unet_start = state["step"]
    done = train_unet(unet, vae, cfg, rng, unet_start, unet_opt, log, checkpoint, ema)
    unet_checkpoint(checkpoint, done, vae, unet, ema, unet_opt, rng)
    cfg.export.mkdir(parents=True, exist_ok=True)
    exported = ema.copy_to(unet) if cfg.ema_decay > 0 else unet
    full_unet(exported.cpu()).half().save_pretrained(cfg.export / "unet")
    vae.cpu().half().save_pretrained(cfg.export / "vae")
    print(f"trained {done} UNet steps; weights ({'EMA' if cfg.ema_decay > 0 else 'raw'}) in {cfg.export}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="checkpoints and loss.csv")
    parser.add_argument("--export", type=Path, default=WEIGHTS_DIR, help="where the float16 weights go")
    parser.add_argument("--resume", action="store_true", help="continue from workdir/checkpoint.pt")
    for name, field in TrainConfig.__dataclass_fields__.items():
        if name not in ("workdir", "export"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default)
    args = vars(parser.parse_args())
    resume = args.pop("resume")
    torch.set_flush_denormal(True)
    run(TrainConfig(**args), resume=resume)


if __name__ == "__main__":
    main()
