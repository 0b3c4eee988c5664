"""``train --init`` from the layouts people have: torchvision's 91-class COCO Mask R-CNN, a detectron2
model-zoo ``.pkl`` (background last), ImageNet ResNets (torchvision's and detectron2's Caffe2 files),
into a dataset with the classes person, car and widget. Weights are made by the golden recipe
(tests/golden_weights.py) from the recorded key lists, so no download is needed.

With ``solver.lr=0`` and one iteration on frozen batch norm, the saved model is exactly the initialisation:
shared tensors must equal the source's, person's and car's class rows COCO's, widget's the fresh ones a
seeded build gives, and ``init_report.json`` must say so."""

import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision_names import torchvision_resnet_name  # tests/interop is on the path

from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.shapes import generate_shapes_dataset
from maskrcnn.interop import imagenet
from maskrcnn.interop.detectron2 import COCO_CLASS_NAMES_81, convert_detectron2
from maskrcnn.interop.download import cache_name, is_published, resolve
from maskrcnn.interop.torchvision import COCO_CLASS_NAMES_91, convert_torchvision
from maskrcnn.interop.weights import read_weights
from maskrcnn.modeling.backbone import ResNet
from maskrcnn.modeling.mask_rcnn import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden_weights import recipe_state_dict  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
CLASS_KEYS = ("roi_heads.box_predictor.", "roi_heads.mask_head.predictor.")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pcw")
    data = generate_shapes_dataset(root / "data", num_train=2, num_val=0, image_size=(64, 64), seed=0,
                                   classes=("circle", "square", "triangle"))
    coco = json.loads(Path(data["train_json"]).read_text())
    for cat, name in zip(coco["categories"], ("person", "car", "widget")):
        cat["name"] = name
    Path(data["train_json"]).write_text(json.dumps(coco))
    return root, data


def _run(root, data, init, *extra):
    out = root / re.sub(r"\W", "_", Path(init).stem)
    args = ["train", "--config", "r50_fpn", "--init", str(init), "--train-json", data["train_json"],
            "--train-images", data["train_images"], "--output", str(out), "--set", "solver.lr=0",
            "solver.iters=1", "solver.batch_size=1", "solver.warmup_iters=1", "solver.steps=[10]",
            "solver.checkpoint_period=0", "input.min_size=64", "input.max_size=64", "data.num_workers=0",
            "model.rpn.post_nms_topk_train=64", "model.roi_heads.batch_size_per_image=32", *extra]
    assert main(args) == 0
    report = json.loads((out / "init_report.json").read_text(encoding="utf-8"))
    saved = torch.load(out / "model_final.pth", weights_only=True)
    return report, saved


def _fresh(saved_config):
    """The model a seeded build gives for the run's final config (what fresh rows must equal)."""
    from maskrcnn.config import from_dict

    cfg = from_dict(saved_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(cfg).state_dict()


def _check_classes(got, expected, fresh, rows, per_key_rows):
    """Our rows 0..3 (bg, person, car, widget) against the source rows ``rows`` (None: fresh)."""
    for key, (axis_rows, src) in per_key_rows.items():
        for ours_i, theirs_i in enumerate(rows):
            r = slice(ours_i * axis_rows, (ours_i + 1) * axis_rows)
            want = fresh[key][r] if theirs_i is None else src[theirs_i * axis_rows:(theirs_i + 1) * axis_rows]
            assert torch.equal(got[key][r], want), (key, ours_i)


def test_torchvision_coco_into_person_car_widget(three_classes, tmp_path):
    root, data = three_classes
    keys = json.loads((DATA / "torchvision_state_dict_keys.json").read_text())["maskrcnn_resnet50_fpn"]
    # the published COCO file's layout: frozen norms keep no batch counters (the manifest's model, built
    # with weights=None, has them), so its eps is 0
    tv_sd = recipe_state_dict([e for e in keys if not e[0].endswith("num_batches_tracked")])
    path = tmp_path / "maskrcnn_resnet50_fpn_coco_recipe.pth"
    torch.save(tv_sd, path)
    report, saved = _run(root, data, path)
    got = saved["model"]
    expected = convert_torchvision(tv_sd)["state_dict"]
    shared = [k for k in got if not k.startswith(CLASS_KEYS)]
    assert all(torch.equal(got[k], expected[k]) for k in shared)
    person, car = COCO_CLASS_NAMES_91.index("person"), COCO_CLASS_NAMES_91.index("car")
    fresh = _fresh(saved["config"])
    per_key = {k: (4 if "bbox_pred" in k else 1, tv_sd[k.replace("mask_head.predictor",
                                                                 "mask_predictor.mask_fcn_logits")])
               for k in got if k.startswith(CLASS_KEYS)}
    _check_classes(got, expected, fresh, [0, person, car, None], per_key)
    assert report["copied_classes"] == {"person": "person", "car": "car"}
    assert report["fresh_classes"] == ["widget"]
    assert sorted(report["loaded"]) == sorted(got)
    assert report["reinitialised"] == [] and report["unused"] == []
    assert report["source"]["format"] == "torchvision detector (maskrcnn layout)"
    assert report["config_changes"]["model.frozen_bn_eps"] == {"from": 1e-5, "to": 0.0}
    assert saved["config"]["model"]["init_weights"] == str(path)


def _d2_recipe(name):
    keys = json.loads((DATA / "detectron2_state_dict_keys.json").read_text())[name]
    return {k: v.numpy() for k, v in recipe_state_dict(keys).items()}


def test_detectron2_zoo_pkl_background_last(three_classes, tmp_path):
    root, data = three_classes
    d2 = _d2_recipe("mask_rcnn_R_50_FPN_3x")
    path = tmp_path / "model_final_recipe.pkl"
    path.write_bytes(pickle.dumps({"model": d2, "__author__": "Detectron2 Model Zoo"}))
    report, saved = _run(root, data, path)
    got = saved["model"]
    expected = convert_detectron2({"model": {k: v.copy() for k, v in d2.items()}})["state_dict"]
    assert all(torch.equal(got[k], expected[k]) for k in got if not k.startswith(CLASS_KEYS))
    # detectron2's rows: person 0, car 2, background last (80); no background slot in deltas / masks
    person, car = COCO_CLASS_NAMES_81.index("person") - 1, COCO_CLASS_NAMES_81.index("car") - 1
    raw_scores = torch.from_numpy(d2["roi_heads.box_predictor.cls_score.weight"])
    raw_deltas = torch.from_numpy(d2["roi_heads.box_predictor.bbox_pred.weight"])
    raw_masks = torch.from_numpy(d2["roi_heads.mask_head.predictor.weight"])
    assert torch.equal(got["roi_heads.box_predictor.cls_score.weight"][0], raw_scores[80])
    assert torch.equal(got["roi_heads.box_predictor.cls_score.weight"][1], raw_scores[person])
    assert torch.equal(got["roi_heads.box_predictor.cls_score.weight"][2], raw_scores[car])
    assert torch.equal(got["roi_heads.box_predictor.bbox_pred.weight"][4:8],
                       raw_deltas[4 * person:4 * person + 4])
    assert torch.equal(got["roi_heads.mask_head.predictor.weight"][2], raw_masks[car])
    fresh = _fresh(saved["config"])
    for key in got:
        if key.startswith(CLASS_KEYS):
            per = 4 if "bbox_pred" in key else 1
            assert torch.equal(got[key][3 * per:4 * per], fresh[key][3 * per:4 * per]), key
    assert report["copied_classes"] == {"person": "person", "car": "car"}
    assert report["fresh_classes"] == ["widget"]
    cfg = saved["config"]["model"]
    # detectron2's conventions followed: BGR statistics reversed to RGB, stride on the 1x1, aligned RoIAlign
    assert cfg["stride_in_1x1"] is True and cfg["roi_heads"]["pooler_aligned"] is True
    assert cfg["pixel_mean"] == pytest.approx([123.675 / 255, 116.28 / 255, 103.53 / 255])
    assert any("background-last" in n for n in report["notes"])


def _torchvision_resnet50():
    """torchvision's ImageNet ResNet-50 layout (our backbone's shapes under its names, plus fc), filled by
    the golden recipe so that the network stays numerically tame."""
    entries = [(torchvision_resnet_name(k), tuple(v.shape))
               for k, v in ResNet(arch="resnet50", norm="frozen_bn").state_dict().items()]
    return recipe_state_dict(entries + [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))])


def test_imagenet_resnet50_starts_the_backbone(three_classes, tmp_path, capsys):
    root, data = three_classes
    sd = _torchvision_resnet50()
    # torchvision.models.resnet50().state_dict() holds a batch counter beside each BN's statistics: a
    # frozen BN keeps none, and the report said nothing of these 53 of the file's entries
    counters = [k.replace("running_var", "num_batches_tracked") for k in sd if k.endswith("running_var")]
    sd.update({k: torch.tensor(0) for k in counters})
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(sd, path)
    # a backbone asked for explicitly that the weights contradict is refused: their tensors fit no other
    with pytest.raises(AssertionError):
        _run(root, data, path, "model.backbone=resnet18")
    assert "--set model.backbone=resnet18 but the --init weights" in capsys.readouterr().err
    report, saved = _run(root, data, path, "model.fpn_dim=256")  # the preset's resnet50: the weights'
    assert len(report["counters_ignored"]) == len(counters) == 53
    got = saved["model"]
    assert torch.equal(got["backbone.stem.conv1.conv.weight"], sd["conv1.weight"])
    assert torch.equal(got["backbone.res3.1.conv2.norm.running_var"], sd["layer2.1.bn2.running_var"])
    assert torch.equal(got["backbone.res5.0.shortcut.conv.weight"], sd["layer4.0.downsample.0.weight"])
    fresh = _fresh(saved["config"])
    heads = [k for k in got if not k.startswith("backbone.")]
    assert heads and all(torch.equal(got[k], fresh[k]) for k in heads)
    assert report["unused"] == ["fc.bias", "fc.weight"]
    assert sorted(report["reinitialised"]) == sorted(heads)
    assert sorted(report["loaded"]) == sorted(k for k in got if k.startswith("backbone."))
    assert report["copied_classes"] == {} and report["fresh_classes"] == ["person", "car", "widget"]
    assert "model.backbone" not in report["config_changes"]
    assert saved["config"]["model"]["pixel_std"] == pytest.approx([0.229, 0.224, 0.225])


BRANCHES = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}


def _caffe2_blobs(arch, seed=0):
    """detectron2's ImageNetPretrained Caffe2 naming of a random ``arch``: scale / shift norms, fc1000,
    momentum blobs, under ``blobs``."""
    g = torch.Generator().manual_seed(seed)
    ours = ResNet(arch=arch, norm="frozen_bn").state_dict()
    blobs = {}
    leaf = {"weight": "s", "bias": "b"}
    for k, v in ours.items():
        if k.endswith(("running_mean", "running_var")):
            continue
        m = re.match(r"res(\d)\.(\d+)\.(conv\d|shortcut)\.(conv|norm)\.(\w+)$", k)
        if k.startswith("stem."):
            name = "conv1_w" if ".conv." in k else f"res_conv1_bn_{leaf[k.rsplit('.', 1)[1]]}"
        else:
            stage, block, layer, kind, lf = m.groups()
            branch = BRANCHES[layer]
            name = f"res{stage}_{block}_{branch}_" + ("w" if kind == "conv" else f"bn_{leaf[lf]}")
        blobs[name] = torch.randn(v.shape, generator=g).numpy()
        blobs[name + "_momentum"] = np.zeros(v.shape, np.float32)
    blobs["fc1000_w"] = np.zeros((1000, 2048 if "50" in arch else 512), np.float32)
    blobs["fc1000_b"] = np.zeros(1000, np.float32)
    return {"blobs": blobs}


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d"])
def test_detectron2_caffe2_imagenet_pickles(tmp_path, arch):
    blobs = _caffe2_blobs(arch)
    path = tmp_path / "R-50.pkl"
    path.write_bytes(pickle.dumps(blobs, protocol=2))
    w = read_weights(str(path))
    assert w.kind == "imagenet" and w.layout == f"caffe2 {arch}"
    msra = arch == "resnet50"
    assert w.implied["model.stride_in_1x1"] is msra and w.implied["model.frozen_bn_eps"] == 0.0
    std = (1.0, 1.0, 1.0) if msra else (58.395, 57.120, 57.375)  # BGR std reversed to RGB
    assert w.implied["model.pixel_std"] == pytest.approx(tuple(s / 255 for s in std))
    assert w.implied["model.pixel_mean"] == pytest.approx((123.675 / 255, 116.28 / 255, 103.53 / 255))
    b = blobs["blobs"]
    sd = w.state_dict
    assert torch.equal(sd["backbone.stem.conv1.conv.weight"], torch.from_numpy(b["conv1_w"])[:, [2, 1, 0]])
    assert torch.equal(sd["backbone.res4.2.conv3.norm.weight"], torch.from_numpy(b["res4_2_branch2c_bn_s"]))
    assert torch.equal(sd["backbone.res3.0.shortcut.conv.weight"], torch.from_numpy(b["res3_0_branch1_w"]))
    # frozen BN with mean 0, variance 1, eps 0 is exactly Caffe2's y = x * s + b
    cfg = load_config("r50_fpn", {**w.implied, "model.backbone": arch})
    backbone = ResNet(arch=arch, norm="frozen_bn", eps=cfg.model.frozen_bn_eps)
    backbone.load_state_dict({k[len("backbone."):]: v for k, v in sd.items()})
    scale, shift = backbone.res2[0].conv1.norm.scale_shift()
    assert torch.equal(scale, torch.from_numpy(b["res2_0_branch2a_bn_s"]))
    assert torch.equal(shift, torch.from_numpy(b["res2_0_branch2a_bn_b"]))
    assert "fc1000_w" in w.unused and "res2_0_branch2a_w_momentum" in w.unused


def test_imagenet_layouts_are_recognised_or_refused():
    assert imagenet.detect_layout({"stem.conv1.weight": 0, "res2.0.conv1.weight": 0}) == "detectron2"
    assert imagenet.detect_layout({"conv1.weight": 0, "layer1.0.conv1.weight": 0}) == "torchvision"
    assert imagenet.detect_layout({"encoder.weight": 0}) is None
    with pytest.raises(ValueError, match=r"no ResNet layer: layer1\.0\.attention\.weight"):
        imagenet.convert_imagenet({"conv1.weight": torch.zeros(64, 3, 7, 7),
                                   "layer1.0.attention.weight": torch.zeros(1)}, source="x.pth")


def test_published_names_and_the_detectron2_scheme():
    assert resolve("resnet50") == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert resolve("ResNeXt101_32X8D_Weights.IMAGENET1K_V1").endswith("resnext101_32x8d-8ba56ff5.pth")
    assert resolve("ImageNetPretrained/MSRA/R-50.pkl") == \
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    assert resolve("detectron2://ImageNetPretrained/FAIR/X-101-32x8d.pkl") == \
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/FAIR/X-101-32x8d.pkl"
    assert resolve("mask_rcnn_R_50_FPN_3x").endswith("137849600/model_final_f10217.pkl")
    assert is_published("detectron2://anything.pkl") and not is_published("resnet51")
    # files of the same name from different folders get different cache names; hashed names stay
    msra, tvd2 = (cache_name(resolve(f"detectron2://ImageNetPretrained/{d}/R-50.pkl"))
                  for d in ("MSRA", "torchvision"))
    assert msra != tvd2 and msra.startswith("R-50_u") and msra.endswith(".pkl")
    assert cache_name(resolve("resnet50")) == "resnet50-0676ba61.pth"
