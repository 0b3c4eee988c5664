"""safetensors files wherever weights are read (``maskrcnn/safetensors_io.py``): told by their bytes, not
their name; a torchvision-named ImageNet ResNet (as timm ships ``model.safetensors``) starts a run exactly
as the same ``.pth``; our checkpoint written with ``convert --to safetensors`` carries its config and class
names in the metadata and predicts as the ``.pth`` does; broken files and a missing package are one line
naming the file."""

import json
import re
import struct
import sys

import pytest
import torch
from init_as_train import read_init_as_train_does  # tests/interop is on the path
from torchvision_names import torchvision_resnet_name  # tests/interop is on the path

from maskrcnn.checkpoint import CheckpointError, config_from_checkpoint, load_checkpoint, save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.interop.torchvision import ConversionError
from maskrcnn.interop.weights import init_kind, read_weights
from maskrcnn.modeling.backbone import ResNet
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor
from maskrcnn.safetensors_io import is_safetensors, read_safetensors, save_safetensors
from tests.detections_equal import assert_identical_detections
from tests.tiny_model import TINY, randomise_norms

st = pytest.importorskip("safetensors.torch")

NAMES = ["__background__", "cat", "dog"]


def _torchvision_resnet(arch: str) -> dict:
    """torchvision's (and timm's) ImageNet naming of ``arch`` with random values, batch-norm counters and
    the fc head included, as ``torchvision.models.resnet18().state_dict()`` has them."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, v in ResNet(arch=arch, norm="bn").state_dict().items():
        name = torchvision_resnet_name(k)
        out[name] = torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
    width = 512 if arch == "resnet18" else 2048
    out["fc.weight"], out["fc.bias"] = torch.randn(1000, width, generator=g), torch.zeros(1000)
    return out


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_resnet_as_safetensors_starts_a_run_as_the_pth(tmp_path, arch):
    sd = _torchvision_resnet(arch)
    pth, safe = tmp_path / f"{arch}.pth", tmp_path / "model.bin"  # the name says nothing: the bytes do
    torch.save(sd, pth)
    st.save_file(sd, str(safe), metadata={"format": "pt"})  # timm's hub files carry this metadata
    assert is_safetensors(safe) and not is_safetensors(pth)
    assert init_kind(str(safe)) == "imagenet"
    a, b = read_weights(str(pth)), read_weights(str(safe))
    assert (b.kind, b.layout, b.unused) == ("imagenet", f"torchvision {arch}", ["fc.bias", "fc.weight"])
    assert b.implied == a.implied and b.implied["model.backbone"] == arch
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert torch.equal(b.state_dict["backbone.stem.conv1.conv.weight"], sd["conv1.weight"])


def test_train_init_takes_a_safetensors_file_and_reads_it_once(tmp_path, monkeypatch):
    """``train --init model.safetensors`` without --config: told an ImageNet backbone (from-scratch
    recipe), its tensors the run's, the file read once for both."""
    import safetensors

    sd = _torchvision_resnet("resnet18")
    safe = tmp_path / "model.safetensors"
    st.save_file(sd, str(safe))
    calls, safe_open = [], safetensors.safe_open  # (the one open that reads metadata and tensors)
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: calls.append(a[0]) or safe_open(*a, **k))
    got = read_init_as_train_does(safe, tmp_path, monkeypatch)
    source = got["source"]
    assert source.kind == "imagenet" and source.implied["model.backbone"] == "resnet18"
    got_w = source.state_dict["backbone.res3.0.shortcut.conv.weight"]
    assert torch.equal(got_w, sd["layer2.0.downsample.0.weight"])
    assert len(calls) == 1


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    model = randomise_norms(build_model(cfg).eval())
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    save_checkpoint(path, model_state=model.state_dict(), config=cfg, class_names=NAMES,
                    label_to_category_id={1: 17, 2: 18}, iteration=5, optimizer={"state": {}})
    return path


def test_our_checkpoint_round_trips_through_safetensors_and_predicts_identically(tiny_checkpoint, tmp_path,
                                                                                 capsys):
    safe = tmp_path / "tiny.safetensors"
    argv = ["convert", "--from", "maskrcnn", str(tiny_checkpoint), str(safe), "--to", "safetensors"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    # the note names the file written (before: "OUT keeps", the metavar)
    assert f"note: left out: iteration, optimizer ({safe} keeps the weights, config and class names)" in err
    assert f"-> {safe}" in err
    with open(safe, "rb") as f:  # the config travels in the metadata, as JSON
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    assert meta["format"] == "pt" and meta["maskrcnn.format"] == "maskrcnn-checkpoint"
    assert json.loads(meta["maskrcnn.config"])["model"]["backbone"] == "resnet18"
    a, b = load_checkpoint(tiny_checkpoint), load_checkpoint(safe)
    assert b["class_names"] == NAMES and b["label_to_category_id"] == {1: 17, 2: 18}
    assert config_from_checkpoint(b).to_dict() == config_from_checkpoint(a).to_dict()
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    ref, got = (Predictor.from_weights(p, device="cpu", optimise=False) for p in (tiny_checkpoint, safe))
    assert got.class_names == NAMES and got.label_to_category_id == {1: 17, 2: 18}
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 90, 70, generator=g), torch.rand(3, 64, 96, generator=g)]
    assert_identical_detections(ref(images), got(images))
    back = tmp_path / "back.pth"  # and back to a torch file
    assert main(["convert", "--from", "maskrcnn", str(safe), str(back)]) == 0
    c = load_checkpoint(back)
    assert c["class_names"] == NAMES and all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


def test_predict_takes_safetensors_weights_without_a_config(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    safe = tmp_path / "weights"  # no suffix at all
    ckpt = load_checkpoint(tiny_checkpoint)
    save_safetensors(safe, model_state=ckpt["model"], config=ckpt["config"], class_names=NAMES)
    Image.new("RGB", (80, 60), (90, 140, 200)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(safe), str(tmp_path / "a.png"), "--output", str(out),
                 "--no-overlays"]) == 0, capsys.readouterr().err
    assert json.loads((out / "predictions.json").read_text())  # the tiny model keeps every detection


def test_tensors_that_share_storage_are_written_apart(tmp_path):
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    base = torch.arange(12.0)
    state = {"tied.a": base, "tied.b": base, "view.c": base[2:6], "transposed": torch.ones(2, 3).t(),
             "empty.a": torch.zeros(0), "empty.b": torch.zeros(0)}
    path = tmp_path / "shared.safetensors"
    save_safetensors(path, model_state=state, config=cfg, class_names=NAMES)
    got = read_safetensors(path)["model"]
    assert got.keys() == state.keys() and all(torch.equal(got[k], v) for k, v in state.items())
    assert not list(tmp_path.glob("*.tmp*"))  # (written atomically: no temporary file left)


def _raw(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _header(size=None, *, metadata=None) -> bytes:
    """A header for one float32 tensor "w" of 1 element, padded with spaces to ``size`` bytes (None: to a
    multiple of 8)."""
    head = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    if metadata is not None:
        head["__metadata__"] = metadata
    text = json.dumps(head).encode()
    return text + b" " * ((size if size is not None else -(-len(text) // 8) * 8) - len(text))


@pytest.mark.parametrize("size, looks_like", [(0x0108, "onnx"), (0x0280, "pickle"), (0x4B50, "zip")])
def test_header_lengths_that_start_like_other_formats_are_safetensors(tmp_path, size, looks_like):
    """A header of 264 bytes starts 0x08 0x01 as an ONNX model does, one of 640 bytes with 0x80 as a
    pickle, one of 19280 with "PK" as a zip: each is still read as safetensors."""
    from maskrcnn.checkpoint_refusal import is_plain_pickle, not_torch_file_message
    from maskrcnn.export.onnx_runtime import is_onnx_file

    for name in ("w.bin", "w.onnx"):  # a neutral name (the bytes decide) and ONNX's own suffix
        path = _raw(tmp_path / name, _header(size), struct.pack("<f", 2.5))
        assert is_safetensors(path), name
        assert not is_onnx_file(path), name
        assert not is_plain_pickle(path), name
        assert not_torch_file_message(path) == f"{path} is a safetensors file, not a PyTorch one"
        assert torch.equal(read_safetensors(path)["w"], torch.tensor([2.5]))


def test_text_files_with_a_brace_at_byte_8_are_not_called_corrupt_safetensors(tmp_path):
    """Any text reads as a header count past the format's limit: a YAML config, a JSON or a text file with
    a ``{`` at byte 8 given as weights was told it "is a safetensors file that is truncated or corrupt
    (header too large)". Only a count whose bytes cannot be text (a zero or other control byte, bytes no
    UTF-8 has) is this format's layout, corrupt."""
    from maskrcnn.checkpoint_refusal import not_torch_file_message

    texts = {"cfg.yaml": b"config: {model: {num_classes: 3}}\n", "meta.json": b'{"meta":{"epoch": 3}}',
             "notes.txt": b"# ckpt: {epoch 3}\n", "tabbed.txt": b"a\tb\r\nc: {}\n",
             "accented.yaml": "# grö: {x: 1}\n".encode()}
    for name, data in texts.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert data[8:9] == b"{" and not is_safetensors(path), name
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert str(e.value).startswith(f"{path} is not a PyTorch file"), str(e.value)
        assert not_torch_file_message(path).startswith(f"{path} is not a PyTorch file")
    for count in (struct.pack("<Q", 2**60), struct.pack("<Q", 2**64 - 1), b"conf\x00ig:"):
        path = tmp_path / "corrupt.bin"
        path.write_bytes(count + b'{"w": 1}')
        assert is_safetensors(path), count
        with pytest.raises(CheckpointError, match=re.escape(f"{path} is a safetensors file that is truncated "
                                                            "or corrupt (header too large)")):
            load_checkpoint(path)


def _broken(tmp_path, tiny_checkpoint) -> dict:
    good = tmp_path / "good.safetensors"
    ckpt = load_checkpoint(tiny_checkpoint)
    save_safetensors(good, model_state=ckpt["model"], config=ckpt["config"], class_names=NAMES)
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut_header.safetensors").write_bytes(data[:40])
    _raw(tmp_path / "not_json.safetensors", b"{this is not json}   ")
    # a header count past the format's limit (2**60) before a JSON object: this format, corrupt
    (tmp_path / "huge_header.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}")
    _raw(tmp_path / "no_tensors.safetensors", b'{"__metadata__":{"format":"pt"}}')
    ours = {"maskrcnn.format": "maskrcnn-checkpoint", "maskrcnn.format_version": "1",
            "maskrcnn.config": "{oops", "maskrcnn.class_names": "[]"}
    bad_config = _header(200, metadata=ours)
    _raw(tmp_path / "bad_config.safetensors", bad_config, struct.pack("<f", 1.0))
    deep = {**ours, "maskrcnn.config": "[" * 200_000 + "]" * 200_000}  # past the JSON parser's depth
    _raw(tmp_path / "deep.safetensors", _header(metadata=deep), struct.pack("<f", 1.0))
    with st.safe_open(str(good), "pt") as f:
        good_meta = dict(f.metadata())
    for name, pairs in (("l2c_object", '{"12": 5}'), ("l2c_float", "[[1, 2.7]]"), ("l2c_bool", "[[true, 2]]"),
                        ("l2c_triple", "[[1, 2, 3]]")):
        meta = {**good_meta, "maskrcnn.label_to_category_id": pairs}
        _raw(tmp_path / f"{name}.safetensors", _header(metadata=meta), struct.pack("<f", 1.0))
    big = {**good_meta, "maskrcnn.label_to_category_id": "[[1, 1" + "0" * 100_000 + "]]"}
    _raw(tmp_path / "bignum.safetensors", _header(metadata=big), struct.pack("<f", 1.0))
    arabic_one = {**good_meta, "maskrcnn.format_version": "\u0661"}  # a digit to str.isdigit, not ASCII
    _raw(tmp_path / "version.safetensors", _header(metadata=arabic_one), struct.pack("<f", 1.0))
    l2c = (": safetensors metadata field 'maskrcnn.label_to_category_id' is not a list of "
           "[label, category id] pairs")
    return {
        "deep": ": safetensors metadata field 'maskrcnn.config' is not JSON (nested too deeply)",
        # (Python's own words advised sys.set_int_max_str_digits(), which a user cannot act on)
        "bignum": ": safetensors metadata field 'maskrcnn.label_to_category_id' is not JSON (a number of "
                  "more than 4300 digits; no checkpoint value is that long)",
        "l2c_object": l2c, "l2c_float": l2c, "l2c_bool": l2c, "l2c_triple": l2c,
        "version": ": checkpoint format_version '\u0661' is not supported",
        "truncated": " is a safetensors file that is truncated or corrupt",
        "cut_header": " is a safetensors file that is truncated or corrupt (invalid header length)",
        "not_json": " is a safetensors file that is truncated or corrupt (invalid JSON in header",
        "huge_header": " is a safetensors file that is truncated or corrupt (header too large)",
        "no_tensors": ": a safetensors file holding no tensors",
        "bad_config": ": safetensors metadata field 'maskrcnn.config' is not JSON",
    }


def test_broken_files_are_one_line_naming_the_file_at_every_entry_point(tiny_checkpoint, tmp_path, capsys):
    cases = _broken(tmp_path, tiny_checkpoint)
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    for name, words in cases.items():
        path = tmp_path / f"{name}.safetensors"
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert str(e.value).startswith(f"{path}{words}") and "\n" not in str(e.value), str(e.value)
        ours = name not in ("truncated", "cut_header", "not_json", "huge_header", "no_tensors")
        if not ours:  # (a file of ours: read_weights names the field through check_checkpoint)
            with pytest.raises(ConversionError, match=re.escape(f"{path}{words}")):
                read_weights(str(path))
        for argv in (["predict", "--weights", str(path), str(img), "--output", str(tmp_path / "o")],
                     ["convert", "--from", "maskrcnn", str(path), str(tmp_path / "out.pth")],
                     ["convert", "--from", "torchvision", str(path), str(tmp_path / "out.pth")]):
            if name == "version" and argv[2] == "torchvision":  # read as ours: "no conversion needed"
                continue
            assert main(argv) == 1
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"maskrcnn {argv[0]}: error: {path}{words}") and "\n" not in err, err


def test_without_the_package_a_safetensors_file_is_one_line(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    safe = tmp_path / "model.safetensors"
    ckpt = load_checkpoint(tiny_checkpoint)
    save_safetensors(safe, model_state=ckpt["model"], config=ckpt["config"], class_names=NAMES)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors -> ImportError
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    words = f"{safe} is a safetensors file; reading it needs the safetensors package: pip install safetensors"
    with pytest.raises(CheckpointError, match=re.escape(words)):
        load_checkpoint(safe)
    with pytest.raises(ConversionError, match=re.escape(words)):
        read_weights(str(safe))
    assert main(["predict", "--weights", str(safe), str(safe), "--output", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip() == f"maskrcnn predict: error: {words}"
    assert main(["convert", "--from", "maskrcnn", str(tiny_checkpoint), str(tmp_path / "x"), "--to",
                 "safetensors"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"maskrcnn convert: error: writing {tmp_path / 'x'} (a safetensors file) needs the safetensors "
        "package: pip install safetensors")
    assert not (tmp_path / "x").exists()


def test_convert_from_maskrcnn_refuses_set_changes_the_weights_do_not_fit(tiny_checkpoint, tmp_path, capsys):
    """``--set model.num_classes=7`` on a 3-class checkpoint: refused in one line, nothing written (predict
    would refuse OUT); by its class names, or by the weights when it stores none. A --set the weights fit
    is written."""
    out = tmp_path / "out.safetensors"
    base = ["convert", "--from", "maskrcnn", str(tiny_checkpoint), str(out), "--to", "safetensors"]
    assert main([*base, "--set", "model.num_classes=7"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"maskrcnn convert: error: {tiny_checkpoint}: 'class_names' has 3 names for a "
                          "model with num_classes=7") and "\n" not in err, err
    assert not out.exists()
    ckpt = load_checkpoint(tiny_checkpoint)
    nameless = tmp_path / "nameless.pth"
    save_checkpoint(nameless, model_state=ckpt["model"], config=ckpt["config"], class_names=[])
    argv = ["convert", "--from", "maskrcnn", str(nameless), str(out), "--set", "model.num_classes=7"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"maskrcnn convert: error: {nameless}: does not fit the model the config describes "
                          "with the --set changes: roi_heads.box_predictor.cls_score.weight has shape (3, ")
    assert "the model expects (7, " in err and err.endswith("; nothing written"), err
    assert "\n" not in err
    assert not out.exists()
    assert main([*base, "--set", "model.roi_heads.score_thresh=0.3"]) == 0, capsys.readouterr().err
    got = load_checkpoint(out)
    assert got["config"]["model"]["roi_heads"]["score_thresh"] == 0.3 and got["class_names"] == NAMES


def test_convert_from_maskrcnn_names_what_metadata_leaves_out(tiny_checkpoint, tmp_path, capsys):
    """An older file's "metadata": its label_to_category_id is carried, its other entries named as left
    out."""
    ckpt = load_checkpoint(tiny_checkpoint)
    old = tmp_path / "old.pth"
    save_checkpoint(old, model_state=ckpt["model"], config=ckpt["config"], class_names=NAMES,
                    metadata={"label_to_category_id": {1: 5, 2: 9}, "epoch": 3, "dataset": "pets"})
    out = tmp_path / "out.safetensors"
    assert main(["convert", "--from", "maskrcnn", str(old), str(out), "--to", "safetensors"]) == 0
    assert f"note: left out: metadata (dataset, epoch) ({out} keeps" in capsys.readouterr().err
    assert load_checkpoint(out)["label_to_category_id"] == {1: 5, 2: 9}
