"""CPU offloading (vstar.offload): the same frames as without it, weights waiting off the device, and the
memory estimate counting what each mode leaves on the GPU."""

import pytest
import torch

from vstar import VSTARPipeline
from vstar.backbones import get_spec, load_backbone
from vstar.offload import enable_offload
from vstar.resources import GIB, estimate_memory


def generate(backbone):
    return VSTARPipeline(backbone)("a red circle", synopsis=["a red circle", "a blue square"],
                                   num_frames=backbone.defaults.temporal_compression * 2 + 1, num_inference_steps=3,
                                   progress=False, generator=torch.Generator().manual_seed(0)).frames


@pytest.mark.parametrize("name", ["tiny-wan2.2-a14b", "tiny-modelscope"])
@pytest.mark.parametrize("mode,weights_wait_on", [("model", "cpu"), ("sequential", "meta")])
def test_offloading_gives_the_same_frames(name, mode, weights_wait_on):
    reference = generate(load_backbone(name, device="cpu"))
    backbone = load_backbone(name, device="cpu")
    enable_offload(backbone, mode, "cpu")  # the device is the CPU here; on a GPU the parts move to it
    assert backbone.device == torch.device("cpu")
    assert {next(part.parameters()).device.type for part in backbone.offload_parts()} == {weights_wait_on}
    torch.testing.assert_close(generate(backbone), reference, rtol=0, atol=0)


def test_a_two_expert_model_offloads_each_expert():
    backbone = load_backbone("tiny-wan2.2-a14b", device="cpu")
    parts = backbone.offload_parts()
    assert parts == [backbone.text_encoder, backbone.transformer, backbone.transformer_2, backbone.vae]


def test_the_estimate_counts_what_each_mode_leaves_on_the_gpu():
    defaults = get_spec("wan2.2-t2v-a14b").defaults
    args = (defaults, 81, 480, 832)
    common = {"batch": 2, "dtype": torch.bfloat16, "on_cpu": False}
    whole = estimate_memory(*args, **common)
    model = estimate_memory(*args, offload="model", **common)
    sequential = estimate_memory(*args, offload="sequential", **common)
    weights = defaults.parameters * 2
    assert whole.device_bytes - model.device_bytes == weights - defaults.largest_part * 2  # one 14B expert
    assert model.device_bytes - sequential.device_bytes == defaults.largest_part * 2
    assert model.host_bytes - whole.host_bytes == weights == sequential.host_bytes - whole.host_bytes
    assert whole.device_bytes >= weights > model.device_bytes and sequential.device_bytes < GIB + (
        model.device_bytes - defaults.largest_part * 2)


def test_the_memory_check_says_when_offloading_makes_a_run_fit(monkeypatch):
    from vstar import resources

    defaults = get_spec("wan2.2-t2v-a14b").defaults
    monkeypatch.setattr(resources, "free_memory", lambda device: (40 * GIB, 256 * GIB))
    common = {"batch": 2, "dtype": torch.bfloat16, "device": torch.device("cuda")}
    with pytest.raises(ValueError, match="--offload model .* makes this size fit"):
        resources.check_memory(defaults, "wan2.2-t2v-a14b", 81, 480, 832, **common)
    resources.check_memory(defaults, "wan2.2-t2v-a14b", 81, 480, 832, offload="model", **common)
    monkeypatch.setattr(resources, "free_memory", lambda device: (20 * GIB, 256 * GIB))
    with pytest.raises(ValueError, match="--offload sequential .* makes this size fit"):
        resources.check_memory(defaults, "wan2.2-t2v-a14b", 81, 480, 832, offload="model", **common)
