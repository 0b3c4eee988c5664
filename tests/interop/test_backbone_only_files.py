"""A torchvision backbone saved without its detector (``backbone.body.*``, an FPN, no box predictor):
``convert`` says what is missing and where such weights go, ``train --init`` starts its backbone from
them, and predict's refusal does not send it to ``convert`` (which cannot take it)."""

import pytest
import torch
from torchvision_names import torchvision_resnet_name  # tests/interop is on the path

from maskrcnn.checkpoint import CheckpointError
from maskrcnn.checkpoint_read import inference_weights
from maskrcnn.interop.torchvision import ConversionError, convert_torchvision
from maskrcnn.interop.weights import init_kind, read_weights
from maskrcnn.modeling.backbone import ResNet


def _torchvision_body(prefix="backbone.body."):
    """Our ResNet-18's tensors under torchvision's names (random values: only names and shapes count)."""
    out = {}
    for k, v in ResNet(arch="resnet18", norm="frozen_bn").state_dict().items():
        name = torchvision_resnet_name(k)
        out[prefix + name] = torch.randn(v.shape) if v.is_floating_point() else v
    return out


@pytest.fixture()
def backbone_file(tmp_path):
    sd = {**_torchvision_body(), "backbone.fpn.inner_blocks.0.0.weight": torch.randn(256, 64, 1, 1)}
    path = tmp_path / "tv_backbone.pth"
    torch.save({"model": sd}, path)
    return path, sd


def test_convert_says_what_is_missing_and_where_the_weights_go(backbone_file):
    _path, sd = backbone_file
    with pytest.raises(ConversionError) as e:
        convert_torchvision(sd, source="tv_backbone.pth")
    assert str(e.value) == ("tv_backbone.pth: not a torchvision detection state dict: has backbone.body.* "
                            "but no roi_heads.box_predictor.cls_score.weight: backbone weights only, not a "
                            "detector; use them with `maskrcnn train --init`")


def test_train_init_starts_the_backbone_from_it(backbone_file):
    path, sd = backbone_file
    assert init_kind(str(path)) == "imagenet"  # the from-scratch recipe: the heads start fresh
    weights = read_weights(str(path))
    assert weights.kind == "imagenet" and weights.layout == "torchvision-backbone resnet18"
    ours = weights.state_dict
    assert torch.equal(ours["backbone.stem.conv1.conv.weight"], sd["backbone.body.conv1.weight"])
    assert torch.equal(weights.state_dict["backbone.res4.1.conv2.norm.running_var"],
                       sd["backbone.body.layer3.1.bn2.running_var"])
    assert all(k.startswith("backbone.") for k in weights.state_dict)
    assert weights.unused == ["backbone.fpn.inner_blocks.0.0.weight"]
    assert any("backbone weights only" in n and "1 other tensors unused" in n for n in weights.notes)


def test_predict_refusal_points_to_train_init_not_convert(backbone_file):
    path, _sd = backbone_file
    with pytest.raises(CheckpointError) as e:
        inference_weights(str(path))
    message = str(e.value)
    assert message.startswith(f"{path}: not a maskrcnn checkpoint (backbone weights only, not a detector")
    assert "maskrcnn train --init" in message and "convert" not in message


def test_convert_command_sends_it_to_train_init(backbone_file, tmp_path, capsys):
    from maskrcnn.cli import main

    path, _sd = backbone_file
    assert main(["convert", "--from", "torchvision", str(path), str(tmp_path / "out.pth")]) != 0
    err = capsys.readouterr().err
    assert "backbone weights only (an ImageNet ResNet, or a torchvision backbone saved alone), not a " \
           "torchvision detector: start a run from them with train --init" in err
    assert not (tmp_path / "out.pth").exists()


def test_a_detector_without_its_box_predictor_is_not_taken_for_a_backbone(tmp_path):
    # torchvision's fine-tuning recipe drops roi_heads.box_predictor: the rest is a detector, and reading
    # only its body as an ImageNet backbone would silently throw away the FPN, the RPN and the heads
    sd = {**_torchvision_body(), "rpn.head.conv.0.0.weight": torch.randn(256, 256, 3, 3),
          "roi_heads.box_head.fc6.weight": torch.randn(1024, 12544)}
    with pytest.raises(ConversionError, match="saved without roi_heads.box_predictor") as e:
        convert_torchvision(sd, source="tv_no_predictor.pth")
    assert "backbone weights only" not in str(e.value)
