"""Replacement maps: identity gives each frame its own value path, uniform the mean over frames."""

import pytest
import torch
from analysis_models import unet_inputs

from vstar import temporal_attention_layers
from vstar.analysis import replace_temporal_attention
from vstar.analysis.replacement import ReplacementProcessor, parse_replacement


def value_path(module, x, mode):
    """to_out(A @ to_v(x)) by hand, A = I or J/F (the temporal attention modules here have no residual)."""
    v = module.to_v(x)
    if mode == "uniform":
        v = v.mean(1, keepdim=True).expand_as(v)
    return module.to_out[1](module.to_out[0](v))


@pytest.mark.parametrize("mode", ["identity", "uniform"])
def test_outputs_are_the_value_path(sharp_unet, mode):
    layers = [lyr for lyr in temporal_attention_layers(sharp_unet) if lyr.level == 0]
    seen = []
    hooks = [lyr.module.register_forward_hook(lambda m, args, out: seen.append((m, args[0], out))) for lyr in layers]
    x, ctx = unet_inputs()
    with replace_temporal_attention(sharp_unet, mode, levels=[0]) as replacement, torch.no_grad():
        assert replacement.layers == [lyr.name for lyr in layers]
        sharp_unet(x, 400, encoder_hidden_states=ctx)
    for h in hooks:
        h.remove()
    assert len(seen) == len(layers)
    for module, inp, out in seen:
        assert not module.residual_connection
        with torch.no_grad():
            torch.testing.assert_close(out, value_path(module, inp, mode), atol=1e-6, rtol=0)
        if mode == "uniform":  # every frame gets the same output
            torch.testing.assert_close(out, out[:, :1].expand_as(out), atol=1e-6, rtol=0)


def test_removal_restores_the_model(sharp_unet):
    x, ctx = unet_inputs()
    before = dict(sharp_unet.attn_processors)
    with torch.no_grad():
        stock = sharp_unet(x, 400, encoder_hidden_states=ctx).sample
        replacement = replace_temporal_attention(sharp_unet, "identity")
        changed = sharp_unet(x, 400, encoder_hidden_states=ctx).sample
        replacement.remove()
        again = sharp_unet(x, 400, encoder_hidden_states=ctx).sample
    assert (changed - stock).abs().max() > 1e-3
    torch.testing.assert_close(again, stock, atol=0, rtol=0)
    assert dict(sharp_unet.attn_processors) == before


def test_parse_replacement():
    assert parse_replacement("identity:64,32") == ("identity", [0, 1])
    assert parse_replacement("uniform:16") == ("uniform", [2])
    assert parse_replacement("uniform:init,8") == ("uniform", [-1, 3])
    for bad in ("identity", "ones:64", "uniform:12", "identity:"):
        with pytest.raises(ValueError, match="identity"):
            parse_replacement(bad)


def test_bad_mode_is_named(sharp_unet):
    with pytest.raises(ValueError, match="unknown attention replacement 'diagonal'"):
        replace_temporal_attention(sharp_unet, "diagonal")
    with pytest.raises(ValueError, match="unknown attention replacement"):
        ReplacementProcessor("ones")
