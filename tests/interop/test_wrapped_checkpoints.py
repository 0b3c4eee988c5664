"""Weights saved through a wrapper (DataParallel's ``module.``, a LightningModule's attribute), beside an
EMA copy, without their config, or from another library, given where they do not belong: each is read,
or refused in one line that says what the file is and the command that reads it."""

import json
from pathlib import Path

import pytest
import torch
from test_mmdetection_convert import _random_model, to_mmdet  # tests/interop is on the path
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import Config, apply_overrides
from maskrcnn.interop.torchvision import ConversionError, convert_torchvision
from maskrcnn.interop.weights import convert_any, layout_of, read_weights
from maskrcnn.interop.wrappers import strip_common_prefix

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "torchvision_state_dict_keys.json"
NAMES = ["__background__", "cat", "dog"]


def _tv_faster():
    """torchvision's Faster R-CNN keys, each tensor filled with its own index."""
    entries = json.loads(MANIFEST.read_text())["fasterrcnn_resnet50_fpn"]
    return {k: torch.full(shape, float(i)) if dtype == "float32" else torch.zeros(shape, dtype=torch.int64)
            for i, (k, shape, dtype) in enumerate(entries)}


def _wrapper_notes(notes):
    """The notes on the file's wrapping: without the batch-norm eps one every v1 torchvision file gets."""
    return [n for n in notes if not n.startswith("model.frozen_bn_eps ")]


@pytest.fixture(scope="module")
def tiny():
    """(config, state dict) of a tiny model of ours (resnet18: not the default backbone)."""
    cfg = apply_overrides(Config(), TINY)
    return cfg, _random_model().state_dict()


def test_our_checkpoint_with_a_ddp_prefix_loads_and_its_config_is_followed(tmp_path, tiny):
    """Our checkpoint whose 'model' keys carry DataParallel's "module.": train --init loaded 0 tensors
    (307 "start fresh") and trained from random weights on resnet50; predict refused it with 142
    missing / 142 unexpected keys."""
    from maskrcnn.predictor import Predictor

    cfg, sd = tiny
    path = tmp_path / "ddp.pth"
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    save_checkpoint(path, model_state=wrapped, config=cfg, class_names=NAMES)
    assert list(load_checkpoint(path)["model"]) == list(sd)
    weights = read_weights(str(path))  # train --init
    assert sorted(weights.state_dict) == sorted(sd)
    assert weights.implied["model.backbone"] == "resnet18"
    assert weights.notes == [
        "dropped the prefix 'module.' every key had (a DataParallel / LightningModule wrapper)"]
    predictor = Predictor.from_checkpoint(path, device="cpu")
    key = "roi_heads.box_predictor.cls_score.weight"  # (not folded with a norm, as the stem is)
    assert torch.equal(predictor.model.state_dict()[key], sd[key])


def test_init_that_would_load_nothing_stops_naming_the_file_and_keys():
    from maskrcnn.engine.init_weights import InitError, plan_init

    model = {"backbone.stem.w": torch.zeros(2), "rpn.head.w": torch.zeros(2), "fpn.w": torch.zeros(1)}
    wrapped = {f"net.{k}": v for k, v in model.items()}
    with pytest.raises(InitError) as e:
        plan_init(model, wrapped, source="x.pth")
    assert str(e.value) == (
        "x.pth: only 0 of the model's 3 tensors found in the weights by name, 3 of its 3 tensors fit "
        "nowhere: training would start from random weights (the file's keys: net.backbone.stem.w, "
        "net.rpn.head.w, net.fpn.w; the model's: backbone.stem.w, rpn.head.w, fpn.w)")
    # a backbone alone (an ImageNet start) loads its part, the rest starts fresh: no refusal
    plan = plan_init(model, {"backbone.stem.w": torch.ones(2)}, source="x.pth")
    assert plan["loaded"] == ["backbone.stem.w"] and sorted(plan["reinitialised"]) == ["fpn.w", "rpn.head.w"]


def test_init_refuses_weights_without_tensors_and_a_tiny_share_loaded():
    from maskrcnn.engine.init_weights import InitError, plan_init

    counter = {"p0.num_batches_tracked": torch.zeros((), dtype=torch.int64)}
    model = {**{f"p{i}.w": torch.zeros(1) for i in range(100)}, **counter}  # parts each its own
    with pytest.raises(InitError, match=r"^x\.pth: the weights hold no tensors to load: training would"):
        plan_init(model, {}, source="x.pth")
    with pytest.raises(InitError, match=r"no tensors to load but batch counters \(num_batches_tracked\)"):
        plan_init(model, dict(counter), source="x.pth")
    # a part the model lacks (a key of no part we know would be refused as another architecture's)
    unplaced = {f"roi_heads.keypoint_head.w{i}": torch.ones(1) for i in range(50)}
    # 2 of 100 loaded, 50 of the file's tensors placed nowhere: refused
    source = {"p0.w": torch.ones(1), "p1.w": torch.ones(1), **unplaced}
    with pytest.raises(InitError, match=r"^x\.pth: only 2 of the model's 100 tensors found"):
        plan_init(model, source, source="x.pth")
    # 4 of 100 and the batch counter (not a tensor that counts): still under the 5% share, refused
    source = {**{f"p{i}.w": torch.ones(1) for i in range(4)}, **counter, **unplaced}
    with pytest.raises(InitError, match=r"^x\.pth: only 4 of the model's 100 tensors found"):
        plan_init(model, source, source="x.pth")
    source["p4.w"] = torch.ones(1)  # 5 of 100: the share, loaded
    assert len(plan_init(model, source, source="x.pth")["loaded"]) == 6  # (the counter too)


def test_bare_or_lightning_wrapped_weights_of_our_model_get_the_save_checkpoint_advice(tmp_path, tiny):
    """torch.save(model.state_dict()) of our model was told to "convert it with `maskrcnn convert`",
    which no --from does."""
    _cfg, sd = tiny
    lightning = {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1}
    for name, obj in (("bare.pth", sd), ("lightning.pth", lightning)):
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        message = str(e.value)
        assert message.startswith(f"{path}: not a maskrcnn checkpoint (the weights of this library's model "
                                  "without the config that says how to build it: predict, eval and export "
                                  "run them with --config PRESET_OR_YAML; no --from converts them: save them "
                                  "with maskrcnn.checkpoint.save_checkpoint(OUT, ")
        assert "maskrcnn convert" not in message


def test_another_librarys_file_given_as_weights_names_the_convert_command(tmp_path, tiny):
    """MMDetection files (meta + state_dict) were told "a torchvision or detectron2 checkpoint?"."""
    mm = tmp_path / "mm.pth"
    torch.save({"meta": {"CLASSES": ("cat", "dog")},
                "state_dict": {"rpn_head.rpn_conv.weight": torch.zeros(1)}}, mm)
    tv = tmp_path / "tv.pth"
    torch.save({"detector.backbone.body.conv1.weight": torch.zeros(1)}, tv)  # a Lightning self.detector
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"net.conv.weight": torch.zeros(1), "net.fc.weight": torch.zeros(1)}}, other)
    expected = {mm: f"an MMDetection checkpoint: maskrcnn convert --from mmdetection {mm} OUT.pth",
                tv: f"a torchvision checkpoint: maskrcnn convert --from torchvision {tv} OUT.pth",
                other: "weights with keys like net.conv.weight, net.fc.weight; every key starts with 'net.': "
                       "not a torchvision"}
    for path, words in expected.items():
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert str(e.value).startswith(f"{path}: not a maskrcnn checkpoint ({words}")


def _torchvision_keys(keys):
    return any(k.startswith("backbone.body.") for k in keys)


def test_a_single_shared_prefix_is_dropped_only_when_it_makes_a_known_layout():
    """A LightningModule holding the detector as ``self.detector``: every key "detector.backbone.body..."
    was refused by convert and train --init alike."""
    sd = _tv_faster()
    wrapped = {"state_dict": {f"detector.{k}": v for k, v in sd.items()}, "epoch": 3}
    result = convert_torchvision(wrapped)
    assert _wrapper_notes(result["notes"]) == [
        "dropped the prefix 'detector.' every key had (a DataParallel / LightningModule wrapper)"]
    assert layout_of(wrapped) == "torchvision"
    key = "backbone.res2.0.conv1.conv.weight"
    assert torch.equal(result["state_dict"][key], sd["backbone.body.layer1.0.conv1.weight"])
    backbone_only = {"backbone.body.conv1.weight": torch.zeros(1)}  # recognised as it is: kept
    assert strip_common_prefix(backbone_only, _torchvision_keys) == (backbone_only, None)
    with pytest.raises(ConversionError, match=r"every key starts with 'net\.'\); expected a maskrcnn"):
        convert_any({"net.conv.weight": torch.zeros(1), "net.fc.weight": torch.zeros(1)}, source="x.pth")
    with pytest.raises(ConversionError, match=r"cls_score\.\* keys \(every key starts with 'net\.'\)$"):
        convert_torchvision({"net.conv.weight": torch.zeros(1), "net.fc.weight": torch.zeros(1)})


def test_a_prefix_before_a_detectron2_or_mmdetection_file_is_dropped_as_for_torchvision(tmp_path, capsys):
    """A `detector.`-prefixed MMDetection / detectron2 file (a LightningModule's ``self.detector``) was
    refused by `convert --from detectron2|mmdetection`, train --init and the not-ours hint alike, which
    dropped only "module." / "model."; the torchvision reader dropped any single shared prefix."""
    from test_detectron2_convert import LAYOUTS as D2_LAYOUTS
    from test_detectron2_convert import _random_model as d2_model
    from test_detectron2_convert import to_detectron2

    from maskrcnn.interop.detectron2 import convert_detectron2
    from maskrcnn.interop.mmdetection import convert_mmdetection

    d2 = {k: torch.from_numpy(v) for k, v in to_detectron2(d2_model(**D2_LAYOUTS["fasterrcnn"])).items()}
    mm = to_mmdet(_random_model())
    note = "dropped the prefix 'detector.' every key had (a DataParallel / LightningModule wrapper)"
    cases = (("detectron2", "d2.pth", {"model": d2}, convert_detectron2({"model": d2})),
             ("mmdetection", "mm.pth", {"meta": {}, "state_dict": mm}, convert_mmdetection(mm)))
    for fmt, name, plain, expected in cases:
        inner = "model" if fmt == "detectron2" else "state_dict"
        obj = {**plain, inner: {f"detector.{k}": v for k, v in plain[inner].items()}}
        assert layout_of(obj) == fmt
        assert note in convert_any(obj, source=name).notes  # train --init
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert f"maskrcnn convert --from {fmt} {path} OUT.pth" in str(e.value)
        out = tmp_path / f"ours_{name}"
        assert main(["convert", "--from", fmt, str(path), str(out)]) == 0
        assert f"note: {note}" in capsys.readouterr().err
        converted = load_checkpoint(out)["model"]
        assert sorted(converted) == sorted(expected["state_dict"])
        assert all(torch.equal(converted[k], v) for k, v in expected["state_dict"].items())
    # a prefix whose removal leaves no layout this library reads stays, and is named
    other = {f"detector.{k}": torch.zeros(1) for k in ("net.conv.weight", "net.fc.weight")}
    with pytest.raises(ConversionError, match=r"every key starts with 'detector\.'"):
        convert_any(other, source="x.pth")


def test_ema_copies_of_timm_mmengine_and_ours_are_named_and_taken_on_request(tmp_path, tiny):
    """timm's 'state_dict_ema', mmengine's 'ema_state_dict' and our checkpoint's 'model_ema' were ignored
    without a word."""
    sd = _tv_faster()
    timm = {"state_dict": sd, "state_dict_ema": {k: v + 1 for k, v in sd.items()}}
    key, theirs = "backbone.res2.0.conv1.conv.weight", "backbone.body.layer1.0.conv1.weight"
    assert _wrapper_notes(convert_torchvision(timm)["notes"]) == [
        "the file also holds an EMA copy of the weights ('state_dict_ema'); took 'state_dict'; "
        "`maskrcnn convert --ema` or `train --init FILE#ema` takes the EMA copy"]
    assert torch.equal(convert_torchvision(timm, ema=True)["state_dict"][key], sd[theirs] + 1)

    from maskrcnn.interop.mmdetection import convert_mmdetection

    mm = to_mmdet(_random_model())
    # mmengine's EMAHook swaps the copies before saving: 'state_dict' holds the average, 'ema_state_dict'
    # the raw weights (behind module., with its 'steps' counter)
    raw = {"steps": torch.tensor(50), **{f"module.{k}": v + 1 for k, v in mm.items()}}
    obj = {"meta": {"dataset_meta": {"classes": ("cat", "dog")}}, "state_dict": mm, "ema_state_dict": raw}
    plain = convert_mmdetection(obj)
    assert "took 'state_dict': the EMA average of the weights, averaged over 50 steps (mmengine's " \
           "EMAHook swaps it in before saving; the raw weights in 'ema_state_dict' are not converted)" \
           in plain["notes"]
    stem = "backbone.res2.0.conv1.conv.weight"
    assert torch.equal(plain["state_dict"][stem], convert_mmdetection(mm)["state_dict"][stem])
    with pytest.raises(ConversionError, match=r"^mm\.pth: the EMA copy of the weights was asked for "
                       r"\(the #ema suffix of a weights path, or convert's --ema\), but this file's "
                       r"'state_dict' already is the EMA average "
                       r"\(mmengine's EMAHook"):
        convert_mmdetection(obj, source="mm.pth", ema=True)
    with pytest.raises(ConversionError, match=r"already is the EMA average"):
        convert_any(obj, source="mm.pth", ema=True)  # train --init mm.pth#ema
    with pytest.raises(ConversionError, match=r"has no 'ema_state_dict' beside it$"):
        convert_mmdetection({"state_dict": mm}, source="mm.pth", ema=True)
    assert "EMA average" in " | ".join(convert_any(obj, source="mm.pth").notes)

    cfg, ours = tiny
    path = tmp_path / "ours_ema.pth"
    save_checkpoint(path, model_state=ours, config=cfg, class_names=NAMES,
                    model_ema={k: v + 1 if v.is_floating_point() else v for k, v in ours.items()})
    bare = tmp_path / "ours_no_ema.pth"
    save_checkpoint(bare, model_state=ours, config=cfg, class_names=NAMES)
    with pytest.raises(ConversionError, match=r"has no 'model_ema', the copy a maskrcnn checkpoint keeps "
                       r"when saved with save_checkpoint\(\.\.\., model_ema=\.\.\.\)$"):
        read_weights(f"{bare}#ema")
    assert read_weights(str(path)).notes == [
        "the file also holds an EMA copy of the weights ('model_ema'); took 'model'; "
        "`train --init FILE#ema` takes the EMA copy"]
    ema = read_weights(f"{path}#ema")
    assert torch.equal(ema.state_dict[stem], ours[stem] + 1) and ema.notes == [
        "took the EMA copy of the weights ('model_ema')"]


def test_an_ema_state_dict_beside_state_dict_is_named_and_taken_on_request(tmp_path, capsys):
    """A torchvision-named 'state_dict' with an 'ema_state_dict' beside it (a training script's EMA copy)
    was dropped without a word, and --ema said the file had no EMA copy. mmengine's (its averaged model's
    'steps' counter: the raw weights, swapped out by EMAHook) is said as such and not taken for the EMA."""
    sd = _tv_faster()
    key, theirs = "backbone.res2.0.conv1.conv.weight", "backbone.body.layer1.0.conv1.weight"
    path = tmp_path / "w_ema_sd.pth"
    torch.save({"state_dict": sd, "ema_state_dict": {k: v + 1 for k, v in sd.items()}}, path)
    note = ("the file also holds an EMA copy of the weights ('ema_state_dict'); took 'state_dict'; "
            "`maskrcnn convert --ema` or `train --init FILE#ema` takes the EMA copy")
    assert main(["convert", "--from", "torchvision", str(path), str(tmp_path / "plain.pth")]) == 0
    assert f"note: {note}" in capsys.readouterr().err
    assert torch.equal(load_checkpoint(tmp_path / "plain.pth")["model"][key], sd[theirs])
    assert main(["convert", "--from", "torchvision", str(path), str(tmp_path / "ema.pth"), "--ema"]) == 0
    assert "note: took the EMA copy of the weights ('ema_state_dict')" in capsys.readouterr().err
    assert torch.equal(load_checkpoint(tmp_path / "ema.pth")["model"][key], sd[theirs] + 1)
    assert note in read_weights(str(path)).notes  # train --init FILE
    assert torch.equal(read_weights(f"{path}#ema").state_dict[key], sd[theirs] + 1)  # train --init FILE#ema

    raw = {"steps": torch.tensor(50), **{f"module.{k}": v + 1 for k, v in sd.items()}}
    swapped = {"state_dict": sd, "ema_state_dict": raw}  # an mmengine run of a torchvision model
    assert _wrapper_notes(convert_torchvision(swapped)["notes"]) == [
        "took 'state_dict': the EMA average of the weights, averaged over 50 steps (mmengine's EMAHook swaps "
        "it in before saving; the raw weights in 'ema_state_dict' are not converted)"]
    with pytest.raises(ConversionError, match=r"^mm\.pth: .* but this file's 'state_dict' already is the EMA "
                       r"average \(mmengine's EMAHook"):
        convert_torchvision(swapped, source="mm.pth", ema=True)


def _tv_with_nan_fc6() -> dict:
    """A torchvision Faster R-CNN state dict whose box head fc6 holds one NaN."""
    sd = _tv_faster()
    sd["roi_heads.box_head.fc6.weight"] = sd["roi_heads.box_head.fc6.weight"].clone()
    sd["roi_heads.box_head.fc6.weight"][0, 0] = float("nan")
    return sd


def _refused_by_convert_and_init(src, out, capsys, named: str) -> None:
    """``convert`` refuses ``src`` naming ``named`` (the file's key, ours beside it, its entry) and writes
    nothing; ``train --init`` (read_weights + refuse_non_finite) says the same words."""
    from maskrcnn.engine.init_weights import InitError, refuse_non_finite

    assert main(["convert", "--from", "torchvision", str(src), str(out)]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"{src}: weights hold NaN or infinite values in tensors {named}; nothing written")
    assert not out.exists()
    source = read_weights(str(src))
    with pytest.raises(InitError) as e:
        refuse_non_finite(source.state_dict, str(src), source.origin, source.entry)
    assert str(e.value) == (f"{src}: weights hold NaN or infinite values in tensors {named}; training "
                            "would not start from them")


def test_non_finite_weights_behind_a_wrapper_are_named_by_the_files_whole_key(tmp_path, capsys):
    # {"model": {"module." + k: v}}: the readers drop the entry and the prefix; the key said as "the
    # file's" lacked both, a key no torch.load of the file shows
    from maskrcnn.engine.init_weights import InitError, refuse_non_finite

    sd = _tv_with_nan_fc6()
    src, out = tmp_path / "ddp.pth", tmp_path / "out.pth"
    torch.save({"model": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, src)
    _refused_by_convert_and_init(src, out, capsys, "module.roi_heads.box_head.fc6.weight (ours: "
                                 "roi_heads.box_head.fcs.0.weight) (under the file's 'model')")
    mm = to_mmdet(_random_model())  # a LightningModule's self.detector inside DataParallel
    mm["roi_head.bbox_head.shared_fcs.0.weight"][0, 0] = float("inf")
    source = convert_any({"state_dict": {"module.detector." + k: v for k, v in mm.items()}}, source="mm.pth")
    with pytest.raises(InitError, match=r"in tensors module\.detector\.roi_head\.bbox_head\.shared_fcs\.0\."
                                        r"weight \(ours: roi_heads\.box_head\.fcs\.0\.weight\) \(under the "
                                        r"file's 'state_dict'\); training"):
        refuse_non_finite(source.state_dict, "mm.pth", source.origin, source.entry)


def test_convert_refuses_non_finite_weights_and_a_named_background(tmp_path, capsys):
    from maskrcnn.engine.init_weights import InitError, refuse_non_finite

    bad = _tv_with_nan_fc6()
    src, out = tmp_path / "nan.pth", tmp_path / "out.pth"
    torch.save(bad, src)
    # the file's own key first (what torch.load shows; it has no fcs.0), ours beside it
    _refused_by_convert_and_init(src, out, capsys, "roi_heads.box_head.fc6.weight (ours: "
                                 "roi_heads.box_head.fcs.0.weight)")
    mm = to_mmdet(_random_model())  # farther from ours: MMDetection's shared_fcs
    mm["roi_head.bbox_head.shared_fcs.0.weight"][0, 0] = float("inf")
    source = convert_any({"state_dict": mm}, source="mm.pth")
    with pytest.raises(InitError, match=r"in tensors roi_head\.bbox_head\.shared_fcs\.0\.weight \(ours: "
                                        r"roi_heads\.box_head\.fcs\.0\.weight\); training"):
        refuse_non_finite(source.state_dict, "mm.pth", source.origin)
    from maskrcnn.commands.convert import given_class_names

    for name in ("__background__", "Background", "_background_"):
        with pytest.raises(ValueError) as e:
            given_class_names(f"{name},cat", 3)
        assert str(e.value) == (f"--class-names names the background ({name!r}): it is implicit (class 0, "
                                "added as '__background__'); give the 2 foreground classes only, e.g. "
                                "--class-names class_1,class_2")
    assert given_class_names("background cat,cat", 3) == ["__background__", "background cat", "cat"]


def test_predict_says_one_class_not_one_classes():
    from maskrcnn.commands.predict import _classes

    assert (_classes(1), _classes(2)) == ("1 class", "2 classes")
