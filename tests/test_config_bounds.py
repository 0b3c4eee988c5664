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


def _numeric_keys() -> list:
    """Every key of a number or a list of numbers (bools aside), with its default value."""
    from maskrcnn.config import config_keys, get_key

    cfg, keys = Config(), []
    for key in config_keys(cfg):
        value = get_key(cfg, key)
        values = value if isinstance(value, tuple) else (value,)
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            keys.append((key, isinstance(value, tuple)))
    return keys


@pytest.mark.parametrize("key, is_list", _numeric_keys())
def test_a_400_digit_integer_in_any_number_key_is_refused_naming_key_file_and_line(tmp_path, key, is_list):
    # one mechanism for every key: warmup_iters, num_workers, pixel_mean ... took it and failed later
    big = "9" * 400
    *sections, leaf = key.split(".")
    text = "".join("  " * i + s + ":\n" for i, s in enumerate(sections))
    text += "  " * len(sections) + f"{leaf}: {f'[{big}, {big}, {big}]' if is_list else big}\n"
    path = tmp_path / "huge.yaml"
    path.write_text(text)
    for stored in (False, True):  # a run's config.yaml, a checkpoint's: the same bound
        with pytest.raises(ValueError) as e:
            load_config(str(path), stored=stored)
        message = str(e.value)
        assert key in message and "huge.yaml" in message and f"line {len(sections) + 1}" in message, message
        assert big not in message and len(message) < 600, message


@pytest.mark.parametrize("key, value", [
    ("data.num_workers", 100_000), ("solver.batch_size", 10**7), ("solver.warmup_iters", 10**12),
    ("model.size_divisibility", 10**9), ("model.roi_heads.batch_size_per_image", 10**12),
    ("data.min_keypoints_per_image", 10**6),
])
def test_counts_past_any_real_run_are_refused_when_read(key, value):
    with pytest.raises(ValueError, match=rf"{key} must be (.*at most [\d,]+|in [\[(]0, \d+\]), got {value}"):
        load_config("demo", {key: str(value)})
