"""The processes of a batch started by ``torchrun`` or ``accelerate launch`` (one per device): which one this
is, its device, waiting for the others and gathering their rows. Without a launcher: one process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Processes:
    """``rank`` of ``world`` processes; ``device`` is this process's own (None: the one ``--device`` picks)."""

    rank: int = 0
    world: int = 1
    device: Any = None

    @property
    def main(self) -> bool:
        """Whether this process writes what the whole batch writes once (the summary and the gallery)."""
        return self.rank == 0

    def owns(self, index: int) -> bool:
        """Whether this process makes the item of global ``index``: those whose index is its rank modulo the
        number of processes (the same items however often a batch is resumed)."""
        return index % self.world == self.rank

    def gather(self, rows: list[Any]) -> list[Any]:
        """The ``rows`` of every process, on every process (all must call it)."""
        if self.world == 1:
            return list(rows)
        from accelerate.utils import gather_object

        return list(gather_object(list(rows)))


def launched() -> bool:
    """Whether a launcher (torchrun, accelerate launch) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def processes(device: str | None) -> Processes:
    """This process among those a launcher started: accelerate's ``PartialState`` sets up the process group
    (NCCL on GPUs, gloo on the CPU) and gives each process its own GPU (``cuda:LOCAL_RANK``); ``--device cpu``
    or no GPU runs every process on the CPU. Without a launcher: ``Processes()``."""
    if not launched():
        return Processes()
    import torch
    from accelerate import PartialState

    if device is not None and device not in ("cpu", "cuda"):
        raise ValueError(f"--device {device} names one device, but each of the {os.environ['WORLD_SIZE']} processes "
                         "takes its own GPU (cuda:LOCAL_RANK): give --device cuda or cpu, or drop --device")
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    own = torch.device("cpu") if state.device.type == "cpu" else state.device
    return Processes(state.process_index, state.num_processes, own)
