"""The INT8 qconfig mapping this library uses for a quantized engine, and whether two engines' mappings
quantize alike.

PyTorch's default mapping for an engine observes weights per output channel, and for transposed
convolutions per tensor, except for "onednn", whose default gives them per-channel weight observers that
``prepare_fx`` refuses ("Per channel weight observer is not supported yet for ConvTranspose{n}d"). Here
every engine's transposed convolutions get per-tensor weights (the engine's own activation observer), as
PyTorch's x86 and fbgemm mappings already do, so a mask head can be calibrated under any engine.

``same_quantization(a, b)`` compares what two engines' mappings would compute from the same observed
statistics (observer kind, dtype, scheme, integer range, reduce_range) for every module kind the model's
parts hold: an INT8 file calibrated under one loads under the other only when they agree.
"""

from __future__ import annotations

import functools
import warnings

import torch.nn.functional as F
from torch import nn

__all__ = ["int8_qconfig_mapping", "same_quantization"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, F.conv_transpose1d,
               F.conv_transpose2d, F.conv_transpose3d)


def int8_qconfig_mapping(engine: str):
    """``engine``'s default post-training mapping, its transposed convolutions with per-tensor weights."""
    from torch.ao.quantization import (
        QConfig,
        default_weight_observer,
        get_default_qconfig,
        get_default_qconfig_mapping,
    )

    mapping = get_default_qconfig_mapping(engine)
    transposed = QConfig(activation=get_default_qconfig(engine).activation, weight=default_weight_observer)
    for kind in _TRANSPOSED:
        mapping = mapping.set_object_type(kind, transposed)
    return mapping


# the observer attributes that decide the scale and zero point computed from the same statistics
_QPARAM_FIELDS = ("dtype", "qscheme", "reduce_range", "quant_min", "quant_max", "ch_axis", "eps", "bins")


def _signature(qconfig) -> tuple:
    if qconfig is None:
        return (None,)
    out = []
    for make in (qconfig.activation, qconfig.weight):
        with warnings.catch_warnings():  # torch's "reduce_range will be deprecated", for the x86 one
            warnings.simplefilter("ignore", UserWarning)
            obs = make()
        fields = tuple((f, repr(getattr(obs, f, None))) for f in _QPARAM_FIELDS)
        out.append((type(obs).__name__, fields))
    return tuple(out)


@functools.cache
def same_quantization(a: str, b: str) -> bool:
    """Whether ``int8_qconfig_mapping(a)`` and ``(b)`` give every module kind the same observers (so the
    same quantization parameters from the same calibration): e.g. "x86" and "fbgemm"."""
    if a == b:
        return True
    ma, mb = int8_qconfig_mapping(a), int8_qconfig_mapping(b)
    if _signature(ma.global_qconfig) != _signature(mb.global_qconfig):
        return False
    kinds = set(ma.object_type_qconfigs) | set(mb.object_type_qconfigs)
    default_a, default_b = ma.global_qconfig, mb.global_qconfig
    return all(_signature(ma.object_type_qconfigs.get(k, default_a))
               == _signature(mb.object_type_qconfigs.get(k, default_b)) for k in kinds)
