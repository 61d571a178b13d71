"""Band scores against sums written out by hand."""

import pytest
import torch

from vstar.analysis import band_score, diagonal_mass
from vstar.tar import regularization_matrix


@pytest.mark.parametrize("frames", [1, 2, 5, 16])
def test_identity_and_uniform(frames):
    assert float(band_score(torch.eye(frames))) == 0
    uniform = torch.full((frames, frames), 1 / frames)
    assert float(band_score(uniform)) == pytest.approx((frames**2 - 1) / (3 * frames))
    assert float(diagonal_mass(torch.eye(frames))) == 1
    assert float(diagonal_mass(uniform)) == pytest.approx(1 / frames)


def test_against_a_loop_and_batched():
    torch.manual_seed(0)
    maps = torch.softmax(torch.randn(3, 7, 7), -1)
    want = [sum(float(m[i, j]) * abs(i - j) for i in range(7) for j in range(7)) / 7 for m in maps]
    assert band_score(maps).tolist() == pytest.approx(want)
    band = regularization_matrix(7, 1.0)
    assert float(band_score(band / band.sum(-1, keepdim=True))) < 1


def test_not_square():
    with pytest.raises(ValueError, match=r"\(\.\.\., F, F\)"):
        band_score(torch.ones(3, 4))
