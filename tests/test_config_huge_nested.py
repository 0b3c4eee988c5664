"""Huge whole numbers in configs (``config._huge_problems``): one inside a nested list (a
``data.keypoint_flip_map`` pair) was taken, one in ``model.rpn.anchor_sizes``' nested form was refused
with all its digits shown, and a huge number in a key the caller did not ask about (``keys=``) hid the
problems of the keys it did ask about."""

import warnings

import pytest

from maskrcnn.config import MODEL_KEYS, Config, config_problems, load_config

BIG = "9" * 400


@pytest.mark.parametrize("key, value", [
    ("data.keypoint_flip_map", f"[[{BIG}, 2]]"),
    ("data.keypoint_flip_map", f"[[1, -{BIG}]]"),
    ("model.rpn.anchor_sizes", f"[[{BIG}], [64], [128], [256], [512]]"),
])
def test_a_huge_number_inside_a_nested_list_is_refused_by_its_length(key, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError) as e:
            load_config("keypoint_r50_fpn", {key: value})
    message = str(e.value)
    assert f"{key} must be below 2**64" in message and "an integer of 400 digits" in message
    assert "9" * 30 not in message


def test_a_huge_number_outside_the_keys_asked_for_hides_none_of_theirs():
    cfg = Config()
    cfg.model.num_classes = 1
    cfg.solver.warmup_iters = 10**30
    assert config_problems(cfg, stored=True, keys=MODEL_KEYS) == [
        "model.num_classes must be in [2, 100000], got 1"]
    # the key asked for is still said first and alone, by its length
    assert config_problems(cfg, stored=True, keys=("solver.",)) == [
        "solver.warmup_iters must be below 2**64 in size (what torch and numpy hold), got an integer of "
        "31 digits"]
    assert cfg.solver.warmup_iters == 10**30  # the checks worked on a copy
