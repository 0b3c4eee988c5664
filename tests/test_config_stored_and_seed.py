"""Stored configs and the checks added for configs to train with (``config.py``): a checkpoint's or a run's
config with the fractional ``solver.steps`` / ``input.min_size`` earlier versions took was refused at load
(predict, eval and resume of that run all failed); ``seed`` was held to [0, 2**63) although torch takes
[-2**63, 2**64), and its error from a YAML file named no line; ``--set``'s "given twice" warning could name
a value other than the one used."""

import warnings

import pytest
import torch

from maskrcnn.config import from_dict, load_config, parse_set_args


def test_a_stored_config_keeps_the_fractions_earlier_versions_took(tmp_path):
    data = load_config("demo").to_dict()
    data["solver"]["steps"] = [67.5, 81.0]  # a script's 0.75 * iters
    data["input"]["min_size"] = [127.5, 128]
    held = from_dict(data, stored=True)
    assert (held.solver.steps, held.input.min_size) == ((67.5, 81), (127.5, 128))
    path = tmp_path / "config.yaml"
    path.write_text("_base_: demo\nsolver:\n  steps: [0.5]\n")
    assert load_config(str(path), stored=True).solver.steps == (0.5,)
    # a config to train with still takes whole numbers only
    with pytest.raises(ValueError, match=r"config key 'solver.steps' expects a whole number, got 0.5 "
                                         r"\(config.yaml line 3\)"):
        load_config(str(path))
    with pytest.raises(ValueError, match="config key 'input.min_size' expects a whole number, got 127.5"):
        from_dict(data)


def test_the_seed_takes_what_torch_manual_seed_takes(tmp_path):
    for seed in (-1, -(2**63), 2**63, 2**64 - 1):
        torch.Generator().manual_seed(seed)  # torch takes it (the range the check follows)
        assert load_config("demo", {"seed": str(seed)}).seed == seed
    for seed in (2**64, -(2**63) - 1):
        with pytest.raises((RuntimeError, ValueError)):  # torch: "Overflow when unpacking long long"
            torch.Generator().manual_seed(seed)
        with pytest.raises(ValueError, match=r"^invalid configuration: seed must be a whole number in "
                                             r"\[-2\*\*63, 2\*\*64\) \(torch's generators take 64 bits\), "
                                             rf"got {seed}$"):
            load_config("demo", {"seed": str(seed)})


def test_a_seed_out_of_range_in_a_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(f"_base_: demo\nsolver:\n  iters: 0\nseed: {2**64}\n")
    with pytest.raises(ValueError) as info:
        load_config(str(path))
    said = str(info.value)
    assert said.startswith("invalid configuration: solver.iters must be >= 1 ") and said.endswith(
        f", got 0 (old.yaml line 3); seed must be a whole number in [-2**63, 2**64) (torch's generators take "
        f"64 bits), got {2**64} (old.yaml line 4)"), said
    # given by --set over the file: no line of the file is named for it
    with pytest.raises(ValueError) as info:
        load_config(str(path), {"solver.iters": "5", "seed": str(2**65)})
    assert str(info.value).endswith(f"got {2**65}"), info.value


def test_given_twice_names_the_value_used():
    cases = [("solver.lr=0.2", "solver={lr: 0.3}", "solver.lr=0.2"),
             ("solver={lr: 0.3}", "solver.lr=0.1", "solver={lr: 0.3}"),
             ("solver.lr=0.1", "solver={lr: 0.3}", "solver.lr=0.2")]
    for items in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            used = load_config("demo", parse_set_args(list(items))).solver.lr
        said = [str(w.message) for w in caught]
        assert said and said[-1] == f"solver.lr given twice: {used} (the last) used", (items, said)
