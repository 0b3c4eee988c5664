"""Config: presets, YAML with a base, --set overrides with type checks, round trip."""

import pytest

from maskrcnn.config import PRESETS, Config, from_dict, load_config, parse_set_args, save_config


def test_every_preset_builds_a_config():
    for name, make in PRESETS.items():
        cfg = make()
        assert isinstance(cfg, Config), name


def test_set_overrides_are_typed():
    items = ["model.num_classes=5", "solver.lr=1", "input.min_size=[640, 800]", "model.fpn=false",
             "solver.steps=[10, 20]", "solver.iters=2e3"]
    cfg = load_config("r50_fpn", parse_set_args(items))
    assert cfg.model.num_classes == 5
    assert cfg.solver.iters == 2000 and isinstance(cfg.solver.iters, int)  # a whole float is the integer
    assert isinstance(cfg.solver.lr, float) and cfg.solver.lr == 1.0
    assert cfg.input.min_size == (640, 800)
    assert cfg.model.fpn is False
    assert cfg.solver.steps == (10, 20)


@pytest.mark.parametrize("item, message", [
    ("model.nope=1", "model.nope"),
    ("nope.x=1", "nope"),
    ("model.fpn=3", "true/false"),
    ("solver.lr=abc", "number"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises((KeyError, ValueError), match=message):
        load_config("r50_fpn", parse_set_args([item]))


def test_set_needs_equals():
    with pytest.raises(ValueError, match="key=value"):
        parse_set_args(["model.num_classes"])


def test_yaml_round_trip_and_base(tmp_path):
    cfg = load_config("demo", {"seed": 7})
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert load_config(str(path)).to_dict() == {**cfg.to_dict()}
    other = tmp_path / "o.yaml"
    other.write_text("_base_: r50_c4\nmodel:\n  num_classes: 3\n")
    loaded = load_config(str(other))
    assert loaded.model.fpn is False and loaded.model.num_classes == 3


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbonez: resnet50\n")
    with pytest.raises(KeyError, match="bad.yaml"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="neither a preset"):
        load_config(str(tmp_path / "missing.yaml"))


def _leaves(node, prefix=""):
    import dataclasses

    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, prefix + f.name + ".")
        else:
            yield prefix + f.name


def test_every_key_is_read_somewhere():
    """No dead keys: each leaf is named (as an attribute) by the package outside config.py."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "maskrcnn"
    code = "\n".join(p.read_text() for p in package.rglob("*.py") if p.name != "config.py")
    dead = [k for k in _leaves(Config()) if not re.search(rf"\.{k.rsplit('.', 1)[-1]}\b", code)]
    assert dead == []


def test_retired_keys_load_from_stored_configs_and_warn_in_user_files(tmp_path):
    import warnings

    import yaml

    from maskrcnn.config import from_dict

    stored = {**load_config("r50_fpn").to_dict()}
    stored["model"]["roi_heads"]["mask_resolution"] = 28  # written by earlier versions
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint's config: dropped without a word
        assert from_dict(stored, stored=True).model.roi_heads.mask_pool_size == 14
    path = tmp_path / "old.yaml"  # a user's copy of an old run's config.yaml: loads, with a warning
    path.write_text(yaml.safe_dump(stored, sort_keys=False))
    line = path.read_text().splitlines().index("    mask_resolution: 28") + 1
    with pytest.warns(UserWarning, match=rf"old.yaml line {line}: model.roi_heads.mask_resolution: "
                                         "retired key, no longer used: delete it"):
        assert load_config(str(path)).model.roi_heads.mask_pool_size == 14
    with pytest.raises(KeyError, match="keypoint_resolution"):
        load_config("r50_fpn", parse_set_args(["model.roi_heads.keypoint_resolution=56"]))


def test_mapping_keys_from_yaml_and_set(tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text("_base_: demo\nmodel:\n  init_weights: resnet50\n"
                    "  init_class_map: {pedestrian: person}\n")
    cfg = load_config(str(path), parse_set_args(["model.init_class_map={bike: bicycle, van: null}"]))
    assert cfg.model.init_weights == "resnet50"
    assert cfg.model.init_class_map == {"bike": "bicycle", "van": ""}
    with pytest.raises(ValueError, match="init_class_map.*mapping"):
        load_config("demo", parse_set_args(["model.init_class_map=person"]))
    with pytest.raises(ValueError, match="model.backbone.*mapping"):
        load_config("demo", {"model.backbone": {"a": "b"}})


def test_cityscapes_preset_is_the_papers_recipe():
    cfg = load_config("cityscapes_r50_fpn")
    assert cfg.input.min_size == tuple(range(800, 1025, 32)) and cfg.input.min_size_test == 1024
    solver = cfg.solver
    assert (solver.iters, solver.steps, solver.lr, solver.gamma) == (24000, (18000,), 0.01, 0.1)
    assert cfg.solver.batch_size == 8 and cfg.model.num_classes == 9  # 8 instance classes + background
    assert cfg.model.init_weights == "maskrcnn_resnet50_fpn_coco"


@pytest.mark.parametrize("item, nearest", [
    ("solver.lerning_rate=0.1", "solver.lr"),  # a typo of another library's name
    ("solver.seed=0", "seed"),  # the name of a key in another section
    ("model.lr=0.1", "solver.lr"),
    ("solver.ims_per_batch=4", "solver.batch_size"),  # detectron2's
    ("model.rpn.batch_size=64", "model.rpn.batch_size_per_image"),  # a name cut short
])
def test_an_unknown_key_points_to_the_nearest_one(item, nearest):
    key = item.split("=")[0]
    with pytest.raises(KeyError) as info:
        load_config("demo", parse_set_args([item]))
    assert info.value.args[0] == f"unknown config key {key!r}; did you mean {nearest!r}?"


def test_an_unknown_section_and_a_yaml_key_point_to_the_nearest_one(tmp_path):
    with pytest.raises(KeyError) as info:
        load_config("demo", parse_set_args(["solvr.lr=0.1"]))
    assert info.value.args[0] == "unknown config key 'solvr' (in 'solvr.lr'); did you mean 'solver.lr'?"
    path = tmp_path / "c.yaml"
    path.write_text("_base_: demo\nsolver:\n  lerning_rate: 0.1\n  seed: 3\n")
    with pytest.raises(KeyError) as info:
        load_config(str(path))
    assert info.value.args[0] == (f"{path}: unknown config key 'solver.lerning_rate'; did you mean "
                                  "'solver.lr'? (c.yaml line 3)")


def test_save_config_writes_class_names_unescaped(tmp_path):
    cfg = load_config("demo", {"model.num_classes": 3, "data.class_names": ["猫", "Straße"]})
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    text = path.read_text(encoding="utf-8")
    assert "- 猫" in text and "Straße" in text and "\\u" not in text
    assert load_config(str(path)).data.class_names == ("猫", "Straße")


def test_load_config_keys_names_the_keys_the_file_wrote(tmp_path):
    from maskrcnn.config import config_file_keys, load_config_keys

    path = tmp_path / "c.yaml"  # a merge's keys are written too; a mapping-valued field counts whole
    path.write_text("_base_: demo\nmodel:\n  <<: {num_classes: 3}\n  fpn_dim: 8\n  init_class_map: {cat: 1}\n"
                    "solver: {}\n")
    cfg, written = load_config_keys(str(path))
    assert cfg.model.num_classes == 3 and cfg.model.fpn_dim == 8
    assert written == {"model.num_classes", "model.fpn_dim", "model.init_class_map", "solver"}
    assert config_file_keys(str(path)) == written  # for a caller given only the name
    assert load_config_keys("demo")[1] == frozenset() and config_file_keys("demo") == frozenset()


def test_a_value_of_the_wrong_kind_set_by_assignment_is_named_not_a_crash():
    from maskrcnn.config import validate_config

    cfg = load_config("demo")
    cfg.model.freeze_at, cfg.solver.amp = "2", 1  # "2": a TypeError comparing it with 0 before
    with pytest.raises(ValueError, match="^invalid configuration: model.freeze_at must be a whole number, "
                                         "got '2'; solver.amp must be true or false, got 1$"):
        validate_config(cfg)


def test_a_yaml_number_for_a_checked_string_key_keeps_that_keys_own_message(tmp_path):
    """The kind check said "must be a string" for these and hid the other keys' problems; a number for a
    key with choices lists them again, with its line, and the device's and best_metric's own messages."""
    path = tmp_path / "a.yaml"
    path.write_text("_base_: demo\ndevice: 0\nmodel: {backbone: 50}\nsolver:\n  best_metric: segm/APP\n"
                    "  lr: -1\n")
    with pytest.raises(ValueError) as info:
        load_config(str(path))
    text = info.value.args[0]
    assert "model.backbone must be one of resnet18|" in text and "got 50 (a.yaml line 3)" in text
    assert "device must be auto, cpu, cuda or cuda:N, got 0" in text
    assert "solver.lr must be" in text and "did you mean" in text and "must be a string" not in text


def test_negative_iterations_get_the_training_bound_not_the_stored_one():
    # -3 was answered ">= 0"; the user who then set 0 was refused again with ">= 1"
    for iters in (-3, 0):
        with pytest.raises(ValueError) as e:
            load_config("demo", {"solver.iters": iters})
        assert str(e.value) == (f"invalid configuration: solver.iters must be >= 1 (0 would train nothing "
                                f"and write the initial weights as model_final.pth), got {iters}")
    # a stored config keeps its own bound (0 was allowed there)
    with pytest.raises(ValueError, match=r"solver.iters must be >= 0, got -3"):
        from_dict({"solver": {"iters": -3}}, stored=True)


def test_steps_out_of_order_are_refused_naming_the_key_and_values():
    # the schedule sorts them: [15000, 1800] (18000 meant) dropped the lr at 1800 without a word
    with pytest.raises(ValueError) as e:
        load_config("demo", {"solver.steps": [15000, 1800]})
    assert str(e.value) == ("invalid configuration: solver.steps must be in increasing order (the "
                            "iterations of the lr drops, first to last), got [15000, 1800]: a typo? "
                            "(sorted: [1800, 15000])")
    # equal steps: what recipes scaled down to a few iterations give
    assert load_config("demo", {"solver.steps": [0, 0]}).solver.steps == (0, 0)
    # a cosine schedule reads no steps: whatever they hold is no mistake of the run
    cosine = load_config("demo", {"solver.lr_schedule": "cosine", "solver.steps": [900, 100]})
    assert cosine.solver.steps == (900, 100)
    assert load_config("demo", {"solver.steps": [1800, 15000]}).solver.steps == (1800, 15000)
    assert load_config("demo", {"solver.steps": []}).solver.steps == ()
    # a stored config (a run from before this check) still reads, for predict / eval / resume
    assert from_dict({"solver": {"steps": [5, 2]}}, stored=True).solver.steps == (5, 2)


def test_numpy_and_torch_scalars_in_overrides_are_their_values():
    """They were refused with "expects a number, got np.int64(5)" (np.float64 passed only as a float
    subclass), while train(set=...) read them as their numbers: one rule (plain_value) for both now."""
    import numpy as np
    import torch

    from maskrcnn.config import apply_overrides

    cfg = load_config("demo", {"model.roi_heads.detections_per_image": np.int64(5),
                               "solver.lr": np.float32(0.1), "model.fpn": np.bool_(False),
                               "solver.iters": torch.tensor(7),
                               "model.roi_heads.score_thresh": torch.tensor(0.25),
                               "input.min_size": np.array([100, 120]), "solver": {"gamma": np.float32(0.5)}})
    got = (cfg.model.roi_heads.detections_per_image, cfg.solver.lr, cfg.model.fpn, cfg.solver.iters,
           cfg.model.roi_heads.score_thresh, cfg.input.min_size, cfg.solver.gamma)
    assert got == (5, 0.1, False, 7, 0.25, (100, 120), 0.5)  # np.float32(0.1) by its shortest repr
    assert [type(v) for v in got] == [int, float, bool, int, float, tuple, float]
    # and still checked as those numbers are
    for overrides, message in [({"solver.iters": np.float32(1.5)}, "expects a whole number, got 1.5"),
                               ({"model.fpn": np.int64(1)}, "expects true/false, got 1"),
                               ({"solver.lr": object()}, "'solver.lr' expects a number, got <object")]:
        with pytest.raises(ValueError, match=message):
            apply_overrides(load_config("demo"), overrides)


def test_an_unknown_key_set_by_assignment_is_refused_with_the_nearest_one():
    """cfg.model.roi_heads.score_treshold = 0.9 was kept as a new attribute that nothing read: the model
    built with score_thresh 0.05 without a word. Refused at once, as an unknown YAML key is."""
    import copy
    import dataclasses
    import pickle

    cfg = load_config("demo")
    for stmt, message in [
        ("cfg.model.roi_heads.score_treshold = 0.9",
         "unknown config key 'model.roi_heads.score_treshold'; did you mean 'model.roi_heads.score_thresh'?"),
        ("cfg.solver.learning_rate = 0.1",
         "unknown config key 'solver.learning_rate'; did you mean 'solver.lr'?"),
        ("cfg.sed = 1", "unknown config key 'sed'; did you mean 'seed'?"),
    ]:
        with pytest.raises(AttributeError) as info:
            exec(stmt, {"cfg": cfg})
        assert info.value.args[0] == message
    assert not hasattr(cfg.model.roi_heads, "score_treshold")
    cfg.model.roi_heads.score_thresh = 0.9  # the keys themselves, as before
    assert cfg.model.roi_heads.score_thresh == 0.9
    assert copy.deepcopy(cfg) == cfg and pickle.loads(pickle.dumps(cfg)) == cfg
    assert dataclasses.replace(cfg.solver, lr=0.5).lr == 0.5


def test_overrides_that_are_not_a_mapping_are_a_type_error_naming_them():
    from maskrcnn.config import apply_overrides

    with pytest.raises(TypeError, match=r"^overrides: a mapping of dotted config keys to values \(.*\) is "
                                        r"expected, got list$"):
        apply_overrides(load_config("demo"), ["model.roi_heads.score_thresh=0.5"])  # was 'list' has no .items
    with pytest.raises(TypeError, match="^overrides: the keys are dotted config keys \\(strings\\), got 3$"):
        load_config("demo", {3: 1})


def test_a_folder_given_as_config_is_said_to_be_a_folder(tmp_path):
    """``--config runs/mine/`` (a folder) read "is neither a preset nor a file", as if it did not exist;
    now it is named a folder, with what --config takes, and the folder's config.yaml when it holds one
    (a run folder)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        load_config(str(folder))
    said = str(caught.value)
    expected = f"config {str(folder)!r} is a folder: a YAML file or a preset name is expected ("
    assert said.startswith(expected), said
    assert "r50_fpn" in said and "neither" not in said, said
    (folder / "config.yaml").write_text("_base_: demo\n")
    with pytest.raises(IsADirectoryError, match=f"did you mean {folder / 'config.yaml'}"):
        load_config(str(folder))
