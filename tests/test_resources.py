"""The memory estimate made before a generation: the documented rule, and the largest size it says fits."""

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
    from vstar.backbones import list_backbones

    for spec in list_backbones():
        d = spec.defaults
        assert d.parameters > 0 and d.activation_bytes > 0, spec.name
        need = estimate_memory(d, d.num_frames, d.height, d.width, batch=2, dtype=torch.float16, on_cpu=False)
        assert need.device_bytes < 24 * GIB, spec.name

