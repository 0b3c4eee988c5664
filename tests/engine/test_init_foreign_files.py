"""``train --init`` from another library's file: NaN/inf weights refused before training (converted
files are not checked as our checkpoints are), and the summary counting class tensors copied in part
apart from those loaded whole (``engine/init_weights``)."""

import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.engine.init_weights import InitError, initialise_model
from maskrcnn.interop.weights import SourceWeights
from tests.tiny_model import class_rows_model


class _Tiny(torch.nn.Module):
    """A model whose state dict has one backbone tensor pair (our names)."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(2, 2)


def _source(state, spec="tv_maskrcnn.pth"):
    return SourceWeights(state_dict=state, kind="torchvision", layout="maskrcnn", implied={},
                         provenance={"spec": spec})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_of_a_converted_file_are_refused_naming_file_and_keys(bad):
    weight = torch.ones(2, 2)
    weight[0, 1] = bad
    model = _Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitError, match=r"^tv_maskrcnn\.pth: weights hold NaN or infinite values in tensors "
                                        r"backbone\.weight \(our name\)"):
        initialise_model(model, load_config("r50_fpn"), _source({"backbone.weight": weight,
                                                                  "backbone.bias": torch.zeros(2)}))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_class_tensors_copied_in_part_are_counted_apart_from_whole_ones():
    """Weights of fewer classes: the box predictor's rows of the classes they share come from them, the
    others start fresh; the summary must not count those tensors as loaded like the rest."""
    from maskrcnn.engine.init_weights import plan_init, summary_lines

    model = {"backbone.a.weight": torch.zeros(2, 3),
             "roi_heads.box_predictor.cls_score.weight": torch.zeros(4, 5),
             "roi_heads.box_predictor.cls_score.bias": torch.zeros(4),
             "roi_heads.box_predictor.bbox_pred.bias": torch.zeros(16)}
    source = {"backbone.a.weight": torch.ones(2, 3),
              "roi_heads.box_predictor.cls_score.weight": torch.ones(3, 5),
              "roi_heads.box_predictor.cls_score.bias": torch.ones(3),
              "roi_heads.box_predictor.bbox_pred.bias": torch.ones(12)}
    plan = plan_init(model, source, class_rows=[0, 1, 2, None])
    report = {"source": {"spec": "w.pth"}, "loaded": plan["loaded"], "reinitialised": plan["reinitialised"],
              "unused": plan["unused"], "class_specific": plan["class_specific"],
              "copied_classes": {"a": "a", "b": "b"}, "fresh_classes": ["c"], "notes": []}
    lines = summary_lines(report, {})
    assert lines[1] == ("  loaded 1 tensors whole, 3 in part (class rows: 3 of 4 from the weights), 0 start "
                        "fresh, 0 of the weights' unused")
    assert lines[-1] == "  fresh class rows: c"


class _WithBatchNorm(torch.nn.Module):
    """A backbone with a trainable BN (model.norm=bn): its batch counter has a place in the model."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))


def test_counters_the_converter_dropped_are_ignored_only_where_the_model_keeps_none():
    # the converter drops a frozen-BN file's counters; a model with trainable norms keeps counters there,
    # and a part the model lacks (no mask head) leaves its counter unused: neither is "ignored"
    model = _WithBatchNorm()
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    source = _source(state)
    source.counters = ["backbone.1.num_batches_tracked", "roi_heads.mask_head.norm.num_batches_tracked"]
    report = initialise_model(model, load_config("r50_fpn"), source)
    assert report["counters_ignored"] == []
    assert report["unused"] == ["roi_heads.mask_head.norm.num_batches_tracked"]
    # a model whose norms keep none there (frozen): the counter is ignored, as the file's own would be
    source.counters = ["backbone.0.num_batches_tracked"]
    assert initialise_model(model, load_config("r50_fpn"), source)["counters_ignored"] == \
        ["backbone.0.num_batches_tracked"]


@pytest.mark.parametrize("theirs, line", [
    (None, "weights: 90 classes + background (10 of them N/A placeholders) -> this run: 4 + background"),
    (["__background__", "person"], "weights: 1 class + background -> this run: 4 + background"),
])
def test_the_report_says_the_weights_own_class_count(theirs, line):
    # "class rows: 3 of 5 from the weights" counts the run's rows: the weights' 91 went unsaid
    from maskrcnn.engine.init_weights import summary_lines
    from maskrcnn.interop.torchvision import COCO_CLASS_NAMES_91

    names = list(COCO_CLASS_NAMES_91) if theirs is None else theirs
    ours = ["__background__", "person", "widget", "car", "gizmo"]
    source = _source({"roi_heads.box_predictor.cls_score.weight": torch.ones(len(names), 3),
                      "roi_heads.box_predictor.cls_score.bias": torch.ones(len(names))})
    source.class_names = names
    report = initialise_model(class_rows_model(5), load_config("r50_fpn", {"data.class_names": ours}), source)
    placeholders = 10 if theirs is None else 0  # torchvision's "N/A" ids
    assert report["weights_classes"] == {"num_classes": len(names), "placeholders": placeholders,
                                         "run_num_classes": 5}
    lines = summary_lines(report, {})
    assert "  " + line in lines
    assert lines.index("  " + line) < lines.index("  fresh class rows: widget" + (", car" if theirs else "")
                                                  + ", gizmo")
    # weights without class rows (an ImageNet backbone) have no count to say
    report = initialise_model(_Tiny(), load_config("r50_fpn"), _source(
        {k: v.clone() for k, v in _Tiny().state_dict().items()}))
    assert "weights_classes" not in report
    assert not any(line.lstrip().startswith("weights:") for line in summary_lines(report, {}))

