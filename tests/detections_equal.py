"""One assertion shared by the tests of prediction options that must not change a result when they have
nothing to do (a tile as large as the image, one augmentation at the model's own size)."""

import torch


def assert_identical_detections(expected: list, got: list) -> None:
    """Each image's detections in ``got`` are those of ``expected``, key for key, bit for bit (and
    there are some, so that the comparison means something)."""
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert a.keys() == b.keys() and a["boxes"].shape[0] > 0
        for key in a:
            if torch.is_tensor(a[key]):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key
