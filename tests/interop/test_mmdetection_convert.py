"""MMDetection -> ours: synthetic mmdet files (v2 and v3 layouts) made from our own random tiny models by an
inverse mapping written here independently, with mmdet's conventions computed by hand from its definitions
(background-last class rows, delta stds, anchors, BGR caffe input); a v3 file holding a foreign pickled
object loads without importing or calling it; designs ours cannot build are refused in one line."""

import pickle
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from restored_weights import assert_restored  # tests/interop is on the path
from tiny_model import randomise_norms  # tests/ is on the path

from maskrcnn.config import Config, apply_overrides
from maskrcnn.interop.mmdet_file import UNKNOWN, Inert, parse_config_text, read_mmdet_file
from maskrcnn.interop.mmdetection import ConversionError, convert_mmdetection, load_mmdetection_file
from maskrcnn.modeling.mask_rcnn import build_model

TINY = {"model.backbone": "resnet18", "model.num_classes": 3, "model.fpn_dim": 32,
        "model.roi_heads.box_head_dim": 64, "model.roi_heads.mask_head_dim": 16}

# ours -> mmdet, as mmdet names its parameters (layer1..4 for res2..5, ConvModule's .conv, heads' names)
_INVERSE = [
    (r"^backbone\.stem\.conv1\.conv\.weight$", lambda m: "backbone.conv1.weight"),
    (r"^backbone\.stem\.conv1\.norm\.(.+)$", lambda m: f"backbone.bn1.{m[1]}"),
    (r"^backbone\.res(\d)\.(\d+)\.conv(\d)\.conv\.weight$",
     lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}.weight"),
    (r"^backbone\.res(\d)\.(\d+)\.conv(\d)\.norm\.(.+)$",
     lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}.{m[4]}"),
    (r"^backbone\.res(\d)\.(\d+)\.shortcut\.conv\.weight$",
     lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.downsample.0.weight"),
    (r"^backbone\.res(\d)\.(\d+)\.shortcut\.norm\.(.+)$",
     lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.downsample.1.{m[3]}"),
    (r"^fpn\.lateral\.(\d)\.conv\.(.+)$", lambda m: f"neck.lateral_convs.{m[1]}.conv.{m[2]}"),
    (r"^fpn\.output\.(\d)\.conv\.(.+)$", lambda m: f"neck.fpn_convs.{m[1]}.conv.{m[2]}"),
    (r"^rpn\.head\.convs\.0\.conv\.(.+)$", lambda m: f"rpn_head.rpn_conv.{m[1]}"),
    (r"^rpn\.head\.objectness\.(.+)$", lambda m: f"rpn_head.rpn_cls.{m[1]}"),
    (r"^rpn\.head\.deltas\.(.+)$", lambda m: f"rpn_head.rpn_reg.{m[1]}"),
    (r"^roi_heads\.box_head\.fcs\.(\d)\.(.+)$", lambda m: f"roi_head.bbox_head.shared_fcs.{m[1]}.{m[2]}"),
    (r"^roi_heads\.box_predictor\.cls_score\.(.+)$", lambda m: f"roi_head.bbox_head.fc_cls.{m[1]}"),
    (r"^roi_heads\.box_predictor\.bbox_pred\.(.+)$", lambda m: f"roi_head.bbox_head.fc_reg.{m[1]}"),
    (r"^roi_heads\.mask_head\.convs\.(\d)\.conv\.(.+)$",
     lambda m: f"roi_head.mask_head.convs.{m[1]}.conv.{m[2]}"),
    (r"^roi_heads\.mask_head\.deconv\.(.+)$", lambda m: f"roi_head.mask_head.upsample.{m[1]}"),
    (r"^roi_heads\.mask_head\.predictor\.(.+)$", lambda m: f"roi_head.mask_head.conv_logits.{m[1]}"),
]


def _mm_name(key):
    for pattern, fn in _INVERSE:
        m = re.match(pattern, key)
        if m:
            return fn(m)
    raise AssertionError(f"test inverse mapping has no rule for {key}")


def _mm_value(key, t, bgr):
    """Our value in mmdet's convention: background last in fc_cls, no background slot in fc_reg or
    conv_logits, and for a BGR-fed (caffe) model the stem's input channels in BGR order."""
    if key == "backbone.stem.conv1.conv.weight" and bgr:
        return t[:, [2, 1, 0]]
    if key.startswith("roi_heads.box_predictor.cls_score."):
        return torch.cat([t[1:], t[:1]])
    if key.startswith("roi_heads.box_predictor.bbox_pred."):
        return t[4:]
    if key.startswith("roi_heads.mask_head.predictor."):
        return t[1:]
    return t


def to_mmdet(model, *, bgr=False):
    sd = OrderedDict((_mm_name(k), _mm_value(k, v, bgr).clone()) for k, v in model.state_dict().items())
    for k in [k for k in sd if k.startswith("backbone.") and k.endswith("running_var")]:
        sd[k.replace("running_var", "num_batches_tracked")] = torch.tensor(100)  # nn.BatchNorm2d's counter
    return sd


def _random_model(**overrides):
    torch.manual_seed(0)
    model = build_model(apply_overrides(Config(), {**TINY, **overrides})).eval()
    return randomise_norms(model)


def _config_text(style="pytorch", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), to_rgb=True,
                 v3=True, score_thr=0.3, roi_layer="dict(type='RoIAlign', output_size=7, sampling_ratio=0)",
                 center_offset=0.0):
    """An mmcv / mmengine pretty_text of a Mask R-CNN config (test values differ from ours on purpose)."""
    norm = (f"data_preprocessor=dict(type='DetDataPreprocessor', mean={list(mean)}, std={list(std)}, "
            f"bgr_to_rgb={to_rgb}, pad_size_divisor=32),") if v3 else ""
    v2_norm = "" if v3 else f"img_norm_cfg = dict(mean={list(mean)}, std={list(std)}, to_rgb={to_rgb})\n"
    resize = "dict(type='Resize', scale=(96, 64), keep_ratio=True)" if v3 else \
        ("dict(type='MultiScaleFlipAug', img_scale=(96, 64), flip=False, "
         "transforms=[dict(type='Resize', keep_ratio=True)])")
    return v2_norm + f"""model = dict(
    type='MaskRCNN',
    {norm}
    backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='{style}',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=32, num_outs=5),
    rpn_head=dict(type='RPNHead', in_channels=32, feat_channels=32,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64], center_offset={center_offset}),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    roi_head=dict(type='StandardRoIHead',
        bbox_roi_extractor=dict(type='SingleRoIExtractor', roi_layer={roi_layer}, out_channels=32,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels=32, fc_out_channels=64, roi_feat_size=7,
            num_classes=2, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
            target_stds=[0.1, 0.1, 0.2, 0.2]), reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        mask_roi_extractor=dict(type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0), out_channels=32,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=32, conv_out_channels=32, num_classes=2)),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300, nms=dict(type='nms', iou_threshold=0.6), min_bbox_size=0),
        rcnn=dict(score_thr={score_thr}, nms=dict(type='nms', iou_threshold=0.4), max_per_img=7,
            mask_thr_binary=0.45)))
test_pipeline = [dict(type='LoadImageFromFile'), {resize}, dict(type='PackDetInputs')]
work_dir = __import__('os').getcwd()
"""


def _record_call(path):  # what unpickling a foreign object would run: must never happen here
    with open(path, "w") as f:
        f.write("called")


class HistoryBuffer:
    """Stands for mmengine's HistoryBuffer in message_hub: pickled by reference to this test module."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_record_call, (str(self.marker),))


def _save_v3(path, sd, cfg_text, marker, classes=("cat", "dog")):
    torch.save({"meta": {"cfg": cfg_text, "dataset_meta": {"classes": classes, "palette": [(1, 2, 3)]},
                         "seed": np.int64(7), "mmengine_version": "0.10.4", "epoch": 12},
                "state_dict": sd,
                "message_hub": {"log_scalars": {"train/loss": HistoryBuffer(marker)},
                                "runtime_info": {"dataset_meta": {"classes": classes}}},
                "optimizer": {"state": {}, "param_groups": [{"lr": np.float64(0.02)}]},
                "param_schedulers": [{"by_epoch": True, "_last_lr": [np.array([0.02])]}]}, path)
    return path


def _save_v2(path, sd, cfg_text, classes=("cat", "dog")):
    torch.save({"meta": {"mmdet_version": "2.28.2", "config": cfg_text, "CLASSES": classes, "epoch": 12},
                "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


@pytest.fixture(scope="module")
def tiny_mask():
    model = _random_model()
    return model, to_mmdet(model)


def test_v3_file_with_foreign_objects_loads_without_running_them(tmp_path, tiny_mask):
    _, sd = tiny_mask
    marker = tmp_path / "called"
    path = _save_v3(tmp_path / "epoch_12.pth", sd, _config_text(), marker)
    with pytest.raises(pickle.UnpicklingError):  # why a plain weights_only load is not enough
        torch.load(path, weights_only=True)
    obj = read_mmdet_file(path)
    assert not marker.exists()  # the foreign reconstructor was never called
    buf = obj["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buf, Inert) and "_record_call" in repr(buf)
    assert obj["meta"]["dataset_meta"]["classes"] == ("cat", "dog")
    assert torch.equal(obj["state_dict"]["backbone.conv1.weight"], sd["backbone.conv1.weight"])
    assert not marker.exists()


def test_v3_file_refused_by_the_inference_reader_names_the_mmdetection_command(tmp_path, tiny_mask):
    # predict / export / quantize read with weights_only: a trainer's own class in message_hub (no mmengine
    # name) was answered "a torchvision or detectron2 checkpoint?", leaving MMDetection out
    from maskrcnn.checkpoint import CheckpointError, load_checkpoint

    _, sd = tiny_mask
    marker = tmp_path / "called"
    path = _save_v3(tmp_path / "epoch_12.pth", sd, _config_text(), marker)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    # recognised by its keys: the trainer's own class it holds is not named as MMDetection's evidence
    assert str(e.value) == (f"{path} is an MMDetection checkpoint (its state_dict keys are MMDetection's): "
                            f"maskrcnn convert --from mmdetection {path} OUT.pth")
    assert not marker.exists()


def test_config_text_is_parsed_not_run():
    text = _config_text() + "x = __import__('os').system('touch never-run')\ny = [1, -2.5, (3, 'a')]\n"
    cfg = parse_config_text(text)
    assert cfg["x"] is UNKNOWN and cfg["work_dir"] is UNKNOWN and cfg["y"] == [1, -2.5, (3, "a")]
    assert cfg["model"]["roi_head"]["bbox_head"]["bbox_coder"]["target_stds"] == [0.1, 0.1, 0.2, 0.2]
    assert parse_config_text("model = dict(") == {}


# --------------------------------------------------------------------------------------------
# Conversion


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_round_trip_restores_weights_and_reads_config(tmp_path, tiny_mask, version):
    model, sd = tiny_mask
    if version == "v3":
        path = _save_v3(tmp_path / "m.pth", sd, _config_text(), tmp_path / "called")
    else:
        path = _save_v2(tmp_path / "m.pth", sd, _config_text(v3=False))
    result = load_mmdetection_file(path)
    assert result["layout"] == "maskrcnn" and result["class_names"] == ["__background__", "cat", "dog"]
    assert_restored(result, model)
    cfg = result["config"]
    m, h = cfg.model, cfg.model.roi_heads
    widths = (m.fpn_dim, h.box_head_dim, h.mask_head_dim)
    assert (m.backbone, m.num_classes, widths) == ("resnet18", 3, (32, 64, 16))
    assert not m.stride_in_1x1 and m.norm == "frozen_bn" and m.frozen_bn_eps == 1e-5
    assert np.allclose(m.pixel_mean, [0.485, 0.456, 0.406])  # mmdet's RGB statistics / 255
    assert np.allclose(m.pixel_std, [0.229, 0.224, 0.225])
    assert m.rpn.anchor_sizes == (32, 64, 128, 256, 512) and m.rpn.anchor_rounding is False
    assert h.pooler_aligned and h.pooler_sampling_ratio == 0 and h.canonical_box_size == 224
    assert h.box_reg_weights == (10.0, 10.0, 5.0, 5.0) and h.mask_paste == "grid_sample"
    # the test settings of the file's config, not ours
    assert (m.rpn.pre_nms_topk_test, m.rpn.post_nms_topk_test, m.rpn.nms_thresh) == (500, 300, 0.6)
    assert (h.score_thresh, h.nms_thresh, h.detections_per_image, h.mask_threshold) == (0.3, 0.4, 7, 0.45)
    assert (cfg.input.min_size_test, cfg.input.max_size_test) == (64, 96)
    build_model(cfg).load_state_dict(result["state_dict"])  # strict


def test_background_last_rows_move_first(tiny_mask):
    model, sd = tiny_mask
    result = convert_mmdetection({"state_dict": sd}, {"model.stride_in_1x1": False})
    ours = build_model(result["config"]).eval()
    ours.load_state_dict(result["state_dict"])
    torch.manual_seed(2)
    feats = torch.randn(6, 64)
    with torch.no_grad():
        logits, deltas = ours.roi_heads.box_predictor(feats)
    mm_logits = feats @ sd["roi_head.bbox_head.fc_cls.weight"].T + sd["roi_head.bbox_head.fc_cls.bias"]
    assert torch.allclose(logits[:, 0], mm_logits[:, -1], atol=1e-5)  # mmdet's background is its last row
    # mmdet's scores: softmax over K + 1, the last column dropped; class k of mmdet is our label k + 1
    assert torch.allclose(logits.softmax(1)[:, 1:], mm_logits.softmax(1)[:, :-1], atol=1e-6)
    mm_deltas = feats @ sd["roi_head.bbox_head.fc_reg.weight"].T + sd["roi_head.bbox_head.fc_reg.bias"]
    assert torch.allclose(deltas[:, 4:], mm_deltas, atol=1e-5) and not deltas[:, :4].any()
    x = torch.randn(2, 16, 28, 28)
    with torch.no_grad():
        ours_masks = ours.roi_heads.mask_head.predictor(x)
    mm_masks = torch.nn.functional.conv2d(x, sd["roi_head.mask_head.conv_logits.weight"],
                                          sd["roi_head.mask_head.conv_logits.bias"])
    assert torch.allclose(ours_masks[:, 1:], mm_masks, atol=1e-5)


def _mm_delta2bbox(rois, deltas, stds):
    """mmdet's DeltaXYWHBBoxCoder.decode written from its definition (means 0, no clipping)."""
    d = deltas * torch.tensor(stds)
    pw, ph = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
    px, py = (rois[:, 0] + rois[:, 2]) * 0.5, (rois[:, 1] + rois[:, 3]) * 0.5
    gx, gy = px + pw * d[:, 0], py + ph * d[:, 1]
    gw, gh = pw * d[:, 2].exp(), ph * d[:, 3].exp()
    return torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], 1)


def test_box_deltas_decode_as_mmdet_with_its_stds(tmp_path, tiny_mask):
    from maskrcnn.ops.boxes import BoxCoder

    _, sd = tiny_mask
    cfg = convert_mmdetection({"meta": {"config": _config_text(v3=False)}, "state_dict": sd})["config"]
    torch.manual_seed(3)
    rois = torch.rand(20, 2) * 50
    rois = torch.cat([rois, rois + 5 + torch.rand(20, 2) * 40], 1)
    deltas = torch.randn(20, 4)
    ours = BoxCoder(weights=cfg.model.roi_heads.box_reg_weights).decode(deltas, rois)
    assert torch.allclose(ours, _mm_delta2bbox(rois, deltas, (0.1, 0.1, 0.2, 0.2)), atol=1e-4)


def _mm_anchors(strides, scale, ratios, grid_sizes):
    """mmdet's AnchorGenerator (v2+) from its definition: base size = stride, centre offset 0, no rounding;
    per level location-major (y, then x), the base anchors (ratio-major) innermost."""
    out = []
    for stride, (h, w) in zip(strides, grid_sizes):
        hr = torch.tensor(ratios).sqrt()
        ws, hs = stride * scale / hr, stride * scale * hr
        base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], 1)
        ys, xs = torch.meshgrid(torch.arange(h) * stride, torch.arange(w) * stride, indexing="ij")
        shifts = torch.stack([xs.reshape(-1), ys.reshape(-1)] * 2, 1).float()
        out.append((shifts[:, None, :] + base[None]).reshape(-1, 4))
    return torch.cat(out)


def test_rpn_anchors_and_channels_line_up_with_mmdet(tiny_mask):
    _, sd = tiny_mask
    result = convert_mmdetection({"meta": {"cfg": _config_text()}, "state_dict": sd})
    model = build_model(result["config"]).eval()
    model.load_state_dict(result["state_dict"])
    grids = [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    anchors, _ = model.rpn.anchor_generator(grids, (32, 48))
    assert torch.allclose(anchors, _mm_anchors([4, 8, 16, 32, 64], 8, [0.5, 1.0, 2.0], grids))
    # channel a of rpn_cls scores anchor a (mmdet permutes (A, H, W) -> (H, W, A)), as ours: rows unchanged
    assert torch.equal(result["state_dict"]["rpn.head.objectness.weight"], sd["rpn_head.rpn_cls.weight"])
    assert torch.equal(result["state_dict"]["rpn.head.deltas.bias"], sd["rpn_head.rpn_reg.bias"])


def test_caffe_style_bgr_input_gives_mmdet_features(tmp_path):
    model = _random_model()
    mean_bgr, std_bgr = (103.53, 116.28, 123.675), (1.0, 1.0, 1.0)
    sd = to_mmdet(model, bgr=True)
    text = _config_text(style="caffe", mean=mean_bgr, std=std_bgr, to_rgb=False, v3=False)
    result = load_mmdetection_file(_save_v2(tmp_path / "caffe.pth", sd, text))
    m = result["config"].model
    assert m.stride_in_1x1 and np.allclose(m.pixel_mean, [v / 255 for v in mean_bgr[::-1]])
    ours = build_model(result["config"]).eval()
    ours.load_state_dict(result["state_dict"])
    # reference: the file's stem as it is, fed mmdet's input: BGR 0-255 minus the BGR mean, over std
    ref = build_model(result["config"]).eval()
    ref.load_state_dict(dict(result["state_dict"],
                             **{"backbone.stem.conv1.conv.weight": sd["backbone.conv1.weight"]}))
    torch.manual_seed(1)
    x = torch.rand(3, 64, 96)  # RGB in [0, 1]
    x_mm = (x[[2, 1, 0]] * 255 - torch.tensor(mean_bgr).view(3, 1, 1)) / torch.tensor(std_bgr).view(3, 1, 1)
    with torch.no_grad():
        got = ours.features(ours.preprocess([x])[0])
        want = ref.features(x_mm[None])
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-4 * want[name].abs().max(), rtol=1e-4), name


def test_style_without_config_is_refused_when_the_weights_look_caffe(tiny_mask):
    _, sd = tiny_mask
    caffe = OrderedDict(sd)
    for k in caffe:
        if k.startswith("backbone.") and k.endswith("running_mean"):
            caffe[k] = torch.zeros_like(caffe[k])
        elif k.startswith("backbone.") and k.endswith("running_var"):
            caffe[k] = torch.ones_like(caffe[k])
    with pytest.raises(ConversionError,
                       match=r"m\.pth: the file has no config.*--set model\.stride_in_1x1=true"):
        convert_mmdetection({"state_dict": caffe}, source="m.pth")
    m = convert_mmdetection({"state_dict": caffe}, {"model.stride_in_1x1": True})["config"].model
    assert m.stride_in_1x1 and np.allclose(m.pixel_std, [1 / 255] * 3)
    assert np.allclose(m.pixel_mean, [123.675 / 255, 116.28 / 255, 103.53 / 255])
    # no config, real statistics: mmdet's default (pytorch style, RGB)
    m = convert_mmdetection({"state_dict": sd})["config"].model
    assert not m.stride_in_1x1 and np.allclose(m.pixel_mean, [0.485, 0.456, 0.406])


def _with(sd, **extra):
    return OrderedDict(sd, **{k.replace("__", "."): v for k, v in extra.items()})


@pytest.mark.parametrize("variant, message", [
    (lambda sd: _with(sd, **{"roi_head.bbox_head.1.fc_cls.weight": torch.zeros(3, 64)}), "Cascade R-CNN"),
    (lambda sd: _with(sd, **{"roi_head.semantic_head.conv_logits.weight": torch.zeros(1)}), "Hybrid Task"),
    (lambda sd: _with(sd, **{"roi_head.point_head.fc_logits.weight": torch.zeros(1)}), "PointRend"),
    (lambda sd: _with(sd, **{"roi_head.mask_iou_head.fc_mask_iou.weight": torch.zeros(1)}), "Mask Scoring"),
    (lambda sd: _with(sd, **{"backbone.layer3.0.conv2.conv_offset.weight": torch.zeros(1)}), "deformable"),
    (lambda sd: _with(sd, **{"neck.lateral_convs.0.gn.weight": torch.zeros(32)}), "GroupNorm"),
    (lambda sd: _with(sd, **{"neck.fpn_convs.4.conv.weight": torch.zeros(32, 512, 3, 3)}), "add_extra_convs"),
    (lambda sd: OrderedDict((k.replace("backbone.conv1.", "backbone.stem.0.conv."), v)
                            for k, v in sd.items()), "deep stem"),
    (lambda sd: OrderedDict((k, v) for k, v in sd.items() if not k.startswith("rpn_head.")), "two-stage"),
    (lambda sd: OrderedDict((k.replace("roi_head.", ""), v) for k, v in sd.items()), "1.x"),
])
def test_unsupported_designs_are_refused_in_one_line(tiny_mask, variant, message):
    _, sd = tiny_mask
    with pytest.raises(ConversionError) as e:
        convert_mmdetection({"state_dict": variant(sd)}, source="x.pth")
    assert message in str(e.value) and str(e.value).startswith("x.pth: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    (_config_text(center_offset=0.5), "center_offset"),
    (_config_text(roi_layer="dict(type='ModulatedDeformRoIPoolPack', output_size=7)"), "roi_layer.type"),
    (_config_text().replace("type='ResNet'", "type='RegNet'"), "model.backbone.type"),
    (_config_text().replace("target_stds=[1.0, 1.0, 1.0, 1.0]", "target_stds=[0.5, 0.5, 1.0, 1.0]"),
     "RPN deltas"),
])
def test_config_conventions_ours_cannot_represent_are_refused(tiny_mask, text, message):
    _, sd = tiny_mask
    with pytest.raises(ConversionError, match=message):
        convert_mmdetection({"meta": {"cfg": text}, "state_dict": sd}, source="x.pth")


def test_mmdet_1x_version_is_refused(tiny_mask):
    _, sd = tiny_mask
    with pytest.raises(ConversionError, match="MMDetection 1.x"):
        convert_mmdetection({"meta": {"mmdet_version": "1.0rc0+abc"}, "state_dict": sd})


# --------------------------------------------------------------------------------------------
# End to end: convert, train --init's reader, predict


def test_convert_command_then_predict(tmp_path, tiny_mask, capsys):
    from maskrcnn.checkpoint import load_checkpoint
    from maskrcnn.cli import main
    from maskrcnn.interop.weights import read_weights
    from maskrcnn.predictor import Predictor

    model, sd = tiny_mask
    src = _save_v3(tmp_path / "mask-rcnn_r18_fpn_1x_coco.pth", sd, _config_text(score_thr=0.0),
                   tmp_path / "called")
    out = tmp_path / "ours.pth"
    assert main(["convert", "--from", "mmdetection", str(src), str(out)]) == 0
    assert "note: input convention from the file's config: pytorch style, RGB" in capsys.readouterr().err
    ckpt = load_checkpoint(out)
    assert ckpt["converted_from"]["format"] == "mmdetection" and ckpt["class_names"] == ["__background__",
                                                                                          "cat", "dog"]
    predictor = Predictor.from_checkpoint(out, device="cpu")
    torch.manual_seed(4)
    image = torch.rand(3, 60, 80)
    (dets,) = predictor.predict_tensors([image])
    assert len(dets["boxes"]) > 0 and dets["masks"].shape[-2:] == (60, 80)
    assert len(dets["boxes"]) <= 7  # the file's max_per_img
    # what train --init reads: the v3 file that weights_only refuses, recognised from its key names
    weights = read_weights(str(src))
    assert weights.kind == "mmdetection" and weights.class_names == ["__background__", "cat", "dog"]
    assert torch.equal(weights.state_dict["backbone.res2.0.conv1.conv.weight"],
                       model.state_dict()["backbone.res2.0.conv1.conv.weight"])
    assert not (tmp_path / "called").exists()
    assert main(["convert", "--from", "mmdetection", str(tmp_path / "missing.pth"), str(out)]) == 1


@pytest.mark.slow  # a one-iteration training run (~6 s)
def test_train_init_copies_class_rows_by_name(tmp_path, tiny_mask):
    """train --init on an mmdet v3 file of (car, person) into a dataset of (person, car, widget): mmdet's
    background-last rows land where our names say, widget starts fresh, the run follows the weights."""
    import json

    from maskrcnn.cli import main
    from maskrcnn.data.shapes import generate_shapes_dataset

    _, sd = tiny_mask
    src = _save_v3(tmp_path / "mmdet.pth", sd, _config_text(), tmp_path / "called", classes=("car", "person"))
    data = generate_shapes_dataset(tmp_path / "data", num_train=1, num_val=0, image_size=(64, 64), seed=0,
                                   classes=("circle", "square", "triangle"))
    coco = json.loads(open(data["train_json"]).read())
    for cat, name in zip(coco["categories"], ("person", "car", "widget")):
        cat["name"] = name
    open(data["train_json"], "w").write(json.dumps(coco))
    out = tmp_path / "run"
    assert main(["train", "--config", "r50_fpn", "--init", str(src), "--train-json", data["train_json"],
                 "--train-images", data["train_images"], "--output", str(out), "--set", "solver.lr=0",
                 "solver.iters=1", "solver.batch_size=1", "solver.warmup_iters=1", "solver.steps=[10]",
                 "solver.checkpoint_period=0", "input.min_size=64", "input.max_size=64",
                 "data.num_workers=0", "model.rpn.post_nms_topk_train=32",
                 "model.roi_heads.batch_size_per_image=16"]) == 0
    report = json.loads((out / "init_report.json").read_text(encoding="utf-8"))
    assert report["copied_classes"] == {"person": "person", "car": "car"}
    assert report["fresh_classes"] == ["widget"]
    assert report["source"]["format"] == "mmdetection detector (maskrcnn layout)"
    got = torch.load(out / "model_final.pth", weights_only=True)["model"]
    scores, deltas = sd["roi_head.bbox_head.fc_cls.weight"], sd["roi_head.bbox_head.fc_reg.weight"]
    masks = sd["roi_head.mask_head.conv_logits.weight"]
    # mmdet's rows: car 0, person 1, background 2 (last); ours: background 0, person 1, car 2, widget 3
    assert torch.equal(got["roi_heads.box_predictor.cls_score.weight"][:3], scores[[2, 1, 0]])
    assert torch.equal(got["roi_heads.box_predictor.bbox_pred.weight"][4:12],
                       torch.cat([deltas[4:8], deltas[:4]]))
    assert torch.equal(got["roi_heads.mask_head.predictor.weight"][1:3], masks[[1, 0]])
    assert torch.equal(got["backbone.res3.0.shortcut.conv.weight"],
                       sd["backbone.layer2.0.downsample.0.weight"])
    assert not (tmp_path / "called").exists()


def test_an_unmapped_key_is_named_as_mmdetection_s(tiny_mask):
    """The key report names the framework the file came from (it said "unmapped detectron2 keys" for an
    MMDetection file: the helper was borrowed from the detectron2 converter)."""
    _, sd = tiny_mask
    with pytest.raises(ConversionError, match="1 unmapped MMDetection keys: roi_head.bbox_head.extra_scale"):
        convert_mmdetection({"state_dict": _with(sd, **{"roi_head.bbox_head.extra_scale": torch.zeros(1)})})


def test_converters_share_public_helpers_not_each_others_private_ones():
    """mmdetection.py and imagenet.py import the shared steps (key counting, the key report, BGR stem,
    background-first rows) from the modules that hold them, not private names of detectron2.py."""
    import ast
    from pathlib import Path

    import maskrcnn.interop as interop

    for name in ("mmdetection.py", "imagenet.py", "detectron2.py"):
        tree = ast.parse((Path(interop.__file__).parent / name).read_text())
        private = [(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   for a in n.names if a.name.startswith("_") and n.module != "__future__"]
        touched = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                   and n.attr in ("_stem_bgr_to_rgb", "_background_first", "_count", "_problems")]
        assert private == [] and touched == [], name


def test_the_zoo_resnext101_32x4d_converts(tmp_path):
    """mmdet's mask_rcnn_x101_32x4d_fpn: ResNeXt-101 32 groups of width 4 (res2's grouped conv2 is
    (128, 4, 3, 3)), recognised from the shapes and converted tensor for tensor (v2 file, no config)."""
    torch.manual_seed(0)
    cfg = apply_overrides(Config(), {**TINY, "model.backbone": "resnext101_32x4d"})
    model = randomise_norms(build_model(cfg).eval())
    sd = to_mmdet(model)
    assert tuple(sd["backbone.layer1.0.conv2.weight"].shape) == (128, 4, 3, 3)
    assert tuple(sd["backbone.layer4.0.conv2.weight"].shape) == (1024, 32, 3, 3)
    assert sum(k.startswith("backbone.layer3.") and k.endswith("conv1.weight") for k in sd) == 23
    path = tmp_path / "mask_rcnn_x101_32x4d_fpn_1x_coco.pth"
    torch.save({"meta": {"mmdet_version": "2.25.1", "CLASSES": ("cat", "dog")}, "state_dict": sd}, path)
    result = load_mmdetection_file(path)
    assert result["config"].model.backbone == "resnext101_32x4d"
    assert_restored(result, model)
