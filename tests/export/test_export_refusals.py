"""``maskrcnn export`` on models that cannot become an ONNX graph, and on outputs it must not write:
one line naming the checkpoint and why, before any tracing (torch's exporter would fail deep inside,
after printing its whole graph on stdout), and the output file untouched.

Only the ``--float`` case exports (the tiny model, a few seconds); the refusals stop before tracing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ["__background__", "cat", "dog"]


def _checkpoint(path, **overrides):
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), {**TINY, **overrides})
    save_checkpoint(path, model_state=build_model(cfg).state_dict(), config=cfg, class_names=NAMES)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model's checkpoint, shared (each test writes its outputs beside it in its own folder)."""
    return _checkpoint(tmp_path_factory.mktemp("refusals") / "tiny.pth")


def _export(capsys, *args):
    rc = main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip().splitlines()


@pytest.mark.slow  # a calibration (box head only) and one export of the tiny model, ~4 s
def test_an_int8_checkpoint_is_refused_by_name_and_exported_as_float_on_request(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "tiny.pth")
    calib = tmp_path / "calib"
    calib.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(calib / "a.png")
    assert main(["quantize", "--weights", str(ckpt), "--calib-images", str(calib), "--calib-count", "1",
                 "--parts", "box_head", "--output", str(tmp_path / "int8.pth")]) == 0  # fmt: skip
    capsys.readouterr()
    for out in ("int8.onnx", "int8.pt2"):
        rc, stdout, err = _export(capsys, "--weights", tmp_path / "int8.pth", "--output", tmp_path / out)
        assert rc == 1 and stdout == "" and len(err) == 1, err
        assert err[0].startswith(f"maskrcnn export: error: {tmp_path / 'int8.pth'}: an INT8 checkpoint")
        assert "add --float" in err[0] and not (tmp_path / out).exists()
    rc, _, err = _export(capsys, "--weights", tmp_path / "int8.pth", "--output", tmp_path / "f.onnx",
                         "--float")
    assert rc == 0 and not any("--float has no effect" in line for line in err), err  # it had an effect
    image = torch.rand(3, 50, 75, generator=torch.Generator().manual_seed(1))
    a = Predictor.from_checkpoint(ckpt, device="cpu", optimise=False)(image)[0]
    b = Predictor.from_onnx(tmp_path / "f.onnx")(image)[0]  # the float weights: the float model's output
    torch.testing.assert_close(b["boxes"], a["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(b["labels"], a["labels"])


def test_roipool_heads_are_refused_naming_the_checkpoint(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "roipool.pth", **{"model.roi_heads.pooler": "roipool"})
    rc, stdout, err = _export(capsys, "--weights", ckpt, "--output", tmp_path / "m.onnx")
    assert (rc, stdout) == (1, "")
    assert err == [f"maskrcnn export: error: {ckpt}: cannot export to ONNX: the box pooler is 'roipool'; "
                   "ONNX has RoiAlign only"]


def test_a_model_optimised_with_this_librarys_kernels_is_refused_before_tracing(tmp_path, tiny):
    from maskrcnn.export.onnx_export import export_onnx

    p = Predictor.from_checkpoint(tiny, device="cpu", optimise=True, winograd=True, fused_add=False)
    with pytest.raises(ValueError, match=r"cannot export this model to ONNX: it runs this library's CPU "
                                         r"kernels \(WinogradConv2d\); export the plain model"):
        export_onnx(p.model, p.cfg, p.class_names, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_the_output_is_never_the_weights_file(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "tiny.pth")
    before = ckpt.read_bytes()
    same = tmp_path / "." / "tiny.pth"  # another spelling of the same file
    rc, _, err = _export(capsys, "--weights", ckpt, "--output", same, "--format", "onnx")
    assert rc == 1 and err == [f"maskrcnn export: error: --output {same}: names the same file as "
                               "--weights; write the export under another name"]
    assert ckpt.read_bytes() == before


def test_an_exporter_failure_is_one_line_and_leaves_the_old_output(tmp_path, capsys, monkeypatch, tiny):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous export")

    def fail(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'x::y' to ONNX opset version 17 is not supported\n"
                           "graph(%image : Float(3, *, *)):\n  ...")

    monkeypatch.setattr(torch.onnx, "export", fail)
    rc, _, err = _export(capsys, "--weights", tiny, "--output", out)
    assert rc == 1 and err == ["maskrcnn export: error: ONNX export failed: Exporting the operator 'x::y' to "
                               "ONNX opset version 17 is not supported"]
    assert out.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left


def test_an_onnx_file_as_weights_is_named_as_such(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x08\x12\x07pytorch")  # how our exports start
    rc, _, err = _export(capsys, "--weights", tmp_path / "m.onnx", "--output", tmp_path / "again.onnx")
    assert rc == 1 and err == [f"maskrcnn export: error: --weights {tmp_path / 'm.onnx'}: an exported ONNX "
                               "file; export reads the checkpoint it came from (run the .onnx itself with "
                               "`maskrcnn predict --weights`)"]


def test_a_failed_pt2_save_leaves_the_old_output(tmp_path, capsys, monkeypatch, tiny):
    out = tmp_path / "m.pt2"
    out.write_bytes(b"the previous export")
    monkeypatch.setattr(torch.export, "export", lambda *args, **kwargs: "a program")  # no tracing here

    def half_then_fail(program, f, **kwargs):
        f.write(b"PK half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "save", half_then_fail)
    rc, _, err = _export(capsys, "--weights", tiny, "--output", out, "--size", "64x96")
    assert rc == 1 and err == ["maskrcnn export: error: no space left on device"]
    assert out.read_bytes() == b"the previous export"


def test_a_size_past_the_maximum_is_refused_before_loading_and_the_output_kept(tmp_path, capsys, monkeypatch,
                                                                               tiny):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous export")
    monkeypatch.setattr(Predictor, "from_checkpoint", lambda *a, **k: pytest.fail("loaded before --size"))
    for size in ("100000x100000", "64x4097"):
        rc, stdout, err = _export(capsys, "--weights", tiny, "--output", out, "--size", size)
        assert (rc, stdout) == (1, "")
        assert err == [f"maskrcnn export: error: --size {size}: each side must be at most 4096 (the traced "
                       "example is allocated whole; the presets resize to at most 2048)"]
    assert out.read_bytes() == b"the previous export"


def test_the_pt2_message_and_help_say_height_and_width_are_fixed(tmp_path, capsys, monkeypatch, tiny):
    seen = {}

    def export(module, args, dynamic_shapes):
        seen["shape"], seen["dynamic"] = tuple(args[0].shape), dynamic_shapes
        return "a program"

    monkeypatch.setattr(torch.export, "export", export)  # no tracing: the message is what is tested
    monkeypatch.setattr(torch.export, "save", lambda program, f, **k: f.write(b"pt2"))
    rc, _, err = _export(capsys, "--weights", tiny, "--output", tmp_path / "m.pt2", "--size", "64x96")
    assert rc == 0 and len(err) == 1, err
    assert seen["shape"] == (2, 3, 64, 96) and list(seen["dynamic"][0]) == [0]  # only N is dynamic
    assert "batch (N, 3, 64, 96) of RGB in [0, 1] normalised as (x - mean) / std" in err[0]
    assert "N 1-64 is free, H x W is fixed at 64x96: pad each batch to it (zeros past the image, after " \
           "normalisation) or export again with --size HxW per size" in err[0]
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fixed: the .pt2 takes only that HxW, any N; pad to it or export one file per size" in text


def test_flags_that_change_nothing_are_said_in_one_note(tmp_path, capsys, monkeypatch, tiny):
    from maskrcnn.export import onnx_export

    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: ["boxes"])  # no tracing: notes tested
    rc, _, err = _export(capsys, "--weights", tiny, "--output", tmp_path / "m.onnx", "--no-optimise")
    assert rc == 0 and err[0] == ("note: --no-optimise applies to pt2 only: an ONNX export is always traced "
                                  "from the plain model (BN layers as the checkpoint has them)"), err
    rc, _, err = _export(capsys, "--weights", tiny, "--output", tmp_path / "m.onnx", "--float")
    assert rc == 0 and err[0] == (f"note: --float has no effect: {tiny} is not an INT8 checkpoint (`maskrcnn "
                                  "quantize` writes those); its weights are exported as they are"), err
    rc, _, err = _export(capsys, "--weights", tiny, "--output", tmp_path / "m.onnx")
    assert rc == 0 and not any(line.startswith("note:") for line in err), err  # without the flags: no note


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_a_missing_ema_copy_names_the_suffix_not_a_flag_the_command_lacks(tmp_path, capsys, tiny, command):
    options = {"export": ["--output", str(tmp_path / "m.onnx")],
               "quantize": ["--calib-images", str(tmp_path), "--output", str(tmp_path / "q.pth")]}[command]
    rc = main([command, "--weights", f"{tiny}#ema", *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [f"maskrcnn {command}: error: {tiny}: the EMA copy of the weights was asked "
                               "for (the #ema suffix of a weights path, or convert's --ema), but the "
                               "checkpoint has no 'model_ema', the copy a maskrcnn checkpoint keeps when "
                               "saved with save_checkpoint(..., model_ema=...)"]
