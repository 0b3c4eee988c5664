"""The Python API as a notebook user drives it: a ``Config`` edited after loading, a model that goes back to
training, a dict of images, other input forms and the drawing's arguments are each either handled as the
documented forms are or refused in one line naming what is wrong, never run silently wrong."""

import math
import pickle
import re

import numpy as np
import pytest
import torch
from tiny_model import TINY

from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.data.images import read_image
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor
from maskrcnn.visualize import draw_instances
from tests.blocks_image import three_blocks_image

pytestmark = pytest.mark.usefixtures("single_thread")


def _cfg(**more):
    return apply_overrides(PRESETS["r18_fpn"](), {**TINY, **more})


@pytest.fixture(scope="module")
def built():
    """(model in eval mode with batch norm (train mode changes its results), its cfg); 3 classes."""
    torch.manual_seed(0)
    cfg = _cfg()
    return build_model(cfg).eval(), cfg


@pytest.fixture(scope="module")
def image():
    return three_blocks_image()


# --- 1. the cfg given with a model is checked as build_model checks it --------------------------------
@pytest.mark.parametrize("key, value", [("input.min_size_test", 0), ("input.min_size_test", -5),
                                        ("input.max_size_test", 0),
                                        ("model.roi_heads.mask_threshold", 2.0),
                                        ("model.num_classes", "six")])
def test_a_cfg_edited_after_building_is_refused_naming_the_key(built, key, value):
    model, _ = built
    cfg = _cfg()
    section, name = key.rsplit(".", 1)
    node = cfg
    for part in section.split("."):
        node = getattr(node, part)
    setattr(node, name, value)
    with pytest.raises(ValueError) as info:
        Predictor(model, cfg)
    message = str(info.value)
    assert "\n" not in message and key in message and message.startswith("invalid configuration")
    with pytest.raises(ValueError) as built_info:  # the same words as build_model's
        build_model(cfg)
    assert str(built_info.value) == message


def test_a_cfg_that_is_no_config_is_a_type_error(built):
    model, _ = built
    for bad in ({"a": 1}, "r18_fpn", None):
        with pytest.raises(TypeError, match=r"Predictor expects a maskrcnn\.config\.Config, got "
                           + type(bad).__name__):
            Predictor(model, bad)


# --- 2. the cfg's class count must be the model's -------------------------------------------------------
def test_a_cfg_with_another_class_count_than_the_model_is_refused(built):
    model, _ = built  # 3 classes
    with pytest.raises(ValueError, match=r"model\.num_classes=6 .* 3 classes") as info:
        Predictor(model, _cfg(**{"model.num_classes": 6}))
    assert "cls_score" in str(info.value) and "\n" not in str(info.value)
    assert len(Predictor(model, _cfg()).class_names) == model.roi_heads.box_predictor.cls_score.out_features


# --- 3. each call runs in eval mode and leaves the model's modes as they were -------------------------------
def test_a_model_back_in_train_mode_is_predicted_in_eval_mode_and_left_training(built, image):
    model, cfg = built
    model = build_model(cfg)  # its own copy: its modes are changed here
    model.load_state_dict(built[0].state_dict())
    predictor = Predictor(model, cfg)
    base = predictor(image)[0]
    assert base["boxes"].shape[0] > 0
    model.train()
    model.backbone.eval()  # a partly frozen model: each module's own mode is given back
    det = predictor(image)[0]
    assert torch.equal(det["boxes"], base["boxes"]) and torch.equal(det["scores"], base["scores"])
    assert torch.equal(det["masks"], base["masks"])
    assert model.training and model.roi_heads.training and not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    det = predictor.predict_tensors([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
    torch.testing.assert_close(det["boxes"], base["boxes"])
    assert model.training
    model.eval()
    model.roi_heads.train()  # one stage alone back in training
    det = predictor(image)[0]
    assert torch.equal(det["boxes"], base["boxes"]) and model.roi_heads.training and not model.training
    model.eval()
    predictor(image)
    assert not any(m.training for m in model.modules())  # an eval model stays so


def test_the_train_mode_is_given_back_when_the_call_fails(built):
    model, cfg = built
    model = build_model(cfg)
    predictor = Predictor(model, cfg)
    model.train()
    modes = [m.training for m in model.modules()]
    assert any(modes)
    with pytest.raises(ValueError):
        predictor(np.full((8, 8, 3), 300.0, np.float32))  # off the [0, 1] scale: refused on load
    assert [m.training for m in model.modules()] == modes

    def fail(module, args):
        assert not module.training  # it did run in eval mode
        raise RuntimeError("boom")

    model.roi_heads.box_head.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        predictor(np.zeros((32, 32, 3), np.uint8))
    assert [m.training for m in model.modules()] == modes


# --- 4. a dict of images ------------------------------------------------------------------------------------
def test_a_dict_of_images_is_a_type_error_with_the_fix(built, image, tmp_path):
    from PIL import Image

    predictor = Predictor(built[0], built[1])
    path = tmp_path / "plain.png"
    Image.fromarray(image).save(path)
    for images in ({str(path): image}, {"image": image}):
        with pytest.raises(TypeError, match=re.escape("pass list(d.values())")):
            predictor(images)


# --- 5. other forms ---------------------------------------------------------------------------------------
def test_a_uint16_tensor_reads_as_the_uint16_array(built, image):
    predictor = Predictor(built[0], built[1])
    wide = image.astype(np.uint16) * 257  # the same picture on the 16-bit scale
    ref = predictor(wide)[0]
    det = predictor(torch.from_numpy(wide.astype(np.int32)).permute(2, 0, 1).to(torch.uint16))[0]
    assert torch.equal(det["boxes"], ref["boxes"]) and torch.equal(det["masks"], ref["masks"])
    grey = predictor(torch.from_numpy(wide[:, :, 0].astype(np.int32)).to(torch.uint16))[0]
    assert torch.equal(grey["boxes"], predictor(wide[:, :, 0])[0]["boxes"])


def test_a_stack_of_grey_images_is_told_to_be_a_list(built, image):
    predictor = Predictor(built[0], built[1])
    grey = image[:, :, 0]
    with pytest.raises(ValueError, match=r"\(2, 48, 64\).*list") as info:
        predictor(np.stack([grey, grey]))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"\(2, 48, 64\).*list"):
        predictor(torch.from_numpy(np.stack([grey, grey])))
    both = predictor(list(np.stack([grey, grey])))  # what the message says works
    assert torch.equal(both[1]["boxes"], predictor(grey)[0]["boxes"])


def test_read_image_takes_bytes_and_refuses_other_objects(image, tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    assert torch.equal(read_image(path.read_bytes()), read_image(path))
    assert torch.equal(read_image(bytearray(path.read_bytes())), read_image(str(path)))
    for bad in (image, torch.zeros(3, 4, 4), 3):
        with pytest.raises(TypeError, match=f"read_image takes a file path .* got {type(bad).__name__}"):
            read_image(bad)


@pytest.mark.parametrize("alpha", [-1, 2, 1.5, float("nan"), True, "0.5"])
def test_draw_instances_refuses_a_mask_alpha_outside_0_1(image, alpha):
    det = {"boxes": torch.tensor([[2.0, 2, 20, 20]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([1]), "masks": torch.zeros(1, 48, 64, dtype=torch.bool)}
    with pytest.raises(ValueError, match=r"mask_alpha must be a number in \[0, 1\]"):
        draw_instances(image, det, mask_alpha=alpha)
    for ok in (0, 1, 0.3):
        draw_instances(image, det, mask_alpha=ok)


def test_draw_instances_leaves_out_boxes_that_are_not_finite_with_a_warning(image):
    boxes = torch.tensor([[2.0, 2, 20, 20], [float("nan"), 5, 30, 30], [4, 4, math.inf, 40]])
    masks = torch.zeros(3, 48, 64, dtype=torch.bool)
    masks[1, 10:20, 10:20] = True  # the bad detection's mask: not drawn either
    det = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 1]),
           "masks": masks}
    with pytest.warns(UserWarning, match=r"2 of 3 detections .*not finite.*left out"):
        drawn = np.asarray(draw_instances(image, det))
    good = {k: v[:1] for k, v in det.items()}
    assert np.array_equal(drawn, np.asarray(draw_instances(image, good)))


def test_predictor_repr_says_device_precision_classes_and_threshold(built):
    model, cfg = built
    text = repr(Predictor(model, cfg, score_thresh=0.3))
    assert text.startswith("Predictor(") and "0x" not in text
    for part in ("device=cpu", "precision=float32", "classes=3", "score_thresh=0.3"):
        assert part in text, text
    text = repr(Predictor(model, cfg))
    assert "score_thresh=None" in text and "model's 0" in text
    assert pickle.loads(pickle.dumps(Predictor(model, cfg))).class_names == ["__background__", "class1",
                                                                               "class2"]


def test_a_stage_deep_down_back_in_training_is_predicted_in_eval_and_its_statistics_kept(image):
    torch.manual_seed(0)
    cfg = _cfg(**{"model.norm": "bn"})
    model = build_model(cfg).eval()
    predictor = Predictor(model, cfg)
    base = predictor(image)[0]
    stage = model.backbone.res4  # a grandchild: neither the model nor a direct child is training
    stage.train()
    norms = [m for m in stage.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms, "the stage should hold BatchNorm layers"
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms]
    det = predictor(image)[0]
    after = [(m.running_mean, m.running_var, int(m.num_batches_tracked)) for m in norms]
    for (mean0, var0, n0), (mean1, var1, n1) in zip(before, after):
        assert torch.equal(mean0, mean1) and torch.equal(var0, var1) and n0 == n1
    assert torch.equal(det["boxes"], base["boxes"]) and torch.equal(det["scores"], base["scores"])
    assert stage.training and all(m.training for m in stage.modules())  # given back
    assert not model.training and not model.backbone.training


def test_a_call_starting_while_another_runs_sees_a_train_in_between():
    from maskrcnn.predictor import _eval_mode

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.BatchNorm1d(2))).eval()
    with _eval_mode(model):  # call A in flight
        model.train()  # the user's thread
        with _eval_mode(model):  # call C starts
            assert not any(m.training for m in model.modules())
        assert not any(m.training for m in model.modules())  # A still running
    assert all(m.training for m in model.modules())  # the modes as the user left them


def test_float_and_int_tensors_on_a_torch_without_uint16(monkeypatch, image):
    """torch.uint16 exists from torch 2.3; pyproject allows 2.1, where every float tensor reached it."""
    from maskrcnn.predictor import _as_float_image

    monkeypatch.delattr(torch, "uint16", raising=False)
    rgb = torch.from_numpy(image).permute(2, 0, 1)
    torch.testing.assert_close(_as_float_image(rgb.float() / 255, "image 0"), rgb.float() / 255)
    torch.testing.assert_close(_as_float_image(rgb, "image 0"), rgb.float() / 255)
    with pytest.raises(ValueError, match="image 0: image dtype torch.int32 not supported"):
        _as_float_image(rgb.to(torch.int32), "image 0")
