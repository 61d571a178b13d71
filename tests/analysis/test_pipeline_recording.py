"""Recording during a generation: one map per step and layer, TAR's band seen, the frames unchanged."""

import numpy as np
import torch
from analysis_models import seeded_generation

from vstar import TARConfig
from vstar.analysis import diagonal_mass
from vstar.analysis.recording import RecordingProcessor
from vstar.tar import TARProcessor


def run(pipe, **kwargs):
    return seeded_generation(pipe, steps=3, **kwargs)


def test_recording_changes_nothing_and_keeps_one_map_per_step(pipe):
    plain = run(pipe)
    recorded = run(pipe, record_attention=True)
    np.testing.assert_array_equal(recorded.frames, plain.frames)
    assert plain.attention is None
    rec = recorded.attention
    assert rec.branch == "cond"  # guidance is on by default
    assert set(rec.levels.values()) == {-1, 0, 1, 2, 3}
    for name, steps in rec.per_step.items():
        assert len(steps) == 3 and steps[0].shape == (8, 8)
        torch.testing.assert_close(rec.maps[name].sum(-1), torch.ones(8), atol=1e-5, rtol=0)
    processors = [m.processor for m in pipe.backbone.unet.modules() if hasattr(m, "processor")]
    assert not any(isinstance(p, RecordingProcessor | TARProcessor) for p in processors)


def test_the_recorder_sees_tar_on_its_levels_and_steps(pipe):
    off = run(pipe, tar=None, record_attention=True).attention
    on = run(pipe, tar=TARConfig(sigmas={0: 1.0}, step_fraction=0.34), record_attention=True).attention
    for name, level in on.levels.items():
        first_on, first_off = on.per_step[name][0], off.per_step[name][0]  # same latents at step 0
        if level == 0:
            assert diagonal_mass(first_on) > diagonal_mass(first_off) + 1e-3
        elif level == -1:  # before any regularized layer: the same input, the same map
            torch.testing.assert_close(first_on, first_off, atol=1e-6, rtol=0)


def test_branch_can_be_named_and_is_all_without_guidance(pipe):
    assert run(pipe, guidance_scale=1.0, record_attention=True).attention.branch == "all"
    assert run(pipe, record_attention="uncond").attention.branch == "uncond"
