"""``train --init`` messages a probe found wanting: an architecture key the user set that the weights
contradict, a key of our own checkpoint that no part of the model takes, the --init file named in every
refusal of its keys, and a torchvision file's missing key said under the file's own name."""

import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.engine.init_weights import InitError, follow_weights_keeping, part_lines, plan_init

# ------------------------------------------------------------------ an explicit architecture key


def test_an_architecture_key_set_explicitly_that_the_weights_contradict_is_refused():
    cfg = load_config("r50_fpn", {"model.backbone": "resnet50", "model.fpn_dim": 256})
    implied = {"model.backbone": "resnet18", "model.fpn_dim": 64, "model.pixel_std": (1 / 255,) * 3}
    explicit = {"model.backbone": "--set", "model.fpn_dim": "--set"}
    with pytest.raises(InitError) as e:
        follow_weights_keeping(cfg, implied, explicit, weights="demo/model_final.pth")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("--set model.backbone=resnet50 but the --init weights demo/model_final.pth "
                          "are a resnet18 model")
    assert "--set model.fpn_dim=256 but the weights have model.fpn_dim 64" in msg
    assert "drop the --set, or use other weights" in msg


def test_an_architecture_key_the_user_did_not_set_still_follows_the_weights():
    cfg = load_config("r50_fpn")
    implied = {"model.backbone": "resnet18", "model.fpn_dim": 64}
    followed, changes, kept = follow_weights_keeping(cfg, implied, {}, weights="w.pth")
    assert followed.model.backbone == "resnet18" and followed.model.fpn_dim == 64
    assert set(changes) == {"model.backbone", "model.fpn_dim"} and kept == {}
    # set explicitly to what the weights hold: nothing to refuse
    same = load_config("r50_fpn", {"model.backbone": "resnet18"})
    followed, changes, _kept = follow_weights_keeping(same, implied, {"model.backbone": "--set"})
    assert followed.model.backbone == "resnet18" and set(changes) == {"model.fpn_dim"}


def test_a_config_file_key_is_named_by_its_file():
    cfg = load_config("r50_fpn")
    with pytest.raises(InitError, match=r"^--config my\.yaml sets model\.roi_heads\.box_head_dim=1024 but "
                                        r"the --init weights w\.pth have model\.roi_heads\.box_head_dim 128"):
        follow_weights_keeping(cfg, {"model.roi_heads.box_head_dim": 128},
                               {"model.roi_heads.box_head_dim": "--config my.yaml"}, weights="w.pth")


# ------------------------------------------------------------------ keys of our own checkpoint


def _state(*keys):
    return {k: torch.full((2,), float(i)) for i, k in enumerate(keys)}


MODEL = ("backbone.stem.conv1.weight", "rpn.conv.weight", "roi_heads.box_head.fc6.weight")


def test_a_key_of_no_known_part_is_refused_naming_it_and_the_file():
    # another version's or architecture's checkpoint: refused as a torchvision file's unmapped key is
    with pytest.raises(InitError) as e:
        plan_init(_state(*MODEL), _state(*MODEL, "roi_heads.foo.weight"), source="own_extra.pth")
    msg = str(e.value)
    assert msg.startswith("own_extra.pth: the weights do not fit the model")
    assert "1 keys the weights have but the model does not: roi_heads.foo.weight" in msg


def test_a_part_the_model_has_lists_its_unused_keys_not_none():
    report = {"loaded": ["roi_heads.box_head.fc6.weight"], "reinitialised": [],
              "unused": ["roi_heads.box_head.fc9.weight"], "class_specific": {}}
    assert part_lines(report) == ["box head: 1 unused: roi_heads.box_head.fc9.weight"]


def test_refusals_of_our_own_keys_name_the_file():
    with pytest.raises(InitError, match=r"^own\.pth: the weights do not fit the model: 1 keys the model "
                                        r"needs but the weights lack: rpn\.conv\.bias"):
        plan_init(_state(*MODEL, "rpn.conv.bias"), _state(*MODEL), source="own.pth")
    model = {"roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 256)}
    source = {"roi_heads.box_predictor.cls_score.weight": torch.zeros(6, 128)}
    with pytest.raises(InitError, match=r"^own\.pth: roi_heads\.box_predictor\.cls_score\.weight: the "
                                        r"weights' \(6, 128\) cannot give rows of the model's \(3, 256\)"):
        plan_init(model, source, class_rows=[0, 1, 2], source="own.pth")


# ------------------------------------------------------------------ a torchvision file's missing key


def test_a_missing_torchvision_key_is_named_as_the_file_names_it():
    from maskrcnn.interop.key_rules import missing_file_keys

    origin = {"roi_heads.box_head.fcs.0.bias": "roi_heads.box_head.fc6.bias",
              "rpn.head.objectness.weight": "rpn.head.cls_logits.weight"}
    assert missing_file_keys(["roi_heads.box_head.fcs.0.weight", "rpn.head.deltas.bias"], origin) == [
        "roi_heads.box_head.fc6.weight (ours: roi_heads.box_head.fcs.0.weight)",
        "rpn.head.deltas.bias (our name)"]


def test_convert_torchvision_names_the_files_key_it_lacks():
    import json
    from pathlib import Path

    from maskrcnn.interop.torchvision import ConversionError, convert_torchvision

    manifest = Path(__file__).resolve().parents[1] / "data" / "torchvision_state_dict_keys.json"
    entries = json.loads(manifest.read_text())["fasterrcnn_resnet50_fpn"]
    sd = {k: torch.zeros(shape, dtype=torch.float32 if dtype == "float32" else torch.int64)
          for k, shape, dtype in entries if k != "roi_heads.box_head.fc6.weight"}
    with pytest.raises(ConversionError, match=r"1 keys our model needs but the file lacks: "
                                              r"roi_heads\.box_head\.fc6\.weight \(ours: "
                                              r"roi_heads\.box_head\.fcs\.0\.weight\)"):
        convert_torchvision(sd, source="tv_missing.pth")
