"""``python -m vstar``: the ``vstar`` command (e.g. ``torchrun --nproc_per_node 8 -m vstar batch ...``)."""

from vstar.cli import main

main()
