"""Weights files are told by their bytes, not their names (a torch file named ``*.safetensors`` loads as
the torch file it is); a checkpoint of ours whose weights do not fit its own config is refused in one line
naming the key and both shapes, by ``predict`` and by ``convert --from maskrcnn`` (nothing written); a
folder given as weights is called one by every ``--from``; the one-class note reads in the singular."""

import shutil

import pytest
import torch
import yaml

from maskrcnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from maskrcnn.checkpoint_read import inference_weights
from maskrcnn.cli import main
from maskrcnn.interop.mmdet_file import read_mmdet_file
from maskrcnn.interop.torchvision import torch_load_weights
from maskrcnn.predictor import Predictor
from maskrcnn.safe_load import load_weights_only
from tests.tiny_model import TINY, build_tiny, save_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    model, cfg = build_tiny()
    return save_tiny_checkpoint(root / "ckpt.pth", model, cfg)


def test_a_torch_file_named_safetensors_is_read_by_its_bytes(tiny, tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    torch.save(state, tmp_path / "plain.safetensors")  # a torch zip with the other format's suffix
    for reader in (load_weights_only, torch_load_weights, read_mmdet_file):
        got = reader(tmp_path / "plain.safetensors")
        assert sorted(got) == ["n", "w"] and torch.equal(got["w"], state["w"]), reader
    named = tmp_path / "ours.safetensors"
    shutil.copy(tiny, named)
    assert sorted(load_checkpoint(named)["model"]) == sorted(load_checkpoint(tiny)["model"])
    out = tmp_path / "out.pth"
    assert main(["convert", "--from", "maskrcnn", str(named), str(out)]) == 0
    assert out.is_file()


def _misfit_checkpoint(tiny, path):
    """``tiny`` with one class row fewer in its box classifier than its config's num_classes."""
    ckpt = load_checkpoint(tiny)
    sd = dict(ckpt["model"])
    key = "roi_heads.box_predictor.cls_score.weight"
    sd[key] = sd[key][:-1]
    save_checkpoint(path, model_state=sd, config=ckpt["config"], class_names=ckpt["class_names"])
    return path, tuple(sd[key].shape), tuple(ckpt["model"][key].shape)


def test_convert_from_maskrcnn_refuses_weights_that_do_not_fit_their_config(tiny, tmp_path, capsys):
    path, have, want = _misfit_checkpoint(tiny, tmp_path / "short.pth")
    for to in ("torch", "safetensors"):
        out = tmp_path / f"out_{to}"
        assert main(["convert", "--from", "maskrcnn", str(path), str(out), "--to", to]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"maskrcnn convert: error: {path}: does not fit the model its config "
                              f"describes: roi_heads.box_predictor.cls_score.weight has shape {have} in "
                              f"the file, the model expects {want} (a class layer"), err
        assert err.endswith("; nothing written") and "\n" not in err
        assert not out.exists()
    ckpt = load_checkpoint(tiny)  # a missing key: named too
    sd = {k: v for k, v in ckpt["model"].items() if k != "roi_heads.mask_head.predictor.weight"}
    save_checkpoint(tmp_path / "missing.pth", model_state=sd, config=ckpt["config"],
                    class_names=ckpt["class_names"])
    argv = ["convert", "--from", "maskrcnn", str(tmp_path / "missing.pth"), str(tmp_path / "o.pth")]
    assert main(argv) == 1
    assert "the file has no roi_heads.mask_head.predictor.weight" in capsys.readouterr().err
    assert not (tmp_path / "o.pth").exists()


def test_predict_names_the_key_and_both_shapes_for_our_checkpoint(tiny, tmp_path):
    path, have, want = _misfit_checkpoint(tiny, tmp_path / "short.pth")
    with pytest.raises(CheckpointError) as caught:
        Predictor.from_checkpoint(path, device="cpu")
    message = str(caught.value)
    assert message.startswith(f"{path}: does not fit the model its config describes: roi_heads.box_predictor."
                              f"cls_score.weight has shape {have} in the file, the model expects {want}")
    assert "size mismatch" not in message and "\n" not in message


@pytest.mark.parametrize("source", ["maskrcnn", "torchvision", "detectron2", "mmdetection"])
def test_a_folder_given_as_weights_is_called_a_folder(source, tmp_path, capsys):
    folder = tmp_path / "adir.pth"
    folder.mkdir()
    assert main(["convert", "--from", source, str(folder), str(tmp_path / "o.pth")]) == 1
    assert capsys.readouterr().err.strip() == (f"maskrcnn convert: error: {folder}: is a folder, not a "
                                              "checkpoint file")


def test_the_one_class_note_is_singular(tmp_path):
    model, cfg = build_tiny({**TINY, "model.num_classes": 2})
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    data = cfg.to_dict()
    data["data"]["class_names"] = []
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(data))
    _ckpt, notes = inference_weights(tmp_path / "bare.pth", config=str(tmp_path / "one.yaml"))
    assert "no class names stored: its 1 class is named class1 (data.class_names in a config= YAML names " \
           "them)" in notes, notes
