"""Sizes the model is built with have upper bounds: a hostile or corrupt stored config (a checkpoint's,
a run's config.yaml) is refused naming the file and the key before anything is allocated."""

import pytest

from maskrcnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from maskrcnn.config import Config, config_problems, from_dict, load_config


@pytest.mark.parametrize("key, value", [
    ("model.fpn_dim", 10**12), ("model.roi_heads.box_head_dim", 10**9), ("model.num_classes", 10**9),
    ("model.roi_heads.num_keypoints", 10**7), ("model.roi_heads.mask_pool_size", 10**5),
    ("model.roi_heads.mask_head_convs", 10**6), ("model.rpn.head_convs", 10**6),
    ("input.max_size_test", 10**9),
])
def test_a_stored_size_past_its_bound_is_refused_naming_the_key(key, value):
    section, _, field = key.rpartition(".")
    cfg = Config().to_dict()
    node = cfg
    for part in section.split("."):
        node = node[part]
    node[field] = value
    with pytest.raises(ValueError, match=rf"{key} must be in [\[(][02], \d+\], got {value}"):
        from_dict(cfg, stored=True)


def test_too_many_anchor_shapes_are_refused():
    cfg = Config()
    cfg.model.rpn.aspect_ratios = tuple(1.0 + i / 100 for i in range(1000))
    assert any("model.rpn.aspect_ratios must have at most" in p for p in config_problems(cfg, stored=True))


def test_published_sizes_stay_accepted():
    assert config_problems(Config(), stored=True) == []


def test_a_checkpoint_with_a_huge_fpn_dim_is_refused_naming_file_and_key(tmp_path):
    cfg = Config().to_dict()
    cfg["model"]["fpn_dim"] = 10**12
    path = tmp_path / "hostile.pth"
    save_checkpoint(path, model_state={}, config=cfg, class_names=["__background__", "a"])
    with pytest.raises(CheckpointError, match=r"hostile\.pth: its 'config' cannot be used: .*model\.fpn_dim "
                                              r"must be in \(0, 8192\], got 1000000000000"):
        load_checkpoint(path)


def test_a_run_config_with_a_huge_head_is_refused_naming_file_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  roi_heads:\n    mask_head_dim: 100000000\n")
    with pytest.raises(ValueError, match=r"config\.yaml.*mask_head_dim must be in \(0, 8192\].*line 3"):
        load_config(str(path), stored=True)


def test_a_yaml_number_of_100000_digits_is_refused_naming_file_key_and_line(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("solver:\n  iters: 1" + "0" * 100_000 + "\n")
    with pytest.raises(ValueError) as e:
        load_config(str(path))
    message = str(e.value)
    assert "big.yaml" in message and "line 2" in message and "'solver.iters'" in message
    assert "set_int_max_str_digits" not in message and len(message) < 400
