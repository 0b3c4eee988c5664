"""A small test picture: three bright squares on a dark ground, the same for every caller."""

import numpy as np


def three_blocks_image() -> np.ndarray:
    """(48, 64, 3) uint8: three squares of random bright colours at seeded places on a ground of 30."""
    rng = np.random.default_rng(0)
    img = np.full((48, 64, 3), 30, np.uint8)
    for _ in range(3):
        y, x, s = rng.integers(0, 30), rng.integers(0, 40), rng.integers(8, 18)
        img[y : y + s, x : x + s] = rng.integers(100, 255, 3)
    return img
