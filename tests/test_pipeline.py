"""The pipeline end to end on tiny offline models: shapes, seeds, TAR gating, per-frame text, errors."""

import numpy as np
import pytest
import torch

from vstar import TARConfig, VSTARPipeline
from vstar.tar import TARProcessor


@pytest.fixture(scope="module")
def pipe():
    return VSTARPipeline.from_pretrained("tiny-modelscope", device="cpu")


def run(pipe, **kwargs):
    args = {"prompt": "a red circle turning into a blue square", "num_frames": 8, "num_inference_steps": 3,
            "height": 64, "width": 64, "progress": False, "generator": torch.Generator().manual_seed(0)}
    return pipe(**(args | kwargs))


def test_output_shapes_and_range(pipe):
    out = run(pipe, synopsis=["a red circle", "a blue square"])
    assert out.frames.shape == (1, 8, 64, 64, 3) and out.frames.dtype == np.float32
    assert 0 <= out.frames.min() and out.frames.max() <= 1
    assert out.states == ["a red circle", "a blue square"] and out.keyframes == [0, 7]
    assert out.settings["tar"] == "64D1" and out.settings["num_frames"] == 8
    pt = run(pipe, output_type="pt", num_videos=2)
    assert pt.frames.shape == (2, 8, 3, 64, 64)
    latent = run(pipe, output_type="latent")
    assert latent.frames.shape == (1, pipe.backbone.latent_channels, 8, 64 // pipe.backbone.vae_scale_factor,
                                   64 // pipe.backbone.vae_scale_factor)


def test_same_seed_same_frames_other_seed_other_frames(pipe):
    a, b = run(pipe).frames, run(pipe).frames
    np.testing.assert_array_equal(a, b)
    c = run(pipe, generator=torch.Generator().manual_seed(1)).frames
    assert np.abs(a - c).max() > 1e-3


def test_tar_acts_only_on_the_early_steps_and_is_removed(pipe):
    seen = []

    def spy(pipeline, step, t, tensors):
        procs = [m.processor for m in pipeline.backbone.unet.modules() if isinstance(getattr(m, "processor", None), TARProcessor)]
        seen.append((step, bool(procs) and procs[0].state.active))
        return None

    latents = torch.randn(1, pipe.backbone.latent_channels, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    plain = run(pipe, tar=None, latents=latents, output_type="latent").frames
    regularized = run(pipe, tar=TARConfig(step_fraction=0.5), latents=latents, output_type="latent", num_inference_steps=4,
                      callback_on_step_end=spy).frames
    # the callback runs after each step; TAR was active for steps 0 and 1 of 4
    assert [active for _, active in seen] == [True, True, False, False]
    assert not any(isinstance(m.processor, TARProcessor) for m in pipe.backbone.unet.modules() if hasattr(m, "processor"))
    assert (plain - run(pipe, tar=None, latents=latents, output_type="latent").frames).abs().max() == 0
    assert regularized.shape == plain.shape


def test_tar_changes_the_video(pipe):
    latents = torch.randn(1, pipe.backbone.latent_channels, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    off = run(pipe, tar=None, latents=latents, output_type="latent").frames
    on = run(pipe, tar="64D1", latents=latents, output_type="latent").frames
    assert (on - off).abs().max() > 1e-4


def test_equal_synopsis_states_equal_the_plain_prompt(pipe):
    """Per-frame conditioning with identical states is the stock single-prompt path."""
    single = run(pipe, prompt="a red circle", output_type="latent").frames
    repeated = run(pipe, synopsis=["a red circle", "a red circle", "a red circle"], output_type="latent").frames
    torch.testing.assert_close(repeated, single, atol=1e-5, rtol=0)
    different = run(pipe, synopsis=["a red circle", "a blue square"], output_type="latent").frames
    assert (different - single).abs().max() > 1e-4


def test_callback_can_replace_latents(pipe):
    out = run(pipe, output_type="latent", callback_on_step_end=lambda p, i, t, d: {"latents": d["latents"] * 0})
    assert out.frames.abs().max() == 0


@pytest.mark.parametrize("kwargs,message", [
    ({"prompt": "  "}, "prompt is empty"),
    ({"prompt": None}, "prompt is empty"),
    ({"synopsis": []}, "non-empty list"),
    ({"synopsis": "a cat"}, "non-empty list"),
    ({"synopsis": ["a cat", ""]}, "non-empty list"),
    ({"num_frames": 1}, "num_frames must be >= 2"),
    ({"num_inference_steps": 0}, "num_inference_steps must be >= 1"),
    ({"height": 60}, "height must be a positive multiple of"),
    ({"tar": "64D0"}, "sigma must be > 0"),
    ({"tar": "99D1"}, "cannot parse TAR preset"),
    ({"synopsis": ["a", "b", "c"], "num_frames": 2}, "do not fit"),
    ({"output_type": "pil"}, "unknown output_type"),
    ({"latents": torch.zeros(1, 4, 3, 8, 8)}, "latents must be a tensor of shape"),
    ({"latents": torch.full((1, 4, 8, 8, 8), float("nan"))}, "latents hold NaN or infinite values"),
    ({"latents": torch.full((1, 4, 8, 8, 8), float("inf"))}, "latents hold NaN or infinite values"),
    ({"generator": 42}, "generator must be a torch.Generator"),
    ({"generator": [torch.Generator(), torch.Generator()]}, "a list of 2 generators for 1 video"),
    ({"interpolation": "cubic"}, "unknown interpolation mode"),
])
def test_bad_input_is_rejected_with_a_clear_message(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(pipe, **kwargs)


def test_animatediff_frame_limit():
    pipe = VSTARPipeline.from_pretrained("tiny-animatediff", device="cpu")
    out = run(pipe, num_frames=6, num_inference_steps=2)
    assert out.frames.shape[:2] == (1, 6)
    with pytest.raises(ValueError, match="at most 32 frames"):
        run(pipe, num_frames=33)


def test_without_tar_and_synopsis_it_is_the_stock_diffusers_pipeline(pipe):
    """Independent reference: diffusers' own text-to-video pipeline on the same components and noise."""
    import warnings

    from diffusers import TextToVideoSDPipeline

    b = pipe.backbone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stock pipeline is deprecated; it is only the reference here
        stock = TextToVideoSDPipeline(vae=b.vae, text_encoder=b.text_encoder, tokenizer=b.tokenizer, unet=b.unet,
                                      scheduler=b.scheduler)
    stock.set_progress_bar_config(disable=True)
    latents = torch.randn(1, b.latent_channels, 8, 8, 8, generator=torch.Generator().manual_seed(9))
    kwargs = {"num_frames": 8, "height": 64, "width": 64, "num_inference_steps": 3, "guidance_scale": 6.0}
    want = stock("a red circle", negative_prompt="blurry", latents=latents.clone(), output_type="latent",
                 **kwargs).frames
    got = run(pipe, prompt="a red circle", negative_prompt="blurry", tar=None, latents=latents.clone(),
              output_type="latent", **kwargs).frames
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=0)


def test_animatediff_matches_the_stock_diffusers_pipeline():
    import warnings

    from diffusers import AnimateDiffPipeline

    pipe = VSTARPipeline.from_pretrained("tiny-animatediff", device="cpu")
    b = pipe.backbone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stock = AnimateDiffPipeline(vae=b.vae, text_encoder=b.text_encoder, tokenizer=b.tokenizer, unet=b.unet,
                                    motion_adapter=None, scheduler=b.scheduler)
    stock.set_progress_bar_config(disable=True)
    latents = torch.randn(1, b.latent_channels, 6, 8, 8, generator=torch.Generator().manual_seed(9))
    kwargs = {"num_frames": 6, "height": 64, "width": 64, "num_inference_steps": 3, "guidance_scale": 6.0}
    want = stock("a red circle", negative_prompt="", latents=latents.clone(), output_type="latent", **kwargs).frames
    got = run(pipe, prompt="a red circle", tar=None, latents=latents.clone(), output_type="latent", **kwargs).frames
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=0)


def test_a_denoiser_that_returns_nan_is_an_error_not_a_black_video(pipe, monkeypatch):
    backbone = pipe.backbone
    monkeypatch.setattr(backbone, "model_output", lambda latents, *a, **k: torch.full_like(latents, float("nan")))
    with pytest.raises(RuntimeError, match="the denoiser produced NaN or infinite values"):
        run(pipe, num_inference_steps=1)
