"""Chunked execution: equal to the whole forward (per-frame text and TAR included), slices of the asked size,
everything restored, bad input refused."""

import pytest
import torch
from diffusers.models.resnet import ResnetBlock2D

import vstar.pipeline
import vstar.resources as resources
from vstar import VSTARPipeline
from vstar.backbones import load_backbone
from vstar.chunking import chunkable_layers, chunked_execution, runs_in_chunks
from vstar.conditioning import cfg_context
from vstar.tar import apply_tar, remove_tar


@pytest.fixture(scope="module", params=["tiny-modelscope", "tiny-videocrafter2", "tiny-animatediff"])
def backbone(request):
    """In float64: in float32 the tiny random models amplify the rounding of smaller matrix products to 1e-4."""
    return load_backbone(request.param).double()


def inputs(backbone, num_frames=6):
    torch.manual_seed(0)
    d = backbone.defaults
    latents = torch.randn(backbone.latent_shape(2, num_frames, d.height, d.width), dtype=torch.float64)
    # a different text for every frame and branch, so that a slice meeting the wrong frames' text shows
    width = backbone.encode_text(["x"]).shape[-1]
    context = cfg_context(*torch.randn(2, num_frames, 7, width, dtype=torch.float64))
    return latents, context


@pytest.mark.parametrize("frames,sequences", [(5, 7), (2, 1), (4, None), (None, 50), (100, 1000)])
def test_chunked_forward_equals_the_whole_forward(backbone, frames, sequences):
    latents, context = inputs(backbone)
    fps = backbone.defaults.cond_fps
    apply_tar(backbone, "64D1_32D8")
    try:
        with torch.no_grad():
            whole = backbone.model_output(latents, 500, context, fps=fps)
            with chunked_execution(backbone, frames=frames, sequences=sequences):
                chunked = backbone.model_output(latents, 500, context, fps=fps)
    finally:
        remove_tar(backbone)
    torch.testing.assert_close(chunked, whole, atol=1e-10, rtol=1e-10)


def test_layers_see_slices_of_the_asked_size(backbone, monkeypatch):
    latents, context = inputs(backbone)
    spatial, blocks, convs = chunkable_layers(backbone)
    assert spatial and blocks and (convs or backbone.model_id == "tiny-animatediff")  # AnimateDiff: no temporal convs
    seen = {"spatial": set(), "temporal": set(), "conv": set()}
    resnet = next(m for m in spatial if isinstance(m, ResnetBlock2D))
    hooks = [resnet.conv1.register_forward_pre_hook(lambda m, a: seen["spatial"].add(a[0].shape[0]))]
    hooks += [block.attn1.to_q.register_forward_pre_hook(lambda m, a: seen["temporal"].add(a[0].shape[0]))
              for block in blocks]
    conv3d = torch.nn.functional.conv3d

    def spy(x, *args, **kwargs):  # sequences of a (B, C, F, H, W) slice, and its width
        seen["conv"].add((x[:, 0, 0].numel(), x.shape[4]))
        return conv3d(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv3d", spy)
    try:
        with torch.no_grad(), chunked_execution(backbone, frames=5, sequences=7):
            backbone.model_output(latents, 500, context, fps=backbone.defaults.cond_fps)
    finally:
        for hook in hooks:
            hook.remove()
    assert max(seen["spatial"]) <= 5 and max(seen["temporal"]) <= 7
    assert all(sequences <= max(7, 2 * width) for sequences, width in seen["conv"])  # at least one row of pixels
    assert bool(seen["conv"]) == bool(convs)
    assert not any(runs_in_chunks(m) for m in spatial + blocks + convs)  # restored


def test_chunks_stack_with_diffusers_hooks(backbone):
    """A hook another library put on a layer (here one counting calls) keeps working inside and after."""
    from diffusers.hooks import HookRegistry, ModelHook

    class CountCalls(ModelHook):
        calls = 0

        def pre_forward(self, module, *args, **kwargs):
            CountCalls.calls += 1
            return args, kwargs

    resnet = chunkable_layers(backbone)[0][0]
    HookRegistry.check_if_exists_or_initialize(resnet).register_hook(CountCalls(), "count")
    torch.manual_seed(0)
    latents = torch.randn(backbone.latent_shape(1, 6, 64, 64), dtype=torch.float64)
    text = backbone.encode_text(["a red circle"]).double()
    context = text.expand(6, -1, -1)
    try:
        with torch.no_grad():
            whole = backbone.model_output(latents, 500, context, fps=backbone.defaults.cond_fps)
            with chunked_execution(backbone, frames=2, sequences=8):
                chunked = backbone.model_output(latents, 500, context, fps=backbone.defaults.cond_fps)
            again = backbone.model_output(latents, 500, context, fps=backbone.defaults.cond_fps)
        assert CountCalls.calls == 1 + 3 + 1  # the earlier hook runs beneath the slices: once per 2 of 6 images
        torch.testing.assert_close(chunked, whole, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(again, whole, atol=0, rtol=0)
        assert resnet._diffusers_hook.get_hook("count") is not None and not runs_in_chunks(resnet)
    finally:
        resnet._diffusers_hook.remove_hook("count", recurse=False)


def test_bad_chunk_sizes_and_nesting_are_refused(backbone):
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="positive integer or None"):
            with chunked_execution(backbone, frames=bad):
                pass
    with chunked_execution(backbone, frames=4):
        with pytest.raises(ValueError, match="already runs in chunks"):
            with chunked_execution(backbone, frames=2):
                pass
    with pytest.raises(ValueError, match="no spatial layers"):
        with chunked_execution(torch.nn.Linear(2, 2), frames=2):
            pass


def test_the_pipeline_runs_in_chunks_on_request(monkeypatch):
    pipe = VSTARPipeline.from_pretrained("tiny-modelscope", device="cpu", dtype=torch.float64)
    args = {"prompt": "a red circle turning into a blue square", "num_frames": 8, "num_inference_steps": 3,
            "progress": False, "output_type": "latent"}
    whole = pipe(**args, generator=torch.Generator().manual_seed(0)).frames
    chunked = pipe(**args, generator=torch.Generator().manual_seed(0), frame_chunk=3).frames
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)

    # frame_chunk="auto" under a memory cap between the chunked and the whole estimate: the chosen chunk
    d, used = pipe.backbone.defaults, []
    estimate = {"batch": 2, "dtype": torch.float64, "weights_loaded": True}
    need = [resources.estimate_memory(d, 8, d.height, d.width, frame_chunk=c, **estimate).host_bytes for c in (1, None)]
    cap = sum(need) / 2 / 2**30
    monkeypatch.setattr(vstar.pipeline, "chunked_execution", lambda model, frames, sequences: used.append(frames)
                        or chunked_execution(model, frames=frames, sequences=sequences))
    auto = pipe(**args, generator=torch.Generator().manual_seed(0), frame_chunk="auto", max_memory=cap).frames
    torch.testing.assert_close(auto, whole, atol=1e-6, rtol=1e-6)
    assert used == [resources.choose_frame_chunk(d, 8, d.height, d.width, device=torch.device("cpu"),
                                                 max_memory=cap, **estimate)] and 1 <= used[0] < 16
    pipe(**args, frame_chunk="auto")  # all is free: the whole forward
    assert len(used) == 1
    spatial, blocks, convs = chunkable_layers(pipe.backbone)
    assert not any(runs_in_chunks(m) for m in spatial + blocks + convs)
