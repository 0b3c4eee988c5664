"""Settings that each pass their own range but that no model can be built with (or that change nothing):
refused when the config is read, naming the keys, before any model or run folder exists."""

import pytest

from maskrcnn.config import PRESETS, load_config, trained_with_changes


@pytest.mark.parametrize("overrides,wanted", [
    ({"model.rpn.aspect_ratios": "[]"}, r"model\.rpn\.aspect_ratios must hold at least one ratio, got \[\]"),
    ({"model.rpn.anchor_sizes": "[]"}, r"model\.rpn\.anchor_sizes must hold at least one size"),
    ({"model.rpn.fg_iou_thresh": 0.2},
     r"model\.rpn\.fg_iou_thresh 0\.2 must be >= model\.rpn\.bg_iou_thresh 0\.3"),
    ({"model.roi_heads.fg_iou_thresh": 0.3, "model.roi_heads.bg_iou_thresh": 0.6},
     r"model\.roi_heads\.fg_iou_thresh 0\.3 must be >= model\.roi_heads\.bg_iou_thresh 0\.6"),
    ({"model.fpn_norm": "gn", "model.fpn_dim": 60},
     r"model\.fpn_dim 60 must be a multiple of 32 with model\.fpn_norm=gn"),
    ({"model.roi_heads.box_head": "4conv1fc", "model.roi_heads.box_head_norm": "gn", "model.fpn_dim": 48},
     r"model\.fpn_dim 48 must be a multiple of 32 with model\.roi_heads\.box_head_norm=gn"),
    ({"model.roi_heads.mask_head_norm": "gn", "model.roi_heads.mask_head_dim": 40},
     r"model\.roi_heads\.mask_head_dim 40 must be a multiple of 32 with model\.roi_heads\.mask_head_norm=gn"),
    ({"model.roi_features": "res5"}, r"model\.roi_features res5 applies only with model\.fpn=false"),
    ({"model.num_classes": 1}, r"model\.num_classes must be in \[2, \d+\], got 1"),
])
def test_unbuildable_combinations_are_refused_naming_the_keys(overrides, wanted):
    with pytest.raises(ValueError, match="invalid configuration: .*" + wanted):
        load_config("demo", overrides)


def test_the_valid_neighbours_still_load():
    for name in PRESETS:
        load_config(name)
    cfg = load_config("demo", {"model.fpn": False, "model.roi_features": "res5",
                               "model.fpn_norm": "gn", "model.fpn_dim": 64,
                               "model.roi_heads.fg_iou_thresh": 0.5, "model.roi_heads.bg_iou_thresh": 0.5})
    assert cfg.model.roi_features == "res5" and cfg.model.fpn_dim == 64


def test_a_list_key_given_lists_is_not_offered_a_number():
    with pytest.raises(ValueError) as info:
        load_config("demo", {"model.rpn.anchor_sizes": "[[16,24],[32],[64],[128],[256]]"})
    assert "model.rpn.anchor_sizes must be a list of numbers, got" in str(info.value)
    assert "a number or" not in str(info.value)


def test_a_trained_with_key_changed_for_inference_is_named():
    stored = load_config("demo")
    changed = load_config("demo", {"model.roi_heads.mask_loss": "softmax",
                                   "model.roi_heads.score_thresh": 0.3})
    lines = trained_with_changes(stored, changed)
    assert len(lines) == 1 and lines[0].startswith("model.roi_heads.mask_loss 'softmax' differs from the "
                                                   "'sigmoid' the weights were trained with")
    assert trained_with_changes(stored, stored) == []


def test_build_model_names_roi_features_it_does_not_use():
    from maskrcnn.modeling.mask_rcnn import build_model

    cfg = load_config("demo")
    cfg.model.roi_features = "res4"  # a stored config or one changed in Python: loads, with a warning
    with pytest.warns(UserWarning, match=r"model\.roi_features res4 is not used: .*model\.fpn=false"):
        model = build_model(cfg)
    assert model.fpn is not None


@pytest.mark.parametrize("file_keys, mend, wanted", [
    ("  fpn_norm: gn\n  fpn_dim: 100\n", {"model.fpn_dim": 128}, ("fpn_dim", 128)),
    ("  rpn:\n    bg_iou_thresh: 0.8\n", {"model.rpn.fg_iou_thresh": 0.9}, ("rpn.fg_iou_thresh", 0.9)),
])
def test_a_files_pair_that_set_mends_is_not_refused_before_the_set(tmp_path, file_keys, mend, wanted):
    """Before: the file was checked alone, so its pair was refused though --set mended it (and the fg value
    named was the preset's, not the one given); the file alone is still refused, naming the file."""
    path = tmp_path / "c.yaml"
    path.write_text("_base_: demo\nmodel:\n" + file_keys)
    key, value = wanted
    cfg = load_config(str(path), mend)
    section, _, name = key.rpartition(".")
    assert getattr(getattr(cfg.model, section) if section else cfg.model, name) == value
    with pytest.raises(ValueError, match=r"c\.yaml: invalid configuration: model\.(fpn_dim 100|rpn\.fg_iou)"):
        load_config(str(path))


def test_the_unused_roi_features_is_said_once_per_model_not_again_by_the_fit_check():
    import warnings

    from maskrcnn.checkpoint_read import first_misfit
    from maskrcnn.modeling.mask_rcnn import build_model

    cfg = load_config("demo")
    cfg.model.roi_features = "res4"
    with pytest.warns(UserWarning, match="roi_features res4 is not used"):
        state = build_model(cfg).state_dict()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert first_misfit(state, cfg) is None  # a shape check on the meta device: nothing to say again
    assert not [w for w in said if "roi_features" in str(w.message)], [str(w.message) for w in said]
