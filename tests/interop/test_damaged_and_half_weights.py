"""Three things a weights file did without a word (a probe's findings):

- a detectron2 ``.pkl`` cut off at a third was "a plain pickle, not a PyTorch file" to predict and to
  ``convert --from torchvision`` (the whole file gets a detectron2 hint); now every reader says it is a
  truncated or corrupt pickle, and that its readable start is a detectron2 checkpoint's;
- a checkpoint of ours with one key renamed named the key missing, never the file's key the model has no
  place for;
- float16 / bfloat16 weights loaded (and converted to float32, twice the bytes) without a note, though they
  score slightly apart from their float32 original.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from test_detectron2_convert import to_detectron2  # (tests/interop is on the path)

from maskrcnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from maskrcnn.checkpoint_read import inference_weights
from maskrcnn.cli import main
from tests.tiny_model import build_tiny, save_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, cfg = build_tiny()
    return model, save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt.pth", model, cfg)


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_cut_of_a_pickle_is_a_cut_and_a_whole_one_is_none(tmp_path, protocol):
    """A cut is told by the reader running out of the file, not by genops' words: a cut inside a
    protocol-2 GLOBAL's text said "no newline found when trying to read stringnl" instead."""
    from maskrcnn.checkpoint_refusal import damaged_pickle_message

    whole = pickle.dumps({"model": {"conv1.weight": np.arange(6, dtype=np.float32)}, "n": 2**70},
                         protocol=protocol)
    path = tmp_path / "w.pkl"
    path.write_bytes(whole)
    assert damaged_pickle_message(path) is None
    for end in range(1, len(whole)):
        path.write_bytes(whole[:end])
        said = damaged_pickle_message(path)
        assert said is not None, end
        assert f"its data stops at byte {end}, before the pickle's end" in said, (end, said)


def test_a_cut_off_pickle_is_called_truncated_by_every_reader(tiny, tmp_path, capsys):
    model, _ = tiny
    whole = pickle.dumps({"model": to_detectron2(model), "__author__": "Detectron2 Model Zoo"}, protocol=4)
    cut = tmp_path / "trunc_d2.pkl"
    cut.write_bytes(whole[: len(whole) // 3])
    other = tmp_path / "trunc_other.pkl"  # no detectron2 keys in what can be read: no such word
    other_bytes = pickle.dumps({"weights": np.zeros(50_000, np.float32), "tail": "x"}, protocol=4)
    other.write_bytes(other_bytes[: len(other_bytes) // 2])
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    said = f"{cut} is a truncated or corrupt pickle (its data stops at byte {cut.stat().st_size}, before the "
    predict = ["predict", str(image), "--output", str(tmp_path / "o"), "--device", "cpu", "--weights"]
    runs = [[*predict, str(cut)],
            *(["convert", "--from", source, str(cut), str(tmp_path / "o.pth")]
              for source in ("torchvision", "detectron2", "mmdetection"))]
    for argv in runs:
        assert main(argv) == 1
        line = _last_error(capsys)
        assert said in line and "plain pickle" not in line, (argv, line)
        assert "looks like a detectron2 checkpoint (keys like backbone.bottom_up." in line, line
    assert not (tmp_path / "o.pth").exists() and not (tmp_path / "o").exists()
    with pytest.raises(CheckpointError, match=r"trunc_other\.pkl is a truncated or corrupt pickle \(its data "
                                              r"stops at byte \d+, before the pickle's end: a cut-off "
                                              r"download or copy\)$"):
        load_checkpoint(other)
    # the whole file is still the plain pickle that convert --from detectron2 reads
    (tmp_path / "whole.pkl").write_bytes(whole)
    assert main([*predict, str(tmp_path / "whole.pkl")]) == 1
    assert "is a plain pickle, not a PyTorch file (a detectron2 checkpoint: maskrcnn convert --from " \
           "detectron2" in _last_error(capsys)


def test_a_renamed_key_names_the_files_key_too(tiny, tmp_path):
    _, path = tiny
    ckpt = load_checkpoint(path)
    renamed = {k.replace("box_head.fcs.0.", "box_head.fcX.0."): v for k, v in ckpt["model"].items()}
    save_checkpoint(tmp_path / "renamed.pth", model_state=renamed, config=ckpt["config"],
                    class_names=ckpt["class_names"])
    with pytest.raises(CheckpointError) as e:
        inference_weights(tmp_path / "renamed.pth")
    assert str(e.value).endswith(
        "the file has no roi_heads.box_head.fcs.0.weight (2 of the model's 142 tensors missing); the file's "
        "roi_heads.box_head.fcX.0.weight, roi_heads.box_head.fcX.0.bias are not in the model (2 such "
        "tensors)"), str(e.value)
    many = {("old." + k if k.startswith("rpn.") else k): v for k, v in ckpt["model"].items()}
    save_checkpoint(tmp_path / "many.pth", model_state=many, config=ckpt["config"],
                    class_names=ckpt["class_names"])
    three = r"old\.rpn\.[\w.]+, " * 3
    with pytest.raises(CheckpointError, match=rf"; the file's {three}\.\.\. \(3 more\) are not in the model "
                                              r"\(6 such tensors\)$"):
        inference_weights(tmp_path / "many.pth")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_said_where_loaded_and_converted(tiny, tmp_path, capsys, dtype):
    model, path = tiny
    name = str(dtype).replace("torch.", "")
    ckpt = load_checkpoint(path)
    assert inference_weights(path)[1] == []  # float32: nothing to say
    half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(tmp_path / "half.pth", model_state=half, config=ckpt["config"],
                    class_names=ckpt["class_names"])
    lost = f"what {name} rounded off when saved is not regained: results may differ slightly from the " \
           "float32 original's"
    assert inference_weights(tmp_path / "half.pth")[1] == [
        f"the weights are {name}, not float32: loaded into the model's float32 parameters; {lost}"]
    # convert --from maskrcnn writes them as they are, and says so
    kept = tmp_path / "kept.pth"
    assert main(["convert", "--from", "maskrcnn", str(tmp_path / "half.pth"), str(kept)]) == 0
    assert f"note: the weights are {name}, not float32: kept so in {tmp_path / 'kept.pth'}" \
           in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "kept.pth")["model"]["rpn.head.deltas.weight"].dtype == dtype
    # another library's half weights are written as float32: twice the bytes, said
    d2 = to_detectron2(model)
    if dtype == torch.float16:  # the model zoo's .pkl of numpy arrays
        src = tmp_path / "d2.pkl"
        src.write_bytes(pickle.dumps({"model": {k: v.astype(np.float16) for k, v in d2.items()}}))
    else:  # numpy has no bfloat16: a detectron2 trainer's .pth of tensors
        src = tmp_path / "d2.pth"
        torch.save({"model": {k: torch.from_numpy(v).to(dtype) for k, v in d2.items()}}, src)
    out = tmp_path / "from_d2.pth"
    assert main(["convert", "--from", "detectron2", str(src), str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: the weights are {name}, not float32: converted to float32, the model's dtype; " \
           f"{lost}" in err
    assert f"note: {out} holds the weights as float32: twice the bytes of {name}" in err
    written = load_checkpoint(out)["model"].values()
    assert {v.dtype for v in written if v.is_floating_point()} == {torch.float32}


def test_damage_inside_a_pickle_names_the_byte_in_plain_words(tiny, tmp_path):
    """A byte damaged mid-file (not a cut) was said in pickletools' words alone ("at position 140, opcode
    b'\\xff' unknown"); now the file and the byte come first in plain words, pickletools' reason after
    them in parentheses; the detectron2 hint is kept."""
    import io
    import pickletools

    from maskrcnn.checkpoint_refusal import damaged_pickle_message

    model, _ = tiny
    whole = pickle.dumps({"model": to_detectron2(model), "__author__": "Detectron2 Model Zoo"}, protocol=4)
    ops = [(op.name, pos) for op, _arg, pos in pickletools.genops(io.BytesIO(whole))]
    _, at = ops[len(ops) // 2]  # an opcode in the middle of the file: far from its end
    damaged = bytearray(whole)
    damaged[at] = 0xFF  # no pickle opcode
    path = tmp_path / "damaged.pkl"
    path.write_bytes(bytes(damaged))
    said = damaged_pickle_message(path)
    assert said.startswith(f"{path} is a corrupt pickle: damaged at byte {at} of {len(whole)} (no pickle "
                           f"data there; pickletools: at position {at}, opcode b'\\xff' unknown); "), said
    assert "looks like a detectron2 checkpoint (keys like backbone.bottom_up." in said
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(e.value) == said


def test_train_init_of_half_weights_says_no_file_size(tiny, tmp_path, monkeypatch, capsys):
    """``train --init`` of another library's float16 weights showed the converter's "(twice the bytes)",
    words for a file written, though it writes none; ``convert`` still says what its OUT costs."""
    from init_as_train import read_init_as_train_does  # tests/interop is on the path

    model, _ = tiny
    src = tmp_path / "d2_half.pkl"
    half = {k: v.astype(np.float16) for k, v in to_detectron2(model).items()}
    src.write_bytes(pickle.dumps({"model": half}))
    lost = "what float16 rounded off when saved is not regained: results may differ slightly from the " \
           "float32 original's"
    notes = read_init_as_train_does(str(src), tmp_path, monkeypatch)["source"].notes
    said = [n for n in notes if "float16" in n]
    assert said == [f"the weights are float16, not float32: converted to float32, the model's dtype; {lost}"]
    out = tmp_path / "o.pth"
    assert main(["convert", "--from", "detectron2", str(src), str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: the weights are float16, not float32: converted to float32, the model's dtype; " \
           f"{lost}" in err
    assert f"note: {out} holds the weights as float32: twice the bytes of float16" in err
