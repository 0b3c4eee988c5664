"""torchvision -> ours key mapping: all four published layouts, legacy names, errors, the CLI command."""

import json
import re
from pathlib import Path

import pytest
import torch

from maskrcnn.interop.torchvision import (
    COCO_CLASS_NAMES_91,
    ConversionError,
    convert_state_dict,
    convert_torchvision,
    load_torchvision_file,
)

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "torchvision_state_dict_keys.json"
LAYOUTS = {"maskrcnn_resnet50_fpn": "maskrcnn", "maskrcnn_resnet50_fpn_v2": "maskrcnn_v2",
           "keypointrcnn_resnet50_fpn": "keypointrcnn", "fasterrcnn_resnet50_fpn": "fasterrcnn"}


def _manifest_sd(name):
    """Each tensor filled with its own index, so that a mapped value tells where it came from."""
    entries = json.loads(MANIFEST.read_text())[name]
    return {k: torch.full(shape, float(i)) if dtype == "float32" else torch.zeros(shape, dtype=torch.int64)
            for i, (k, shape, dtype) in enumerate(entries)}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_manifest_key_maps(name):
    sd = _manifest_sd(name)
    result = convert_torchvision(sd)  # raises unless every key maps and every model key is filled
    report = result["report"]
    assert result["layout"] == LAYOUTS[name]
    assert report["unmapped"] == [] and report["missing"] == [] and report["unexpected"] == []
    cfg = result["config"]
    if name.startswith("keypoint"):  # person only
        assert cfg.model.num_classes == 2 and result["class_names"] == ["__background__", "person"]
    else:
        assert cfg.model.num_classes == 91 and result["class_names"] == list(COCO_CLASS_NAMES_91)
    assert cfg.model.backbone == "resnet50"
    # the manifest's models were built with weights=None: plain BatchNorm (eps 1e-5), counters saved
    assert cfg.model.frozen_bn_eps == 1e-5
    assert cfg.model.roi_heads.mask_on == name.startswith("maskrcnn")
    assert cfg.model.roi_heads.keypoint_on == name.startswith("keypoint")
    # spot checks of the mapping (values are source indices)
    ours = result["state_dict"]
    assert torch.equal(ours["backbone.res2.0.conv1.conv.weight"], sd["backbone.body.layer1.0.conv1.weight"])
    assert torch.equal(ours["backbone.res5.0.shortcut.norm.running_var"],
                       sd["backbone.body.layer4.0.downsample.1.running_var"])
    assert torch.equal(ours["rpn.head.objectness.bias"], sd["rpn.head.cls_logits.bias"])
    if name.endswith("v2"):
        assert cfg.model.rpn.head_convs == 2 and cfg.model.roi_heads.box_head == "4conv1fc"
        assert torch.equal(ours["roi_heads.box_head.fcs.0.weight"], sd["roi_heads.box_head.5.weight"])
        assert torch.equal(ours["fpn.output.3.norm.weight"], sd["backbone.fpn.layer_blocks.3.1.weight"])
    if name.startswith("keypoint"):
        assert cfg.model.roi_heads.num_keypoints == 17
        assert torch.equal(ours["roi_heads.keypoint_head.convs.7.conv.weight"],
                           sd["roi_heads.keypoint_head.14.weight"])


def _to_legacy(key):
    key = re.sub(r"^rpn\.head\.conv\.0\.0\.", "rpn.head.conv.", key)
    key = re.sub(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d)\.0\.", r"backbone.fpn.\1_blocks.\2.", key)
    key = re.sub(r"^roi_heads\.mask_head\.(\d)\.0\.",
                 lambda m: f"roi_heads.mask_head.mask_fcn{int(m[1]) + 1}.", key)
    return re.sub(r"^roi_heads\.keypoint_head\.(\d+)\.",
                  lambda m: f"roi_heads.keypoint_head.conv_fcn{int(m[1]) // 2 + 1}.", key)


@pytest.mark.parametrize("name", ["maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn"])
def test_legacy_names_map_like_current_ones(name):
    sd = _manifest_sd(name)
    legacy = {_to_legacy(k): v for k, v in sd.items()}
    assert "rpn.head.conv.weight" in legacy and len(legacy) == len(sd)
    new, unmapped_new = convert_state_dict(sd)
    old, unmapped_old = convert_state_dict(legacy)
    assert unmapped_new == unmapped_old == []
    assert new.keys() == old.keys()
    assert all(torch.equal(new[k], old[k]) for k in new)


def test_unknown_and_missing_keys_are_named():
    sd = _manifest_sd("fasterrcnn_resnet50_fpn")
    extra = dict(sd, **{"roi_heads.box_head.fc8.weight": torch.zeros(2, 2)})
    with pytest.raises(ConversionError, match="unmapped torchvision keys: roi_heads.box_head.fc8.weight"):
        convert_torchvision(extra)
    missing = {k: v for k, v in sd.items() if k != "rpn.head.bbox_pred.bias"}
    with pytest.raises(ConversionError, match="rpn.head.deltas.bias"):
        convert_torchvision(missing)
    with pytest.raises(ConversionError, match="not a torchvision detection state dict"):
        convert_torchvision({"fc.weight": torch.zeros(2, 2)})


def test_heads_disagreeing_on_the_class_count_are_said_to_contradict_each_other():
    # box predictor 91 classes, mask predictor 3: was "the model's roi_heads.mask_head.predictor.weight
    # needs (91, 256, 1, 1)", a model guessed from the box predictor that a user training 3 classes never
    # asked for
    from maskrcnn.interop.weights import convert_any

    sd = _manifest_sd("maskrcnn_resnet50_fpn")
    sd["roi_heads.mask_predictor.mask_fcn_logits.weight"] = torch.zeros(3, 256, 1, 1)
    sd["roi_heads.mask_predictor.mask_fcn_logits.bias"] = torch.zeros(3)
    said = ("f.pth (maskrcnn layout): the file contradicts itself on the class count: "
            "roi_heads.box_predictor.cls_score.weight (91, 1024) has 91 classes, "
            "roi_heads.mask_predictor.mask_fcn_logits.weight (3, 256, 1, 1) has 3 classes (each counting the "
            "background); no model holds both: a head replaced for another class set without the other?")
    for convert in (convert_torchvision, convert_any):  # convert --from torchvision, train --init
        with pytest.raises(ConversionError) as e:
            convert(sd, source="f.pth")
        assert str(e.value) == said
    sd["roi_heads.mask_predictor.mask_fcn_logits.weight"] = torch.zeros(91, 256, 1, 1)
    sd["roi_heads.box_predictor.bbox_pred.bias"] = torch.zeros(10)
    with pytest.raises(ConversionError, match=r"roi_heads\.box_predictor\.bbox_pred\.bias \(10,\) has 10 "
                                              r"rows \(not 4 per class\)"):
        convert_torchvision(sd, source="f.pth")


def test_batch_counters_dropped_for_frozen_norms_are_counted():
    from maskrcnn.interop.weights import convert_any

    sd = _manifest_sd("maskrcnn_resnet50_fpn")
    counters = [k for k in sd if k.endswith("num_batches_tracked")]
    result = convert_torchvision(sd, source="f.pth")
    assert len(result["report"]["counters_dropped"]) == len(counters) == 53
    assert not any(k.endswith("num_batches_tracked") for k in result["state_dict"])
    assert len(convert_any(sd, source="f.pth").counters) == 53  # train --init reports them


@pytest.mark.parametrize("name", ["maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn",
                                  "fasterrcnn_resnet50_fpn"])
def test_v1_eps_follows_the_batch_norm_counters_and_is_said(name, tmp_path, capsys):
    """A v1 file saved from a model built with weights=None (nn.BatchNorm2d, eps 1e-5: num_batches_tracked
    per norm) converted with eps 0, the published COCO files' value, without a word: 24 of 100 detections
    differed from torchvision's. The published layout (FrozenBatchNorm2d: no counters) keeps eps 0."""
    from maskrcnn.checkpoint import load_checkpoint
    from maskrcnn.cli import main
    from maskrcnn.interop.weights import convert_any

    plain = _manifest_sd(name)
    published = {k: v for k, v in plain.items() if not k.endswith("num_batches_tracked")}
    counted = sum(k.endswith("num_batches_tracked") for k in plain)
    for sd, eps, words in ((plain, 1e-5, f"model.frozen_bn_eps 1e-5: the file has {counted} batch-norm "
                                         "counters (num_batches_tracked)"),
                           (published, 0.0, "model.frozen_bn_eps 0: the file has no batch-norm counters")):
        result = convert_torchvision(sd)
        assert result["config"].model.frozen_bn_eps == eps
        assert [n for n in result["notes"] if n.startswith(words)], result["notes"]
        init = convert_any(sd, source="f.pth")  # train --init: the config follows the weights' eps
        assert init.implied["model.frozen_bn_eps"] == eps and any(n.startswith(words) for n in init.notes)
        src, out = tmp_path / "tv.pth", tmp_path / "ours.pth"
        torch.save(sd, src)
        assert main(["convert", "--from", "torchvision", str(src), str(out)]) == 0
        assert f"note: {words}" in capsys.readouterr().err
        assert load_checkpoint(out)["config"]["model"]["frozen_bn_eps"] == eps
    # --set decides: no note on a value the user gave
    given = convert_torchvision(published, overrides={"model.frozen_bn_eps": 1e-5})
    assert given["config"].model.frozen_bn_eps == 1e-5
    assert not [n for n in given["notes"] if "frozen_bn_eps" in n]


def test_the_published_v1_file_itself_converts_with_eps_0_without_a_guess(tmp_path, capsys):
    # the file as the download cache keeps it (its published, hash-suffixed name): eps 0 is known, and
    # the "a guess" note with its --set advice would only puzzle someone converting the published weights
    from maskrcnn.cli import main

    frozen = {k: v for k, v in _manifest_sd("maskrcnn_resnet50_fpn").items()
              if not k.endswith("num_batches_tracked")}
    for name, noted in (("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", False), ("mine.pth", True),
                        ("maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth", True)):  # v2's name, v1 keys
        src = tmp_path / name
        torch.save(frozen, src)
        assert main(["convert", "--from", "torchvision", str(src), str(tmp_path / "out.pth")]) == 0
        said = capsys.readouterr().err
        assert ("model.frozen_bn_eps 0: the file has no batch-norm counters" in said) == noted, (name, said)
        assert convert_torchvision(frozen, source=str(src))["config"].model.frozen_bn_eps == 0.0


def _reference_args(**fields):
    """The command line torchvision's detection reference script saves as "args" (an argparse.Namespace):
    some of its fields, the weights ones as given."""
    import argparse

    base = {"data_path": "/datasets01/COCO/022719/", "dataset": "coco", "model": "maskrcnn_resnet50_fpn",
            "epochs": 26, "lr": 0.02, "lr_steps": [16, 22], "amp": False, "distributed": False}
    return argparse.Namespace(**{**base, **fields})


def test_v1_eps_is_told_by_the_reference_scripts_saved_args(tmp_path, capsys):
    """torchvision's reference recipe (train.py --weights-backbone only: frozen norms, eps 1e-5, no batch
    counters) converted with eps 0, and a note saying the file was "as torchvision's published COCO v1
    weights and models fine-tuned from them". Its checkpoint ({"model", "optimizer", "lr_scheduler",
    "args", "epoch"}) holds the command line, which tells the two apart."""
    from maskrcnn.checkpoint import load_checkpoint
    from maskrcnn.cli import main
    from maskrcnn.interop.weights import read_weights

    sd = {k: v for k, v in _manifest_sd("maskrcnn_resnet50_fpn").items()
          if not k.endswith("num_batches_tracked")}  # frozen norms: no counters
    recipe = {"model": sd, "optimizer": {}, "lr_scheduler": {}, "epoch": 25,
              "args": _reference_args(weights=None, weights_backbone="ResNet50_Weights.IMAGENET1K_V1")}
    src, out = tmp_path / "model_25.pth", tmp_path / "ours.pth"
    torch.save(recipe, src)
    words = ("model.frozen_bn_eps 1e-5: from the file's args.weights_backbone "
             "('ResNet50_Weights.IMAGENET1K_V1'; args.weights None)")
    assert main(["convert", "--from", "torchvision", str(src), str(out)]) == 0
    assert f"note: {words}" in capsys.readouterr().err
    assert load_checkpoint(out)["config"]["model"]["frozen_bn_eps"] == 1e-5
    init = read_weights(str(src))  # train --init: read with the safe loader, the same eps
    assert init.implied["model.frozen_bn_eps"] == 1e-5 and any(n.startswith(words) for n in init.notes)
    # started from the COCO weights (the detection tutorial's fine-tuning): eps 0, said from args.weights
    for weights in ("MaskRCNN_ResNet50_FPN_Weights.COCO_V1", "DEFAULT"):
        torch.save({**recipe, "args": _reference_args(weights=weights, weights_backbone=None)}, src)
        result = load_torchvision_file(src)
        assert result["config"].model.frozen_bn_eps == 0.0
        assert any(n.startswith(f"model.frozen_bn_eps 0: from the file's args.weights ({weights!r})")
                   for n in result["notes"]), result["notes"]
    from maskrcnn.interop.torchvision import reference_args_eps

    # torchvision < 0.13's script (--pretrained): COCO weights, or an ImageNet backbone with frozen norms
    for pretrained, eps in ((True, 0.0), (False, 1e-5)):
        told = reference_args_eps({"args": _reference_args(pretrained=pretrained)})
        assert told[0] == eps and f"args.pretrained ({pretrained})" in told[1], told
    # keypoint R-CNN's legacy COCO weights: torchvision resets eps to 0 for COCO_V1 only
    legacy = _reference_args(model="keypointrcnn_resnet50_fpn", weights_backbone=None,
                             weights="KeypointRCNN_ResNet50_FPN_Weights.COCO_LEGACY")
    assert reference_args_eps({"args": legacy})[0] == 1e-5
    # what does not decide falls back to the keys, the note a guess naming both cases: no args, neither
    # weights given, a fork's own meaning (a path), a v2 enum, fields of other types than the script's
    guess = "model.frozen_bn_eps 0: the file has no batch-norm counters (num_batches_tracked), so its norms"
    for args in (None, _reference_args(weights=None, weights_backbone=None),
                 _reference_args(weights="runs/best.pth", weights_backbone=None),
                 _reference_args(weights="MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1", weights_backbone=None),
                 _reference_args(weights=torch.zeros(2), weights_backbone=["x"]),
                 _reference_args(prototype=True, pretrained=False, weights=None)):
        held = {**recipe, "args": args}
        assert reference_args_eps(held) is None, args
        result = convert_torchvision(held)
        assert result["config"].model.frozen_bn_eps == 0.0
        assert any(n.startswith(guess) and "1e-5 if it was built with weights_backbone only" in n
                   for n in result["notes"]), result["notes"]
    # batch counters are the weights' own evidence: plain BatchNorm, whatever the args say
    counted = {**recipe, "model": _manifest_sd("maskrcnn_resnet50_fpn"),
               "args": _reference_args(weights="DEFAULT", weights_backbone=None)}
    assert convert_torchvision(counted)["config"].model.frozen_bn_eps == 1e-5


def test_v2_eps_is_1e_5_with_or_without_counters():
    plain = _manifest_sd("maskrcnn_resnet50_fpn_v2")
    published = {k: v for k, v in plain.items() if not k.endswith("num_batches_tracked")}
    for sd in (plain, published):
        result = convert_torchvision(sd)
        assert result["config"].model.frozen_bn_eps == 1e-5
        assert not [n for n in result["notes"] if "frozen_bn_eps" in n]


def test_mmdetection_style_meta_class_names_are_kept(tmp_path, capsys):
    """torchvision weights under 'state_dict' with mmcv's 'meta' (CLASSES, or mmengine's
    dataset_meta.classes) beside them: the stored names were dropped for class_1, class_2, ..."""
    from maskrcnn.checkpoint import load_checkpoint
    from maskrcnn.cli import main

    sd = _manifest_sd("fasterrcnn_resnet50_fpn")
    # a 4-class model (plus background): the box predictor cut to 5 rows
    for key, per in (("roi_heads.box_predictor.cls_score.", 1), ("roi_heads.box_predictor.bbox_pred.", 4)):
        for leaf in ("weight", "bias"):
            sd[key + leaf] = sd[key + leaf][: 5 * per].clone()
    v2 = {"meta": {"epoch": 12, "CLASSES": ("a", "b", "c", "d")}, "state_dict": sd}
    v3 = {"meta": {"dataset_meta": {"classes": ["__background__", "a", "b", "c", "d"]}}, "state_dict": sd}
    for held in (v2, v3):
        result = convert_torchvision(held)
        assert result["class_names"] == ["__background__", "a", "b", "c", "d"]
    src, out = tmp_path / "mm_style.pth", tmp_path / "ours.pth"
    torch.save(v2, src)
    assert main(["convert", "--from", "torchvision", str(src), str(out)]) == 0
    assert "note: class names from the file's meta['CLASSES'] (4)" in capsys.readouterr().err
    assert load_checkpoint(out)["class_names"] == ["__background__", "a", "b", "c", "d"]
    # a count that does not fit the weights: not taken, and said
    wrong = convert_torchvision({"meta": {"CLASSES": ("a", "b")}, "state_dict": sd})
    assert wrong["class_names"] == ["__background__", "class_1", "class_2", "class_3", "class_4"]
    assert any(n.startswith("the file's meta['CLASSES'] names 2 classes but the weights have 4 (plus "
                            "background): not taken") for n in wrong["notes"]), wrong["notes"]


def test_meta_class_names_keep_a_first_class_called_background():
    """mmdet's class lists never hold the background, so a dataset's first class may be called
    "background": ('background', 'car') beside 2-class weights (plus background) was cut to ('car',) and
    refused as "names 1 classes but the weights have 2"."""
    from maskrcnn.interop.torchvision import meta_class_names

    def meta(*names):
        return {"meta": {"CLASSES": names}}

    names, notes = meta_class_names(meta("background", "car"), 3)
    assert names == ["__background__", "background", "car"], notes
    assert notes == ["class names from the file's meta['CLASSES'] (2)"]
    # a background name first is dropped only when the count then fits
    for stored in (("__background__", "car"), ("background", "car"), ("_background_", "car")):
        assert meta_class_names(meta(*stored), 2)[0] == ["__background__", "car"], stored
    assert meta_class_names(meta("car", "bus"), 3)[0] == ["__background__", "car", "bus"]
    # a count that fits neither way: the note gives the count the file stores
    names, notes = meta_class_names(meta("background", "car", "bus"), 5)
    assert names == ["__background__", "class_1", "class_2", "class_3", "class_4"]
    assert notes[0].startswith("the file's meta['CLASSES'] names 3 classes (the first 'background') but the "
                               "weights have 4 (plus background): not taken"), notes


def test_unreadable_file_named(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ConversionError, match="broken.pth"):
        load_torchvision_file(bad)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_torchvision_file(tmp_path / "nothere.pth")


def test_convert_command_writes_a_loadable_checkpoint(tmp_path):
    from maskrcnn.checkpoint import config_from_checkpoint, load_checkpoint
    from maskrcnn.cli import main
    from maskrcnn.modeling.mask_rcnn import build_model

    sd = _manifest_sd("fasterrcnn_resnet50_fpn")
    src = tmp_path / "tv.pth"
    torch.save(sd, src)
    out = tmp_path / "ours.pth"
    argv = ["convert", "--from", "torchvision", str(src), str(out), "--set", "model.frozen_bn_eps=1e-5"]
    assert main(argv) == 0
    ckpt = load_checkpoint(out)
    cfg = config_from_checkpoint(ckpt)
    assert cfg.model.frozen_bn_eps == 1e-5 and cfg.model.roi_heads.mask_on is False
    assert ckpt["class_names"][1] == "person" and ckpt["converted_from"]["layout"] == "fasterrcnn"
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])  # strict: every key present, none extra
    assert model.backbone.stem.conv1.norm.eps == 1e-5
    assert main(["convert", "--from", "torchvision", str(tmp_path / "missing.pth"), str(out)]) == 1


@pytest.mark.parametrize("wrapper, prefix", [("model", "module."), ("state_dict", "model."),
                                             ("state_dict", "model.module.")])
def test_data_parallel_and_lightning_prefixes_are_read_by_convert_and_train_init(wrapper, prefix):
    """A (Distributed)DataParallel model's file ("module." before every name): ``convert`` took it,
    ``train --init`` (``convert_any``) refused it as "not weights this library can start from". A
    Lightning checkpoint ("model." before every name under "state_dict") was refused by both."""
    from maskrcnn.interop.weights import convert_any

    sd = _manifest_sd("fasterrcnn_resnet50_fpn")
    wrapped = {wrapper: {f"{prefix}{k}": v for k, v in sd.items()}, "epoch": 3}
    expected = convert_torchvision(sd)["state_dict"]
    for got in (convert_any(wrapped).state_dict, convert_torchvision(wrapped)["state_dict"]):
        assert sorted(got) == sorted(expected)
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_checkpoint_of_torchvisions_reference_training_script_is_read(tmp_path):
    """references/detection/train.py saves {"model", "optimizer", "lr_scheduler", "args", "epoch"} with
    "args" its argparse.Namespace: weights_only loading refused the whole file ("cannot be read as a
    torch state dict"), in ``convert`` and ``train --init`` alike."""
    import argparse

    from maskrcnn.interop.detectron2 import read_detectron2_file

    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.02, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16, 22])
    path = tmp_path / "model_25.pth"
    args = argparse.Namespace(model="maskrcnn_resnet50_fpn", lr_steps=[16, 22])
    torch.save({"model": layer.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "args": args, "epoch": 25}, path)  # fmt: skip
    got = read_detectron2_file(path)  # what train --init reads files with
    assert got["args"].lr_steps == [16, 22] and torch.equal(got["model"]["weight"], layer.weight)
    with pytest.raises(ConversionError, match="not a torchvision detection state dict"):  # read, then
        load_torchvision_file(path)  # found to hold no detector (a Linear layer)


def test_whole_pickled_model_is_refused_naming_the_class(tmp_path):
    """``torch.save(model)`` instead of its state dict: the reason given was the first line of torch's
    refusal ("Weights only load failed. This file can still be loaded, to do so you have two options,"
    with ANSI escapes), which names neither the class nor the problem."""
    from maskrcnn.interop.detectron2 import read_detectron2_file

    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), path)
    for read in (load_torchvision_file, read_detectron2_file):  # convert's readers (and train --init's)
        with pytest.raises(ConversionError) as info:
            read(path)
        message = str(info.value)
        assert "whole.pth" in message and "torch.nn.modules.container.Sequential" in message
        assert "\n" not in message and "\x1b[" not in message


def _ema_checkpoint(sd, steps=7):
    """What torchvision's references/classification/train.py --model-ema saves: the EMA copy is an
    AveragedModel's state ("module." before each key, plus its counter); here every value + 1."""
    ema = {"n_averaged": torch.tensor(steps), **{f"module.{k}": v + 1 for k, v in sd.items()}}
    return {"model": sd, "model_ema": ema, "epoch": 25}


def test_ema_copy_is_named_and_taken_on_request_by_convert_and_train_init(tmp_path, capsys):
    """convert (and train --init) silently took "model" from a --model-ema file, with no word of the
    averaged copy nor a way to take it."""
    from maskrcnn.checkpoint import load_checkpoint
    from maskrcnn.cli import main
    from maskrcnn.interop.torchvision import pick_weights
    from maskrcnn.interop.weights import convert_any, split_ema

    sd = _manifest_sd("fasterrcnn_resnet50_fpn")
    obj = _ema_checkpoint(sd)
    ours, theirs = "backbone.res2.0.conv1.conv.weight", "backbone.body.layer1.0.conv1.weight"
    taken, notes = pick_weights(obj)  # the default: "model", and a note saying how to take the other
    assert taken is obj and notes == [
        "the file also holds an EMA copy of the weights ('model_ema', averaged over 7 steps); took 'model'; "
        "`maskrcnn convert --ema` or `train --init FILE#ema` takes the EMA copy"]
    src = tmp_path / "model_25.pth"
    torch.save(obj, src)
    assert main(["convert", "--from", "torchvision", str(src), str(tmp_path / "ema.pth"), "--ema"]) == 0
    err = capsys.readouterr().err
    assert "note: took the EMA copy of the weights ('model_ema', averaged over 7 steps)" in err
    assert torch.equal(load_checkpoint(tmp_path / "ema.pth")["model"][ours], sd[theirs] + 1)
    assert split_ema(f"{src}#ema") == (str(src), True) and split_ema(str(src)) == (str(src), False)
    init = convert_any(obj, ema=True)  # what train --init model_25.pth#ema converts
    assert torch.equal(init.state_dict[ours], sd[theirs] + 1) and "took the EMA copy" in init.notes[0]
    plain = tmp_path / "plain_tv.pth"
    torch.save({"model": {theirs: sd[theirs]}}, plain)
    assert main(["convert", "--from", "torchvision", str(plain), str(tmp_path / "x.pth"), "--ema"]) == 1
    assert "plain_tv.pth: the EMA copy of the weights was asked for (the #ema suffix of a weights path, or " \
           "convert's --ema), but the file has no 'model_ema' (train.py --model-ema writes one), " \
           "'state_dict_ema' (timm) nor 'ema_state_dict' beside its weights, the copies --from torchvision " \
           "takes" in capsys.readouterr().err
    assert main(["convert", "--from", "detectron2", str(plain), str(tmp_path / "x.pth"), "--ema"]) == 1
    assert "--ema applies to --from torchvision or maskrcnn, not detectron2" in capsys.readouterr().err
    with pytest.raises(ConversionError, match=r"^x\.pkl: the EMA copy of the weights was asked for \(the "
                       r"#ema suffix of a weights path, or convert's --ema\), but this is a detectron2 "
                       r"file; #ema takes 'model_ema' \(torchvision's "):
        convert_any({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}}, source="x.pkl",
                    ema=True)
    with pytest.raises(ConversionError, match=r"this is not a detector's file; #ema takes"):
        convert_any({"conv1.weight": torch.zeros(1)}, source="r50.pth", ema=True)


def test_mobilenet_backbone_is_refused_naming_its_keys(tmp_path, capsys):
    """fasterrcnn_mobilenet_v3_large_fpn's file said "unrecognised basic-block ResNet with (0, 0, 0, 0)
    blocks per stage", in convert and train --init."""
    from maskrcnn.cli import main
    from maskrcnn.interop.weights import read_weights

    resnet = _manifest_sd("fasterrcnn_resnet50_fpn")
    sd = {k: v for k, v in resnet.items() if not k.startswith("backbone.body.")}
    sd.update({"backbone.body.0.0.weight": torch.zeros(16, 3, 3, 3),
               "backbone.body.1.block.0.0.weight": torch.zeros(16, 1, 3, 3)})  # MobileNetV3's first blocks
    path = tmp_path / "mnv3.pth"
    torch.save(sd, path)
    words = (f"{path}: backbone.body.1.block.* is not a ResNet/ResNeXt backbone (MobileNet?); "
             "supported: resnet18, ")
    assert main(["convert", "--from", "torchvision", str(path), str(tmp_path / "x.pth")]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "blocks per stage" not in err
    with pytest.raises(ConversionError) as info:
        read_weights(str(path))
    assert words in str(info.value)
