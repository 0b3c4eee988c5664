"""detections_to_coco_results: xywh boxes, str RLE that decodes back, category mapping, keypoints."""

import pycocotools.mask as mask_utils
import pytest
import torch

from maskrcnn.data.coco_results import detections_to_coco_results


def test_results_round_trip():
    masks = torch.zeros(2, 12, 16, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 6:12, 0:4] = True
    det = {
        "boxes": torch.tensor([[3.0, 2.0, 9.0, 5.0], [0.0, 6.0, 4.0, 12.0]]),
        "scores": torch.tensor([0.9, 0.123456789]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
        "keypoints": torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3),
    }
    res = detections_to_coco_results(det, image_id=7, label_to_category_id={1: 18, 2: 44})
    assert [r["category_id"] for r in res] == [18, 44] and res[0]["image_id"] == 7
    assert res[0]["bbox"] == [3.0, 2.0, 6.0, 3.0] and res[1]["score"] == pytest.approx(0.123456789)
    assert isinstance(res[0]["segmentation"]["counts"], str) and res[0]["segmentation"]["size"] == [12, 16]
    decoded = mask_utils.decode(
        [{**r["segmentation"], "counts": r["segmentation"]["counts"].encode()} for r in res]
    )
    assert torch.equal(torch.from_numpy(decoded).permute(2, 0, 1).bool(), masks)
    assert len(res[1]["keypoints"]) == 51 and res[1]["keypoints"][0] == 51.0
    # with keypoint scores, the third value of each keypoint is its score (detectron2's results)
    scores = torch.linspace(-1.0, 5.0, 2 * 17).reshape(2, 17)
    scored = detections_to_coco_results({**det, "keypoint_scores": scores}, image_id=7,
                                        label_to_category_id={1: 18, 2: 44})
    assert scored[1]["keypoints"][:2] == [51.0, 52.0]
    assert scored[1]["keypoints"][2::3] == pytest.approx(scores[1].tolist(), abs=1e-3)
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        detections_to_coco_results(det, image_id=7, label_to_category_id={1: 18})
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    assert detections_to_coco_results(empty, image_id=1) == []
