"""Files users already have, given where weights are expected: numpy scalars beside the weights (data,
loaded), torch.export / TorchScript archives (said for what they are, without torch's warning), the
wrong ``--from`` (what the file looks like instead), and the words of class-name and shape refusals."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from maskrcnn.checkpoint import CheckpointError, load_checkpoint
from maskrcnn.interop.detectron2 import read_detectron2_file
from maskrcnn.interop.torchvision import ConversionError
from maskrcnn.interop.weights import read_weights
from maskrcnn.safe_load import load_weights_only


def test_numpy_scalars_and_dtypes_load_as_data_without_changing_process_state(tmp_path):
    path = tmp_path / "trainer.pth"
    torch.save({"model": {"w": torch.ones(2)}, "iteration": np.int64(89999), "lr": np.float32(0.5),
                "dtype": np.dtype("float16")}, path)
    before = list(torch.serialization.get_safe_globals())
    obj = load_weights_only(path)
    assert obj["iteration"] == 89999 and isinstance(obj["iteration"], np.int64)
    assert obj["lr"] == np.float32(0.5) and obj["dtype"] == np.dtype("float16")
    assert list(torch.serialization.get_safe_globals()) == before  # no add_safe_globals
    assert read_detectron2_file(path)["iteration"] == 89999  # convert / --init read it too
    with pytest.raises(pickle.UnpicklingError):  # still nothing else: plain torch.load refuses it
        torch.load(path, weights_only=True)


class _RunsCode:
    def __reduce__(self):
        return (print, ("ran",))


class _Local:
    pass


def test_code_is_still_refused_in_one_line(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "x": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r"asks to run code \(global builtins.print\)"):
        load_checkpoint(path)
    other = tmp_path / "other.pth"
    torch.save({"model": {"w": torch.ones(1)}, "x": _Local()}, other)
    with pytest.raises(ConversionError) as e:
        read_detectron2_file(other)
    assert str(other) in str(e.value) and "_Local" in str(e.value) and "\n" not in str(e.value)
    assert "weights_only" not in str(e.value)


def _torchscript(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script's own deprecation
        torch.jit.script(torch.nn.Conv2d(3, 3, 1)).save(str(path))


def _pt2(path):
    program = torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))
    torch.export.save(program, str(path))


@pytest.mark.parametrize("make,words", [
    (_torchscript, "is a TorchScript archive, not weights"),
    (_pt2, "is a torch.export program (from maskrcnn export: backbone + FPN only), not a checkpoint; "
           "give the checkpoint it was exported from"),
])
def test_program_archives_are_named_without_torch_warning(tmp_path, make, words):
    path = tmp_path / "model.pth"
    make(path)
    for load, error in ((load_checkpoint, CheckpointError), (read_weights, ConversionError),
                        (read_detectron2_file, ConversionError)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's "looks like a TorchScript archive" would fail here
            with pytest.raises(error) as e:
                load(str(path))
        assert str(e.value) == f"{path} {words}" or str(e.value).startswith(f"{path} {words}")


def test_class_names_count_refusals_name_the_file_and_key(tmp_path):
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.commands.convert import given_class_names
    from maskrcnn.config import load_config

    cfg = load_config("r50_fpn", {"model.num_classes": 6})
    path = tmp_path / "short.pth"
    save_checkpoint(path, model_state={"w": torch.ones(1)}, config=cfg,
                    class_names=["__background__", "a", "b", "c", "d"])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(f"{path}: 'class_names' has 5 names for a model with num_classes=6")
    with pytest.raises(ValueError, match=r"^--class-names has 2 names but the weights have 1 class \(plus"):
        given_class_names("a,b", 2)
    assert given_class_names("a, b", 3) == ["__background__", "a", "b"]
