"""``maskrcnn train --init FILE`` up to the run's own reading of FILE, then stopped: what a run would
start from (the weights source and the config), without building a dataset or a model."""

from __future__ import annotations

import json

import pytest


class _Stop(Exception):
    pass


def read_init_as_train_does(init, tmp_path, monkeypatch) -> dict:
    """``{"source": SourceWeights, "config": Config}`` of ``train --init init`` (no --config) on an empty
    dataset written under ``tmp_path``."""
    from maskrcnn.cli import build_parser
    from maskrcnn.commands.train import run_training
    from maskrcnn.engine import training
    from maskrcnn.fine_tune import train_argv

    got = {}

    def build_training(cfg, *, init_reads=None, **_):  # the run's own reading of --init, then stop
        got["source"] = training._read_init_weights(cfg.model.init_weights, 0, 1, reads=init_reads)
        got["config"] = cfg
        raise _Stop

    monkeypatch.setattr(training, "build_training", build_training)
    (tmp_path / "images").mkdir()
    (tmp_path / "t.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    argv = train_argv(train_json=tmp_path / "t.json", train_images=tmp_path / "images", init=init,
                      output=tmp_path / "run")
    with pytest.raises(_Stop):
        run_training(build_parser(argv, raise_errors=True).parse_args(argv))
    return got
