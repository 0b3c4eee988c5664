"""predict / eval / export read weights through one function (``checkpoint_read.inference_weights``): a
bare state dict of our model runs with ``--config``, strictly, and is refused without it saying what to
add; a checkpoint's EMA copy is named in a note and taken with ``FILE#ema``. Also the cost of the
non-finite check every load runs."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tiny_model import build_tiny, save_cat_dog_checkpoint, write_one_image_set

from maskrcnn.checkpoint import CheckpointError, non_finite_keys, save_checkpoint
from maskrcnn.cli import main
from maskrcnn.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")
STEM = "backbone.stem.conv1.conv.weight"


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """(folder, bare state dict file, a YAML config of its model naming its classes, an image)."""
    root = tmp_path_factory.mktemp("bare")
    model, cfg = build_tiny()
    torch.save(model.state_dict(), root / "bare.pth")
    data = cfg.to_dict()
    data["data"]["class_names"] = ["__background__", "a", "b"]
    (root / "tiny.yaml").write_text(yaml.safe_dump(data))
    pixels = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "a.png")
    save_checkpoint(root / "ckpt.pth", model_state=model.state_dict(), config=cfg,
                    class_names=["__background__", "a", "b"])
    return root


def _predict(root, weights, out, *extra):
    return main(["predict", "--weights", str(weights), str(root / "a.png"), "--output", str(out),  # (no
                 "--device", "cpu", "--no-overlays", "--no-optimise", *extra])  # Winograd set-up: seconds)


def test_bare_state_dict_is_refused_without_config_saying_what_to_add(bare, tmp_path, capsys):
    path = bare / "bare.pth"
    expected = (f"{path}: the weights of this library's model without the config that says how to build it: "
                "add --config PRESET_OR_YAML (predict, eval, export; config= in Predictor.from_checkpoint), "
                "the preset (e.g. r50_fpn) or YAML file it was trained with; with no class names stored its "
                "classes are named class1, class2, ... unless that YAML sets data.class_names (or save it as "
                "a checkpoint: maskrcnn.checkpoint.save_checkpoint(OUT, model_state=STATE_DICT, "
                "config=CONFIG, class_names=[...]); docs/checkpoints.md)")
    for argv in (["predict", "--weights", str(path), str(bare / "a.png"), "--output", str(tmp_path / "o"),
                  "--device", "cpu"],
                 ["export", "--weights", str(path), "--output", str(tmp_path / "m.pt2")]):
        assert main(argv) == 1
        assert capsys.readouterr().err.strip().endswith(expected)
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.pt2").exists()


def test_bare_state_dict_with_config_predicts_as_its_checkpoint(bare, tmp_path, capsys):
    """The same weights as a bare state dict with --config, and as a checkpoint: the same model
    (before, --config was no option of predict / eval / export: the file was refused with advice only)."""
    assert _predict(bare, bare / "bare.pth", tmp_path / "bare", "--config", str(bare / "tiny.yaml")) == 0
    assert "note:" not in capsys.readouterr().err  # names from the YAML, no prefix: nothing to say
    found = json.loads((tmp_path / "bare" / "predictions.json").read_text())
    assert found and {p["category_name"] for p in found} <= {"a", "b"}
    ours = Predictor.from_checkpoint(bare / "bare.pth", device="cpu", optimise=False,
                                     config=str(bare / "tiny.yaml"))
    theirs = Predictor.from_checkpoint(bare / "ckpt.pth", device="cpu", optimise=False)
    assert ours.cfg.to_dict() == theirs.cfg.to_dict() and ours.class_names == theirs.class_names
    mine, reference = ours.model.state_dict(), theirs.model.state_dict()
    assert sorted(mine) == sorted(reference) and all(torch.equal(mine[k], v) for k, v in reference.items())

    # a Lightning-wrapped one under "state_dict", without names: said in notes, classes class1..N
    wrapped = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in torch.load(bare / "bare.pth").items()}}, wrapped)
    nameless = yaml.safe_load((bare / "tiny.yaml").read_text())
    nameless["data"]["class_names"] = []
    (tmp_path / "nameless.yaml").write_text(yaml.safe_dump(nameless))
    predictor = Predictor.from_checkpoint(wrapped, device="cpu", config=str(tmp_path / "nameless.yaml"))
    assert predictor.class_names == ["__background__", "class1", "class2"]
    assert predictor.weights_notes == [
        "dropped the prefix every key had ('model.': a DataParallel / Lightning wrapper)",
        "no class names stored: its 2 classes are named class1..class2 (data.class_names in a --config YAML "
        "names them)"]


def test_eval_takes_a_bare_state_dict_with_config(bare, tmp_path):
    gt = write_one_image_set(tmp_path / "set", 48, 64)
    out = tmp_path / "eval"
    argv = ["eval", "--weights", str(bare / "bare.pth"), "--json", str(gt), "--images",
            str(tmp_path / "set" / "images"), "--output", str(out), "--device", "cpu"]
    assert main(argv) == 1  # no --config: refused
    assert main([*argv, "--config", str(bare / "tiny.yaml")]) == 0
    assert "bbox" in json.loads((out / "metrics.json").read_text())


def test_config_that_does_not_fit_names_the_first_key_and_both_shapes(bare, tmp_path, capsys):
    path = bare / "bare.pth"
    for command in (["predict", str(bare / "a.png"), "--output", str(tmp_path / "o"), "--device", "cpu"],
                    ["export", "--output", str(tmp_path / "m.pt2")]):
        assert main([command[0], "--weights", str(path), "--config", "r18_fpn", *command[1:]]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            f"{path}: does not fit the model --config r18_fpn describes: fpn.lateral.0.conv.weight has shape "
            "(32, 64, 1, 1) in the file, the model expects (256, 64, 1, 1)")
    # a key the model lacks, one it needs: named too
    sd = torch.load(path)
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"the file's extra\.weight is not in the model \(1 such "
                                              r"tensor\)$"):
        Predictor.from_checkpoint(tmp_path / "extra.pth", device="cpu", config=str(bare / "tiny.yaml"))
    del sd["extra.weight"], sd[STEM]
    torch.save(sd, tmp_path / "short.pth")
    with pytest.raises(CheckpointError,
                       match=rf"the file has no {STEM} \(1 of the model's \d+ tensors missing\)$"):
        Predictor.from_checkpoint(tmp_path / "short.pth", device="cpu", config=str(bare / "tiny.yaml"))
    # class names of the YAML that do not fit its model: the YAML named (the file holds none)
    data = yaml.safe_load((bare / "tiny.yaml").read_text())
    data["data"]["class_names"] = ["__background__", "x"]
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError) as e:
        Predictor.from_checkpoint(path, device="cpu", config=str(tmp_path / "two.yaml"))
    assert str(e.value).startswith(f"--config {tmp_path / 'two.yaml'}: 'class_names' has 2 names for a model "
                                   "with num_classes=3")
    # a checkpoint holds its config: --config is refused for it, not silently ignored
    assert main(["predict", "--weights", str(bare / "ckpt.pth"), str(bare / "a.png"), "--output",
                 str(tmp_path / "o"), "--config", "r18_fpn"]) == 1
    assert (f"{bare / 'ckpt.pth'}: --config r18_fpn is for a bare state dict; this checkpoint holds its own "
            "config (change it with --set KEY=VALUE)") in capsys.readouterr().err


def test_ema_copy_is_named_in_a_note_and_taken_with_hash_ema(bare, tmp_path, capsys):
    """predict / eval / export took 'model' of a checkpoint holding 'model_ema' without a word."""
    model, cfg = build_tiny()
    sd = model.state_dict()
    ema = {k: v + 0.5 if v.is_floating_point() else v for k, v in sd.items()}
    path = tmp_path / "ema.pth"
    save_checkpoint(path, model_state=sd, config=cfg, class_names=["__background__", "a", "b"], model_ema=ema)
    assert _predict(bare, path, tmp_path / "o") == 0
    assert (f"note: {path}: the file also holds an EMA copy of the weights ('model_ema'); took 'model'; "
            f"`--weights {path}#ema` takes the EMA copy") in capsys.readouterr().err
    raw = Predictor.from_checkpoint(path, device="cpu", optimise=False)
    averaged = Predictor.from_checkpoint(f"{path}#ema", device="cpu", optimise=False)
    assert torch.equal(raw.model.state_dict()[STEM], sd[STEM])
    assert torch.equal(averaged.model.state_dict()[STEM], ema[STEM])
    assert averaged.weights_notes == ["took the EMA copy of the weights ('model_ema')"]
    assert _predict(bare, f"{path}#ema", tmp_path / "o2") == 0
    assert "took the EMA copy" in capsys.readouterr().err
    plain = save_cat_dog_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(ValueError, match=r"plain\.pth: the EMA copy of the weights was asked for \(--ema / "
                       r"#ema\), but the checkpoint has no 'model_ema'"):
        Predictor.from_checkpoint(f"{plain}#ema", device="cpu")


def test_convert_from_maskrcnn_names_and_takes_the_ema_copy(tmp_path, capsys):
    from maskrcnn.checkpoint import load_checkpoint

    model, cfg = build_tiny()
    sd = model.state_dict()
    path = tmp_path / "ema.pth"
    save_checkpoint(path, model_state=sd, config=cfg, class_names=["__background__", "a", "b"],
                    model_ema={k: v + 1 if v.is_floating_point() else v for k, v in sd.items()})
    assert main(["convert", "--from", "maskrcnn", str(path), str(tmp_path / "raw.pth")]) == 0
    err = capsys.readouterr().err
    assert ("note: the file also holds an EMA copy of the weights ('model_ema'); took 'model'; "
            "`maskrcnn convert --from maskrcnn --ema` takes the EMA copy") in err
    assert "note: left out: model_ema (OUT keeps the weights, config and class names)" in err
    assert torch.equal(load_checkpoint(tmp_path / "raw.pth")["model"][STEM], sd[STEM])
    assert main(["convert", "--from", "maskrcnn", str(path), str(tmp_path / "ema_out.pth"), "--ema"]) == 0
    assert "note: took the EMA copy of the weights ('model_ema')" in capsys.readouterr().err
    assert torch.equal(load_checkpoint(tmp_path / "ema_out.pth")["model"][STEM], sd[STEM] + 1)


def test_non_finite_check_reads_each_tensor_once_without_a_boolean_copy(monkeypatch):
    """Every load checked each tensor with isfinite(v).all(): a tensor-sized boolean copy per weight
    (0.17 s for an R50 state dict). Now one sum per tensor; only a tensor whose sum is not finite is
    looked at element by element, so the answers stay exact."""
    sd = {"w": torch.randn(300, 300), "h": torch.randn(50).half(), "n": torch.tensor(7)}
    seen = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: seen.append(t.numel()) or real(t))
    assert non_finite_keys(sd) == []
    assert seen == [2]  # the two sums, checked together
    monkeypatch.setattr(torch, "isfinite", real)
    sd["w"][3, 4] = float("nan")
    sd["x"] = torch.full((4,), float("-inf"))
    sd["big"] = torch.full((4,), 6e4).half()  # finite, though its sum overflows float16
    assert non_finite_keys(sd) == ["w", "x"]
    assert non_finite_keys({"c": torch.zeros(2, dtype=torch.int64), "e": torch.zeros(0)}) == []
