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


def test_results_name_their_class_readably_and_coco_readers_take_them(tmp_path):
    """predictions.json carried only category_id: a user had to open the checkpoint to learn that 5 is
    "Ölfleck". The name is in each record, written as itself (UTF-8), and the file still scores."""
    import json

    from pycocotools.coco import COCO

    from maskrcnn.engine.evaluator import CocoEvaluator, evaluate_results_file
    from maskrcnn.io_utils import atomic_write_json

    names = ["__background__", "Ölfleck", "rust_spot"]
    masks = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks[0, 2:10, 2:10] = True
    masks[1, 12:18, 4:16] = True
    det = {"boxes": torch.tensor([[2.0, 2.0, 10.0, 10.0], [4.0, 12.0, 16.0, 18.0]]),
           "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 2]), "masks": masks}
    res = detections_to_coco_results(det, image_id=1, label_to_category_id={1: 5, 2: 9}, class_names=names)
    assert [(r["category_id"], r["category_name"]) for r in res] == [(5, "Ölfleck"), (9, "rust_spot")]
    with pytest.raises(ValueError, match=r"labels \[3\] have no name"):
        detections_to_coco_results({**det, "labels": torch.tensor([1, 3])}, image_id=1, class_names=names)
    out = tmp_path / "predictions.json"
    atomic_write_json(out, res)
    assert '"category_name": "Ölfleck"' in out.read_text(encoding="utf-8")  # not \u00d6lfleck

    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}],
          "categories": [{"id": 5, "name": "Ölfleck"}, {"id": 9, "name": "rust_spot"}],
          "annotations": [{"id": i + 1, "image_id": 1, "category_id": r["category_id"], "bbox": r["bbox"],
                           "area": r["bbox"][2] * r["bbox"][3], "iscrowd": 0,
                           "segmentation": r["segmentation"]} for i, r in enumerate(res)]}
    gt_path = tmp_path / "gt.json"
    atomic_write_json(gt_path, gt)
    coco = COCO(str(gt_path))
    assert len(coco.loadRes(str(out)).anns) == 2  # pycocotools takes the extra key
    metrics = evaluate_results_file(gt_path, out)  # maskrcnn eval --results
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and metrics["segm"]["AP"] == pytest.approx(100.0)
    evaluator = CocoEvaluator(str(gt_path), label_to_category_id={1: 5, 2: 9}, class_names=names)
    evaluator.process(1, det)  # eval's predictions.json: the evaluator's results
    assert [r["category_name"] for r in evaluator.results()] == ["Ölfleck", "rust_spot"]
    assert evaluator.evaluate()["segm"]["AP"] == pytest.approx(100.0)
    assert json.loads(out.read_text(encoding="utf-8"))[0]["category_name"] == "Ölfleck"
