"""Files given to ``Predictor.from_onnx`` / ``predict --weights F.onnx`` that cannot serve: each refused at
load in one line naming the file and what is wrong (``OnnxModelError``), never a traceback from inside
onnxruntime, a per-image failure later, or onnxruntime's own log on stderr.

The files are tiny graphs built here with ``onnx.helper`` (one ``image`` input, the three box outputs,
our metadata) rather than exports: loading never runs the graph, and building takes milliseconds.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.predictor import Predictor

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from maskrcnn.export import FORMAT, FORMAT_VERSION  # noqa: E402
from maskrcnn.export.onnx_runtime import OnnxModelError  # noqa: E402

NAMES = ["__background__", "cat", "dog"]


def _graph(input_name: str = "image", weight_floats: int = 0):
    """image (3, H, W) -> boxes (0, 4), labels (0,), scores (0,): empty outputs whatever the image; with
    ``weight_floats``, an initializer of that many floats (added to the scores) to put in external data."""
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [3, "h", "w"])
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None])]
    inits = [numpy_helper.from_array(np.zeros((0, 4), np.float32), "no_boxes"),
             numpy_helper.from_array(np.zeros((0,), np.int64), "no_labels"),
             numpy_helper.from_array(np.zeros((0,), np.float32), "no_scores")]
    nodes = [helper.make_node("Identity", ["no_boxes"], ["boxes"]),
             helper.make_node("Identity", ["no_labels"], ["labels"])]
    if weight_floats:
        inits.append(numpy_helper.from_array(np.ones(weight_floats, np.float32), "weight"))
        nodes += [helper.make_node("ReduceSum", ["weight"], ["total"], keepdims=1),
                  helper.make_node("Mul", ["no_scores", "total"], ["scores"])]
    else:
        nodes.append(helper.make_node("Identity", ["no_scores"], ["scores"]))
    model = helper.make_model(helper.make_graph(nodes, "g", [image], outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime >= 1.16 reads it
    return model


def _with_metadata(model, **changes):
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    meta = {"maskrcnn_format": FORMAT, "maskrcnn_format_version": str(FORMAT_VERSION),
            "config": json.dumps(cfg.to_dict()), "class_names": json.dumps(NAMES),
            "label_to_category_id": json.dumps({"1": 5, "2": 9}), **changes}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model


def test_the_minimal_graph_with_our_metadata_loads(tmp_path):
    onnx.save(_with_metadata(_graph()), str(tmp_path / "ok.onnx"))
    predictor = Predictor.from_onnx(tmp_path / "ok.onnx")
    assert predictor.class_names == NAMES and predictor.label_to_category_id == {1: 5, 2: 9}
    det = predictor(np.zeros((20, 30, 3), np.uint8))[0]
    assert det["boxes"].shape == (0, 4) and det["labels"].shape == (0,)


@pytest.mark.parametrize("content", [b"", b"hello, a text file\n", b"PK\x03\x04 a zip", "half"])
def test_a_file_that_is_not_onnx_or_is_cut_short_is_named(tmp_path, content):
    whole = _with_metadata(_graph(weight_floats=256)).SerializeToString()
    bad = tmp_path / "model.onnx"
    bad.write_bytes(whole[: len(whole) // 2] if content == "half" else content)
    with pytest.raises(OnnxModelError, match=r"model\.onnx: not an ONNX file, or one cut short"):
        Predictor.from_onnx(bad)


def _external(tmp_path, **kwargs):
    folder = tmp_path / "ext"
    folder.mkdir()
    onnx.save(_with_metadata(_graph(weight_floats=4096)), str(folder / "model.onnx"),
              save_as_external_data=True, location="model.onnx.data", size_threshold=1024)
    return folder


def test_missing_or_cut_external_data_is_named(tmp_path, capfd):
    folder = _external(tmp_path)
    Predictor.from_onnx(folder / "model.onnx")  # whole: loads
    data = folder / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    cut = r"model\.onnx: its external data file .*model\.onnx\.data is cut short \(1000 bytes; "
    with pytest.raises(OnnxModelError, match=cut + r"tensor 'weight' ends at byte 16384\)"):
        Predictor.from_onnx(folder / "model.onnx")
    data.unlink()
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    rc = main(["predict", "--weights", str(folder / "model.onnx"), str(tmp_path / "a.png"), "--output",
               str(tmp_path / "out")])
    err = capfd.readouterr().err  # the file descriptor: onnxruntime's own log would land there
    assert rc == 1
    assert err.strip().splitlines() == [
        f"maskrcnn predict: error: {folder / 'model.onnx'}: its external data file {data} (tensor 'weight') "
        "is missing: keep it beside the .onnx"]


def test_a_folder_is_not_reported_as_missing(tmp_path):
    (tmp_path / "model.onnx").mkdir()
    with pytest.raises(OnnxModelError, match=r"model\.onnx: is a folder, not an ONNX file"):
        Predictor.from_onnx(tmp_path / "model.onnx")


@pytest.mark.parametrize("field,value,message", [
    ("config", "[1, 2]", "metadata field 'config' must be an object, got list"),
    ("config", '{"model": [1]}', "metadata field 'config': "),
    ("class_names", '{"cat": 1}', "metadata field 'class_names' must be a list, got dict"),
    ("class_names", '["__background__", 7, 8]', "metadata field 'class_names' must be a list of strings"),
    ("class_names", '["__background__", "cat"]',
     r"metadata field 'class_names' has 2 names for a model with num_classes=3"),
    ("label_to_category_id", "[5, 9]", "metadata field 'label_to_category_id' must be an object or null"),
    ("label_to_category_id", '{"cat": "five"}',
     "metadata field 'label_to_category_id' must map labels to integer category ids"),
])  # fmt: skip
def test_metadata_of_the_wrong_type_is_named(tmp_path, field, value, message):
    onnx.save(_with_metadata(_graph(), **{field: value}), str(tmp_path / "meta.onnx"))
    with pytest.raises(OnnxModelError, match=r"meta\.onnx: " + message):
        Predictor.from_onnx(tmp_path / "meta.onnx")


def test_a_graph_with_other_inputs_is_refused_at_load_not_per_image(tmp_path):
    onnx.save(_with_metadata(_graph(input_name="input.1")), str(tmp_path / "renamed.onnx"))
    with pytest.raises(OnnxModelError, match=r"renamed\.onnx: the graph's inputs are \[\('input\.1', "):
        Predictor.from_onnx(tmp_path / "renamed.onnx")


def test_another_librarys_graph_without_our_metadata_is_named(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "add.onnx"))
    with pytest.raises(OnnxModelError, match=r"add\.onnx: not an ONNX file written by `maskrcnn export`"):
        Predictor.from_onnx(tmp_path / "add.onnx")


def test_int8_asked_of_an_onnx_file_is_refused_not_ignored(tmp_path):
    onnx.save(_with_metadata(_graph()), str(tmp_path / "ok.onnx"))
    with pytest.raises(ValueError, match=r"ok\.onnx: int8: an ONNX model is quantized by onnxruntime's own"):
        Predictor.from_weights(tmp_path / "ok.onnx", int8=True)
    assert not Predictor.from_weights(tmp_path / "ok.onnx", int8=False).int8_parts  # float: what it is


def test_onnxruntimes_refusal_is_its_sentence_without_cpp_places(tmp_path):
    model = _with_metadata(_graph())
    model.ir_version = 99  # a file from a newer exporter than this onnxruntime reads
    onnx.save(model, str(tmp_path / "new.onnx"))
    with pytest.raises(OnnxModelError) as e:
        Predictor.from_onnx(tmp_path / "new.onnx")
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'new.onnx'}: onnxruntime cannot load this file: Unsupported "
                              "model IR version: 99")
    assert "onnxruntime::" not in message and ".cc:" not in message and "\n" not in message


def test_an_onnx_file_under_another_name_is_opened_as_onnx(tmp_path, capsys):
    onnx.save(_with_metadata(_graph()), str(tmp_path / "model.bin"))
    predictor = Predictor.from_weights(tmp_path / "model.bin")  # was: "not a checkpoint file"
    assert predictor.runtime and predictor.class_names == NAMES
    rc = main(["export", "--weights", str(tmp_path / "model.bin"), "--output", str(tmp_path / "m.onnx")])
    assert rc == 1
    assert f"--weights {tmp_path / 'model.bin'}: an exported ONNX file" in capsys.readouterr().err


def _relocated(folder, location: str):
    """The graph of ``folder`` (``_external``) with its weight's external data moved to ``location``."""
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path = folder / "moved.onnx"
    onnx.save(model, str(path))
    return path


def test_external_data_outside_the_folder_or_not_a_file_is_named_as_such(tmp_path):
    folder = _external(tmp_path)
    for location in ("/dev/zero", "../elsewhere.data"):
        with pytest.raises(OnnxModelError, match=rf"external data path '{re.escape(location)}' \(tensor "
                                                 r"'weight'\) leads outside the folder of the \.onnx"):
            Predictor.from_onnx(_relocated(folder, location))
    (folder / "sub").mkdir()
    with pytest.raises(OnnxModelError, match=r"its external data .*sub \(tensor 'weight'\) is not a regular "
                                             r"file"):
        Predictor.from_onnx(_relocated(folder, "sub"))
