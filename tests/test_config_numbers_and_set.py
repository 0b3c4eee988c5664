"""Numbers in configs (``config._coerce``): YAML 1.1 reads ``1e3`` (no dot) as text, and a scalar fell back
to ``float()`` while a list item did not; integer lists (``solver.steps``, ``input.min_size``) took
fractions; a quoted number loaded where a quoted true/false was refused; ``seed`` had no range, and failed
in torch without naming the key. ``--set``: a key given alone and in its section's mapping got no "given
twice" warning (``parse_set_args``)."""

import warnings

import pytest

from maskrcnn.config import load_config, parse_set_args, validate_config


def _set(*items):
    return load_config("demo", parse_set_args(list(items)))


def test_scientific_notation_in_a_list_is_read_as_the_number_a_scalar_is(tmp_path):
    cfg = _set("solver.steps=[1e3,2e3]", "model.pixel_mean=[1e-1,0.4,0.4]", "input.min_size=[1e2, 1.28e2]")
    assert cfg.solver.steps == (1000, 2000) and all(type(s) is int for s in cfg.solver.steps)
    assert cfg.model.pixel_mean == (0.1, 0.4, 0.4)
    assert cfg.input.min_size == (100, 128) and all(type(s) is int for s in cfg.input.min_size)
    path = tmp_path / "c.yaml"
    path.write_text("_base_: demo\nsolver:\n  steps: [1e3, 2e3]\n  lr: 1e-3\n")
    cfg = load_config(str(path))
    assert (cfg.solver.steps, cfg.solver.lr) == ((1000, 2000), 0.001)
    # names stay the text written
    assert _set("data.class_names=[1e3, a]").data.class_names == ("1e3", "a")


def test_integer_lists_take_no_fractions(tmp_path):
    for item in ("solver.steps=[1000.5,2000]", "input.min_size=[640.5]", "input.min_size=640.5"):
        key = item.split("=")[0]
        wanted = rf"config key '{key}' expects a whole number, got (640.5|1000.5)$"
        with pytest.raises(ValueError, match=wanted):
            _set(item)
    path = tmp_path / "c.yaml"
    path.write_text("_base_: demo\nsolver:\n  steps: [1000.5, 2000]\n")
    with pytest.raises(ValueError) as info:
        load_config(str(path))
    assert str(info.value) == (f"{path}: config key 'solver.steps' expects a whole number, got 1000.5 "
                               "(c.yaml line 3)")
    assert _set("input.min_size=640.0").input.min_size == 640
    cfg = load_config("demo")
    cfg.solver.steps = (10.5, 20)  # by attribute assignment
    with pytest.raises(ValueError, match=r"solver.steps must be whole numbers, got \[10.5, 20\]"):
        validate_config(cfg)


def test_a_quoted_number_and_a_quoted_boolean_read_alike(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('_base_: demo\nsolver:\n  iters: "5"\n  amp: "true"\n')
    cfg = load_config(str(path))
    assert (cfg.solver.iters, cfg.solver.amp) == (5, True)
    cfg = _set('solver.iters="5"', 'solver.amp="true"', "solver.clip_grad_norm='1e1'")
    assert (cfg.solver.iters, cfg.solver.amp, cfg.solver.clip_grad_norm) == (5, True, 10.0)
    with pytest.raises(ValueError, match="config key 'solver.amp' expects true/false, got 'maybe'"):
        _set('solver.amp="maybe"')


def test_seed_is_range_checked_when_read_naming_the_key(tmp_path):
    for value in ("1e30", str(2**64), str(-(2**63) - 1)):
        with pytest.raises(ValueError, match=r"seed must be a whole number in \[-2\*\*63, 2\*\*64\) "):
            _set(f"seed={value}")
    assert _set(f"seed={2**63 - 1}").seed == 2**63 - 1
    path = tmp_path / "config.yaml"
    path.write_text("seed: -1\n")  # a run's own config from before the check: still loads
    assert load_config(str(path), stored=True).seed == -1


def test_a_key_given_alone_and_in_its_sections_mapping_is_warned_about():
    cases = {
        ("solver.lr=0.1", "solver={lr: 0.3}"): (0.3, ["solver.lr given twice: 0.3 (the last) used"]),
        ("solver={lr: 0.3}", "solver.lr=0.1"): (0.1, ["solver.lr given twice: 0.1 (the last) used"]),
        ("solver.lr=0.1", "solver={lr: 0.3}", "solver.lr=0.2"): (0.2, [
            "solver.lr given twice: 0.3 (the last) used", "solver.lr given twice: 0.2 (the last) used"]),
        ("solver.lr=0.3", "solver={lr: 0.30, momentum: 0.8}"): (0.3, []),  # the same value: nothing to say
        ("solver.lr=0.1", "solver.lr=0.2"): (0.2, ["solver.lr given twice: 0.2 (the last) used"]),
    }
    for items, (lr, said) in cases.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = _set(*items)
        assert (cfg.solver.lr, [str(w.message) for w in caught]) == (lr, said), items
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = _set("model={rpn: {nms_thresh: 0.5}}", "model.rpn.nms_thresh=0.6")
    assert cfg.model.rpn.nms_thresh == 0.6
    assert [str(w.message) for w in caught] == ["model.rpn.nms_thresh given twice: 0.6 (the last) used"]
