"""MMDetection ``--out`` bitmaps are encoded by ``data.mask_codec``'s encoder (no second RLE encoder): the
same COCO counts as pycocotools' own encoding of 0/1 bitmaps, whatever their dtype, shape and layout."""

import numpy as np
import pycocotools.mask as mask_utils
import torch

from maskrcnn.engine.mmdet_results import _rle


def _pycocotools(mask: np.ndarray) -> dict:
    """What mmdet_results wrote before: pycocotools on the bitmap as uint8, in Fortran order."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _bitmaps():
    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (1, 9), (7, 1), (13, 17), (32, 24)):
        yield rng.random((h, w)) < 0.5  # noise: many short runs
        yield np.zeros((h, w), bool)
        yield np.ones((h, w), bool)
        blob = np.zeros((h, w), np.uint8)
        blob[h // 3: h - h // 4, w // 4: w - w // 3] = 1  # one rectangle, 0/1 uint8
        yield blob
    yield (rng.random((24, 32)) < 0.3).T  # a transposed (Fortran-ordered) view


def test_bitmaps_encode_as_pycocotools_does():
    for mask in _bitmaps():
        want = _pycocotools(mask)
        assert _rle(mask, "m") == want, mask.shape
        assert _rle(torch.from_numpy(np.ascontiguousarray(mask)), "m") == want, mask.shape


def test_bitmaps_of_other_values_are_on_where_nonzero():
    """pycocotools encodes a uint8 bitmap's runs by value, so a 255 after a 1 started a new run and the
    decoded mask lost pixels: any non-zero value is on now."""
    mask = np.array([[0, 1, 255], [255, 1, 0]], np.uint8)
    got = mask_utils.decode({"size": [2, 3], "counts": _rle(mask, "m")["counts"].encode("ascii")})
    assert np.array_equal(got, mask > 0)
