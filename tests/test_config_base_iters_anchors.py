"""Configs refused when read, one line naming the key and the file: a ``_base_`` that is a list or a
mapping (a raw ``TypeError: unhashable type`` before), ``solver.iters`` past ``MAX_ITERS`` (1e30 trained
with a 26-digit eta), and FPN anchor sizes that are not one per level (refused by the builder only after
the dataset had been read)."""

import pytest

from maskrcnn.config import MAX_ITERS, load_config


@pytest.mark.parametrize("base", ["[demo]", "{a: 1}"])
def test_a_base_that_is_not_a_name_is_refused_naming_the_file_and_line(tmp_path, base):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"solver:\n  lr: 0.01\n_base_: {base}\n")
    with pytest.raises(ValueError, match=r"cfg\.yaml: _base_ must be a preset name \(.*demo.*\), got "
                                         r"(\['demo'\]|\{'a': 1\}) \(cfg\.yaml line 3\)"):
        load_config(str(path))


def test_solver_iters_past_the_bound_is_refused_when_read(tmp_path):
    with pytest.raises(ValueError, match=r"solver\.iters must be at most 1,000,000,000 \(more than any run "
                                         r"can train\), got 1e\+30"):
        load_config("demo", {"solver.iters": "1e30"})
    path = tmp_path / "long.yaml"
    path.write_text("_base_: demo\nsolver:\n  iters: 2000000000\n")
    with pytest.raises(ValueError, match=r"got 2e\+09 \(long\.yaml line 3\)"):
        load_config(str(path))
    # an int past a float's range: the same line, not math.isfinite's OverflowError traceback
    path.write_text("_base_: demo\nsolver:\n  iters: " + "9" * 400 + "\n")
    with pytest.raises(ValueError, match=r"at most 1,000,000,000 .*got an integer of 400 digits"):
        load_config(str(path))
    # a float key given such an integer: the key named, not float()'s OverflowError traceback
    path.write_text("_base_: demo\nsolver:\n  lr: " + "9" * 400 + "\n")
    with pytest.raises(ValueError, match=r"'solver\.lr' expects a number within a float's range, got an "
                                         r"integer of 400 digits \(long\.yaml line 3\)"):
        load_config(str(path))
    assert load_config("demo", {"solver.iters": MAX_ITERS}).solver.iters == MAX_ITERS
    # a stored config (a checkpoint's) is not a config to train with: not refused
    assert load_config("demo", {"solver.iters": 2 * MAX_ITERS}, stored=True).solver.iters == 2 * MAX_ITERS


def test_fpn_anchor_sizes_not_one_per_level_are_refused_when_read():
    with pytest.raises(ValueError, match=r"model\.rpn\.anchor_sizes has 1 size for 5 FPN levels"):
        load_config("r50_fpn", {"model.rpn.anchor_sizes": "[32]"})
    # without an FPN every size goes on the one level: any count builds
    assert load_config("r50_c4", {"model.rpn.anchor_sizes": "[32]"}).model.rpn.anchor_sizes == (32,)
