"""CPU offloading of a backbone's parts, so that a model larger than the GPU still runs (``--offload``).

The two modes of diffusers, with accelerate's hooks on the parts a generation calls in turn
(:meth:`vstar.backbones.Backbone.offload_parts`: text encoder, denoiser(s), VAE):

- ``"model"`` (diffusers' ``enable_model_cpu_offload``): every part waits in CPU memory and moves whole to the
  GPU when it is called, sending the part before it back; the GPU holds the largest part plus activations.
  A Wan 2.2 A14B generation thus holds one 14B expert at a time.
- ``"sequential"`` (``enable_sequential_cpu_offload``): the weights stay in CPU memory and each layer's move to
  the GPU just for its own call: the least GPU memory, and much slower.

The parts' results are the same as without offloading; only where the weights wait changes. The memory
estimate made before a run (:mod:`vstar.resources`) counts what each mode leaves on the GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from vstar.backbones import Backbone

OffloadMode = Literal["model", "sequential"]
OFFLOAD_MODES: tuple[str, ...] = ("model", "sequential")


def check_offload(mode: str | None) -> None:
    """Raise a ValueError for an offload mode other than None, ``"model"`` or ``"sequential"``."""
    if mode is not None and mode not in OFFLOAD_MODES:
        raise ValueError(f"unknown offload mode {mode!r}; choose {' or '.join(OFFLOAD_MODES)}")


def enable_offload(backbone: Backbone, mode: OffloadMode, device: str | torch.device = "cuda") -> None:
    """Keep ``backbone``'s weights in CPU memory and run its parts on ``device`` (see the module docstring).

    ``backbone.device`` then reports ``device`` (the execution device), where the pipeline puts the latents.
    """
    from accelerate import cpu_offload, cpu_offload_with_hook

    check_offload(mode)
    backbone.to("cpu")
    hook = None
    for part in backbone.offload_parts():
        if mode == "model":
            _, hook = cpu_offload_with_hook(part, device, prev_module_hook=hook)
        else:
            cpu_offload(part, execution_device=torch.device(device))
