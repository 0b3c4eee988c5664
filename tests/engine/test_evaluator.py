"""CocoEvaluator / evaluate_results_file / ``maskrcnn eval --results``: perfect predictions score 100,
no predictions score 0, bad inputs raise errors naming what is wrong."""

import json

import numpy as np
import pytest
import torch

from maskrcnn import cli
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.data.mask_codec import mask_to_rle
from maskrcnn.engine.evaluator import CocoEvaluator, evaluate_results_file, format_metrics_table


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    """Three 64x80 images with squares, a triangle (polygon) and an RLE blob; categories 5 and 9."""
    from PIL import Image

    root = tmp_path_factory.mktemp("gt")
    (root / "img").mkdir()
    images, anns = [], []
    blob = torch.zeros(64, 80, dtype=torch.bool)
    blob[30:60, 40:75] = True
    blob[40:50, 50:60] = False
    for i in range(3):
        Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(root / "img" / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "height": 64, "width": 80})
        x = 4 + 6 * i
        anns.append(
            {"id": len(anns) + 1, "image_id": 10 + i, "category_id": 5, "iscrowd": 0,
             "segmentation": [[x, 4, x + 20, 4, x + 20, 24, x, 24]], "bbox": [x, 4, 20, 20], "area": 400.0}
        )  # fmt: skip
        anns.append(
            {"id": len(anns) + 1, "image_id": 10 + i, "category_id": 9, "iscrowd": 0,
             "segmentation": [[2, 60, 30, 60, 16, 34]], "bbox": [2, 34, 28, 26], "area": 364.0}
        )  # fmt: skip
        if i == 2:
            ys, xs = torch.nonzero(blob, as_tuple=True)
            anns.append(
                {"id": len(anns) + 1, "image_id": 12, "category_id": 9, "iscrowd": 0,
                 "segmentation": mask_to_rle(blob), "bbox": [40, 30, 35, 30], "area": float(blob.sum())}
            )  # fmt: skip
    cats = [{"id": 5, "name": "square"}, {"id": 9, "name": "thing"}]
    path = root / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, root / "img"


def _perfect(dataset, i):
    """Ground truth as detections (original coordinates, masks bool)."""
    _, t = dataset[i]
    return t["image_id"], {
        "boxes": t["boxes"],
        "scores": torch.linspace(0.9, 0.5, len(t["labels"])),
        "labels": t["labels"],
        "masks": t["masks"].bool(),
    }


def test_ground_truth_as_predictions_scores_100(gt):
    path, images = gt
    ds = CocoDataset(json_path=path, image_dir=images)
    ev = CocoEvaluator(path, label_to_category_id=ds.label_to_category_id)
    for i in range(len(ds)):
        ev.process(*_perfect(ds, i))
    metrics = ev.evaluate()
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(100.0)
        assert metrics[iou_type]["AP50"] == pytest.approx(100.0)
        assert metrics[iou_type]["per_category"] == {
            "square": pytest.approx(100.0),
            "thing": pytest.approx(100.0),
        }
        assert metrics[iou_type]["per_category_AP50"] == {"square": pytest.approx(100.0),
                                                          "thing": pytest.approx(100.0)}
    assert np.isnan(metrics["bbox"]["APl"])  # no large object in the ground truth: undefined, not 0
    assert {r["category_id"] for r in ev.results()} == {5, 9}
    assert "AP" in format_metrics_table(metrics) and "segm" in format_metrics_table(metrics)


def test_wrong_predictions_score_less_and_subset_is_not_penalised(gt):
    path, images = gt
    ds = CocoDataset(json_path=path, image_dir=images)
    ev = CocoEvaluator(ds.to_coco_dict(), label_to_category_id=ds.label_to_category_id)
    image_id, det = _perfect(ds, 0)
    det["boxes"] = det["boxes"] + torch.tensor([6.0, 0.0, 6.0, 0.0])  # shifted: IoU about 0.5
    ev.process(image_id, det)
    metrics = ev.evaluate()
    assert 0 < metrics["bbox"]["AP"] < 60  # only image 10 evaluated: the rest does not count as misses
    # the squares moved by 6 of 20 pixels (IoU 0.54): found at IoU 0.5, not at 0.75 and above
    assert metrics["bbox"]["per_category_AP50"]["square"] == pytest.approx(100.0)
    assert metrics["bbox"]["per_category"]["square"] == pytest.approx(10.0)
    assert metrics["segm"]["AP"] == pytest.approx(100.0)  # masks were left exact


def test_empty_results_give_zero_not_a_crash(gt):
    path, _ = gt
    ev = CocoEvaluator(path, iou_types=("bbox", "segm"))
    ev.process(
        10, {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    )
    metrics = ev.evaluate()
    assert metrics["bbox"]["AP"] == 0.0 and metrics["segm"]["per_category"] == {"square": 0.0, "thing": 0.0}


def test_results_file_and_validation_errors(gt, tmp_path):
    path, images = gt
    ds = CocoDataset(json_path=path, image_dir=images)
    results = []
    for i in range(len(ds)):
        image_id, det = _perfect(ds, i)
        results += detections_to_coco_results(
            det, image_id=image_id, label_to_category_id=ds.label_to_category_id
        )
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    metrics = evaluate_results_file(path, res)
    assert set(metrics) == {"bbox", "segm"} and metrics["segm"]["AP"] == pytest.approx(100.0)

    bad = [dict(r) for r in results]
    bad[0]["category_id"] = 99
    bad[1]["category_id"] = 77
    res.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"category ids 77, 99 are not in the ground truth"):
        evaluate_results_file(path, res)
    bad = [dict(r) for r in results]
    del bad[2]["score"]
    res.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"'score' missing in results 2"):
        evaluate_results_file(path, res)
    res.write_text(json.dumps([{**results[0], "image_id": 555}]))
    with pytest.raises(ValueError, match="image ids 555"):
        evaluate_results_file(path, res)
    gt_bad = json.loads(path.read_text())
    del gt_bad["annotations"][1]["category_id"]
    (tmp_path / "gt_bad.json").write_text(json.dumps(gt_bad))
    with pytest.raises(ValueError, match=r"annotation id 2 lacks category_id"):
        CocoEvaluator(tmp_path / "gt_bad.json")


def test_eval_command_with_results_file(gt, tmp_path, capsys):
    path, images = gt
    ds = CocoDataset(json_path=path, image_dir=images)
    results = []
    for i in range(len(ds)):
        image_id, det = _perfect(ds, i)
        results += detections_to_coco_results(
            det, image_id=image_id, label_to_category_id=ds.label_to_category_id
        )
    (tmp_path / "res.json").write_text(json.dumps(results))
    code = cli.main(
        [
            "eval",
            "--results",
            str(tmp_path / "res.json"),
            "--json",
            str(path),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "bbox" in out and "100.00" in out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["segm"]["AP"] == pytest.approx(100.0) and metrics["bbox"]["APl"] is None
    assert "metrics not saved" not in out
    # without --output the table is all: one line says so, and where metrics.json would go
    assert cli.main(["eval", "--results", str(tmp_path / "res.json"), "--json", str(path)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "metrics not saved (give --output DIR to write metrics.json)"
    results[0]["category_id"] = 42
    (tmp_path / "res.json").write_text(json.dumps(results))
    assert cli.main(["eval", "--results", str(tmp_path / "res.json"), "--json", str(path)]) == 1
    assert "category ids 42" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_command_with_a_checkpoint(tmp_path, capsys):
    """``maskrcnn eval --weights``: a small random model over two synthetic images writes both files."""
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.data.shapes import SHAPE_CLASSES, generate_shapes_dataset
    from maskrcnn.modeling.mask_rcnn import build_model

    paths = generate_shapes_dataset(tmp_path / "shapes", num_train=0, num_val=2, image_size=(64, 80), seed=1)
    cfg = apply_overrides(
        PRESETS["demo"](),
        {"model.num_classes": 6, "input.min_size_test": 64, "input.max_size_test": 96, "model.fpn_dim": 32},
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    names = ["__background__", *SHAPE_CLASSES]
    save_checkpoint(tmp_path / "m.pt", model_state=model.state_dict(), config=cfg, class_names=names)
    args = ["eval", "--weights", str(tmp_path / "m.pt"), "--json", paths["val_json"], "--images",
            paths["val_images"], "--output", str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    assert cli.main(args) == 0
    assert "segm" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) == {"bbox", "segm", "images_evaluated", "images_skipped", "images_skipped_by_reason",
                            "weights", "json", "predictions", "artefacts", "predictions_file"}
    # what a later eval --results checks before taking its sigmas; what the next eval may move to stale/
    assert metrics["predictions"] == str(tmp_path / "out" / "predictions.json")
    assert metrics["artefacts"] == []
    # what tells eval's own predictions.json from a foreign one, wherever the folder is copied
    assert metrics["predictions_file"]["size"] == (tmp_path / "out" / "predictions.json").stat().st_size
    assert 0.0 <= metrics["segm"]["AP"] <= 100.0 and metrics["images_evaluated"] == 2
    assert metrics["images_skipped"] == [] and metrics["images_skipped_by_reason"] == {}
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert isinstance(predictions, list)
    assert all(
        p["category_id"] in range(1, 6) and isinstance(p["segmentation"]["counts"], str) for p in predictions
    )


def test_keypoints_ground_truth_as_predictions(tmp_path):
    spread = [[x + 2 * k, y + k, 2] for k in range(17) for x, y in [(8, 10)]]  # 17 distinct points
    kps = [
        sum(spread, []),
        sum(([p[0] + 30, p[1], 2] if k < 8 else [0, 0, 0] for k, p in enumerate(spread)), []),
    ]
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [5 + 30 * i, 5, 30, 40], "area": 1200.0,
         "iscrowd": 0, "keypoints": kp}
        for i, kp in enumerate(kps)
    ]  # fmt: skip
    gt = {
        "images": [{"id": 1, "file_name": "x.png", "height": 64, "width": 80}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)]}],
    }
    ev = CocoEvaluator(gt, iou_types=("bbox", "keypoints"))
    boxes = torch.tensor(
        [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + 30, a["bbox"][1] + 40] for a in anns]
    ).float()
    keypoints = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float32).reshape(2, 17, 3)
    ev.process(1, {"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 1]),
                   "keypoints": keypoints})  # fmt: skip
    metrics = ev.evaluate()
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0) and "APs" not in metrics["keypoints"]
    assert metrics["bbox"]["AP"] == pytest.approx(100.0)


def test_keypoint_ap_uses_the_sigmas_of_the_keypoint_set():
    """One person, three keypoints each 3 px off: OKS = exp(-9 / (2 * area * (2 sigma)^2)). Names that
    are not COCO's get the documented default (0.0669: OKS 0.778, matched at IoU thresholds 0.50-0.75,
    AP 60); configured sigmas replace it (0.2: OKS 0.97, AP 100; 0.03: OKS 0.29, AP 0)."""
    from maskrcnn.data.keypoints import DEFAULT_KEYPOINT_SIGMA

    kp = [10, 10, 2, 30, 12, 2, 20, 40, 1]
    gt = {
        "images": [{"id": 1, "file_name": "x.png", "height": 64, "width": 80}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 30, 40], "area": 1000.0,
                         "iscrowd": 0, "keypoints": kp, "num_keypoints": 3}],
        "categories": [{"id": 1, "name": "thing", "keypoints": ["tip", "left_fin", "right_fin"]}],
    }
    shifted = torch.tensor(kp, dtype=torch.float32).reshape(1, 3, 3)
    shifted[0, :, 0] += 3.0
    det = {"boxes": torch.tensor([[5.0, 5.0, 35.0, 45.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([1]), "keypoints": shifted}

    def ap(sigmas):
        ev = CocoEvaluator(gt, iou_types=("keypoints",), keypoint_sigmas=sigmas)
        ev.process(1, det)
        return ev.evaluate()["keypoints"]["AP"]

    oks = np.exp(-9 / (2 * 1000 * (2 * DEFAULT_KEYPOINT_SIGMA) ** 2))
    assert 0.75 < oks < 0.8
    assert ap(None) == pytest.approx(60.0)
    assert ap([0.2] * 3) == pytest.approx(100.0)
    assert ap([0.03] * 3) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="data.keypoint_sigmas: expected 3"):
        ap([0.2] * 2)


def test_missing_area_is_the_masks_as_show_data_counts_it():
    """A ground truth without "area" (hand-made and some tools' exports) had it filled with the box's:
    a 40x40 triangle (800 pixels, COCO "small") was scored as "medium". detectron2 fills the mask's."""
    from maskrcnn.commands.show_data import _area
    from maskrcnn.engine.evaluator import load_ground_truth

    triangle = [[10, 10, 50, 10, 10, 50]]
    data = {"images": [{"id": 1, "file_name": "a.png", "height": 60, "width": 60}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40],
                             "segmentation": triangle},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 5]}]}  # fmt: skip
    areas = [a["area"] for a in load_ground_truth(data).dataset["annotations"]]
    assert areas[0] == _area({"segmentation": triangle, "bbox": [10, 10, 40, 40]}, 60, 60)
    assert 760 < areas[0] < 840 < 32**2 and areas[1] == 20.0  # no mask: the box's
