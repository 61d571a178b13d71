"""Device and dtype resolution."""

import pytest
import torch

from vstar.devices import resolve_device, resolve_dtype


def test_auto_device_and_dtype_on_this_machine():
    device = resolve_device(None)
    assert resolve_device("auto") == device
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16


@pytest.mark.parametrize("name,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("float16", torch.float16)])
def test_dtype_names(name, dtype):
    assert resolve_dtype(name, torch.device("cpu")) == dtype
    assert resolve_dtype(dtype, torch.device("cpu")) == dtype


def test_errors():
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("fp8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use --device cpu"):
            resolve_device("cuda")
