"""The MMDetection readers (checkpoints for convert / train --init, eval --results pickles) refuse a file
asking for os.system even behind another foreign global, as predict refuses it (it was left inert)."""

import os
import pickle

import pytest
import torch

from maskrcnn.interop.mmdet_file import read_mmdet_file, read_pickle_file
from maskrcnn.interop.weights import ConversionError


class Hub:  # a foreign global first (a trainer's own class): the opcode scan names it, not os.system
    pass


class Evil:
    def __reduce__(self):
        return os.system, ("touch PWNED_TEST",)


def _payload():
    return {"meta": {"hub": Hub()}, "state_dict": {"w": torch.zeros(1)}, "x": Evil()}


def test_a_checkpoint_asking_for_os_system_behind_another_global_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mm_evil.pth"
    torch.save(_payload(), path)
    with pytest.raises(ConversionError, match=r"mm_evil\.pth asks to run code \(global (posix|nt)\.system\) "
                                              r"when unpickled; refused"):
        read_mmdet_file(path)
    assert not (tmp_path / "PWNED_TEST").exists()


def test_a_results_pickle_asking_for_os_system_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps([{"hub": Hub(), "x": Evil()}]))
    with pytest.raises(ValueError, match=r"results\.pkl asks to run code \(global (posix|nt)\.system\)"):
        read_pickle_file(path)
    assert not (tmp_path / "PWNED_TEST").exists()


def test_a_builtin_type_stays_data(tmp_path):
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps({"s": {1, 2}, "f": frozenset([3])}))
    assert read_pickle_file(path) == {"s": {1, 2}, "f": frozenset([3])}
