"""torchvision detectors that are no R-CNN (RetinaNet, FCOS, SSD, SSDlite) given to ``convert``, ``train
--init`` or ``predict``: named as what they are, not taken for an R-CNN whose box predictor was dropped
(the message that told the user to "save the whole detector", which they had); what of them a run can
start from is said (a RetinaNet's ResNet body, saved alone). An R-CNN less its box predictor still gets the
fine-tuning hint, and only it. Key names are torchvision's (``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``,
``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large`` state dicts); values are small: only names count."""

import re

import pytest
import torch
from torchvision_names import torchvision_resnet_name  # tests/interop is on the path

from maskrcnn.checkpoint import CheckpointError
from maskrcnn.checkpoint_read import inference_weights
from maskrcnn.commands.train import default_config
from maskrcnn.interop.torchvision import ConversionError, convert_torchvision, one_stage_family
from maskrcnn.interop.weights import init_kind, read_weights
from maskrcnn.modeling.backbone import ResNet


def _body():
    """Our ResNet-18 under torchvision's ``backbone.body.*`` names, with an FPN and RetinaNet's P6/P7."""
    out = {"backbone.body." + torchvision_resnet_name(k): torch.randn(v.shape) if v.is_floating_point() else v
           for k, v in ResNet(arch="resnet18", norm="frozen_bn").state_dict().items()}
    out.update({"backbone.fpn.inner_blocks.0.0.weight": torch.zeros(1),
                "backbone.fpn.layer_blocks.0.0.weight": torch.zeros(1),
                "backbone.fpn.extra_blocks.p6.weight": torch.zeros(1)})
    return out


def _tower(head):
    return {f"head.{head}.conv.{i}.0.weight": torch.zeros(1) for i in range(4)}


def _retinanet():
    return {**_body(), **_tower("classification_head"), **_tower("regression_head"),
            "head.classification_head.cls_logits.weight": torch.zeros(1),
            "head.classification_head.cls_logits.bias": torch.zeros(1),
            "head.regression_head.bbox_reg.weight": torch.zeros(1),
            "head.regression_head.bbox_reg.bias": torch.zeros(1)}


def _fcos():
    return {**_retinanet(), "head.regression_head.bbox_ctrness.weight": torch.zeros(1)}


def _ssd(lite: bool):
    leaf = "0.0.0.weight" if lite else "weight"  # SSDlite's per-map predictor is a Sequential
    return {**({} if lite else {"backbone.scale_weight": torch.zeros(1)}),
            "backbone.features.0.weight": torch.zeros(1), "backbone.extra.0.0.weight": torch.zeros(1),
            **{f"head.{h}.module_list.{i}.{leaf}": torch.zeros(1)
               for h in ("classification_head", "regression_head") for i in range(2)}}


FAMILIES = [("RetinaNet", _retinanet), ("FCOS", _fcos), ("SSD", lambda: _ssd(False)),
            ("SSDlite", lambda: _ssd(True))]


@pytest.mark.parametrize("family, make", FAMILIES)
def test_convert_names_the_family_not_a_dropped_predictor(family, make):
    sd = make()
    assert one_stage_family(sd) == family
    with pytest.raises(ConversionError) as e:
        convert_torchvision(sd, source="det.pth")
    message = str(e.value)
    assert message.startswith(f"det.pth: a torchvision {family} (head.classification_head.*, "
                              "head.regression_head.*): no RPN or RoI heads (rpn.*, roi_heads.*), so not a "
                              "Mask / Faster / Keypoint R-CNN")
    assert "dropped" not in message and "save the whole detector" not in message
    if family in ("RetinaNet", "FCOS"):  # a ResNet body: the one part a run can start from
        assert message.endswith("save its backbone.* tensors alone (from the state dict: a training "
                                "checkpoint's 'model' entry, names without a 'module.' prefix; "
                                "`torch.save({k: v for k, v in sd.items() if k.startswith('backbone.')}, "
                                "'body.pth')`) and give that file to `maskrcnn train --init`")
    else:
        assert "backbone.features.*, backbone.extra.*) is no ResNet/ResNeXt either: nothing of it can " \
               "start a run" in message


@pytest.mark.parametrize("family, make", [FAMILIES[0], FAMILIES[2]])
def test_train_init_and_predict_name_it_too(family, make, tmp_path):
    path = tmp_path / "det.pth"
    torch.save({"model": make()}, path)
    said = []
    # no "--init det.pth is a detector, so the finetune preset's recipe is used" before the refusal
    assert init_kind(str(path)) is None
    assert default_config(str(path), resume=False, say=said.append) == "r50_fpn" and said == []
    with pytest.raises(ConversionError, match=f"^{path}: a torchvision {family} "):
        read_weights(str(path))
    with pytest.raises(CheckpointError) as e:  # not sent to `convert`, which refuses it as well
        inference_weights(str(path))
    assert f"not a maskrcnn checkpoint (a torchvision {family} " in str(e.value)
    assert "convert --from" not in str(e.value)


def test_the_retinanet_body_saved_alone_starts_a_run(tmp_path):
    # what the RetinaNet refusal tells the user to do works
    sd = _retinanet()
    path = tmp_path / "body.pth"
    torch.save({k: v for k, v in sd.items() if k.startswith("backbone.")}, path)
    weights = read_weights(str(path))
    assert weights.layout == "torchvision-backbone resnet18"
    assert torch.equal(weights.state_dict["backbone.stem.conv1.conv.weight"],
                       sd["backbone.body.conv1.weight"])


def _rcnn_parts():
    return {"rpn.head.conv.0.0.weight": torch.zeros(1), "rpn.head.cls_logits.weight": torch.zeros(1),
            "roi_heads.box_head.fc6.weight": torch.zeros(1), "roi_heads.box_head.fc7.weight": torch.zeros(1)}


@pytest.mark.parametrize("extra", [{}, {"roi_heads.mask_predictor.mask_fcn_logits.weight": torch.zeros(1)},
                                   {"roi_heads.keypoint_predictor.kps_score_lowres.weight": torch.zeros(1)}])
def test_only_an_rcnn_less_its_box_predictor_gets_the_fine_tune_hint(extra, tmp_path):
    # Faster, Mask and Keypoint R-CNN less roi_heads.box_predictor.* (torchvision's fine-tuning recipe)
    sd = {**_body(), **_rcnn_parts(), **extra}
    with pytest.raises(ConversionError) as e:
        convert_torchvision(sd, source="tv.pth")
    assert str(e.value).startswith("tv.pth: a torchvision R-CNN saved without roi_heads.box_predictor.* "
                                   "(dropped to fine-tune on new classes?): not read; save the whole "
                                   "detector")


def test_an_rpn_without_roi_heads_is_not_called_a_dropped_predictor():
    sd = {**_body(), **{k: v for k, v in _rcnn_parts().items() if k.startswith("rpn.")}}
    with pytest.raises(ConversionError) as e:
        convert_torchvision(sd, source="tv.pth")
    assert str(e.value).startswith("tv.pth: a torchvision backbone and RPN (rpn.head.*) without RoI heads "
                                   "(no roi_heads.*): not a whole R-CNN")


def _mobilenet_rcnn():
    """fasterrcnn_mobilenet_v3_large_fpn's names: MobileNet blocks (``1.block.*``) under backbone.body."""
    return {"backbone.body.0.0.weight": torch.zeros(1), "backbone.body.1.block.0.0.weight": torch.zeros(1),
            "backbone.fpn.inner_blocks.0.0.weight": torch.zeros(1), **_rcnn_parts(),
            "roi_heads.box_predictor.cls_score.weight": torch.zeros(91, 1)}


def test_a_mobilenet_rcnn_is_not_sent_to_convert_which_refuses_it(tmp_path):
    """predict told a MobileNet-V3 detector to `maskrcnn convert --from torchvision`, which refuses it: now
    it says why in convert's words (not a ResNet body), and train --init makes no "finetune" claim."""
    path = tmp_path / "mbv3.pth"
    torch.save(_mobilenet_rcnn(), path)
    body = "backbone.body.1.block.* is not a ResNet/ResNeXt backbone (MobileNet?); supported: resnet18"
    with pytest.raises(ConversionError, match="^" + re.escape(f"{path}: {body}")):
        convert_torchvision(torch.load(path, weights_only=True), source=str(path))
    with pytest.raises(CheckpointError) as e:
        inference_weights(str(path))
    assert f"{path}: not a maskrcnn checkpoint (a torchvision file that `maskrcnn convert` refuses: " \
           f"{body}" in str(e.value)
    assert "convert --from" not in str(e.value)
    assert init_kind(str(path)) is None
