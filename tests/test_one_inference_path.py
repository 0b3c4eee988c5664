"""One path from image to result: ``predict``, ``eval``, ``benchmark`` and validation during training
(``make_evaluate_fn``) give identical detections and AP on the same checkpoint and images, and the
validation leaves the model being trained unchanged."""

import argparse
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from detections_equal import boxes_near_detections  # tests/ is on the path
from PIL import Image
from tiny_model import TINY

from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.modeling.mask_rcnn import build_model

NAMES = ["__background__", "cat", "dog"]
LABEL_TO_CATEGORY = {1: 5, 2: 9}
SIZES = {"a.png": (50, 70), "b.png": (60, 40), "c.png": (64, 80)}  # file -> (H, W)

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny_model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
        return build_model(cfg), cfg


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint, an image folder and a COCO ground truth on which the model scores neither 0 nor 100."""
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.predictor import Predictor

    root = tmp_path_factory.mktemp("one_path")
    model, cfg = _tiny_model()
    ckpt = root / "tiny.pth"
    save_checkpoint(ckpt, model_state=model.state_dict(), config=cfg, class_names=NAMES,
                    label_to_category_id=LABEL_TO_CATEGORY)  # fmt: skip
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
    # ground truth: some of the model's own boxes, moved by a few pixels
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    gt = {"images": [], "annotations": [], "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]}
    for image_id, (name, (h, w)) in enumerate(SIZES.items(), start=11):
        gt["images"].append({"id": image_id, "file_name": name, "height": h, "width": w})
        det = predictor([images / name])[0]
        gt["annotations"] += boxes_near_detections(det, image_id, first=6, next_id=len(gt["annotations"]) + 1,
                                                   category_of=LABEL_TO_CATEGORY.__getitem__)
    gt_path = root / "gt.json"
    gt_path.write_text(json.dumps(gt))
    return {"root": root, "ckpt": ckpt, "images": images, "gt": gt_path, "cfg": cfg,
            "file_of_id": {im["id"]: im["file_name"] for im in gt["images"]}}  # fmt: skip


def _by_file(results, file_of) -> dict:
    """file name -> that image's results (as JSON gives them back) without image_id / file_name."""
    out = {}
    for r in json.loads(json.dumps(results)):
        name = file_of(r)
        out.setdefault(name, []).append({k: v for k, v in r.items() if k not in ("image_id", "file_name")})
    return out


def _plain(metrics: dict) -> dict:
    return json.loads(json.dumps(metrics), parse_constant=lambda c: None if c == "NaN" else c)


@pytest.mark.slow
def test_predict_eval_benchmark_and_validation_agree(setup, monkeypatch, capsys):
    from maskrcnn.commands import benchmark
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine import inference
    from maskrcnn.ops.fused_conv import ConvAdd
    from maskrcnn.ops.winograd import WinogradConv2d

    root, ckpt, images = setup["root"], str(setup["ckpt"]), str(setup["images"])
    file_of_id = setup["file_of_id"]

    # maskrcnn predict
    assert main(["predict", "--weights", ckpt, images, "--output", str(root / "pred"), "--device", "cpu",
                 "--no-overlays"]) == 0  # fmt: skip
    predicted = json.loads((root / "pred" / "predictions.json").read_text())
    by_predict = _by_file(predicted, lambda r: r["file_name"].replace("\\", "/").rsplit("/", 1)[-1])
    assert set(by_predict) == set(SIZES) and all(len(v) == 10 for v in by_predict.values())

    # maskrcnn eval (with the error analysis, which is the same as that of its predictions.json; every
    # detection analysed: the random model's scores are low)
    assert main(["eval", "--weights", ckpt, "--json", str(setup["gt"]), "--images", images,
                 "--output", str(root / "eval"), "--device", "cpu",
                 "--analysis", "--analysis-score", "0"]) == 0
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    counts = {k: metrics[k].pop("per_category_counts") for k in ("bbox", "segm")}  # eval's, for its table
    assert (metrics.pop("images_evaluated"), metrics.pop("images_skipped"),
            metrics.pop("images_skipped_by_reason")) == (3, [], {})  # eval's record
    assert (metrics.pop("weights"), metrics.pop("json")) == (str(ckpt), str(setup["gt"]))  # its provenance
    assert metrics.pop("predictions") == str(root / "eval" / "predictions.json")  # what it wrote
    written = (root / "eval" / "predictions.json").read_bytes()  # and its fingerprint, to know it again
    assert metrics.pop("predictions_file") == {"size": len(written),
                                               "sha256": hashlib.sha256(written).hexdigest()}
    assert {"analysis.json", "confusion.csv"} <= set(metrics.pop("artefacts"))
    assert sum(counts["segm"]["detections"].values()) == len(predicted) == 30
    assert main(["eval", "--results", str(root / "eval" / "predictions.json"), "--json", str(setup["gt"]),
                 "--output", str(root / "eval_results"), "--analysis", "--analysis-score", "0"]) == 0
    analysis = json.loads((root / "eval" / "analysis.json").read_text())
    assert analysis == json.loads((root / "eval_results" / "analysis.json").read_text())
    totals = analysis["bbox"]["totals"]
    assert totals["ground_truth"] == len(json.loads(setup["gt"].read_text())["annotations"])
    assert totals["detections"] == 30 and 0 < totals["tp"] < 30
    assert 0 < metrics["bbox"]["AP"] < 100 and 0 < metrics["segm"]["AP"] < 100
    evaluated = json.loads((root / "eval" / "predictions.json").read_text())
    assert _by_file(evaluated, lambda r: file_of_id[r["image_id"]]) == by_predict
    printed = capsys.readouterr().out
    assert f"{metrics['bbox']['AP']:8.2f}" in printed  # the one AP table

    # maskrcnn benchmark on the same files
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    args = parser.parse_args(["--weights", ckpt, "--device", "cpu", images])
    predictor = benchmark.build_predictor(args)
    files = sorted(SIZES)
    dets = []
    timing = benchmark.time_inference(predictor, benchmark.load_images(args),
                                      on_detections=lambda _images, window: dets.extend(window))
    assert timing.seconds > 0 and timing.images == len(dets) == len(files)
    l2c = predictor.label_to_category_id
    timed = [r for i, det in enumerate(dets)
             for r in detections_to_coco_results(det, image_id=i, label_to_category_id=l2c,
                                                 class_names=predictor.class_names)]
    assert _by_file(timed, lambda r: files[r["image_id"]]) == by_predict

    # validation during training, on a model in training mode with the checkpoint's weights
    model, cfg = _tiny_model()
    cfg.data.class_names = tuple(NAMES)  # as build_training sets them from the training set
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    real_build = inference.build_evaluator
    monkeypatch.setattr(inference, "build_evaluator",
                        lambda p, d, **kw: seen.append(real_build(p, d, **kw)) or seen[-1])
    dataset = CocoDataset(json_path=setup["gt"], image_dir=images)
    assert dataset.label_to_category_id == LABEL_TO_CATEGORY  # as the training set's (same categories)
    results = inference.make_evaluate_fn(cfg, dataset, setup["gt"], device="cpu")(model)
    assert _plain(results) == metrics
    assert _by_file(seen[0].results(), lambda r: file_of_id[r["image_id"]]) == by_predict
    # ... and the model being trained is as it was
    assert model.training and all(p.requires_grad for p in model.backbone.res5.parameters())
    assert not any(isinstance(m, (ConvAdd, WinogradConv2d)) for m in model.modules())
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_validation_as_built_model_agrees_up_to_rounding(setup):
    """``optimise=False`` runs the model being trained itself (no copy): same AP here, model unchanged."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import make_evaluate_fn

    model, cfg = _tiny_model()
    model.train()
    dataset = CocoDataset(json_path=setup["gt"], image_dir=str(setup["images"]))
    plain = make_evaluate_fn(cfg, dataset, setup["gt"], device="cpu", optimise=False)(model)
    optimised = make_evaluate_fn(cfg, dataset, setup["gt"], device="cpu")(model)
    assert model.training
    for iou_type in ("bbox", "segm"):
        assert not math.isnan(plain[iou_type]["AP"])
        assert plain[iou_type]["AP"] == pytest.approx(optimised[iou_type]["AP"], abs=1.0)


def test_validation_leaves_out_bad_images_with_a_warning(setup, tmp_path):
    """A validation image that cannot be read or is not its recorded size costs a warning naming it,
    not the training run; the others are scored."""
    import shutil

    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import make_evaluate_fn

    images = tmp_path / "images"
    shutil.copytree(setup["images"], images)
    Image.new("RGB", (33, 21)).save(images / "b.png")  # the record says 60x40
    (images / "c.png").write_bytes((images / "c.png").read_bytes()[:40])  # truncated
    model, cfg = _tiny_model()
    dataset = CocoDataset(json_path=setup["gt"], image_dir=images)
    with pytest.warns(UserWarning) as caught:
        results = make_evaluate_fn(cfg, dataset, setup["gt"], device="cpu")(model)
    messages = [str(w.message) for w in caught if str(w.message).startswith("validation:")]
    assert len(messages) == 2
    assert any("b.png" in m and "21x33" in m for m in messages)
    assert any("c.png" in m for m in messages)
    for iou_type in ("bbox", "segm"):
        assert not math.isnan(results[iou_type]["AP"])
