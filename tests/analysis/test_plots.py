"""Figures of the analysis: a transformer's many blocks shown as a few ranges, UNet levels as they were."""

import torch

from vstar.analysis.plots import MAX_FIGURE_ROWS, attention_figure, block_ranges


def test_many_blocks_become_at_most_eight_ranges_that_average_their_blocks():
    by_block = {b: torch.full((3, 3), float(b)) for b in range(30)}
    ranges = block_ranges(by_block)
    assert len(ranges) == MAX_FIGURE_ROWS and list(ranges)[0] == "b0-3" and list(ranges)[-1] == "b27-29"
    torch.testing.assert_close(ranges["b0-3"], torch.full((3, 3), 1.5))
    covered = [b for name in ranges for b in range(int(name[1:].split("-")[0]), int(name.split("-")[-1]) + 1)]
    assert covered == list(range(30))  # every block in exactly one range, in order
    assert list(block_ranges({0: torch.eye(2), 1: torch.eye(2)})) == ["b0", "b1"]


def test_rows_follow_levels_or_block_ranges_in_order():
    unet = attention_figure({"real": {1: torch.eye(3), -1: torch.eye(3), 0: torch.eye(3)}})
    assert [ax.get_ylabel() for ax in unet.axes[:-1]] == ["level init", "level 64", "level 32"]
    blocks = attention_figure({"real": block_ranges({b: torch.eye(3) for b in range(12)})}, unit="block")
    labels = [ax.get_ylabel() for ax in blocks.axes if ax.get_ylabel().startswith("block")]
    assert labels[0] == "blocks b0-1" and labels[-1] == "block b11" and len(labels) == MAX_FIGURE_ROWS
