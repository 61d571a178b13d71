"""The pipeline's attention replacement (paper figure 5): the maps it records, its removal, its conflicts."""

import numpy as np
import pytest
import torch
from analysis_models import seeded_generation

from vstar.analysis.replacement import ReplacementProcessor


def run(pipe, **kwargs):
    return seeded_generation(pipe, frames=6, seed=2, **({"tar": None} | kwargs))


@pytest.mark.parametrize("mode,want", [("identity", torch.eye(6)), ("uniform", torch.full((6, 6), 1 / 6))])
def test_replaced_levels_use_the_fixed_map_and_others_do_not(pipe, mode, want):
    out = run(pipe, replace_attention=f"{mode}:64,16", record_attention=True)
    rec = out.attention
    for name, level in rec.levels.items():
        if level in (0, 2):
            torch.testing.assert_close(rec.maps[name], want, atol=1e-6, rtol=0)
        else:
            assert not torch.allclose(rec.maps[name], want, atol=1e-3)
    assert out.config.replace_attention == f"{mode}:64,16"
    processors = [m.processor for m in pipe.backbone.unet.modules() if hasattr(m, "processor")]
    assert not any(isinstance(p, ReplacementProcessor) for p in processors)


def test_replacement_changes_the_video_and_combines_with_tar_elsewhere(pipe):
    plain = run(pipe).frames
    identity = run(pipe, replace_attention="identity:32").frames
    both = run(pipe, replace_attention="identity:32", tar="64D1").frames
    assert np.abs(identity - plain).max() > 1e-4 and np.abs(both - identity).max() > 1e-4
    with pytest.raises(ValueError, match="both set the attention"):
        run(pipe, replace_attention="identity:64", tar="64D1")
    with pytest.raises(ValueError, match="cannot parse attention replacement"):
        run(pipe, replace_attention="identity")
