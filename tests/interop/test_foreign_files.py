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
    obj = load_weights_only(path)
    assert obj["iteration"] == 89999 and isinstance(obj["iteration"], np.int64)
    assert obj["lr"] == np.float32(0.5) and obj["dtype"] == np.dtype("float16")
    leaked = [g for g in torch.serialization.get_safe_globals() if "numpy" in repr(g)]
    assert leaked == []  # allowed for that load only, never through add_safe_globals
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
    from maskrcnn.predictor import Predictor

    cfg = load_config("r50_fpn", {"model.num_classes": 6})
    path = tmp_path / "short.pth"
    save_checkpoint(path, model_state={"w": torch.ones(1)}, config=cfg,
                    class_names=["__background__", "a", "b", "c", "d"])
    for load in (lambda p: Predictor.from_checkpoint(p), read_weights):
        with pytest.raises((CheckpointError, ConversionError)) as e:
            load(str(path))
        assert str(e.value).startswith(f"{path}: 'class_names' has 5 names for a model with num_classes=6")
    with pytest.raises(ValueError, match=r"^--class-names has 2 names but the weights have 1 class \(plus"):
        given_class_names("a,b", 2)
    assert given_class_names("a, b", 3) == ["__background__", "a", "b"]


def test_shape_mismatch_names_the_files_key_and_which_shape_is_which():
    from maskrcnn.interop.key_rules import shape_mismatches
    from maskrcnn.interop.torchvision import renamed_keys

    fc = "roi_heads.box_head."
    theirs = {fc + "fc6.weight": torch.zeros(4, 6), fc + "fc7.weight": torch.zeros(4, 2)}
    renamed = renamed_keys(theirs)
    assert renamed[fc + "fc7.weight"] == fc + "fcs.1.weight"
    ours = {renamed[k]: v for k, v in theirs.items()}
    model = {fc + "fcs.0.weight": torch.zeros(4, 6), fc + "fcs.1.weight": torch.zeros(4, 4)}
    assert shape_mismatches(ours, model, {v: k for k, v in renamed.items()}) == [
        f"the file's {fc}fc7.weight (4, 2), the model's {fc}fcs.1.weight needs (4, 4)"]
    no_origin = shape_mismatches(ours, model, {})
    assert no_origin == [f"the file's {fc}fcs.1.weight (4, 2), the model's needs (4, 4)"]


def _convert_cli(capsys, *args):
    from maskrcnn.cli import main

    rc = main(["convert", *map(str, args)])
    return rc, capsys.readouterr().err.strip().splitlines()[-1]


def test_the_wrong_from_says_what_the_file_looks_like(tmp_path, capsys):
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import load_config

    ours = tmp_path / "ours.pkl"  # our checkpoint under another library's suffix
    save_checkpoint(ours, model_state={"backbone.res5.0.conv1.weight": torch.ones(1)},
                    config=load_config("r50_fpn"), class_names=[])
    for source in ("detectron2", "mmdetection", "torchvision"):
        rc, line = _convert_cli(capsys, "--from", source, ours, tmp_path / "out.pth")
        assert rc == 1 and line.endswith(f"{ours}: this is a maskrcnn checkpoint: no conversion needed, use "
                                         f"it as --weights / --init (not --from {source}); to rewrite it: "
                                         f"maskrcnn convert --from maskrcnn {ours} OUT [--to safetensors]")
    d2 = tmp_path / "model_final.pkl"  # a detectron2 zoo pickle: numpy arrays under "model"
    arrays = {"backbone.bottom_up.stem.conv1.weight": np.zeros((2, 3, 1, 1)),
              "proposal_generator.rpn_head.conv.weight": np.zeros((2, 2, 3, 3))}
    d2.write_bytes(pickle.dumps({"model": arrays}, protocol=2))
    rc, line = _convert_cli(capsys, "--from", "mmdetection", d2, tmp_path / "out.pth")
    assert rc == 1 and line.endswith(f"{d2}: this looks like a detectron2 file, not mmdetection: "
                                     "use --from detectron2")
    assert not (tmp_path / "out.pth").exists()


def test_an_mmdetection_v3_file_given_as_weights_points_to_convert(tmp_path, monkeypatch):
    import sys
    import types

    module = types.ModuleType("mmengine.logging.history_buffer")

    class HistoryBuffer:  # what mmengine's message hub saves beside the weights
        pass

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = module.__name__, "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    for parent in ("mmengine", "mmengine.logging"):  # pickle imports the module to check the class
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    path = tmp_path / "epoch_12.pth"
    torch.save({"meta": {}, "state_dict": {"rpn_head.rpn_conv.weight": torch.zeros(1)},
                "message_hub": {"log": HistoryBuffer()}}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(e.value) == (f"{path} is an MMDetection checkpoint (it holds mmengine.logging.history_buffer."
                            f"HistoryBuffer): maskrcnn convert --from mmdetection {path} OUT.pth")
