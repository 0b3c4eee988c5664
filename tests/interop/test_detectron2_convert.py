"""detectron2 -> ours: synthetic detectron2 files made from our own random models by an inverse mapping
written here independently, round-tripped through the converter; BGR / background-last conventions;
files that must be refused (code-running pickles, Caffe2 backbones); the CLI command."""

import pickle
import re

import numpy as np
import pytest
import torch
from restored_weights import assert_restored  # tests/interop is on the path
from tiny_model import randomise_norms  # tests/ is on the path

from maskrcnn.config import Config, apply_overrides
from maskrcnn.interop.detectron2 import ConversionError, convert_detectron2, load_detectron2_file
from maskrcnn.modeling.mask_rcnn import build_model

MEAN_BGR = (103.530, 116.280, 123.675)

# ours -> detectron2, as detectron2 names its parameters (numbers from 1 in heads, FPN by stage)
_INVERSE = [
    (r"^backbone\.stem\.conv1\.conv\.weight$", lambda m: "backbone.bottom_up.stem.conv1.weight"),
    (r"^backbone\.stem\.conv1\.norm\.(.+)$", lambda m: f"backbone.bottom_up.stem.conv1.norm.{m[1]}"),
    (r"^backbone\.(res\d\.\d+\.\w+)\.conv\.weight$", lambda m: f"backbone.bottom_up.{m[1]}.weight"),
    (r"^backbone\.(res\d\.\d+\.\w+)\.norm\.(.+)$", lambda m: f"backbone.bottom_up.{m[1]}.norm.{m[2]}"),
    (r"^fpn\.lateral\.(\d)\.conv\.(.+)$", lambda m: f"backbone.fpn_lateral{int(m[1]) + 2}.{m[2]}"),
    (r"^fpn\.output\.(\d)\.conv\.(.+)$", lambda m: f"backbone.fpn_output{int(m[1]) + 2}.{m[2]}"),
    (r"^fpn\.(lateral|output)\.(\d)\.norm\.(.+)$",
     lambda m: f"backbone.fpn_{m[1]}{int(m[2]) + 2}.norm.{m[3]}"),
    (r"^roi_heads\.box_head\.convs\.(\d)\.conv\.(.+)$",
     lambda m: f"roi_heads.box_head.conv{int(m[1]) + 1}.{m[2]}"),
    (r"^roi_heads\.box_head\.convs\.(\d)\.norm\.(.+)$",
     lambda m: f"roi_heads.box_head.conv{int(m[1]) + 1}.norm.{m[2]}"),
    (r"^rpn\.head\.convs\.0\.conv\.(.+)$", lambda m: f"proposal_generator.rpn_head.conv.{m[1]}"),
    # several RPN convs (new_baselines: 2): conv.conv0, conv.conv1 (conv0 renamed by the test that builds it)
    (r"^rpn\.head\.convs\.([1-9])\.conv\.(.+)$",
     lambda m: f"proposal_generator.rpn_head.conv.conv{m[1]}.{m[2]}"),
    (r"^rpn\.head\.objectness\.(.+)$", lambda m: f"proposal_generator.rpn_head.objectness_logits.{m[1]}"),
    (r"^rpn\.head\.deltas\.(.+)$", lambda m: f"proposal_generator.rpn_head.anchor_deltas.{m[1]}"),
    (r"^roi_heads\.box_head\.fcs\.(\d)\.(.+)$", lambda m: f"roi_heads.box_head.fc{int(m[1]) + 1}.{m[2]}"),
    (r"^roi_heads\.box_predictor\.(.+)$", lambda m: f"roi_heads.box_predictor.{m[1]}"),
    (r"^roi_heads\.mask_head\.convs\.(\d)\.conv\.(.+)$",
     lambda m: f"roi_heads.mask_head.mask_fcn{int(m[1]) + 1}.{m[2]}"),
    (r"^roi_heads\.mask_head\.convs\.(\d)\.norm\.(.+)$",
     lambda m: f"roi_heads.mask_head.mask_fcn{int(m[1]) + 1}.norm.{m[2]}"),
    (r"^roi_heads\.mask_head\.(deconv|predictor)\.(.+)$", lambda m: f"roi_heads.mask_head.{m[1]}.{m[2]}"),
    (r"^roi_heads\.keypoint_head\.convs\.(\d)\.conv\.(.+)$",
     lambda m: f"roi_heads.keypoint_head.conv_fcn{int(m[1]) + 1}.{m[2]}"),
    (r"^roi_heads\.keypoint_head\.predictor\.(.+)$",
     lambda m: f"roi_heads.keypoint_head.score_lowres.{m[1]}"),
]


def _d2_name(key):
    for pattern, fn in _INVERSE:
        m = re.match(pattern, key)
        if m:
            return fn(m)
    raise AssertionError(f"test inverse mapping has no rule for {key}")


def _d2_value(key, t):
    """Our value in detectron2's convention: BGR stem, background last, no background slot."""
    if key == "backbone.stem.conv1.conv.weight":
        return t[:, [2, 1, 0]]
    if key.startswith("roi_heads.box_predictor.cls_score."):
        return torch.cat([t[1:], t[:1]])
    if key.startswith("roi_heads.box_predictor.bbox_pred."):
        return t[4:]
    if key.startswith("roi_heads.mask_head.predictor."):
        return t[1:]
    return t


def to_detectron2(model):
    return {_d2_name(k): _d2_value(k, v).numpy().copy() for k, v in model.state_dict().items()}


def _random_model(**overrides):
    torch.manual_seed(0)
    cfg = apply_overrides(Config(), {"model.stride_in_1x1": True, **SMALL, **overrides})
    model = build_model(cfg).eval()
    return randomise_norms(model)


# narrow heads keep the test fast; the converter reads every width from the weights
SMALL = {"model.fpn_dim": 64, "model.roi_heads.box_head_dim": 128, "model.roi_heads.mask_head_dim": 32,
         "model.roi_heads.keypoint_head_dim": 64}
LAYOUTS = {
    "maskrcnn": {"model.backbone": "resnet50", "model.num_classes": 5},
    "keypointrcnn": {"model.backbone": "resnet18", "model.num_classes": 2, "model.roi_heads.mask_on": False,
                     "model.roi_heads.keypoint_on": True, "model.roi_heads.num_keypoints": 5},
    "fasterrcnn": {"model.backbone": "resnet18", "model.num_classes": 4, "model.roi_heads.mask_on": False},
}


@pytest.fixture(scope="module")
def r50_mask():
    model = _random_model(**LAYOUTS["maskrcnn"])
    return model, to_detectron2(model)


def _save_pkl(path, d2):
    with open(path, "wb") as f:
        pickle.dump({"model": d2, "__author__": "test", "matching_heuristics": False}, f)
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("fmt", ["pkl", "pth"])
def test_round_trip_restores_our_weights(tmp_path, layout, fmt, r50_mask):
    model, d2 = r50_mask if layout == "maskrcnn" else (None, None)
    if model is None:
        model = _random_model(**LAYOUTS[layout])
        d2 = to_detectron2(model)
    if fmt == "pkl":
        path = _save_pkl(tmp_path / "model_final_test.pkl", d2)
    else:
        path = tmp_path / "model_0000999.pth"
        torch.save({"model": {k: torch.from_numpy(v) for k, v in d2.items()}, "optimizer": {},
                    "scheduler": {"last_epoch": 999}, "iteration": 999}, path)
    result = load_detectron2_file(path)
    assert result["layout"] == layout
    report = result["report"]
    assert report["unmapped"] == report["missing"] == report["unexpected"] == report["shape_mismatch"] == []
    assert_restored(result, model)
    m = result["config"].model
    assert m.backbone == LAYOUTS[layout]["model.backbone"]
    assert m.num_classes == LAYOUTS[layout]["model.num_classes"]
    assert (m.fpn_dim, m.roi_heads.box_head_dim) == (64, 128)
    assert m.stride_in_1x1 and m.frozen_bn_eps == 1e-5 and m.rpn.anchor_rounding is False
    assert m.roi_heads.pooler_aligned and m.roi_heads.pooler_sampling_ratio == 0
    assert m.roi_heads.mask_paste == "grid_sample" and m.roi_heads.keypoint_score == "softmax"
    assert result["config"].input.resize_method == "pil"
    assert m.roi_heads.mask_on == (layout == "maskrcnn")
    assert m.roi_heads.keypoint_on == (layout == "keypointrcnn")
    if layout == "keypointrcnn":
        assert m.roi_heads.num_keypoints == 5 and result["class_names"] == ["__background__", "person"]
    # the model zoo's statistics: BGR mean, std 1, on 0-255 -> RGB on [0, 1]
    assert np.allclose(m.pixel_mean, [v / 255 for v in MEAN_BGR[::-1]])
    assert np.allclose(m.pixel_std, [1 / 255] * 3)
    converted = build_model(result["config"])
    converted.load_state_dict(result["state_dict"])  # strict


@pytest.mark.slow
@pytest.mark.parametrize("stats_in_file", [False, True])
def test_rgb_input_gives_detectron2_features(stats_in_file, r50_mask):
    _, d2 = r50_mask
    mean_bgr, std_bgr = MEAN_BGR, (1.0, 1.0, 1.0)
    if stats_in_file:  # older files carry the buffers; a non-unit std proves the division is reversed too
        mean_bgr, std_bgr = (100.0, 110.0, 130.0), (50.0, 60.0, 70.0)
        d2 = dict(d2, pixel_mean=np.array(mean_bgr, np.float32).reshape(3, 1, 1),
                  pixel_std=np.array(std_bgr, np.float32).reshape(3, 1, 1))
    result = convert_detectron2({"model": d2})
    assert result["report"]["ignored"] == (["pixel_mean", "pixel_std"] if stats_in_file else [])
    ours = build_model(result["config"]).eval()
    ours.load_state_dict(result["state_dict"])
    # reference: the same weights, but the stem exactly as in the file, fed detectron2's BGR input
    ref = build_model(result["config"]).eval()
    ref.load_state_dict(dict(result["state_dict"], **{
        "backbone.stem.conv1.conv.weight": torch.from_numpy(d2["backbone.bottom_up.stem.conv1.weight"])}))
    torch.manual_seed(1)
    x = torch.rand(3, 64, 96)  # RGB in [0, 1]
    x_d2 = (x[[2, 1, 0]] * 255 - torch.tensor(mean_bgr).view(3, 1, 1)) / torch.tensor(std_bgr).view(3, 1, 1)
    with torch.no_grad():
        got = ours.features(ours.preprocess([x])[0])
        want = ref.features(x_d2[None])
    assert got.keys() == want.keys()
    for name in want:
        scale = want[name].abs().max()
        assert torch.allclose(got[name], want[name], atol=1e-4 * scale, rtol=1e-4), name


def test_background_moves_first_in_predictions(r50_mask):
    _, d2 = r50_mask
    result = convert_detectron2({"model": d2})
    ours = build_model(result["config"]).eval()
    ours.load_state_dict(result["state_dict"])
    torch.manual_seed(2)
    feats = torch.randn(6, SMALL["model.roi_heads.box_head_dim"])
    with torch.no_grad():
        logits, deltas = ours.roi_heads.box_predictor(feats)
    w, b = (torch.from_numpy(d2[f"roi_heads.box_predictor.cls_score.{n}"]) for n in ("weight", "bias"))
    d2_logits = feats @ w.T + b  # K + 1 columns, background last
    assert torch.allclose(logits[:, 0], d2_logits[:, -1], atol=1e-5)
    assert torch.allclose(logits[:, 1:], d2_logits[:, :-1], atol=1e-5)
    assert torch.allclose(logits.softmax(1)[:, 1:], d2_logits.softmax(1)[:, :-1], atol=1e-6)
    w, b = (torch.from_numpy(d2[f"roi_heads.box_predictor.bbox_pred.{n}"]) for n in ("weight", "bias"))
    assert torch.allclose(deltas[:, 4:], feats @ w.T + b, atol=1e-5) and not deltas[:, :4].any()
    assert result["class_names"] == ["__background__"] + [f"class_{i}" for i in range(1, 5)]


def test_code_running_pickle_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    path = tmp_path / "model_final_evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"backbone.bottom_up.stem.conv1.weight": Evil()}}))
    words = r"model_final_evil\.pkl asks to run code \(global (posix|nt)\.system\) when unpickled; refused"
    with pytest.raises(ConversionError, match=words):
        load_detectron2_file(path)
    assert not marker.exists()


def test_caffe2_backbone_is_refused(tmp_path):
    blobs = {"conv1_w": np.zeros((64, 3, 7, 7), np.float32), "res2_0_branch2a_w": np.zeros((64, 64, 1, 1))}
    for obj in (blobs, {"blobs": blobs}):
        path = tmp_path / "R-50.pkl"
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(ConversionError, match="Caffe2-style ImageNet backbone.*not a detectron2"):
            load_detectron2_file(path)


def test_unmapped_and_missing_keys_are_named(r50_mask):
    _, d2 = r50_mask
    extra = dict(d2, **{"roi_heads.box_head.flatten_scale": np.zeros(2, np.float32)})
    with pytest.raises(ConversionError, match="unmapped detectron2 keys: roi_heads.box_head.flatten_scale"):
        convert_detectron2({"model": extra})
    missing = {k: v for k, v in d2.items() if k != "proposal_generator.rpn_head.anchor_deltas.bias"}
    # named as the file spells it (its anchor_deltas.weight tells the layer), ours beside
    with pytest.raises(ConversionError, match=r"lacks: proposal_generator\.rpn_head\.anchor_deltas\.bias "
                                              r"\(ours: rpn\.head\.deltas\.bias\)"):
        convert_detectron2({"model": missing})
    buffers = dict(d2, **{"proposal_generator.anchor_generator.cell_anchors.0": np.zeros((3, 4), np.float32)})
    assert convert_detectron2({"model": buffers})["report"]["ignored"] == [
        "proposal_generator.anchor_generator.cell_anchors.0"]
    with pytest.raises(ConversionError, match="not a detectron2 R-CNN checkpoint"):
        convert_detectron2({"model": {"fc.weight": np.zeros((2, 2), np.float32)}})


def test_convert_command(tmp_path, r50_mask):
    from maskrcnn.checkpoint import config_from_checkpoint, load_checkpoint
    from maskrcnn.cli import main

    _, d2 = r50_mask
    src = _save_pkl(tmp_path / "model_final_abc.pkl", d2)
    out = tmp_path / "ours.pth"
    assert main(["convert", "--from", "detectron2", str(src), str(out)]) == 0
    ckpt = load_checkpoint(out)
    cfg = config_from_checkpoint(ckpt)
    assert ckpt["converted_from"]["format"] == "detectron2" and ckpt["converted_from"]["layout"] == "maskrcnn"
    assert cfg.model.roi_heads.pooler_aligned and cfg.model.stride_in_1x1
    build_model(cfg).load_state_dict(ckpt["model"])
    assert main(["convert", "--from", "detectron2", str(tmp_path / "missing.pkl"), str(out)]) == 1


def _d2_cell_anchors(sizes, ratios):
    """detectron2's order of a location's anchors: size-major (for each size, each ratio h / w)."""
    out = []
    for size in sizes:
        for ratio in ratios:
            w = (size * size / ratio) ** 0.5
            out.append([-w / 2, -ratio * w / 2, w / 2, ratio * w / 2])
    return torch.tensor(out)


def _c4_detectron2() -> dict:
    """A detectron2 C4 Mask R-CNN's weights (R18 body, 2 classes), random, from our C4 model."""
    torch.manual_seed(0)
    ours_model = build_model(apply_overrides(
        Config(), {"model.fpn": False, "model.backbone": "resnet18", "model.num_classes": 3}))
    d2 = {}
    for k, v in ours_model.state_dict().items():  # our C4 keys -> detectron2's
        name = re.sub(r"\.conv\.weight$", ".weight", k) if ".res" in k or ".stem." in k else k
        name = name.replace("rpn.head.convs.0.conv.", "proposal_generator.rpn_head.conv.")
        name = name.replace("rpn.head.objectness.", "proposal_generator.rpn_head.objectness_logits.")
        name = name.replace("rpn.head.deltas.", "proposal_generator.rpn_head.anchor_deltas.")
        d2[name] = _d2_value(k, torch.randn_like(v) if v.is_floating_point() else v).numpy()
    return d2


def test_c4_layout_converts_with_detectron2_anchor_order():
    """The paper's C4 design as detectron2 stores it (ResNet under backbone.* without bottom_up, res5 as
    roi_heads.res5.*, 15 anchors on res4 in size-major order): every key maps, the config is the C4
    design with detectron2's test settings, and each RPN output row follows its anchor."""
    from maskrcnn.modeling.anchors import AnchorGenerator

    d2 = _c4_detectron2()
    assert "backbone.stem.conv1.weight" in d2 and "roi_heads.res5.1.conv2.norm.running_var" in d2
    result = convert_detectron2({"model": d2})
    m, report = result["config"].model, result["report"]
    assert result["layout"] == "maskrcnn" and report["unmapped"] == report["missing"] == []
    assert not m.fpn and m.backbone == "resnet18" and m.num_classes == 3 and m.size_divisibility == 0
    assert (m.roi_heads.box_pool_size, m.roi_heads.mask_pool_size) == (14, 14)
    assert (m.rpn.pre_nms_topk_test, m.rpn.post_nms_topk_test) == (6000, 1000)
    assert result["config"].input.resize_method == "pil"
    model = build_model(result["config"])
    model.load_state_dict(result["state_dict"])  # strict
    from maskrcnn.interop.weights import convert_any

    assert convert_any({"model": d2}).kind == "detectron2"  # what train --init reads
    sizes, ratios = m.rpn.anchor_sizes, m.rpn.aspect_ratios
    ours_cells = AnchorGenerator(sizes=[sizes], aspect_ratios=ratios, strides=[16], rounding=False).cells[0]
    d2_cells = _d2_cell_anchors(sizes, ratios)
    obj = torch.from_numpy(d2["proposal_generator.rpn_head.objectness_logits.weight"])
    deltas = torch.from_numpy(d2["proposal_generator.rpn_head.anchor_deltas.bias"]).view(-1, 4)
    for j, cell in enumerate(ours_cells):
        src = int((d2_cells - cell).abs().sum(1).argmin())  # detectron2's row for the same anchor
        assert torch.allclose(d2_cells[src], cell, atol=1e-3)
        assert torch.equal(result["state_dict"]["rpn.head.objectness.weight"][j], obj[src])
        assert torch.equal(result["state_dict"]["rpn.head.deltas.bias"].view(-1, 4)[j], deltas[src])


@pytest.mark.parametrize("norm, rpn_convs, stride_in_1x1",
                         [("gn", 1, False), ("bn", 1, False), ("bn", 2, True)])
def test_gn_and_syncbn_models_convert(norm, rpn_convs, stride_in_1x1):
    """The zoo's *_gn models (GroupNorm in backbone, FPN, box and mask heads: norm.weight / bias only, no
    running statistics) and *_syncbn / new_baselines *_LSJ models (BN with running statistics there; LSJ
    with a 2-conv RPN), all with the 4conv1fc box head (conv1..conv4 + fc1). They used to fail on dozens
    of unmapped / missing keys. Their configs fix STRIDE_IN_1X1 (False for GN and Misc/*_syncbn, True for
    new_baselines), which the weights cannot tell: the converter reads the design from the RPN."""
    model = _random_model(**{
        "model.backbone": "resnet18", "model.num_classes": 3, "model.rpn.head_convs": rpn_convs,
        "model.norm": "gn" if norm == "gn" else "frozen_bn", "model.fpn_norm": norm,
        "model.roi_heads.box_head": "4conv1fc", "model.roi_heads.box_head_norm": norm,
        "model.roi_heads.mask_head_norm": norm})
    d2 = to_detectron2(model)
    if rpn_convs == 2:
        d2 = {k.replace("rpn_head.conv.", "rpn_head.conv.conv0.") if ".conv.conv" not in k else k: v
              for k, v in d2.items()}
        assert "proposal_generator.rpn_head.conv.conv1.weight" in d2
    assert "roi_heads.box_head.conv4.norm.weight" in d2 and "backbone.fpn_output5.norm.bias" in d2
    assert ("backbone.bottom_up.stem.conv1.norm.running_var" in d2) == (norm == "bn")
    result = convert_detectron2({"model": d2})
    m = result["config"].model
    assert (m.norm, m.fpn_norm, m.roi_heads.box_head, m.roi_heads.box_head_norm, m.roi_heads.mask_head_norm) \
        == ("gn" if norm == "gn" else "frozen_bn", norm, "4conv1fc", norm, norm)
    assert (m.stride_in_1x1, m.rpn.head_convs) == (stride_in_1x1, rpn_convs)
    assert_restored(result, model)
    ours = build_model(result["config"]).eval()
    ours.load_state_dict(result["state_dict"])  # strict

    # detectron2's modules written out from its file's tensors: conv (no bias) -> norm (GroupNorm(32) or
    # BN in eval) -> ReLU; a res3 BasicBlock (stride 2 with a 1x1 shortcut) and the 4conv1fc box head
    def t(name):
        return torch.from_numpy(d2[name])

    def conv_norm(x, name, stride=1, relu=True):
        w = t(f"{name}.weight")
        x = torch.nn.functional.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)
        nw, nb = t(f"{name}.norm.weight"), t(f"{name}.norm.bias")
        if norm == "gn":
            x = torch.nn.functional.group_norm(x, 32, nw, nb, eps=1e-5)
        else:
            stats = t(f"{name}.norm.running_mean"), t(f"{name}.norm.running_var")
            x = torch.nn.functional.batch_norm(x, *stats, nw, nb, False, 0.0, 1e-5)
        return x.relu() if relu else x

    torch.manual_seed(3)
    x = torch.randn(2, 64, 16, 16)
    block = "backbone.bottom_up.res3.0"
    want = (conv_norm(conv_norm(x, f"{block}.conv1", 2), f"{block}.conv2", relu=False)
            + conv_norm(x, f"{block}.shortcut", 2, relu=False)).relu()
    pooled = torch.randn(3, 64, 7, 7)
    y = pooled
    for i in range(1, 5):
        y = conv_norm(y, f"roi_heads.box_head.conv{i}")
    box_want = torch.nn.functional.linear(y.flatten(1), t("roi_heads.box_head.fc1.weight"),
                                          t("roi_heads.box_head.fc1.bias")).relu()
    with torch.no_grad():
        assert torch.allclose(ours.backbone.res3[0](x), want, atol=1e-4)
        assert torch.allclose(ours.roi_heads.box_head(pooled), box_want, atol=1e-4)


def test_class_agnostic_mask_and_box_convert(r50_mask):
    """Misc/mask_rcnn_R_50_FPN_1x_cls_agnostic: CLS_AGNOSTIC_MASK (one mask channel; ours has
    mask_class_agnostic) and CLS_AGNOSTIC_BBOX_REG (4 delta rows, copied to every class: decodes the same).
    Both were refused."""
    _, d2 = r50_mask
    d2 = dict(d2, **{k: d2[k][:n] for k, n in (
        ("roi_heads.mask_head.predictor.weight", 1), ("roi_heads.mask_head.predictor.bias", 1),
        ("roi_heads.box_predictor.bbox_pred.weight", 4), ("roi_heads.box_predictor.bbox_pred.bias", 4))})
    result = convert_detectron2({"model": d2})
    assert result["config"].model.roi_heads.mask_class_agnostic
    sd = result["state_dict"]
    assert torch.equal(sd["roi_heads.mask_head.predictor.weight"],
                       torch.from_numpy(d2["roi_heads.mask_head.predictor.weight"]))
    ours = build_model(result["config"]).eval()
    ours.load_state_dict(sd)  # strict
    feats = torch.randn(5, SMALL["model.roi_heads.box_head_dim"])
    with torch.no_grad():
        deltas = ours.roi_heads.box_predictor(feats)[1].view(5, -1, 4)
    w, b = (torch.from_numpy(d2[f"roi_heads.box_predictor.bbox_pred.{n}"]) for n in ("weight", "bias"))
    assert not deltas[:, 0].any() and deltas.shape[1] == result["config"].model.num_classes
    for c in range(1, deltas.shape[1]):
        assert torch.allclose(deltas[:, c], feats @ w.T + b, atol=1e-5)


def _cascade(d2):
    out = {}
    for k, v in d2.items():
        m = re.match(r"^roi_heads\.(box_head|box_predictor)\.(.+)$", k)
        for stage in range(3) if m else ():
            out[f"roi_heads.{m[1]}.{stage}.{m[2]}"] = v[:4] if "bbox_pred" in k else v
        if not m:
            out[k] = v
    return out


def _pointrend(d2):  # projects/PointRend: no mask_head, a coarse mask head and a point head instead
    out = {k: v for k, v in d2.items() if not k.startswith("roi_heads.mask_head.")}
    out["roi_heads.mask_coarse_head.coarse_mask_fc1.weight"] = np.zeros((32, 64), np.float32)
    out["roi_heads.mask_point_head.fc1.weight"] = np.zeros((32, 36, 1), np.float32)
    return out


def _dc5(d2):  # the ResNet directly under backbone. (no bottom_up), no FPN, heads on res5
    return {k.replace("backbone.bottom_up.", "backbone."): v for k, v in d2.items() if ".fpn_" not in k}


@pytest.mark.parametrize("variant, message", [
    (_cascade, r"Cascade R-CNN \(3 box stages.*not supported"),
    (_dc5, r"the DC5 design .*not supported"),
    (_pointrend,
     r"PointRend \(roi_heads.mask_coarse_head.\*, roi_heads.mask_point_head.\*\) is not supported"),
    (lambda d2: dict(d2, **{"sem_seg_head.predictor.weight": np.zeros((54, 128, 1, 1), np.float32)}),
     r"Panoptic FPN \(a semantic segmentation head, sem_seg_head.\*\) is not supported"),
    (lambda d2: dict(d2, **{"backbone.bottom_up.res3.0.conv2.conv2_offset.weight": np.zeros((18, 8, 3, 3))}),
     r"deformable convolutions \(1 blocks, e.g. backbone.bottom_up.res3.0.conv2.conv2_offset.weight\)"),
    (lambda d2: dict({k: v for k, v in d2.items() if not k.startswith("backbone.bottom_up.")},
                     **{"backbone.bottom_up.s1.b1.f.a.conv.weight": np.zeros((8, 8, 1, 1), np.float32)}),
     r"a RegNet backbone under the FPN \(keys like backbone.bottom_up.s1.b1.f.a.conv.weight"),
    (lambda d2: dict(d2, **{"roi_heads.box_head.fc3.weight": np.zeros((8, 8), np.float32)}),
     r"a box head of 0 convs and 3 fcs is not supported"),
])
def test_unsupported_zoo_designs_are_refused_in_one_line(tmp_path, r50_mask, variant, message):
    """Cascade (Misc/cascade_*), PointRend (projects/PointRend), DC5 (*_DC5_*), Panoptic FPN, deformable
    (Misc/*_dconv_c3-c5), RegNet (new_baselines) and odd box heads: one line naming the design and the
    file, not a "0 blocks" backbone or dozens of unmapped keys; predict says it too."""
    from maskrcnn.checkpoint import CheckpointError
    from maskrcnn.checkpoint_read import inference_weights

    path = _save_pkl(tmp_path / "model_final_zoo.pkl", variant(r50_mask[1]))
    with pytest.raises(ConversionError, match=r"model_final_zoo\.pkl: " + message) as info:
        load_detectron2_file(path)
    assert "\n" not in str(info.value)
    # predict says so too, instead of "`maskrcnn convert` reads it" (which refuses it)
    with pytest.raises(CheckpointError, match=r"model_final_zoo\.pkl is a plain pickle, not a PyTorch file "
                       r"\(a detectron2 file that `maskrcnn convert` refuses: " + message) as info:
        inference_weights(str(path))
    assert "convert --from" not in str(info.value) and "reads it" not in str(info.value)


# model keys that stay the run's under --init (README: the classes come from the dataset, sampling is the
# recipe's, a keypoint's score is an output convention), not the weights'
_RUNS_OWN = {"num_classes", "init_weights", "roi_heads.batch_size_per_image", "roi_heads.keypoint_score"}


def _model_keys(cfg) -> dict:
    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(prefix + k, v)]
    return {k: (list(v) if isinstance(v, (list, tuple)) else v)
            for k, v in flat(cfg.to_dict()["model"]) if k not in _RUNS_OWN}


@pytest.mark.parametrize("design", ["c4", "fpn"])
def test_init_builds_the_model_convert_describes(tmp_path, monkeypatch, r50_mask, design):
    """``train --init FILE`` follows every setting ``convert FILE`` writes into the model's config, for a
    detectron2 C4 file and for our own C4 checkpoint converted from it: the C4 design has no box_head.*,
    and its RoIAlign convention (RoIAlignV2), 14x14 RoIs into res5, proposal counts and padding were
    once left at the run's (7x7, torchvision's RoIAlign), silently. FPN files: as before. The start-up
    lines name each setting taken from the file."""
    from init_as_train import read_init_as_train_does  # tests/interop is on the path

    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.engine.init_weights import follow_weights_keeping, summary_lines

    d2 = _c4_detectron2() if design == "c4" else r50_mask[1]
    converted = convert_detectron2({"model": d2})
    ours = tmp_path / "ours.pth"
    save_checkpoint(ours, model_state=converted["state_dict"], config=converted["config"],
                    class_names=converted["class_names"])
    for path in (_save_pkl(tmp_path / "d2.pkl", d2), ours):
        (tmp_path / path.stem).mkdir()
        got = read_init_as_train_does(str(path), tmp_path / path.stem, monkeypatch)
        cfg, changes, _kept = follow_weights_keeping(got["config"], got["source"].implied, {})
        assert _model_keys(cfg) == _model_keys(converted["config"]), path.name
        if design == "c4":
            rh = cfg.model.roi_heads
            assert (rh.box_pool_size, rh.pooler_aligned, rh.pooler_sampling_ratio) == (14, True, 0)
            assert cfg.model.size_divisibility == 0
            report = {"source": {"spec": str(path)}, "loaded": [], "reinitialised": [], "unused": [],
                      "copied_classes": {}, "fresh_classes": [], "notes": []}
            said = summary_lines(report, changes)[1]
            assert "the config follows the weights" in said
            assert "model.roi_heads.box_pool_size 7 -> 14" in said
            assert "model.roi_heads.pooler_aligned False -> True" in said
        else:
            assert "model.size_divisibility" not in got["source"].implied


def test_our_own_c4_checkpoint_brings_its_stored_config_as_the_docs_say(tmp_path, monkeypatch):
    """docs/checkpoints.md and interop/weights.py said a C4 file, "a checkpoint of ours" included, brings
    size_divisibility 0 as convert writes it, "as our r50_c4 preset": the preset pads to 32 with
    unaligned RoIAlign (sampling 2), and --init of our checkpoint takes the config stored in it."""
    from pathlib import Path

    from init_as_train import read_init_as_train_does  # tests/interop is on the path

    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import PRESETS

    cfg = apply_overrides(PRESETS["r50_c4"](), {"model.backbone": "resnet18", "model.num_classes": 3})
    torch.manual_seed(0)
    ours = tmp_path / "ours_c4.pth"
    save_checkpoint(ours, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", "a", "b"])
    (tmp_path / "run").mkdir()
    implied = read_init_as_train_does(str(ours), tmp_path / "run", monkeypatch)["source"].implied
    assert implied["model.size_divisibility"] == 32
    assert (implied["model.roi_heads.pooler_aligned"], implied["model.roi_heads.pooler_sampling_ratio"]) == (
        False, 2)
    assert implied["model.rpn.post_nms_topk_test"] == cfg.model.rpn.post_nms_topk_test
    docs = " ".join((Path(__file__).parents[2] / "docs" / "checkpoints.md").read_text().split())
    assert "a C4 checkpoint of ours the config stored in it (one trained from the `r50_c4` preset keeps " \
           "that preset's `size_divisibility` 32" in docs
    assert "a checkpoint of ours) also brings the C4 design's proposal counts and `size_divisibility` 0" \
        not in docs
