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
    ("model:\n  rpn:\n    aspect_ratios: [1:2, 1:1]\n", "line 3, column 21: 1:2 reads as base-60 62 in YAML 1.1: "
                                                          "write 0.5"),
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


def test_duplicate_keys_are_refused(tmp_path):
    path = _write(tmp_path, "solver:\n  lr: 0.1\nseed: 3\nsolver:\n  iters: 5\n")
    with pytest.raises(ValueError, match=r"duplicate key 'solver' at line 4 \(first at line 1\)"):
        load_config(path)
    path = _write(tmp_path, "solver:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ValueError, match=r"duplicate key 'lr' at line 3 \(first at line 2\)"):
        load_config(path)


def test_repeated_set_is_noted(capsys):
    with pytest.warns(UserWarning, match=r"solver.lr given twice: 0.2 \(the last\) used"):
        out = parse_set_args(["solver.lr=0.1", "solver.lr=0.2"])
    assert out == {"solver.lr": "0.2"}
