"""``train --init FILE`` without ``--config`` reads FILE once: choosing the preset (``init_kind``) and
loading the weights (``read_weights``) share the object, and our checkpoint is not read a third time to
be checked. The sharing lasts one call (``interop/file_reads.FileReads``): nothing is cached across calls."""

import os

import pytest
import torch
from init_as_train import read_init_as_train_does  # tests/interop is on the path

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.interop.file_reads import FileReads
from maskrcnn.modeling.mask_rcnn import build_model
from tests.tiny_model import TINY


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    path = tmp_path / "tiny.pth"
    save_checkpoint(path, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", "a", "b"])
    return path


@pytest.fixture
def loads(monkeypatch):
    """The files torch.load opened (every weights reader goes through it for a torch file)."""
    opened, load = [], torch.load

    def counting(f, *args, **kwargs):
        opened.append(os.fspath(getattr(f, "name", f)))  # a path, or the file opened from it
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return opened


def test_train_init_reads_the_file_once(checkpoint, loads, tmp_path, monkeypatch):
    """Before: once for the preset, once in read_weights, once more in load_checkpoint (ours)."""
    got = read_init_as_train_does(checkpoint, tmp_path, monkeypatch)
    assert got["config"].solver.batch_size == PRESETS["finetune"]().solver.batch_size  # told a detector
    assert got["source"].kind == "maskrcnn" and got["source"].class_names == ["__background__", "a", "b"]
    assert loads == [str(checkpoint)]


def test_reads_are_shared_within_one_call_only(checkpoint, loads):
    from maskrcnn.commands.train import default_config
    from maskrcnn.interop.weights import read_weights

    for _ in range(2):  # two calls: each reads the file (a file rewritten in between is read as it is)
        reads = FileReads()
        assert default_config(str(checkpoint), resume=False, say=lambda line: None, reads=reads) == "finetune"
        read_weights(str(checkpoint), reads=reads)
        assert len(reads) == 0  # handed over: the weights are not held for the run
    assert loads == [str(checkpoint)] * 2


def test_a_file_replaced_in_between_is_read_again(tmp_path):
    path, reads, calls = tmp_path / "w.pth", FileReads(), []
    path.write_bytes(b"1")
    assert reads.read(path, "torch", lambda: calls.append(1) or "first", take=False) == "first"
    os.utime(path, ns=(0, 0))  # another modification time: another file
    assert reads.read(path, "torch", lambda: calls.append(1) or "second", take=True) == "second"
    assert len(calls) == 2


def test_a_detectron2_pkl_is_unpickled_once(tmp_path, monkeypatch):
    """A model-zoo style .pkl: init_kind reads it as any plain pickle, read_weights as detectron2's .pkl;
    both through the numpy-only unpickler (``detectron2.reader_for``), so the one read is shared."""
    import pickle

    import numpy as np

    from maskrcnn.interop import detectron2
    from maskrcnn.interop.weights import init_kind, read_weights

    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": {"backbone.bottom_up.stem.conv1.weight": np.zeros((2, 3, 1, 1),
                                                                                                np.float32)},
                                   "__author__": "Detectron2 Model Zoo"}, protocol=2))
    assert detectron2.reader_for(path) == "pickle"
    calls, read_pickle = [], detectron2._read_pickle
    monkeypatch.setattr(detectron2, "_read_pickle", lambda p: calls.append(p) or read_pickle(p))
    reads = FileReads()
    init_kind(str(path), reads=reads)
    assert len(reads) == 1
    try:
        read_weights(str(path), reads=reads)
    except ValueError:  # one tensor is no detector: refused after the read, which is what is counted
        pass
    assert len(calls) == 1 and len(reads) == 0
