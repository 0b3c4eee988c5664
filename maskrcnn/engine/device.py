"""Device and precision choices shared by training and inference: ``"auto"`` picks CUDA when present.

bfloat16 on a CPU pays off only where the processor computes it natively (x86: AVX512-BF16 or AMX;
ARM: the BF16 extension, e.g. Apple M2 and later, Graviton 3, Neoverse V1/N2). Elsewhere oneDNN
emulates it with float32 arithmetic plus conversions, slower than float32 itself, so ``resolve_dtype``
warns (``EmulatedBF16Warning``) and still honours the request.
"""

from __future__ import annotations

import platform
import warnings
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


class EmulatedBF16Warning(UserWarning):
    """bfloat16 was asked for on a CPU that emulates it (slower than float32)."""


def _cpuinfo_flags() -> set:
    """Lower-case feature flags of /proc/cpuinfo (x86 "flags", ARM "Features"); empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    return set(line.split(":", 1)[1].lower().split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (True / False, never raises).

    x86: AVX512-BF16 or AMX, asked of PyTorch's own CPU feature probe (``torch.cpu``, any OS), then of
    /proc/cpuinfo. ARM: oneDNN's bf16 check, which on ARM reads the BF16 extension (on x86 the same
    check only asks for AVX512 and is true on CPUs that emulate bf16, so it is not used there), then
    /proc/cpuinfo's ``bf16`` feature."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686", "x86"):
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            fn = getattr(torch.cpu, probe, None)
            try:
                if fn is not None and fn():
                    return True
            except (RuntimeError, AttributeError):
                pass
        return bool({"avx512_bf16", "amx_bf16"} & _cpuinfo_flags())
    if machine in ("arm64", "aarch64") or machine.startswith("armv8"):
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return True
        except (RuntimeError, AttributeError):
            pass
        return "bf16" in _cpuinfo_flags()
    return False


def resolve_device(device: Union[str, torch.device, None], *, what: str = "device") -> torch.device:
    """``"auto"`` (or None) -> cuda when available, else cpu; anything else is passed to torch.device.
    ``what`` names the value in messages: "device" (an argument, from Python or a command's --device
    alike), or where else it came from ("the config's device")."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:  # torch's message lists its twenty device types, naming neither key nor choices
        raise ValueError(f"{what} {str(device)!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {str(device)!r} requested but CUDA is not available")
    return dev


def named_dtype(dtype) -> Optional[torch.dtype]:
    """The autocast dtype ``dtype`` names (None: plain float32, also "fp32" and ``torch.float32``), from
    the name alone: no device check and no warning, so a caller can judge it before ``resolve_dtype``
    speaks. One that is not supported (float64, a typo) is refused here, as ``resolve_dtype`` refuses it."""
    if isinstance(dtype, torch.dtype):
        dtype = {torch.float32: None, torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(
            dtype, str(dtype)
        )
    if dtype not in _DTYPES:
        int8 = str(dtype).lower().removeprefix("torch.") in ("int8", "qint8")
        hint = ("; INT8 comes from a quantized file: `maskrcnn quantize` (or maskrcnn.engine.int8."
                "quantize_predictor), then load that file") if int8 else ""
        raise ValueError(f"dtype {dtype!r} not supported (float32, bfloat16, float16){hint}")
    return _DTYPES[dtype]


def resolve_dtype(dtype, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype (None: plain float32). float16 autocast is only offered on CUDA."""
    dt = named_dtype(dtype)
    if dt is torch.float16 and device.type != "cuda":
        raise ValueError("dtype float16 needs a CUDA device; use bfloat16 on CPU")
    if dt is torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            f"bfloat16 on this CPU ({cpu_name()}) is emulated, not native (no AVX512-BF16, AMX or ARM "
            "BF16): expect it to run slower than float32, with bfloat16's rounding; leave --dtype at "
            "float32 here",
            EmulatedBF16Warning,
            stacklevel=2,
        )
    return dt
