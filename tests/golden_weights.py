"""Deterministic weights by the golden recipe (tests/data/golden/README: "The weight recipe").

The golden files were recorded from torchvision models whose i-th state-dict entry (in torchvision's
key order) was filled from ``numpy.random.RandomState(i)``; this rebuilds such a state dict from the
recorded key order and shapes alone.
"""

from __future__ import annotations

import numpy as np
import torch

TRANSPOSED = ("conv5_mask", "deconv", "score_lowres")  # (in, out, kh, kw) layouts


def recipe_tensor(i: int, key: str, shape) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(0, dtype=torch.int64)
    z = np.random.RandomState(i).standard_normal(shape).astype(np.float32)
    if leaf == "running_var":
        v = 1 + np.float32(0.1) * np.abs(z)
    elif leaf == "running_mean":
        v = np.float32(0.1) * z
    elif len(shape) >= 2:
        if any(t in key for t in TRANSPOSED):
            fan_in = shape[0] * int(np.prod(shape[2:]))
        else:
            fan_in = int(np.prod(shape[1:]))
        v = z / np.sqrt(np.float32(fan_in))
    elif leaf == "weight":
        v = 1 + np.float32(0.1) * z
    else:
        v = np.float32(0.1) * z
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))


def recipe_state_dict(keys_and_shapes) -> dict:
    """``[(key, shape), ...]`` in torchvision's order -> {key: tensor}."""
    return {key: recipe_tensor(i, key, shape) for i, (key, shape, *_) in enumerate(keys_and_shapes)}
