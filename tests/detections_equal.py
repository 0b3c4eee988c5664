"""Shared by the tests of prediction and evaluation: one assertion for options that must not change a
result when they have nothing to do (a tile as large as the image, one augmentation at the model's own
size), and ground truth made from a model's own detections (so that an untrained model scores AP > 0)."""

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


def boxes_near_detections(det: dict, image_id: int, *, first: int, category_of=int, next_id: int = 1) -> list:
    """COCO annotations of every other one of ``det``'s first ``first`` boxes, moved by a pixel or two,
    as rectangles; ``category_of`` maps a label to its category id."""
    annotations = []
    for k in range(0, min(first, len(det["boxes"])), 2):
        x1, y1, x2, y2 = (float(v) for v in det["boxes"][k])
        x1, y1 = min(x1 + 2, x2 - 3), y1 + 1
        annotations.append({
            "id": next_id + len(annotations), "image_id": image_id,
            "category_id": category_of(int(det["labels"][k])),
            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
        })  # fmt: skip
    return annotations
