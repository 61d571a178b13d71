"""The memory estimate made before a generation: the documented rule, and the largest size it says fits."""

import contextlib

import pytest
import torch

import vstar.resources as resources
from vstar.backbones.base import BackboneDefaults
from vstar.resources import check_memory, estimate_memory

DEFAULTS = BackboneDefaults(height=64, width=64, parameters=1000, activation_bytes=100.0)
GIB = 2**30


def test_the_estimate_follows_the_documented_rule():
    cpu = estimate_memory(DEFAULTS, 8, 64, 64, batch=2, dtype=torch.float32, upscale=2)
    pixels = 8 * 64 * 64
    video = pixels * 3 * 4 + pixels * 4 * 3
    assert cpu.host_bytes == 1000 * 4 + 100 * 2 * pixels + video and cpu.device_bytes == 0
    gpu = estimate_memory(DEFAULTS, 8, 64, 64, batch=2, dtype=torch.float16, upscale=2, on_cpu=False)
    assert gpu.device_bytes == 1000 * 2 + 100 / 2 * 2 * pixels and gpu.host_bytes == video


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_advised_frame_count_fits_and_one_more_does_not(monkeypatch, device):
    monkeypatch.setattr(resources, "free_memory", lambda d: ((3 * GIB, 2 * GIB) if device == "cuda" else (None, 8 * GIB)))
    big = BackboneDefaults(height=512, width=512, parameters=10**9, activation_bytes=1000.0)
    kwargs = {"batch": 2, "dtype": torch.float16, "device": torch.device(device)}
    with pytest.raises(ValueError, match=r"at most (\d+) frames fit at 512x512.*--no-memory-check") as err:
        check_memory(big, "big", 10_000, 512, 512, **kwargs)
    fits = int(err.value.args[0].split("at most ")[1].split()[0])
    check_memory(big, "big", fits, 512, 512, **kwargs)
    with pytest.raises(ValueError):
        check_memory(big, "big", fits + 1, 512, 512, **kwargs)


def test_unknown_footprints_and_mps_are_not_checked():
    check_memory(BackboneDefaults(height=64, width=64), "x", 10**9, 64, 64, batch=2, dtype=torch.float32,
                 device=torch.device("cpu"))
    check_memory(DEFAULTS, "x", 10**9, 64, 64, batch=2, dtype=torch.float32, device=torch.device("mps"))


def test_every_registered_model_has_a_footprint_and_its_defaults_fit_a_24_gib_gpu():
    """At their defaults in half precision the UNet models fit 24 GiB; every model does with --offload
    sequential, and 48 GiB with --offload model (one part, e.g. one 14B Wan expert, at a time)."""
    from vstar.backbones import list_backbones

    for spec in list_backbones():
        d = spec.defaults
        assert d.parameters > 0 and d.activation_bytes > 0, spec.name
        need = {mode: estimate_memory(d, d.num_frames, d.height, d.width, batch=2, dtype=torch.float16,
                                      on_cpu=False, offload=mode).device_bytes for mode in (None, "model", "sequential")}
        assert need["sequential"] < 24 * GIB and need["model"] < 48 * GIB, spec.name
        if spec.family != "wan":
            assert need[None] < 24 * GIB, spec.name



def test_chunked_activations_follow_the_documented_rule():
    whole = estimate_memory(DEFAULTS, 64, 64, 64, batch=2, dtype=torch.float32)
    chunked = estimate_memory(DEFAULTS, 64, 64, 64, batch=2, dtype=torch.float32, frame_chunk=8)
    images = resources.CHUNK_RESIDENT * 128 + (1 - resources.CHUNK_RESIDENT) * 8
    assert whole.host_bytes - chunked.host_bytes == pytest.approx(100 * 64 * 64 * (128 - images), abs=1)
    assert estimate_memory(DEFAULTS, 64, 64, 64, batch=2, dtype=torch.float32, frame_chunk=128) == whole
    loaded = estimate_memory(DEFAULTS, 64, 64, 64, batch=2, dtype=torch.float32, weights_loaded=True)
    assert whole.host_bytes - loaded.host_bytes == 1000 * 4


@pytest.mark.parametrize("device,frames,cap", [("cpu", 40, 7.0), ("cuda", 8, 2.9)])
def test_the_chosen_frame_chunk_is_the_largest_that_fits(monkeypatch, device, frames, cap):
    monkeypatch.setattr(resources, "free_memory", lambda d: ((3 * GIB, 2 * GIB) if device == "cuda" else (None, 8 * GIB)))
    big = BackboneDefaults(height=512, width=512, parameters=10**9, activation_bytes=1000.0)
    kwargs = {"batch": 2, "dtype": torch.float16, "device": torch.device(device)}
    assert resources.choose_frame_chunk(big, 2, 512, 512, **kwargs) is None  # the whole forward fits
    with pytest.raises(ValueError, match="--frame-chunk auto .* makes this size fit"):
        check_memory(big, "big", frames, 512, 512, **kwargs)
    chunk = resources.choose_frame_chunk(big, frames, 512, 512, **kwargs)
    assert 1 <= chunk < 2 * frames
    check_memory(big, "big", frames, 512, 512, frame_chunk=chunk, **kwargs)
    with pytest.raises(ValueError, match=r"at most \d+ frames fit at 512x512 in chunks of"):
        check_memory(big, "big", frames, 512, 512, frame_chunk=chunk + 1, **kwargs)
    smaller = resources.choose_frame_chunk(big, frames, 512, 512, max_memory=cap, **kwargs)
    assert smaller < chunk
    with pytest.raises(ValueError, match="not even 2 frames fit"):  # nothing fits: chunk 1, and the check says so
        assert resources.choose_frame_chunk(big, frames, 512, 512, max_memory=0.1, **kwargs) == 1
        check_memory(big, "big", frames, 512, 512, frame_chunk=1, max_memory=0.1, **kwargs)
    with pytest.raises(ValueError, match="max_memory must be a positive"):
        check_memory(big, "big", 2, 512, 512, max_memory=-1, **kwargs)


@pytest.mark.parametrize("model", ["unet3d", "motion_unet", "toy"])
def test_the_chunked_estimate_stays_above_the_measured_peak(request, model):
    """Peak allocator memory of one CFG-sized forward in the pipeline's chunks, relative to the whole forward,
    is at most what the estimate's rule says (``activation_images`` over ``batch x frames``)."""
    from vstar.chunking import chunked_execution
    from vstar.toy.model import load_toy

    unet = load_toy().unet if model == "toy" else request.getfixturevalue(model)
    frames, chunk, size = 16, 4, 16 if model == "unet3d" else 8
    latents = torch.randn(2, 4, frames, size, size)
    text = torch.randn(2 * frames if model == "motion_unet" else 2, 3, unet.config.cross_attention_dim)

    def peak(chunk: int | None) -> int:
        def forward() -> None:
            with torch.no_grad(), contextlib.ExitStack() as stack:
                if chunk is not None:  # the pipeline's slices: as many latent pixels per temporal call
                    stack.enter_context(chunked_execution(unet, frames=chunk, sequences=chunk * size * size // frames))
                unet(latents, 500, encoder_hidden_states=text)

        return resources.peak_allocated(forward)

    measured = peak(chunk) / peak(None)
    assert measured <= resources.activation_images(frames, 2, chunk) / (2 * frames), measured
