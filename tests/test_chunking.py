"""Chunked execution: equal to the whole forward (per-frame text and TAR included), slices of the asked size,
everything restored, bad input refused."""

import pytest
import torch
from diffusers.hooks import HookRegistry
from diffusers.models.resnet import ResnetBlock2D

import vstar.pipeline
import vstar.resources as resources
from vstar import VSTARPipeline
from vstar.backbones import load_backbone
from vstar.chunking import (
    FROZEN_NORM_HOOK,
    FrozenGroupNormHook,
    RowChunkedTransformerHook,
    chunkable_layers,
    chunked_execution,
    group_statistics,
    runs_in_chunks,
)
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
    spatial, blocks, convs, transformers = chunkable_layers(backbone)
    assert spatial and blocks and (convs or backbone.model_id == "tiny-animatediff")  # AnimateDiff: no temporal convs
    assert len(transformers) == len(blocks)  # one block per temporal transformer in the tiny models
    seen = {"spatial": set(), "temporal": set(), "conv": set(), "transformer": set()}
    resnet = next(m for m in spatial if isinstance(m, ResnetBlock2D))
    hooks = [resnet.conv1.register_forward_pre_hook(lambda m, a: seen["spatial"].add(a[0].shape[0]))]
    hooks += [block.attn1.to_q.register_forward_pre_hook(lambda m, a: seen["temporal"].add(a[0].shape[0]))
              for block in blocks]
    # the group norm's input (B, C, F, h, W): sequences of the slice, and its width
    hooks += [m.norm.register_forward_pre_hook(lambda m, a: seen["transformer"].add((a[0][:, 0, 0].numel(), a[0].shape[4])))
              for m in transformers]
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
    for kind in ("conv", "transformer"):  # whole rows of pixels, at least one
        assert all(sequences <= max(7, 2 * width) for sequences, width in seen[kind])
    assert bool(seen["conv"]) == bool(convs) and seen["transformer"]
    assert not any(runs_in_chunks(m) for m in spatial + blocks + convs + transformers)  # restored
    registries = [getattr(m.norm, "_diffusers_hook", None) for m in transformers]
    assert any(registries) and not any(r.get_hook(FROZEN_NORM_HOOK) for r in registries if r is not None)


def test_chunks_stack_with_diffusers_hooks(backbone):
    """A hook another library put on a layer (here one counting calls) keeps working inside and after."""
    from diffusers.hooks import HookRegistry, ModelHook

    class CountCalls(ModelHook):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def pre_forward(self, module, *args, **kwargs):
            self.calls += 1
            return args, kwargs

    layers = chunkable_layers(backbone)
    resnet, transformer = layers.spatial[0], layers.transformers[0]  # the first: at the full 8x8 latent
    counters = {"resnet": CountCalls(), "transformer": CountCalls()}
    for module, name in ((resnet, "resnet"), (transformer, "transformer")):
        HookRegistry.check_if_exists_or_initialize(module).register_hook(counters[name], "count")
    assert transformer in chunkable_layers(backbone).transformers  # found behind the other hook's wrapper
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
        # the earlier hook runs beneath the slices: once per 2 of 6 images, once per row of 8 pixels
        assert counters["resnet"].calls == 1 + 3 + 1 and counters["transformer"].calls == 1 + 8 + 1
        torch.testing.assert_close(chunked, whole, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(again, whole, atol=0, rtol=0)
        for module in (resnet, transformer):
            assert module._diffusers_hook.get_hook("count") is not None and not runs_in_chunks(module)
    finally:
        for module in (resnet, transformer):
            module._diffusers_hook.remove_hook("count", recurse=False)


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
    assert not any(runs_in_chunks(m) for layers in chunkable_layers(pipe.backbone) for m in layers)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_group_statistics_normalise_slices_like_the_group_norm_of_the_whole(dtype):
    """Statistics of frame batches (B*F, C, H, W) gathered from slices of rows, then each slice normalised
    with them, equal one GroupNorm over (B, C, F, H, W) (inputs far from zero mean: two passes)."""
    torch.manual_seed(0)
    videos, frames, channels, height, width = 2, 5, 8, 7, 3
    x = torch.randn(videos * frames, channels, height, width, dtype=torch.float64) * 3 + 50
    norm = torch.nn.GroupNorm(4, channels, eps=1e-6).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    as_video = x.view(videos, frames, channels, height, width).permute(0, 2, 1, 3, 4)  # what the norm sees
    with torch.no_grad():
        want = norm(as_video)
        mean, inv_std = group_statistics(x.to(dtype), frames, 4, norm.eps, rows=3)
        frozen = FrozenGroupNormHook(mean, inv_std, frames)
        pieces = [frozen.new_forward(norm.to(dtype), as_video.to(dtype)[..., start:start + 3, :])
                  for start in range(0, height, 3)]
    got = torch.cat(pieces, dim=3)
    assert got.dtype == dtype and mean.dtype == torch.promote_types(dtype, torch.float32)
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-4, torch.float16: 2e-2}[dtype]
    torch.testing.assert_close(got.double(), want, atol=tolerance, rtol=tolerance)


def test_a_group_norm_over_other_shapes_than_videos_is_refused_not_miscomputed():
    """A module that looks like a temporal transformer but normalises each frame on its own would get the
    whole video's statistics: refused."""
    norm = torch.nn.GroupNorm(2, 4)
    mean, inv_std = torch.zeros(2, 2), torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="cannot run it in slices of rows"):
        FrozenGroupNormHook(mean, inv_std, num_frames=3).new_forward(norm, torch.randn(6, 4, 2, 5))  # (B*F, C, h, W)
    with pytest.raises(RuntimeError, match="frames=3"):
        FrozenGroupNormHook(mean, inv_std, num_frames=3).new_forward(norm, torch.randn(2, 4, 5, 2, 5))


def test_a_temporal_transformer_in_row_slices_holds_its_output_and_one_slice():
    """Whole, diffusers' TransformerTemporalModel holds full-size intermediates (normalised input, frame-major
    copy, projections, its block's); in slices of rows, its output and one slice's intermediates."""
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    torch.manual_seed(0)
    model = TransformerTemporalModel(num_attention_heads=2, attention_head_dim=16, in_channels=32).eval()
    frames = 64
    x = torch.randn(2 * frames, 32, 8, 8)
    tensor = x.numel() * 4
    with torch.no_grad():
        whole = model(x, num_frames=frames).sample
        whole_peak = resources.peak_allocated(lambda: model(x, num_frames=frames))
        registry = HookRegistry.check_if_exists_or_initialize(model)
        registry.register_hook(RowChunkedTransformerHook(sequences=16), "rows")  # 1 row of 8 pixels of 2 videos
        sliced = model(x, num_frames=frames).sample
        sliced_peak = resources.peak_allocated(lambda: model(x, num_frames=frames))
        registry.remove_hook("rows", recurse=False)
    torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=1e-5)
    # whole: about 20 tensors' worth; in slices: the output and about one slice's share (16 of 128 sequences)
    assert whole_peak > 10 * tensor and sliced_peak < tensor + 1.25 * whole_peak * 16 / 128
