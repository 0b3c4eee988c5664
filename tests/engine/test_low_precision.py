"""Low precision: INT8 post-training quantization (calibrate, save, load), native bfloat16 detection,
float16 / bfloat16 autocast on CUDA."""

import warnings

import pytest
import torch
from tiny_model import TINY_FROZEN_BN as TINY  # tests/ is on the path
from torch import nn

from maskrcnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.engine import device as device_mod
from maskrcnn.engine.int8 import INT8_KEY, quantize_predictor, save_int8_checkpoint
from maskrcnn.modeling.layers import FrozenBatchNorm2d
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.ops.boxes import box_iou
from maskrcnn.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ["__background__", "cat", "dog"]


def _model():
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(3)
    for m in model.modules():  # non-trivial statistics, so that folding them matters
        if isinstance(m, FrozenBatchNorm2d):
            C = m.num_features
            m.weight.copy_(1 + 0.3 * torch.randn(C, generator=g))
            m.bias.copy_(0.3 * torch.randn(C, generator=g))
            m.running_mean.copy_(0.3 * torch.randn(C, generator=g))
            m.running_var.copy_(0.5 + torch.rand(C, generator=g))
    return model, cfg


def _images(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 70 + 10 * i, 90, generator=g) for i in range(n)]


def _plain(model, cfg):
    return Predictor(model, cfg, NAMES, optimise=True, winograd=False, fused_add=False)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(fp32 predictor, int8 predictor calibrated in memory, its section, the fp32 checkpoint path)."""
    import copy

    model, cfg = _model()
    path = tmp_path_factory.mktemp("int8") / "fp32.pth"
    save_checkpoint(path, model_state=model.state_dict(), config=cfg, class_names=NAMES)
    ref = _plain(copy.deepcopy(model), cfg)
    q = _plain(model, cfg)
    section = quantize_predictor(q, _images(4, seed=7), source="test")
    return ref, q, section, path


def test_int8_features_and_detections_close_to_float(quantized):
    ref, q, section, _ = quantized
    assert section["parts"] == ["features", "rpn", "box_head", "mask_head"] and q.int8_parts
    images = _images()
    with torch.inference_mode():
        batch, _ = ref.model.preprocess(images[:1])
        f_ref, f_q = ref.model.features(batch), q.model.features(batch)
    assert list(f_q) == list(f_ref)
    for name in f_ref:
        # int8 over ~20 random-weight layers: 5% (p2) to 12% (p6, a handful of cells) of the signal here;
        # a wrong scale or a lost layer gives errors of the signal's own size
        err = (f_q[name] - f_ref[name]).norm() / f_ref[name].norm()
        assert f_q[name].dtype == torch.float32 and err < 0.2, (name, float(err))
    out_ref, out_q = ref.predict_tensors(images), q.predict_tensors(images)
    for a, b in zip(out_ref, out_q):
        assert len(b["boxes"]) > 0
        assert b["masks"].shape[1:] == a["masks"].shape[1:] and b["mask_probs"].dtype == torch.float32
    # The heads, on the same inputs: end-to-end detections of a random-weight model have near-tied
    # scores (0.33-0.35), so their ranking flips with any rounding (the thread count, the CPU's int8
    # kernels); what int8 must keep is what the heads compute. Pooled from the fp32 features at the fp32
    # detections, the int8 heads' class logits, box deltas and mask logits stay within a few percent of
    # fp32 (relative to their spread across RoIs); a wrong scale or a lost layer moves them by their size.
    boxes = [out_ref[0]["boxes"][:10]]
    with torch.inference_mode():
        heads_ref, heads_q = ref.model.roi_heads, q.model.roi_heads
        pooled = heads_ref.box_pooler(f_ref, boxes)
        logits = [h.box_predictor(h.box_head(pooled)) for h in (heads_ref, heads_q)]
        pooled = heads_ref.mask_pooler(f_ref, boxes)
        masks = [h.mask_head(pooled) for h in (heads_ref, heads_q)]
    outputs = {"class logits": (logits[0][0], logits[1][0]), "box deltas": (logits[0][1], logits[1][1]),
               "mask logits": (masks[0], masks[1])}
    for name, (a, b) in outputs.items():
        err = (b - a).norm() / (a - a.mean(dim=0)).norm()
        assert 0 < err < 0.25, (name, float(err))


def test_int8_checkpoint_round_trip_gives_the_same_outputs(quantized, tmp_path):
    _, q, section, path = quantized
    out = tmp_path / "int8.pth"
    save_int8_checkpoint(out, load_checkpoint(path), section)
    loaded = Predictor.from_checkpoint(out, device="auto")  # an INT8 file runs on the CPU
    assert loaded.int8_parts == q.int8_parts and loaded.device.type == "cpu"
    images = _images(2, seed=11)
    for a, b in zip(q.predict_tensors(images), loaded.predict_tensors(images)):
        for key in ("boxes", "scores", "labels", "mask_probs"):
            assert torch.equal(a[key], b[key]), key
    # the float weights of the same file, on request
    assert Predictor.from_checkpoint(out, device="cpu", int8=False).int8_parts == []
    with pytest.raises(CheckpointError, match=r"fp32\.pth.*no 'int8' section"):
        Predictor.from_checkpoint(path, device="cpu", int8=True)


def test_an_int8_file_leaves_the_training_state_out_with_the_runs_linear_engine(tmp_path):
    # a full training checkpoint's: the linear engine is the training run's, as its optimizer is
    ckpt = {"model": {"w": torch.ones(2)}, "iteration": 4, "optimizer": {}, "rng": {},
            "linear_engine": "onednn"}
    save_int8_checkpoint(tmp_path / "int8.pth", ckpt, {"format_version": 1, "parts": ["features"]})
    saved = torch.load(tmp_path / "int8.pth", weights_only=True)
    assert set(saved) == {"model", "iteration", INT8_KEY}


def test_bad_int8_sections_are_refused_naming_file_and_field(quantized, tmp_path):
    _, _, section, path = quantized
    ckpt = load_checkpoint(path)

    def write(name, sec):
        save_int8_checkpoint(tmp_path / name, ckpt, sec)
        return tmp_path / name

    obs = dict(section["observers"])
    obs.pop(next(iter(obs)))
    cases = {
        "version.pth": ({**section, "format_version": 9}, r"version\.pth.*int8\.format_version"),
        "parts.pth": ({**section, "parts": ["everything"]}, r"parts\.pth.*int8\.parts"),
        "missing.pth": ({**section, "observers": obs}, r"missing\.pth.*int8\.observers.*1 missing"),
        "shape.pth": ({**section, "observers": {k: (v[:1] if v.dim() else v) if "histogram" in k else v
                                                for k, v in section["observers"].items()}},
                      r"shape\.pth.*histogram.*expected shape"),
        "engine.pth": ({**section, "engine": "qnnpack"}, r"engine\.pth.*int8\.engine"),
        # observers renumbered by a change of the model's code: each would get another's scale
        "sites.pth": ({**section, "sites": {**section["sites"], "features.activation_post_process_1": "add"}},
                      r"sites\.pth.*int8\.sites.*1 observers differ"),
        "nosites.pth": ({k: v for k, v in section.items() if k != "sites"}, r"nosites\.pth.*int8\.sites"),
    }
    for name, (sec, pattern) in cases.items():
        with pytest.raises(CheckpointError, match=pattern):
            Predictor.from_checkpoint(write(name, sec), device="cpu")
    # a pickled module instead of tensors never gets past the weights_only load
    ckpt_bad = {**ckpt, INT8_KEY: {**section, "observers": {"x": nn.ReLU()}}}
    torch.save(ckpt_bad, tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match=r"module\.pth.*refused"):
        Predictor.from_checkpoint(tmp_path / "module.pth", device="cpu")


def test_int8_box_head_from_onednn_linears(monkeypatch):
    """On a CPU where torch.mm lags oneDNN, the optimised predictor's linear layers are ``OneDnnLinear``s;
    quantizing swaps the box head's back, so that they still become dynamic INT8 layers."""
    from maskrcnn.modeling import fuse
    from maskrcnn.ops.onednn_linear import OneDnnLinear

    monkeypatch.setattr(fuse, "matmul_lags_onednn", lambda: True)
    model, cfg = _model()
    predictor = _plain(model, cfg)
    fcs = predictor.model.roi_heads.box_head.fcs
    assert all(type(fc) is OneDnnLinear for fc in fcs) or predictor.model.onednn_linears == 0
    section = quantize_predictor(predictor, _images(1), parts=["box_head"])
    assert section["parts"] == ["box_head"]
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert [type(fc) for fc in predictor.model.roi_heads.box_head.fcs] == [dynamic] * len(fcs)


def test_int8_needs_plain_float_cpu_predictor():
    cfg = apply_overrides(PRESETS["r18_fpn"](), {**TINY, "model.fpn_norm": "gn"})
    with pytest.raises(ValueError, match=r"features\.fpn\.lateral\.0 uses GroupNorm.*leave 'features' out"):
        quantize_predictor(_plain(build_model(cfg), cfg), _images(1))
    section = quantize_predictor(_plain(build_model(cfg), cfg), _images(1), parts=["rpn", "mask_head"])
    assert section["parts"] == ["rpn", "mask_head"]
    cfg = apply_overrides(cfg, {"model.fpn_norm": "none", "model.roi_heads.score_thresh": 0.99})
    with pytest.raises(ValueError, match="mask_head is calibrated on the detected boxes, and none of the 1 "
                                         r"calibration image\(s\) gave a detection"):  # made-up scales
        quantize_predictor(_plain(build_model(cfg), cfg), _images(1))
    model, cfg = _model()
    with pytest.raises(ValueError, match="winograd=False"):
        quantize_predictor(Predictor(model, cfg, optimise=True, winograd=True), _images(1))
    model, cfg = _model()
    with pytest.raises(ValueError, match="autocast"):
        quantize_predictor(Predictor(model, cfg, dtype="bfloat16", optimise=True, winograd=False,
                                     fused_add=False), _images(1))


def test_native_bf16_detection_and_emulated_warning(monkeypatch):
    assert isinstance(device_mod.cpu_has_native_bf16(), bool)
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(device_mod.EmulatedBF16Warning, match="emulated"):
        assert device_mod.resolve_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert device_mod.resolve_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16
        assert device_mod.resolve_dtype(None, torch.device("cpu")) is None


def test_native_bf16_reads_cpu_flags(monkeypatch):
    monkeypatch.setattr(device_mod.platform, "machine", lambda: "x86_64")
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    monkeypatch.setattr(device_mod, "_cpuinfo_flags", lambda: {"avx512f", "avx512_vnni"})
    assert device_mod.cpu_has_native_bf16() is False  # AVX512 alone emulates bf16
    monkeypatch.setattr(device_mod, "_cpuinfo_flags", lambda: {"avx512f", "amx_bf16"})
    assert device_mod.cpu_has_native_bf16() is True
    monkeypatch.setattr(device_mod.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(device_mod, "_cpuinfo_flags", lambda: {"fp", "asimd", "bf16"})
    assert device_mod.cpu_has_native_bf16() is True
    monkeypatch.setattr(device_mod.platform, "machine", lambda: "riscv64")
    assert device_mod.cpu_has_native_bf16() is False


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_autocast_predictor_stays_close(dtype):
    model, cfg = _model()
    images = _images(2)
    ref = Predictor(model, cfg, device="cuda", optimise=True).predict_tensors(images)
    low = Predictor(model, cfg, device="cuda", optimise=True, dtype=dtype).predict_tensors(images)
    for a, b in zip(ref, low):
        assert b["boxes"].dtype == torch.float32 and b["masks"].shape == a["masks"].shape
        iou = box_iou(a["boxes"][:5], b["boxes"])
        iou[a["labels"][:5, None] != b["labels"][None, :]] = 0
        assert (iou.max(dim=1).values > 0.8).float().mean() >= 0.6


def test_cli_quantize_then_predict_equals_predict_int8_on_the_fly(quantized, tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from maskrcnn.cli import main

    _, _, _, path = quantized
    calib, photos = tmp_path / "calib", tmp_path / "photos"
    calib.mkdir(), photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(calib / f"c{i}.png")
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(photos / "p.png")
    out = tmp_path / "int8.pth"
    assert main(["quantize", "--weights", str(path), "--calib-images", str(calib), "--calib-count", "2",
                 "--output", str(out)]) == 0
    assert "calibrated on 2 image(s)" in capsys.readouterr().err
    common = [str(photos), "--no-overlays", "--score-thresh", "0"]
    assert main(["predict", "--weights", str(out), "--output", str(tmp_path / "a"), *common]) == 0
    assert ", int8;" in capsys.readouterr().err
    assert main(["predict", "--weights", str(path), "--int8", "--calib-images", str(calib), "--calib-count",
                 "2", "--output", str(tmp_path / "b"), *common]) == 0
    a, b = (json.loads((tmp_path / d / "predictions.json").read_text()) for d in ("a", "b"))
    assert a and a == b  # same calibration images, same statistics: the same results
    assert main(["predict", "--weights", str(path), "--int8", "--output", str(tmp_path / "c"), *common]) == 1
    assert "--int8 needs --calib-images" in capsys.readouterr().err
    assert main(["quantize", "--weights", str(path), "--calib-images", str(calib), "--parts", "heads",
                 "--output", str(tmp_path / "x.pth")]) == 1
    assert "--parts: unknown ['heads']" in capsys.readouterr().err


def test_calibration_files_spread_over_folder_or_json(tmp_path):
    import json

    from maskrcnn.engine.int8 import calibration_files

    for i in range(10):
        (tmp_path / f"im{i}.png").write_bytes(b"")  # only listed, never read here
    (tmp_path / "notes.txt").write_text("not an image")
    names = [p.name for p in calibration_files(tmp_path, count=4)]
    assert names == ["im0.png", "im2.png", "im5.png", "im7.png"]  # evenly spaced, in order
    assert len(calibration_files(tmp_path, count=50)) == 10
    coco = {"images": [{"id": 1, "file_name": "im3.png"}, {"id": 2, "file_name": "gone.png"},
                       {"id": 3, "file_name": "im8.png"}], "categories": [], "annotations": []}
    (tmp_path / "cal.json").write_text(json.dumps(coco))
    names = [p.name for p in calibration_files(tmp_path, json_path=tmp_path / "cal.json")]
    assert names == ["im3.png", "im8.png"]  # what the JSON lists and exists
    (tmp_path / "none.json").write_text(json.dumps({**coco, "images": [{"id": 1, "file_name": "gone.png"}]}))
    with pytest.raises(ValueError, match=r"none\.json: none of its 'images'"):
        calibration_files(tmp_path, json_path=tmp_path / "none.json")
    with pytest.raises(ValueError, match=">= 1"):
        calibration_files(tmp_path, count=0)
    with pytest.raises(FileNotFoundError, match="calibration image folder or file not found"):
        calibration_files(tmp_path / "nope")
    # one file: a one-image set, whatever its extension (an unreadable one is reported when read)
    assert calibration_files(tmp_path / "im3.png", count=4) == [tmp_path / "im3.png"]
    assert calibration_files(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]
    with pytest.raises(ValueError, match=">= 1"):
        calibration_files(tmp_path / "im3.png", count=0)
    with pytest.raises(ValueError, match=r"im3\.png: is a file; with a COCO JSON give the folder"):
        calibration_files(tmp_path / "im3.png", json_path=tmp_path / "cal.json")
