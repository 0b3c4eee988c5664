"""Checkpoint files: round trip, atomic writes, clear errors, safe loading."""

import os
from pathlib import Path

import pytest
import torch

import maskrcnn.checkpoint as ckmod
from maskrcnn.checkpoint import CheckpointError, config_from_checkpoint, load_checkpoint, save_checkpoint
from maskrcnn.config import load_config


def _save(path, value=1.0, **extra):
    cfg = load_config("demo", {"model.num_classes": 4})
    save_checkpoint(
        path,
        model_state={"w": torch.full((2, 2), value)},
        config=cfg,
        class_names=["__background__", "a", "b", "c"],
        **extra,
    )
    return cfg


def test_round_trip_and_config(tmp_path):
    path = tmp_path / "m.pth"
    cfg = _save(path, iteration=7, rng={"torch": torch.get_rng_state()})
    ck = load_checkpoint(path)
    assert ck["format"] == "maskrcnn-checkpoint" and ck["format_version"] == 1
    assert ck["iteration"] == 7 and torch.equal(ck["model"]["w"], torch.ones(2, 2))
    back = config_from_checkpoint(ck)
    assert back.model == cfg.model and back.solver == cfg.solver
    assert back.data.class_names == ("__background__", "a", "b", "c")
    with pytest.raises(ValueError, match="clash"):
        _save(path, model={"x": 1})


def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pth"
    _save(path, 1.0)
    before = path.read_bytes()

    def crash(fd):
        raise OSError("simulated power cut")

    monkeypatch.setattr(ckmod.os, "fsync", crash)
    with pytest.raises(OSError, match="power cut"):
        _save(path, 2.0)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2, 2))


def test_bad_files_raise_checkpoint_error_naming_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pth")
    good = tmp_path / "good.pth"
    _save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pth"):
        load_checkpoint(tmp_path / "trunc.pth")
    torch.save({"backbone.w": torch.zeros(1)}, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="bare state_dict"):
        load_checkpoint(tmp_path / "bare.pth")
    ck = load_checkpoint(good)
    ck["format_version"] = 99
    torch.save(ck, tmp_path / "v99.pth")
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(tmp_path / "v99.pth")
    assert issubclass(CheckpointError, ValueError)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"format": "maskrcnn-checkpoint", "format_version": 1, "x": _Evil(str(marker))}, evil)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(evil)
    assert not marker.exists()
    assert not os.path.exists(marker)
