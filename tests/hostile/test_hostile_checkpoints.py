"""Hostile checkpoints at ``maskrcnn predict`` / ``eval``: NaN weights (predicted nothing, exit 0,
before), unusable stored configs, truncated files, code-running pickles, bare state dicts."""

import json
import pickle

import pytest
import torch
from hostile_helpers import save_image, snapshot


@pytest.fixture
def image(tmp_path):
    return save_image(tmp_path / "im.png", 40, 50)


@pytest.fixture
def earlier_output(tmp_path):
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    (out / "predictions.json").write_text("[{\"earlier\": true}]")
    (out / "overlays" / "im.png").write_bytes(b"earlier overlay")
    return out, snapshot(out)


def _edited(tiny_checkpoint, tmp_path, edit, name="edited.pth"):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    edit(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def _nan_weights(ckpt):
    ckpt["model"]["roi_heads.box_predictor.cls_score.weight"].fill_(float("nan"))


def _bad_stored_config(ckpt):
    ckpt["config"]["input"]["min_size_test"] = 0


def _unknown_stored_key(ckpt):
    ckpt["config"]["model"]["rpn"]["fancy"] = 1


def _format_version(ckpt):
    ckpt["format_version"] = 99


@pytest.mark.parametrize(
    "edit, words",
    [(_nan_weights, "NaN or infinite values in 'model' tensors roi_heads.box_predictor.cls_score.weight"),
     (_bad_stored_config, "input.min_size_test must be in (0, 100000]"),
     (_unknown_stored_key, "model.rpn.fancy"),
     (_format_version, "format_version 99")],
)  # fmt: skip
def test_unusable_checkpoint_is_refused_by_name(cli, tiny_checkpoint, tmp_path, image, earlier_output, edit,
                                               words):  # fmt: skip
    path = _edited(tiny_checkpoint, tmp_path, edit)
    out, before = earlier_output
    rc, text = cli("predict", "--weights", path, image, "--output", out, "--device", "cpu")
    assert rc == 1 and str(path) in text and words in text
    assert snapshot(out) == before


class _RunsCode:
    def __reduce__(self):  # what a hostile pickle does: call a function while being loaded
        return (exec, ("open(__import__('os').environ['HOSTILE_MARKER'], 'w').write('ran')",))


def _ground_truth(folder):
    """A valid one-object COCO file: eval reads --json before the weights, so the refusal is the weights'."""
    path = folder / "j.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png", "width": 8, "height": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}],
        "categories": [{"id": 1, "name": "a"}]}))
    return path


def test_pickle_that_runs_code_is_refused(cli, tmp_path, image, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("HOSTILE_MARKER", str(marker))
    path = tmp_path / "evil.pth"
    torch.save({"format": "maskrcnn-checkpoint", "payload": _RunsCode()}, path)
    rc, text = cli("predict", "--weights", path, image, "--output", tmp_path / "out", "--device", "cpu")
    assert rc == 1 and f"{path} asks to run code (global builtins.exec) when unpickled; refused" in text
    assert "weights_only" not in text and not marker.exists()
    plain = tmp_path / "evil.pkl"  # a plain pickle, not even a torch zip
    plain.write_bytes(pickle.dumps(_RunsCode()))
    rc, text = cli("eval", "--weights", plain, "--json", _ground_truth(tmp_path), "--images", tmp_path)
    assert rc == 1 and str(plain) in text and not marker.exists()


@pytest.mark.parametrize(
    "make, words",
    [(lambda src: src.read_bytes()[: len(src.read_bytes()) // 2], "truncated or corrupt"),
     (lambda src: b"", "empty"),
     (lambda src: b"PK\x03\x04 not really a zip", "truncated or corrupt"),
     (lambda src: b"a text file given as weights\n", "is not a PyTorch file")],
)  # fmt: skip
def test_damaged_checkpoint_file_is_named(cli, tiny_checkpoint, tmp_path, image, make, words):
    path = tmp_path / "damaged.pth"
    path.write_bytes(make(tiny_checkpoint))
    rc, text = cli("predict", "--weights", path, image, "--output", tmp_path / "out", "--device", "cpu")
    assert rc == 1 and str(path) in text and words in text
    assert not (tmp_path / "out").exists()


def test_bare_state_dict_of_our_model_points_to_save_checkpoint(cli, tiny_checkpoint, tmp_path, image):
    """It was told to "convert it with `maskrcnn convert`", which no --from does: its config is missing
    (given with --config it runs: tests/test_weights_for_inference.py)."""
    path = tmp_path / "bare.pth"
    torch.save(torch.load(tiny_checkpoint, weights_only=True)["model"], path)
    rc, text = cli("predict", "--weights", path, image, "--output", tmp_path / "out", "--device", "cpu")
    assert rc == 1 and str(path) in text and "maskrcnn.checkpoint.save_checkpoint(OUT, " in text
    assert "maskrcnn convert" not in text and "add --config PRESET_OR_YAML" in text


def _detectron2_zoo_pkl(path):
    import numpy as np

    model = {"backbone.bottom_up.stem.conv1.weight": np.zeros((2, 3, 1, 1)),
             "backbone.bottom_up.res2.0.conv1.weight": np.zeros((2, 2, 1, 1))}
    path.write_bytes(pickle.dumps({"model": model, "__author__": "Detectron2 Model Zoo"}, protocol=4))


def _torchvision_reference_script(path):
    import argparse

    torch.save({"model": _TV_KEYS, "epoch": 25, "args": argparse.Namespace(model="maskrcnn_resnet50_fpn")},
               path)  # fmt: skip


def _torchvision_under_model(path):
    torch.save({"model": _TV_KEYS, "epoch": 25}, path)


# an R-CNN's names over a ResNet body (a MobileNet's is said to be refused by convert, not sent there)
_TV_KEYS = {"backbone.body.conv1.weight": torch.zeros(2, 3, 1, 1),
            "backbone.body.layer1.0.conv1.weight": torch.zeros(2, 2, 1, 1),
            "rpn.head.conv.0.0.weight": torch.zeros(2, 2, 3, 3),
            "roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 2)}


@pytest.mark.parametrize("make", [_detectron2_zoo_pkl, _torchvision_reference_script,
                                  _torchvision_under_model])
def test_another_projects_checkpoint_is_one_line_pointing_to_convert(cli, tmp_path, image, make):
    """torch's weights_only refusal (a screen of text, ANSI escapes, a protocol warning first) was passed on
    whole, and a torchvision file with its weights under "model" got no hint at all. A file only convert's
    readers open (a detectron2 .pkl, a torchvision reference script's file with its argparse.Namespace) was
    told "`maskrcnn convert` reads it", without the --from convert requires: now the exact command."""
    path = tmp_path / ("model_final.pkl" if make is _detectron2_zoo_pkl else "model_25.pth")
    make(path)
    rc, text = cli("predict", "--weights", path, image, "--output", tmp_path / "out", "--device", "cpu")
    # (each file is named by its keys, with the exact command: docs/checkpoints.md)
    source = "detectron2" if make is _detectron2_zoo_pkl else "torchvision"
    words = f"maskrcnn convert --from {source} {path} OUT.pth"
    assert rc == 1 and str(path) in text and words in text and "`maskrcnn convert` reads it" not in text
    assert text.count("\n") == 1 and "\x1b[" not in text and "pickle protocol" not in text, text


class _CallsSystem:
    def __reduce__(self):  # never called: every loader refuses the file before its globals resolve
        import os

        return os.system, ("exit 3",)


def _refused_files(folder):
    """name -> (file, the words every entry point must say)."""
    import numpy as np

    torch.save({"model": _CallsSystem()}, folder / "evil.pth")
    (folder / "evil.pkl").write_bytes(pickle.dumps({"model": _CallsSystem()}, protocol=4))
    (folder / "empty.pth").write_bytes(b"")
    # protocol 2, as detectron2's model-zoo files: torch's refusal names a numpy global, not an operand
    (folder / "model_final.pkl").write_bytes(pickle.dumps(
        {"model": {"backbone.bottom_up.stem.conv1.weight": np.zeros((2, 3, 1, 1), np.float32),
                   "backbone.bottom_up.res2.0.conv1.weight": np.zeros((2, 2, 1, 1), np.float32)}},
        protocol=2))
    (folder / "notes.pth").write_bytes(b"hello world\n")  # torch's reader took 'h' for BINGET: KeyError 101
    system = f"global {'nt' if __import__('os').name == 'nt' else 'posix'}.system"
    return {"evil.pth": f"evil.pth asks to run code ({system}) when unpickled; refused",
            "evil.pkl": f"evil.pkl asks to run code ({system}) when unpickled; refused",
            "empty.pth": "empty.pth is empty (0 bytes)",
            "notes.pth": "notes.pth is not a PyTorch file (neither its zip format nor a pickle; it starts "
                         "with b'hell')",
            "model_final.pkl": "model_final.pkl is a plain pickle, not a PyTorch file (a detectron2 "
                               f"checkpoint: maskrcnn convert --from detectron2 {folder / 'model_final.pkl'} "
                               "OUT.pth)"}


# torch's and pickle's words: its advice to load with weights_only=False would run the file's code
_NOISE = ("weights_only", "Re-running", "Unsupported operand", "EOFError", "Ran out of input", "\x1b[")


def test_refusals_read_the_same_at_every_entry_point(cli, tmp_path, image):
    """predict / eval / export --weights passed on torch's screen of text (advising weights_only=False)
    or "Unsupported operand 149"; convert and train --init said "EOFError" / "Ran out of input" for an
    empty file. Every entry point now says what the file is, in one line."""
    import warnings

    from maskrcnn.interop.weights import read_weights

    cases = _refused_files(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _each_entry_point_says(cli, tmp_path, image, cases, read_weights)
    assert not [w for w in caught if "pickle protocol" in str(w.message)]  # torch's, printed by the CLI
    assert not (tmp_path / "out").exists() and not (tmp_path / "c.pth").exists()


def _each_entry_point_says(cli, tmp_path, image, cases, read_weights):
    for name, words in cases.items():
        path = tmp_path / name
        runs = [("predict", "--weights", path, image, "--output", tmp_path / "out", "--device", "cpu"),
                ("eval", "--weights", path, "--json", _ground_truth(tmp_path), "--images", tmp_path),
                ("export", "--weights", path, "--output", tmp_path / "m.onnx")]
        if name != "model_final.pkl":  # convert reads a detectron2 .pkl: it is refused only as weights
            runs += [("convert", "--from", src, path, tmp_path / "c.pth")
                     for src in ("torchvision", "detectron2", "mmdetection")]
        for args in runs:
            rc, text = cli(*args)
            expected = words.split(" (a detectron2")[0] if args[0] == "convert" else words
            assert rc == 1 and expected in text and text.count("\n") == 1, (args, text)
            assert not any(n in text for n in _NOISE), (args, text)
        if name != "model_final.pkl":  # what train --init reads its weights with
            with pytest.raises(ValueError) as info:
                read_weights(str(path))
            assert words in str(info.value) and not any(n in str(info.value) for n in _NOISE)


def test_globals_are_read_from_the_opcodes_without_unpickling(tmp_path):
    """The global a refused file asks for is named from its opcodes: GLOBAL (protocols 0-3, Python 2
    names mapped), STACK_GLOBAL with its module string memoised and fetched again (protocol 4)."""
    import os

    from maskrcnn.checkpoint_refusal import code_global, pickle_globals

    module = "nt" if os.name == "nt" else "posix"
    for protocol in (0, 2, 4):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps((os.system, os.listdir, os.system), protocol=protocol))
        assert pickle_globals(path) == [f"{module}.system", f"{module}.listdir"], protocol
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "epoch": 3}, tmp_path / "sd.pth")
    assert code_global(tmp_path / "sd.pth") is None  # tensors and an OrderedDict run no code
    torch.save({"payload": _RunsCode()}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert code_global(tmp_path / "legacy.pth") == "builtins.exec"


def test_our_checkpoint_holding_a_namespace_is_refused_alike_by_init(cli, tiny_checkpoint, tmp_path, image):
    """train --init read our checkpoints with torchvision's allow-list (argparse.Namespace, its reference
    scripts' "args"), so it took a file that predict / eval / --resume refuse: now refused alike."""
    import argparse

    from maskrcnn.interop.weights import read_weights

    path = _edited(tiny_checkpoint, tmp_path, lambda c: c.update(args=argparse.Namespace(lr=0.02)))
    rc, text = cli("predict", "--weights", path, image, "--output", tmp_path / "out", "--device", "cpu")
    assert rc == 1 and str(path) in text
    with pytest.raises(ValueError) as info:
        read_weights(str(path))
    assert str(info.value) == text.strip().split("error: ", 1)[-1]
    assert not any(n in str(info.value) for n in _NOISE)


class _WholeRCNN(torch.nn.Module):
    """A whole model of another library, pickled by reference to its class (``torch.save(model)``)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)


def _whole_model(tmp_path, monkeypatch, module: str, name: str = "whole.pth", extra=None):
    """``torch.save`` of a ``_WholeRCNN`` whose class is named ``module.MaskRCNN`` (the modules faked in
    sys.modules for the save, so that no library is needed); ``extra``: another attribute pickled with it."""
    import sys
    import types

    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    cls = type("MaskRCNN", (_WholeRCNN,), {"__module__": module, "__qualname__": "MaskRCNN"})
    sys.modules[module].MaskRCNN = cls
    model = cls()
    if extra is not None:
        model.payload = extra
    path = tmp_path / name
    torch.save(model, path)
    return path


@pytest.mark.parametrize("module, library, command", [
    ("torchvision.models.detection.mask_rcnn", "a whole pickled torchvision model",
     "then maskrcnn convert --from torchvision weights.pth OUT.pth"),
    ("mmdet.models.detectors.mask_rcnn", "a whole pickled MMDetection model",
     "then maskrcnn convert --from mmdetection weights.pth OUT.pth"),
    ("mmengine.model.wrappers", "a whole pickled model",
     "then, for a torchvision, detectron2 or MMDetection R-CNN, maskrcnn convert --from "),
])
def test_a_whole_pickled_model_gets_the_state_dict_advice_everywhere(cli, tmp_path, image, monkeypatch,
                                                                     module, library, command):
    """``torch.save(model)`` of a torchvision model: predict and Predictor said "`maskrcnn convert` reads
    it", convert refused it with no advice: a circle. Every entry point now says it is a whole model and
    how to save its state_dict() (where its library is installed, for a file one trusts), then convert."""
    from maskrcnn.interop.weights import read_weights
    from maskrcnn.predictor import Predictor

    path = _whole_model(tmp_path, monkeypatch, module)
    said = [cli("predict", "--weights", path, image, "--output", tmp_path / "out", "--device", "cpu"),
            cli("convert", "--from", "torchvision", path, tmp_path / "c.pth")]
    for call in (lambda: Predictor.from_weights(str(path)), lambda: read_weights(str(path))):
        with pytest.raises(ValueError) as info:
            call()
        said.append((1, str(info.value)))
    for rc, text in said:
        assert rc == 1 and f"{path} asks to run code (global {module}.MaskRCNN) when unpickled; refused: " \
            f"{library} (torch.save(model)), not its weights: load it where " in text, text
        assert f"torch.load('{path}', weights_only=False): only for a file you trust" in text
        assert "torch.save(model.state_dict(), 'weights.pth')" in text and command in text
        assert "`maskrcnn convert` reads it" not in text and text.strip().count("\n") == 0


def test_a_whole_model_that_also_runs_an_attacks_code_gets_no_advice_to_load_it(tmp_path, monkeypatch):
    """torch.nn classes beside os.system: no advice to torch.load(weights_only=False) it."""
    from maskrcnn.checkpoint import CheckpointError, load_checkpoint

    path = _whole_model(tmp_path, monkeypatch, "torchvision.models.detection.mask_rcnn", extra=_CallsSystem())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "asks to run code" in str(info.value) and "weights_only=False" not in str(info.value)
    assert "whole pickled" not in str(info.value)


def _hand_pickle(path, *globals_, payload=b""):
    """A protocol-2 pickle that names each of ``globals_`` ("module.name") by GLOBAL (each popped again
    but the last), then ``payload``: written by hand, never unpickled here."""
    body = b"\x80\x02"
    for i, name in enumerate(globals_):
        module, attr = name.rsplit(".", 1)
        pop = b"0" if i < len(globals_) - 1 else b""
        body += b"c" + module.encode() + b"\n" + attr.encode() + b"\n" + pop
    path.write_bytes(body + payload + b".")
    return path


def test_only_model_libraries_globals_make_a_whole_model(tmp_path, monkeypatch):
    """is_whole_model took any torch.nn.* global with no global of a blocklist as a whole model: a file
    naming a torchvision model, a torch.nn layer and torch.hub.load (which downloads and runs code) was
    "a whole pickled torchvision model" with the advice torch.load(..., weights_only=False). Now every
    global that runs code must be of torch.nn, torchvision, detectron2, mmdet, mmcv, mmengine or ours."""
    import warnings

    from maskrcnn.checkpoint import CheckpointError, load_checkpoint
    from maskrcnn.checkpoint_refusal import describe_unreadable

    rcnn = "torchvision.models.detection.mask_rcnn.MaskRCNN"
    hub = _hand_pickle(tmp_path / "hub.pth", rcnn, "torch.nn.modules.linear.Linear", "torch.hub.load",
                       payload=b"(X\x0b\x00\x00\x00evil/repo:xX\x03\x00\x00\x00payt" + b"R")
    kind, message = describe_unreadable(hub)
    assert kind == "code" and message == f"{hub} asks to run code (global {rcnn}) when unpickled; refused"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(hub)
    assert "weights_only=False" not in str(info.value) and "whole pickled" not in str(info.value)
    # a class of a library not among them (a lab's own, saved whole): its weights, no advice to load it
    mine = _whole_model(tmp_path, monkeypatch, "mylab.nets", name="mine.pth")
    kind, message = describe_unreadable(mine)
    assert kind == "model" and message.startswith(
        f"{mine} asks to run code (global mylab.nets.MaskRCNN) when unpickled; refused: a whole pickled "
        "model of the class mylab.nets.MaskRCNN")
    assert "torch.save(model.state_dict(), 'weights.pth')" in message and "weights_only=False" not in message
    # the same layers under a torchvision class are a whole model, saved in torch's legacy format too
    legacy = tmp_path / "legacy.pth"
    with warnings.catch_warnings():  # "Couldn't retrieve source code": the class is made in this test
        warnings.simplefilter("ignore", UserWarning)
        torch.save(torch.load(_whole_model(tmp_path, monkeypatch, "torchvision.models.detection.mask_rcnn"),
                              weights_only=False), legacy, _use_new_zipfile_serialization=False)
    kind, message = describe_unreadable(legacy)
    assert kind == "model" and "a whole pickled torchvision model (torch.save(model))" in message


def test_a_checkpoint_holding_a_pickled_model_beside_its_state_dict_is_no_whole_model(tmp_path, monkeypatch):
    """A checkpoint dict whose "model" is a usable state dict, with a whole model pickled as another entry
    (an AveragedModel as its EMA copy, a torchvision model): "a whole pickled model", told to be loaded
    with weights_only=False, although its "model" entry is the state dict the advice asks for. Only a file
    whose own object is a model class is one."""
    from maskrcnn.checkpoint_refusal import describe_unreadable

    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    averaged = tmp_path / "ema.pth"
    torch.save({"model": net.state_dict(), "model_ema": torch.optim.swa_utils.AveragedModel(net)}, averaged)
    whole = torch.load(_whole_model(tmp_path, monkeypatch, "torchvision.models.detection.mask_rcnn"),
                       weights_only=False)
    entry = tmp_path / "entry.pth"
    torch.save({"model": whole.state_dict(), "ema": whole}, entry)
    for path, bad in ((averaged, "torch.optim.swa_utils.AveragedModel"),
                      (entry, "torchvision.models.detection.mask_rcnn.MaskRCNN")):
        kind, message = describe_unreadable(path)
        assert (kind, message) == ("code", f"{path} asks to run code (global {bad}) when unpickled; refused")
    torch.save(whole, tmp_path / "alone.pth")  # the same model saved alone is one
    assert describe_unreadable(tmp_path / "alone.pth")[0] == "model"


def test_a_refused_files_pickle_is_read_once(tmp_path, monkeypatch):
    """load_checkpoint's refusal read the file's pickles twice: describe_unreadable, then code_global."""
    import maskrcnn.checkpoint_refusal as refusal
    from maskrcnn.checkpoint import CheckpointError, load_checkpoint

    path = _hand_pickle(tmp_path / "lab.pth", "mylab.nets.Thing", payload=b")\x81")
    walks = []
    real = refusal._globals_of_stream
    monkeypatch.setattr(refusal, "_globals_of_stream", lambda *a: walks.append(a) or real(*a))
    with pytest.raises(CheckpointError, match="asks to run code \\(global mylab.nets.Thing\\)"):
        load_checkpoint(path)
    assert len(walks) == 1


def test_a_model_library_function_called_by_the_pickle_is_not_a_whole_model(tmp_path):
    """Every global of an allowed package passed for a model class: maskrcnn.cli.main REDUCE-called with
    the file's arguments (it runs the CLI) under a torchvision model class was told to be loaded with
    torch.load(weights_only=False). A called global is code, not a class only instantiated."""
    from maskrcnn.checkpoint_refusal import describe_unreadable

    rcnn = "torchvision.models.detection.mask_rcnn.MaskRCNN"
    path = _hand_pickle(tmp_path / "calls.pth", rcnn, "torch.nn.modules.linear.Linear", "maskrcnn.cli.main",
                        payload=b"(X\x05\x00\x00\x00trainX\x03\x00\x00\x00payt" + b"R")
    kind, message = describe_unreadable(path)
    assert kind == "code" and "weights_only=False" not in message and "whole pickled" not in message


def test_a_users_own_module_saved_whole_gets_the_state_dict_advice_without_loading_it(tmp_path):
    """torch.save(MyNet()) of a script's own nn.Module: refused as code with no way forward; now told to
    save its state_dict() where the class is defined, then convert; never to load the file."""
    import __main__
    from maskrcnn.checkpoint_refusal import describe_unreadable

    cls = type("MyNet", (torch.nn.Module,), {"__module__": "__main__", "__qualname__": "MyNet"})
    net = cls()
    net.fc = torch.nn.Linear(2, 2)
    __main__.MyNet = cls
    try:
        torch.save(net, tmp_path / "mynet.pth")
    finally:
        del __main__.MyNet
    kind, message = describe_unreadable(tmp_path / "mynet.pth")
    assert kind == "model" and "a whole pickled model of the class __main__.MyNet" in message, message
    assert "torch.save(model.state_dict(), 'weights.pth')" in message and "convert --from" in message
    assert "weights_only=False" not in message and "load it" not in message
