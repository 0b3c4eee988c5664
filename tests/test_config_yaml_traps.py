"""YAML 1.1 traps in config files and --set values: octal and base-60 numbers, duplicate keys."""

import pytest

from maskrcnn.config import load_config, parse_set_args


def _write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("solver:\n  iters: 010\n", "line 2, column 10: 010 reads as octal 8 in YAML 1.1: write 10, or quote it"),
    ("solver:\n  steps: [0700, 0850]\n", "0700 reads as octal 448 in YAML 1.1: write 700"),
    ("model:\n  rpn:\n    aspect_ratios: [1:2, 1:1]\n",
     "line 3, column 21: 1:2 reads as base-60 62 in YAML 1.1: write 0.5"),
    ("input:\n  max_size: 1:20\n", "1:20 reads as base-60 80"),
])
def test_misread_numbers_are_refused_with_key_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match="cfg.yaml") as e:
        load_config(_write(tmp_path, text))
    assert message in str(e.value)


def test_misread_numbers_in_set_are_refused():
    with pytest.raises(ValueError, match="010 reads as octal 8"):
        load_config("r50_fpn", {"solver.iters": "010"})
    assert load_config("r50_fpn", {"solver.iters": "'10'"}).solver.iters == 10  # quoted: a string, read as 10


@pytest.mark.parametrize("text, error, said", [
    ("solver:\n  lr: 0.1\nseed: 3\nsolver:\n  iters: 5\n", ValueError,
     r"duplicate key 'solver' at line 4 \(first at line 1\)"),
    ("solver:\n  lr: 0.1\n  lr: 0.2\n", ValueError, r"duplicate key 'lr' at line 3 \(first at line 2\)"),
    # errors from a file name its line, and a misspelled section gets the hint --set gives
    ("seed: 1\nsolver:\n  batch_size: 2.5\n", ValueError,
     r"expects a whole number, got 2.5 \(cfg.yaml line 3\)"),
    ("model:\n  pixel_std: [1, 1, 0]\n", ValueError,
     r"model.pixel_std must be > 0, got .*\(cfg.yaml line 2\)"),
    ("model:\n  roi_head:\n    num_classes: 3\n", KeyError,
     r"did you mean 'model.num_classes'\? \(cfg.yaml line 3\)"),
])
def test_duplicate_keys_and_bad_values_in_a_file_are_refused_with_their_line(tmp_path, text, error, said):
    with pytest.raises(error, match=said):
        load_config(_write(tmp_path, text))


def test_repeated_set_is_noted(capsys):
    with pytest.warns(UserWarning, match=r"solver.lr given twice: 0.2 \(the last\) used"):
        out = parse_set_args(["solver.lr=0.1", "solver.lr=0.2"])
    assert out == {"solver.lr": "0.2"}


def test_other_libraries_configs_are_named(tmp_path):
    path = _write(tmp_path, "_BASE_: Base-RCNN-FPN.yaml\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: 3\n")
    with pytest.raises(ValueError, match=r"a detectron2 config \(_BASE_, upper-case keys\): not read"):
        load_config(path)
    py = tmp_path / "mask_rcnn_r50.py"
    py.write_text("raise SystemExit('executed')\n")
    with pytest.raises(ValueError, match=r"a Python config \(MMDetection\?\) is not read"):
        load_config(str(py))


@pytest.mark.parametrize("item, message", [
    ("model.pixel_mean=[0.5, 0.5]", "model.pixel_mean must be 3 values (R, G, B), got [0.5, 0.5]"),
    ("input.resize_method=foo", "input.resize_method must be one of torchvision|pil, got 'foo'"),
    ("input.min_size=[]", "input.min_size must be a size or a non-empty list of sizes, got []"),
    ("model.backbone=resnet51", "model.backbone must be one of resnet18|"),
    ("model.backbone=50", "got '50'"),
    ("model.norm=BN", "model.norm must be one of none|frozen_bn|bn|gn, got 'BN'"),
    ("device=cuda:x", "device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ("device=", "device must be auto, cpu, cuda or cuda:N, got ''"),
    ("data.class_names=[cat, no]", "data.class_names must be strings, got False"),
])
def test_values_checked_at_load(item, message):
    with pytest.raises(ValueError) as e:
        load_config("r50_fpn", parse_set_args([item]))
    assert message in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("model:\n  fpn_norm: no\n", "config key 'model.fpn_norm' expects one of none|frozen_bn|bn|gn (YAML "
                                  "reads no/off as false, yes/on as true: quote it) (cfg.yaml line 2)"),
    ("device: no\n", "config key 'device' expects one of auto|cpu|cuda|cuda:N (YAML reads no/off"),
    ("data:\n  class_names: [cat, on]\n", "data.class_names must be strings, got True"),
])
def test_yaml_booleans_for_names(tmp_path, text, message):
    with pytest.raises(ValueError) as e:
        load_config(_write(tmp_path, text))
    assert message in str(e.value)


def test_choices_match_the_modules_that_read_them():
    from maskrcnn.config import _CHOICES
    from maskrcnn.data.transforms import RESIZE_METHODS
    from maskrcnn.modeling.backbone import ARCHS
    from maskrcnn.modeling.keypoint_head import KEYPOINT_SCORES
    from maskrcnn.modeling.layers import NORMS
    from maskrcnn.modeling.mask_rcnn import BOX_HEADS, ROI_FEATURES
    from maskrcnn.modeling.roi_heads import MASK_LOSS_MODES
    from maskrcnn.modeling.rpn_loss import BOX_LOSSES
    from maskrcnn.ops.paste import PASTE_METHODS
    from maskrcnn.ops.poolers import POOLERS

    assert set(_CHOICES["model.backbone"]) == set(ARCHS)
    for key in ("model.norm", "model.fpn_norm", "model.roi_heads.box_head_norm",
                "model.roi_heads.mask_head_norm"):
        assert set(_CHOICES[key]) == set(NORMS)
    assert set(_CHOICES["input.resize_method"]) == set(RESIZE_METHODS)
    assert set(_CHOICES["model.roi_heads.keypoint_score"]) == set(KEYPOINT_SCORES)
    assert set(_CHOICES["model.roi_heads.mask_loss"]) == set(MASK_LOSS_MODES)
    assert set(_CHOICES["model.rpn.box_loss"]) == set(_CHOICES["model.roi_heads.box_loss"]) == set(BOX_LOSSES)
    assert set(_CHOICES["model.roi_heads.mask_paste"]) == set(PASTE_METHODS)
    assert set(_CHOICES["model.roi_features"]) == set(ROI_FEATURES)
    assert set(_CHOICES["model.roi_heads.box_head"]) == set(BOX_HEADS)
    assert set(_CHOICES["model.roi_heads.pooler"]) == set(POOLERS)


def test_set_forms_and_empty_parts(tmp_path):
    cfg = load_config("r50_fpn", parse_set_args(["model={num_classes: 3}", "input.min_size=(640,672,704)"]))
    assert cfg.model.num_classes == 3 and cfg.input.min_size == (640, 672, 704)
    path = _write(tmp_path, "solver:\n  # lr: 0.1\nseed: 4\n")
    assert load_config(path).seed == 4
    path = _write(tmp_path, "# nothing yet\n")
    with pytest.warns(UserWarning, match="cfg.yaml is empty: the r50_fpn preset is used"):
        assert load_config(path) == load_config("r50_fpn")


def test_aliases_count_expansions_not_nodes(tmp_path, monkeypatch):
    monkeypatch.setattr("maskrcnn.config.MAX_YAML_NODES", 1000)  # the file stays small, the test fast
    names = "".join(f"  - c{i}\n" for i in range(2000))
    path = _write(tmp_path, "data:\n  class_names:\n" + names)
    assert len(load_config(path).data.class_names) == 2000
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("ab", "bc"))
    with pytest.raises(ValueError, match="aliases expand to"):
        load_config(_write(tmp_path, bomb))


def test_stored_configs_keep_their_device(tmp_path):
    from maskrcnn.config import from_dict

    assert load_config("r50_fpn", {"device": "mps:0"}).device == "mps:0"
    assert load_config("r50_fpn", {"device": "xpu"}).device == "xpu"
    # a checkpoint's config: trained elsewhere; resolve_device judges the device when it is used
    assert from_dict({"device": "npu:1"}, stored=True).device == "npu:1"
    path = _write(tmp_path, "device: npu\n")
    assert load_config(path, stored=True).device == "npu"
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'npu'"):
        load_config(path)


def test_keys_are_read_as_yolo_writes_them():
    from maskrcnn.config import load_yaml

    assert load_yaml("names: {0: a, 1: b, 7: h}\n", "data.yaml") == {"names": {0: "a", 1: "b", 7: "h"}}
    assert load_yaml("names: {1: a, '1': b}\n", "data.yaml") == {"names": {1: "a", "1": "b"}}
    assert load_yaml("steps: [00, 07, -05]\n", "c.yaml") == {"steps": [0, 7, -5]}
    with pytest.raises(ValueError, match="duplicate key '1' at line 3"):
        load_yaml("names:\n  1: a\n  1: b\n", "data.yaml")


@pytest.mark.parametrize("text, message", [
    ("names:\n  010: x\n",
     "line 2, column 3: 010 reads as octal 8 in YAML 1.1: write 10, or quote it (key 'names')"),
    ("names: {00: a, 01: b, 08: c}\n", "key 08 reads as the text '08' in YAML 1.1: write 8, or quote it"),
    ("steps: [010]\n", "010 reads as octal 8"),
])
def test_misread_keys_are_refused(text, message):
    from maskrcnn.config import load_yaml

    with pytest.raises(ValueError) as e:
        load_yaml(text, "data.yaml")
    assert message in str(e.value)


def test_class_name_hint_is_yaml_reading_only():
    with pytest.raises(ValueError) as e:
        load_config("r50_fpn", parse_set_args(["data.class_names=[cat, 1.0]"]))
    assert "got 1.0" in str(e.value) and "quote it: '1.0'" in str(e.value) and "010" not in str(e.value)
    with pytest.raises(ValueError, match="quote it: 'yes'"):
        load_config("r50_fpn", parse_set_args(["data.class_names=[cat, yes]"]))
