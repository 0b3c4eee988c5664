"""predict / eval / export read weights through one function (``checkpoint_read.inference_weights``): a
bare state dict of our model runs with ``--config``, strictly, and is refused without it saying what to
add; a checkpoint's EMA copy is named in a note and taken with ``FILE#ema``. Also the cost of the
non-finite check every load runs."""

import argparse
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
                "add --config PRESET_OR_YAML, the preset (e.g. r50_fpn) or YAML file it was trained with; "
                "with no class names stored its "
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
        "dropped the prefix 'model.' every key had (a DataParallel / LightningModule wrapper)",
        "no class names stored: its 2 classes are named class1..class2 (data.class_names in a config= YAML "
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
    # (in the library's words: Predictor's keyword, not the command's --config)
    assert str(e.value).startswith(f"config={str(tmp_path / 'two.yaml')!r}: 'class_names' has 2 names for a "
                                   "model with num_classes=3"), str(e.value)
    assert main(["predict", "--weights", str(path), str(bare / "a.png"), "--output", str(tmp_path / "o2"),
                 "--config", str(tmp_path / "two.yaml"), "--device", "cpu"]) == 1
    assert f"--config {tmp_path / 'two.yaml'}: 'class_names' has 2 names" in capsys.readouterr().err
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
            f"`--weights {path}#ema` / `Predictor.from_checkpoint(\"{path}#ema\")` takes the EMA copy"
            ) in capsys.readouterr().err
    raw = Predictor.from_checkpoint(path, device="cpu", optimise=False)
    averaged = Predictor.from_checkpoint(f"{path}#ema", device="cpu", optimise=False)
    assert torch.equal(raw.model.state_dict()[STEM], sd[STEM])
    assert torch.equal(averaged.model.state_dict()[STEM], ema[STEM])
    assert averaged.weights_notes == ["took the EMA copy of the weights ('model_ema')"]
    assert _predict(bare, f"{path}#ema", tmp_path / "o2") == 0
    assert "took the EMA copy" in capsys.readouterr().err
    plain = save_cat_dog_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(ValueError, match=r"plain\.pth: the EMA copy of the weights was asked for \(the #ema "
                       r"suffix of a weights path, or convert's --ema\), but the checkpoint has no "
                       r"'model_ema'"):
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
    assert (f"note: left out: model_ema ({tmp_path / 'raw.pth'} keeps the weights, config and class "
            "names)") in err
    assert torch.equal(load_checkpoint(tmp_path / "raw.pth")["model"][STEM], sd[STEM])
    assert main(["convert", "--from", "maskrcnn", str(path), str(tmp_path / "ema_out.pth"), "--ema"]) == 0
    assert "note: took the EMA copy of the weights ('model_ema')" in capsys.readouterr().err
    assert torch.equal(load_checkpoint(tmp_path / "ema_out.pth")["model"][STEM], sd[STEM] + 1)


def test_non_finite_check_reads_each_tensor_once_without_a_boolean_copy(monkeypatch):
    """Every load checked each tensor with isfinite(v).all(): a tensor-sized boolean copy per weight
    (0.17 s for an R50 state dict). Now one sum per tensor; only a tensor whose sum is not finite is
    looked at element by element, so the answers stay exact."""
    sd = {"w": torch.randn(300, 300), "h": torch.randn(50).half(), "n": torch.tensor(7),
          "d": torch.full((4,), 1e38, dtype=torch.float64)}  # its sum is past float32's range, finite
    seen = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: seen.append(t.numel()) or real(t))
    assert non_finite_keys(sd) == []
    assert seen == [3]  # the three sums, checked together: none looked at element by element
    monkeypatch.setattr(torch, "isfinite", real)
    sd["w"][3, 4] = float("nan")
    sd["x"] = torch.full((4,), float("-inf"))
    sd["big"] = torch.full((4,), 6e4).half()  # finite, though its sum overflows float16
    assert non_finite_keys(sd) == ["w", "x"]
    assert non_finite_keys({"c": torch.zeros(2, dtype=torch.int64), "e": torch.zeros(0)}) == []


def test_non_finite_check_reads_one_byte_floats():
    """float8_e5m2 / float8_e4m3fn have no CPU sum (nor e4m3fn an isfinite): every load of a file holding
    one failed with "sum_cpu" not implemented."""
    for dtype in (torch.float8_e5m2, torch.float8_e4m3fn):
        clean = torch.tensor([1.0, -2.0, 448.0]).to(dtype)
        bad = torch.tensor([1.0, float("nan")]).to(dtype)
        assert non_finite_keys({"c": clean, "b": bad, "f": torch.ones(2)}) == ["b"], dtype
    many = torch.full((1000,), 57344.0).to(torch.float8_e5m2)  # finite; its float16 sum is not
    assert non_finite_keys({"m": many, "i": torch.tensor([float("inf")]).to(torch.float8_e5m2)}) == ["i"]


def _with_ema(path, step=0.5, **extra):
    """A checkpoint of ours at ``path`` holding 'model_ema' (its floats + ``step``): (sd, ema)."""
    model, cfg = build_tiny()
    sd = model.state_dict()
    ema = {k: v + step if v.is_floating_point() else v for k, v in sd.items()}
    save_checkpoint(path, model_state=sd, config=cfg, class_names=["__background__", "a", "b"], model_ema=ema,
                    **extra)
    return sd, ema


def test_quantize_serve_and_benchmark_take_hash_ema_and_print_the_notes(bare, tmp_path, capsys):
    """quantize --weights FILE#ema calibrated the EMA copy, then read "FILE#ema" as a file name (no such
    file); serve and benchmark took "FILE#ema" or left the EMA copy without printing a note."""
    from maskrcnn.checkpoint import load_checkpoint
    from maskrcnn.commands import benchmark, serve

    path = tmp_path / "ema.pth"
    sd, ema = _with_ema(path)
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "a.png").write_bytes((bare / "a.png").read_bytes())
    out = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", f"{path}#ema", "--calib-images", str(calib), "--calib-count", "1",
                 "--parts", "box_head", "--output", str(out)]) == 0  # (random weights detect nothing)
    assert f"note: {path}#ema: took the EMA copy of the weights ('model_ema')" in capsys.readouterr().err
    assert torch.equal(load_checkpoint(out)["model"][STEM], ema[STEM])  # the copy its statistics are of

    options = dict(device="cpu", no_optimise=True, no_winograd=True, batch_size=1, dtype="float32", threads=0)
    predictor = benchmark.build_predictor(argparse.Namespace(weights=f"{path}#ema", **options))
    assert torch.equal(predictor.model.state_dict()[STEM], ema[STEM])
    assert f"note: {path}#ema: took the EMA copy of the weights ('model_ema')" in capsys.readouterr().err

    class Built(Exception):
        pass

    def create_app(predictor, **_kwargs):
        raise Built(predictor)

    args = argparse.Namespace(weights=str(path), device="cpu", set=[], score_thresh=0.05, batch_size=1,
                              dtype="float32", no_optimise=True, max_upload_mb=1, max_pixels=1, max_wait_ms=1,
                              max_queue=1, upload_timeout=1, request_timeout=1, min_region_area=0)
    with pytest.raises(Built) as e:
        serve._serve(args, None, create_app, None, None)
    assert torch.equal(e.value.args[0].model.state_dict()[STEM], sd[STEM])
    assert (f"note: {path}: the file also holds an EMA copy of the weights ('model_ema'); took 'model'; "
            f"`--weights {path}#ema` / `Predictor.from_checkpoint(\"{path}#ema\")` takes the EMA copy"
            ) in capsys.readouterr().err


def test_the_no_config_refusal_names_the_callers_way(bare, tmp_path, capsys):
    """quantize / serve / benchmark, which have no --config for their weights, were told to "add --config";
    a library caller is told of config=."""
    path = bare / "bare.pth"
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "a.png").write_bytes((bare / "a.png").read_bytes())
    assert main(["quantize", "--weights", str(path), "--calib-images", str(calib), "--output",
                 str(tmp_path / "q.pth")]) == 1
    err = capsys.readouterr().err
    assert (f"{path}: the weights of this library's model without the config that says how to build it: "
            "`maskrcnn quantize` takes no --config for its weights: save it as a checkpoint: "
            "maskrcnn.checkpoint.save_checkpoint(OUT, model_state=STATE_DICT, config=CONFIG, "
            "class_names=[...]); docs/checkpoints.md (predict, eval and export run it as it is with "
            "--config PRESET_OR_YAML)") in err
    assert "add --config" not in err
    with pytest.raises(CheckpointError, match=r"it: pass config=PRESET_OR_YAML \(Predictor\.from_checkpoint, "
                                              r"inference_weights\), the preset"):
        Predictor.from_checkpoint(path, device="cpu")


def test_a_torchvision_style_dict_of_our_weights_notes_and_takes_its_ema_copy(bare, tmp_path):
    """{"model": ours, "model_ema": ..., "epoch": ...} (torchvision's train.py, no 'format'): #ema was
    refused as "a bare state dict holds one copy", and without it the EMA copy went unsaid."""
    sd = torch.load(bare / "bare.pth")
    ema = {f"module.{k}": v + 0.5 if v.is_floating_point() else v for k, v in sd.items()}
    path = tmp_path / "tv_style.pth"
    torch.save({"model": sd, "model_ema": {**ema, "n_averaged": torch.tensor(7)}, "epoch": 3}, path)
    config = str(bare / "tiny.yaml")
    raw = Predictor.from_checkpoint(path, device="cpu", optimise=False, config=config)
    assert torch.equal(raw.model.state_dict()[STEM], sd[STEM])
    assert raw.weights_notes == [
        "the file also holds an EMA copy of the weights ('model_ema', averaged over 7 steps); took 'model'; "
        f"`--weights {path}#ema` / `Predictor.from_checkpoint(\"{path}#ema\")` takes the EMA copy"]
    averaged = Predictor.from_checkpoint(f"{path}#ema", device="cpu", optimise=False, config=config)
    assert torch.equal(averaged.model.state_dict()[STEM], sd[STEM] + 0.5)
    assert averaged.weights_notes == ["took the EMA copy of the weights ('model_ema')"]
    with pytest.raises(ValueError, match=r"bare\.pth: the EMA copy of the weights was asked for \(the #ema "
                                         r"suffix of a weights path, or convert's --ema\), but this bare "
                                         r"state dict holds one copy of the weights"):
        Predictor.from_checkpoint(f"{bare / 'bare.pth'}#ema", device="cpu", config=config)


def test_entries_that_are_not_tensors_are_dropped_and_load_checkpoint_names_config(bare, tmp_path):
    """A bare state dict with an int beside its tensors was recognised by the not-ours hint (any tensor)
    but not by --config (all tensors): refused either way. One test now: the tensors taken, a note."""
    from maskrcnn.checkpoint import load_checkpoint

    path = tmp_path / "epoch.pth"
    torch.save({**torch.load(bare / "bare.pth"), "epoch": 3, "head.num_batches_tracked": 0}, path)
    predictor = Predictor.from_checkpoint(path, device="cpu", optimise=False, config=str(bare / "tiny.yaml"))
    assert predictor.weights_notes == ["dropped 2 entries that are not a tensor: epoch, "
                                       "head.num_batches_tracked"]
    with pytest.raises(CheckpointError) as e:  # --resume, train --init: the commands that take --config
        load_checkpoint(path)
    assert str(e.value).startswith(f"{path}: not a maskrcnn checkpoint (the weights of this library's model "
                                   "without the config that says how to build it: predict, eval and export "
                                   "run them with --config PRESET_OR_YAML; no --from converts them")


def test_another_librarys_file_keeps_hash_ema_and_says_config_does_not_apply(tmp_path):
    """`--weights tv.pth#ema` was told `maskrcnn convert --from torchvision tv.pth OUT.pth` (no --ema), and
    --config given with it went unmentioned."""
    path = tmp_path / "tv.pth"
    torch.save({"model": {"backbone.body.conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError) as e:
        Predictor.from_checkpoint(f"{path}#ema", device="cpu")
    assert str(e.value) == (f"{path}: not a maskrcnn checkpoint (a torchvision checkpoint: maskrcnn convert "
                            f"--from torchvision --ema {path} OUT.pth)")
    with pytest.raises(CheckpointError) as e:
        Predictor.from_checkpoint(path, device="cpu", config="r18_fpn")
    assert str(e.value) == (f"{path}: not a maskrcnn checkpoint (a torchvision checkpoint: maskrcnn convert "
                            f"--from torchvision {path} OUT.pth) (--config applies only to a bare state dict "
                            "of this library's model)")


def test_from_weights_names_its_own_keywords_for_an_onnx_file(tmp_path):
    """Predictor.from_weights refused config= / overrides= for an ONNX file in the command's words
    (--config, --set), which a notebook never typed."""
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")  # refused before the file is read
    with pytest.raises(ValueError) as e:
        Predictor.from_weights(path, config="r18_fpn", device="cpu")
    assert str(e.value) == f"{path}: config= is for a bare state dict; an exported ONNX file holds its config"
    with pytest.raises(ValueError) as e:
        Predictor.from_weights(path, overrides={"model.roi_heads.score_thresh": 0.3}, device="cpu")
    assert str(e.value) == (f"{path}: config overrides (overrides=) do not apply to an exported ONNX file; "
                            "override them when exporting the checkpoint")
    # a command passes its own words (weights_args): its options stay
    with pytest.raises(ValueError, match=r": --config is for a bare state dict"):
        Predictor.from_weights(path, config="r18_fpn", overrides_word="--set", device="cpu")
    with pytest.raises(ValueError, match=r"config overrides \(--set\) do not apply"):
        Predictor.from_weights(path, overrides={"model.roi_heads.score_thresh": 0.3}, overrides_word="--set",
                               device="cpu")
