"""The printed ``--init`` report names the parts that start fresh or go unused as a whole (a Faster R-CNN
file has no mask head; a Keypoint R-CNN file's keypoint head has no place in a Mask R-CNN), not only
counts (``engine/init_weights.part_lines``)."""

import torch

from maskrcnn.engine.init_weights import plan_init, summary_lines


def _state(*keys):
    return {k: torch.full((2,), float(i)) for i, k in enumerate(keys)}


def _lines(model_keys, source_keys):
    plan = plan_init(_state(*model_keys), _state(*source_keys))
    report = {"source": {"spec": "w.pth"}, "loaded": plan["loaded"], "reinitialised": plan["reinitialised"],
              "unused": plan["unused"], "counters_ignored": plan["counters_ignored"],
              "class_specific": plan["class_specific"], "copied_classes": {}, "fresh_classes": [],
              "notes": []}
    return summary_lines(report, {})


SHARED = ("backbone.stem.conv1.weight", "rpn.conv.weight", "roi_heads.box_head.fc6.weight")
MASK = ("roi_heads.mask_head.fcn1.weight", "roi_heads.mask_head.fcn1.bias",
        "roi_heads.mask_head.predictor.bias")
KEYPOINT = ("roi_heads.keypoint_head.fcn1.weight", "roi_heads.keypoint_head.predictor.bias")


def test_a_faster_rcnn_file_says_the_mask_head_starts_fresh():
    lines = _lines(SHARED + MASK, SHARED)
    assert lines[1:] == ["  loaded 3 tensors, 3 start fresh, 0 of the weights' unused",
                         "  mask head starts fresh: the weights have none (3 tensors)"]


def test_a_keypoint_rcnn_file_says_its_keypoint_head_is_unused():
    lines = _lines(SHARED + MASK, SHARED + KEYPOINT)
    assert lines[1:] == ["  loaded 3 tensors, 3 start fresh, 2 of the weights' unused",
                         "  mask head starts fresh: the weights have none (3 tensors)",
                         "  keypoint head of the weights unused: this model has none (2 tensors)"]


def test_a_full_match_adds_no_part_line():
    assert _lines(SHARED + MASK, SHARED + MASK)[1:] == ["  loaded 6 tensors, 0 start fresh, "
                                                         "0 of the weights' unused"]


def test_batch_counters_the_model_has_no_place_for_are_counted_not_dropped_unsaid():
    # an ImageNet ResNet as torchvision writes it: a num_batches_tracked beside each BN, none in a frozen BN
    counters = ("backbone.stem.conv1.norm.num_batches_tracked",
                "backbone.res2.0.conv1.norm.num_batches_tracked")
    plan = plan_init(_state(*SHARED), dict(_state(*SHARED), **{k: torch.tensor(7) for k in counters}))
    assert plan["counters_ignored"] == list(counters) and plan["unused"] == []
    assert _lines(SHARED, SHARED + counters[:1])[1:] == [
        "  loaded 3 tensors, 0 start fresh, 0 of the weights' unused, 1 batch-norm counter "
        "(num_batches_tracked) ignored (the model's norms keep none)"]


def test_batch_counters_of_a_part_the_model_lacks_are_unused_with_it():
    counter = "roi_heads.mask_head.fcn1.norm.num_batches_tracked"  # a Mask R-CNN file, a Faster R-CNN model
    plan = plan_init(_state(*SHARED), dict(_state(*SHARED + MASK), **{counter: torch.tensor(7)}))
    assert plan["counters_ignored"] == [] and plan["unused"] == [*MASK, counter]


BOX_PREDICTOR = {"roi_heads.box_predictor.cls_score.weight": torch.zeros(2, 3),
                 "roi_heads.box_predictor.cls_score.bias": torch.zeros(2),
                 "roi_heads.box_predictor.bbox_pred.weight": torch.zeros(8, 3),
                 "roi_heads.box_predictor.bbox_pred.bias": torch.zeros(8)}


def test_class_rows_all_fresh_are_not_a_box_predictor_the_weights_lack():
    state = dict(_state(*SHARED), **BOX_PREDICTOR)
    plan = plan_init(state, dict(state), class_rows=[None, None])  # no class row matched
    assert sorted(plan["reinitialised"]) == sorted(BOX_PREDICTOR)
    report = {"source": {"spec": "w.pth"}, "loaded": plan["loaded"], "reinitialised": plan["reinitialised"],
              "unused": plan["unused"], "class_specific": plan["class_specific"], "copied_classes": {},
              "fresh_classes": ["cat"], "notes": []}
    assert summary_lines(report, {})[1:] == ["  loaded 3 tensors, 4 start fresh, 0 of the weights' unused",
                                             "  fresh class rows: cat"]
