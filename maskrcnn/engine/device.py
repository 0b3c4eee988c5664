"""Device and precision choices shared by training and inference: ``"auto"`` picks CUDA when present."""

from __future__ import annotations

from typing import Optional, Union

import torch

_DTYPES = {
    None: None,
    "float32": None,
    "fp32": None,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def cpu_name() -> str:
    """The processor's model name (for benchmark tables: figures are comparable only on one machine)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``"auto"`` (or None) -> cuda when available, else cpu; anything else is passed to torch.device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype (None: plain float32). float16 autocast is only offered on CUDA."""
    if isinstance(dtype, torch.dtype):
        dtype = {torch.float32: None, torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(
            dtype, str(dtype)
        )
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} not supported (float32, bfloat16, float16)")
    dt = _DTYPES[dtype]
    if dt is torch.float16 and device.type != "cuda":
        raise ValueError("dtype float16 needs a CUDA device; use bfloat16 on CPU")
    return dt
