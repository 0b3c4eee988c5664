"""COCO files as annotation tools export them, read through ``CocoDataset`` as their users meant them.

Each test builds a miniature export in the shape the tool's documentation and issue threads describe
(a few images drawn with PIL): Roboflow "COCO JSON", CVAT "COCO 1.0", Label Studio "COCO", and the
looser files of labelme2coco / makesense.ai / VIA / FiftyOne (no area, iscrowd or bbox, float ids, no
image size, Windows or foreign absolute paths).
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

H, W = 40, 60


def _photo(path, height=H, width=W, *, orientation=None):
    """A small drawn picture (a background and two shapes); ``orientation``: an EXIF orientation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (width, height), (40, 90, 160))
    draw = ImageDraw.Draw(img)
    draw.rectangle([4, 5, 20, 15], fill=(250, 200, 0))
    draw.ellipse([width // 2, height // 2, width - 3, height - 3], fill=(10, 220, 60))
    if orientation is None:
        img.save(path)
    else:
        exif = img.getexif()
        exif[0x0112] = orientation
        img.save(path, exif=exif)


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a (H, W) bool mask: column-major runs, starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.int64)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"counts": counts, "size": list(mask.shape)}


def _box_mask(x1, y1, x2, y2, height=H, width=W) -> torch.Tensor:
    m = torch.zeros(height, width, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    return m


def _roboflow_export(root):
    """Roboflow's "COCO JSON": a split folder holding its images and _annotations.coco.json; categories
    open with id 0 named after the dataset, without annotations, every class's supercategory."""
    split = root / "train"
    _photo(split / "a_jpg.rf.3f2c9a0b1d.jpg")
    _photo(split / "b_jpg.rf.77e1c0aa42.jpg")
    return _write(split / "_annotations.coco.json", {
        "info": {"year": "2024", "version": "1", "description": "Exported from roboflow.com"},
        "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
        "categories": [{"id": 0, "name": "fish", "supercategory": "none"},
                       {"id": 1, "name": "peix", "supercategory": "fish"},
                       {"id": 2, "name": "taca", "supercategory": "fish"}],
        "images": [{"id": 0, "license": 1, "file_name": "a_jpg.rf.3f2c9a0b1d.jpg", "height": H, "width": W,
                    "date_captured": "2024-03-01T10:00:00+00:00"},
                   {"id": 1, "license": 1, "file_name": "b_jpg.rf.77e1c0aa42.jpg", "height": H, "width": W,
                    "date_captured": "2024-03-01T10:00:00+00:00"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 1, "bbox": [4, 5, 16, 10], "area": 160,
             "segmentation": [[4, 5, 20, 5, 20, 15, 4, 15]], "iscrowd": 0},
            {"id": 1, "image_id": 0, "category_id": 2, "bbox": [30, 20, 20, 12], "area": 240,
             "segmentation": [], "iscrowd": 0},  # a box drawn in a detection project
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 20, 10, 10], "area": 100,
             "segmentation": [[30, 20, 40, 20, 40, 30, 30, 30]], "iscrowd": 0},
        ],
    })  # fmt: skip


def test_roboflow_export_drops_the_grouping_category_and_keeps_boxes(tmp_path):
    path = _roboflow_export(tmp_path)
    ds = CocoDataset(json_path=path, image_dir=path.parent)
    assert ds.class_names == ["__background__", "peix", "taca"]  # no class 'fish' that never trains
    assert ds.category_id_to_label == {1: 1, 2: 2} and ds.skipped == {} and len(ds) == 2
    assert any("'fish' (id 0)" in n and "supercategory" in n for n in ds.notes)
    assert ds.box_only_annotations == 1 and ds.instances_per_class() == [0, 1, 2]
    _, t = ds[0]
    assert t["labels"].tolist() == [1, 2] and t["has_mask"].tolist() == [True, False]
    assert t["boxes"].tolist() == [[4.0, 5.0, 20.0, 15.0], [30.0, 20.0, 50.0, 32.0]]
    assert torch.equal(t["masks"][1].bool(), _box_mask(30, 20, 50, 32))  # the box stands in
    gt = ds.to_coco_dict()
    assert [c["id"] for c in gt["categories"]] == [1, 2]
    assert gt["annotations"][1]["segmentation"] == [[30.0, 20.0, 50.0, 20.0, 50.0, 32.0, 30.0, 32.0]]


def test_roboflow_export_through_show_data_without_images_folder(tmp_path, capsys):
    path = _roboflow_export(tmp_path)
    rc = main(["show-data", "--json", str(path), "--output", str(tmp_path / "look")])
    text = capsys.readouterr()
    out = text.out + text.err
    assert rc == 0, out
    assert f"--images not given: images of {path} read from {path.parent}" in out
    assert "2 images (0 without instances), 3 instances, 0 crowd regions, 1 of them boxes without a mask" \
        in out
    summary = json.loads((tmp_path / "look" / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["notes"]) == 2 and "'fish' (id 0)" in summary["notes"][0]  # what train prints too
    assert summary["per_class"] == {"peix": {"instances": 1, "crowd": 0, "images": 1},
                                    "taca": {"instances": 2, "crowd": 0, "images": 2}}
    assert len(list((tmp_path / "look" / "overlays").glob("*.png"))) == 2


def test_cvat_coco_export(tmp_path):
    """CVAT's "COCO 1.0": rectangles with segmentation [], polygons, masks as uncompressed RLE (a crowd
    region from the is_crowd attribute, a brush mask), an ``attributes`` dict on every annotation."""
    _photo(tmp_path / "images" / "frame_000000.jpg")
    crowd = np.zeros((H, W), bool)
    crowd[28:36, 5:16] = True
    brush = np.zeros((H, W), bool)
    brush[2:9, 40:44] = brush[5:12, 44:50] = True
    attrs = {"occluded": False, "rotation": 0.0}
    path = _write(tmp_path / "annotations" / "instances_default.json", {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "",
                 "year": ""},
        "categories": [{"id": 1, "name": "car", "supercategory": ""},
                       {"id": 2, "name": "person", "supercategory": ""}],
        "images": [{"id": 1, "width": W, "height": H, "file_name": "frame_000000.jpg", "license": 0,
                    "flickr_url": "", "coco_url": "", "date_captured": 0}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [], "area": 160.0,
             "bbox": [4.0, 5.0, 16.0, 10.0], "iscrowd": 0, "attributes": attrs},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": [[30.0, 5.0, 50.0, 5.0, 40.0, 25.0]],
             "area": 200.0, "bbox": [30.0, 5.0, 20.0, 20.0], "iscrowd": 0, "attributes": attrs},
            {"id": 3, "image_id": 1, "category_id": 2, "segmentation": _uncompressed_rle(crowd),
             "area": 88.0, "bbox": [5.0, 28.0, 11.0, 8.0], "iscrowd": 1, "attributes": attrs},
            {"id": 4, "image_id": 1, "category_id": 1, "segmentation": _uncompressed_rle(brush),
             "area": 70.0, "bbox": [40.0, 2.0, 10.0, 10.0], "iscrowd": 0,
             "attributes": {**attrs, "color": "red"}},
        ],
    })  # fmt: skip
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "images")
    assert ds.class_names == ["__background__", "car", "person"] and ds.skipped == {}
    assert ds.instances_per_class() == [0, 2, 1]  # the crowd region is no instance
    _, t = ds[0]
    assert t["labels"].tolist() == [1, 2, 2, 1]
    assert t["iscrowd"].tolist() == [False, False, True, False]
    assert t["has_mask"].tolist() == [False, True, True, True]
    assert torch.equal(t["masks"][0].bool(), _box_mask(4, 5, 20, 15))
    assert torch.equal(t["masks"][2].bool(), torch.from_numpy(crowd))
    assert torch.equal(t["masks"][3].bool(), torch.from_numpy(brush))


def test_label_studio_coco_export(tmp_path):
    """Label Studio's "COCO": 0-based category ids, file_name 'images/<hash>-name.jpg' or the upload path
    '/data/upload/1/<hash>-name.jpg' (the user holds 'name.jpg'), rectangles with segmentation []."""
    _photo(tmp_path / "export" / "images" / "1a2b3c4d-cat.jpg")
    _photo(tmp_path / "export" / "images" / "dog.jpg")
    path = _write(tmp_path / "export" / "result.json", {
        "images": [{"width": W, "height": H, "id": 0, "file_name": "images/1a2b3c4d-cat.jpg"},
                   {"width": W, "height": H, "id": 1, "file_name": "/data/upload/1/5e6f7a8b-dog.jpg"}],
        "categories": [{"id": 0, "name": "Cat"}, {"id": 1, "name": "Dog"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 0, "segmentation": [], "bbox": [4, 5, 16, 10],
             "ignore": 0, "iscrowd": 0, "area": 160},
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[30, 20, 57, 20, 57, 37, 30, 37]],
             "bbox": [30, 20, 27, 17], "ignore": 0, "iscrowd": 0, "area": 459},
        ],
        "info": {"year": 2024, "version": "1.0", "description": "", "contributor": "Label Studio"},
    })  # fmt: skip
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "export" / "images")
    assert ds.class_names == ["__background__", "Cat", "Dog"] and ds.category_id_to_label == {0: 1, 1: 2}
    assert ds.skipped == {} and len(ds) == 2
    assert [ds.image_info(i)["file_name"] for i in range(2)] == ["1a2b3c4d-cat.jpg", "dog.jpg"]
    assert any(n.endswith("found by the end of their path in " + str(tmp_path / "export" / "images")
                          + " (e.g. 'images/1a2b3c4d-cat.jpg' -> '1a2b3c4d-cat.jpg')") and ": 2 image" in n
               for n in ds.notes)
    _, t0 = ds[0]
    _, t1 = ds[1]
    assert t0["labels"].tolist() == [1] and t0["has_mask"].tolist() == [False]
    assert t1["labels"].tolist() == [2] and t1["has_mask"].tolist() == [True]
    assert int(t1["masks"][0].sum()) > 0.9 * 27 * 17


def test_small_tools_coco_files(tmp_path):
    """labelme2coco / makesense.ai / VIA / FiftyOne files: no area, iscrowd or bbox, float ids, no image
    size (a photo turned by EXIF: its size as read), Windows and foreign absolute paths."""
    images = tmp_path / "imgs"
    _photo(images / "p.png")
    _photo(images / "q.jpg", orientation=6)  # stored 40x60 (HxW), read as 60x40
    leaf = np.zeros((60, 40), bool)
    leaf[10:20, 5:25] = True
    path = _write(tmp_path / "coco.json", {
        "images": [{"id": 1.0, "file_name": "C:\\Users\\ann\\Pictures\\imgs\\p.png", "width": 60.0,
                    "height": 40.0},
                   {"id": 2, "file_name": "/home/someone/project/imgs/q.jpg"},
                   {"id": 3, "file_name": "/home/someone/project/imgs/gone.jpg", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "leaf"}, {"id": 2.0, "name": "bug"}],
        "annotations": [
            {"id": 1.0, "image_id": 1.0, "category_id": 1.0, "segmentation": [[4, 5, 20, 5, 20, 15, 4, 15]]},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": _uncompressed_rle(leaf)},
            {"id": 3, "image_id": 2, "category_id": 2.0, "bbox": [2, 30, 10, 10]},  # a detection, no mask
        ],
    })  # fmt: skip
    with pytest.warns(UserWarning, match="skipped 1 missing_image_file"):
        ds = CocoDataset(json_path=path, image_dir=images)
    assert ds.skipped == {"missing_image_file": 1} and len(ds) == 2
    assert (f"image id 3: file /home/someone/project/imgs/gone.jpg not found (nor in {images} by the end of "
            f"its path)") in ds.problems[0]
    assert [(ds.image_info(i)["height"], ds.image_info(i)["width"]) for i in range(2)] == [(40, 60), (60, 40)]
    notes = "\n".join(ds.notes)
    assert "2 image file names not found as written were found by the end of their path" in notes
    assert "1 images without height and width were measured from their files" in notes
    assert "2 annotations without a bbox got the box of their segmentation" in notes
    image, t = ds[0]
    assert image.shape == (3, 40, 60) and t["image_id"] == 1
    assert t["boxes"].tolist() == [[4.0, 5.0, 20.0, 15.0]] and t["iscrowd"].tolist() == [False]
    image, t = ds[1]
    assert image.shape == (3, 60, 40) and t["labels"].tolist() == [1, 2]
    assert t["boxes"].tolist() == [[5.0, 10.0, 25.0, 20.0], [2.0, 30.0, 12.0, 40.0]]
    assert t["has_mask"].tolist() == [True, False]
    assert torch.equal(t["masks"][0].bool(), torch.from_numpy(leaf))
    assert ds.to_coco_dict()["annotations"][0]["bbox"] == [4.0, 5.0, 16.0, 10.0]


def test_box_only_annotations_train_boxes_not_masks(tmp_path):
    """A box-only gt (has_mask False) gives the same box and class losses and no mask loss."""
    from tiny_model import TINY

    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    torch.manual_seed(0)
    few = {"model.rpn.pre_nms_topk_train": 100, "model.rpn.post_nms_topk_train": 50,
           "model.rpn.batch_size_per_image": 32, "model.roi_heads.batch_size_per_image": 32}
    cfg = apply_overrides(PRESETS["r18_fpn"](), {**TINY, **few, "model.num_classes": 3})
    model = build_model(cfg).train()
    image = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(1))
    masks = torch.stack([_box_mask(4, 6, 40, 50, 64, 96), _box_mask(50, 10, 90, 40, 64, 96)]).to(torch.uint8)
    target = {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [50.0, 10.0, 90.0, 40.0]]),
              "labels": torch.tensor([1, 2]), "masks": masks, "iscrowd": torch.tensor([False, False])}

    def losses(extra):
        with torch.no_grad():
            return model([image], [{**target, **extra}], generator=torch.Generator().manual_seed(0))

    with_masks = losses({})
    boxes_only = losses({"has_mask": torch.tensor([False, False])})
    assert float(with_masks["loss_mask"]) > 0 and float(boxes_only["loss_mask"]) == 0.0
    for key in ("loss_cls", "loss_box", "loss_rpn_cls", "loss_rpn_box"):
        assert torch.equal(with_masks[key], boxes_only[key]), key


def test_rectangles_in_a_ground_truth_are_scored_as_their_boxes(tmp_path):
    """eval --results against a CVAT / Label Studio file: rectangles (segmentation []) refused the whole
    ground truth ('no polygon with at least 3 points'); they are scored as their box in bbox AP, and are
    regions segm AP ignores (their mask is unknown): with no other object, segm AP is not reported."""
    from maskrcnn.data.mask_codec import mask_to_rle
    from maskrcnn.engine.evaluator import evaluate_results_file

    gt = _write(tmp_path / "gt.json", {
        "images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [],
                         "bbox": [4, 5, 16, 10], "iscrowd": 0, "attributes": {"occluded": False}}],
    })  # fmt: skip
    rle = mask_to_rle(_box_mask(4, 5, 20, 15))
    rle["counts"] = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
    results = _write(tmp_path / "res.json", [{"image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10],
                                              "score": 0.9, "segmentation": rle}])
    with pytest.warns(UserWarning, match="segm AP not reported: none of the 1 ground-truth objects has a"):
        metrics = evaluate_results_file(gt, results)
    assert metrics["bbox"]["AP"] == pytest.approx(100.0) and np.isnan(metrics["segm"]["AP"])


def test_train_takes_the_json_folder_for_the_images(tmp_path, monkeypatch):
    """Roboflow's layout: `train --train-json train/_annotations.coco.json --val-json valid/...` without
    --train-images / --val-images (they were required) reads the images beside each JSON."""
    import maskrcnn.engine.training as training

    seen = {}

    class _Trainer:
        def train(self):
            return {"interrupted": False, "iteration": 0}

    def build_training(cfg, **kwargs):
        seen.update(kwargs)
        return _Trainer(), cfg

    monkeypatch.setattr(training, "build_training", build_training)
    train_json, val_json = tmp_path / "train" / "_annotations.coco.json", tmp_path / "valid" / "x.json"
    rc = main(["train", "--config", "demo", "--device", "cpu", "--train-json", str(train_json),
               "--val-json", str(val_json), "--output", str(tmp_path / "run")])
    assert rc == 0
    assert (seen["train_images"], seen["val_images"]) == (str(tmp_path / "train"), str(tmp_path / "valid"))


def test_default_image_folder_follows_the_export_layout(tmp_path):
    """Without --images: Roboflow's images lie beside the JSON, FiftyOne's in data/, Label Studio's in
    images/, CVAT's in ../images (the JSON in annotations/), the demo's and COCO's in a folder named
    after the split; a folder without images is the JSON's."""
    from maskrcnn.data.coco import default_image_dir

    roboflow = _roboflow_export(tmp_path / "rf")
    assert default_image_dir(roboflow) == roboflow.parent
    _photo(tmp_path / "fo" / "data" / "x.jpg")
    assert default_image_dir(tmp_path / "fo" / "labels.json") == tmp_path / "fo" / "data"
    _photo(tmp_path / "ls" / "images" / "1a2b3c4d-x.jpg")
    assert default_image_dir(tmp_path / "ls" / "result.json") == tmp_path / "ls" / "images"
    _photo(tmp_path / "cvat" / "images" / "x.jpg")
    (tmp_path / "cvat" / "annotations").mkdir()
    cvat = tmp_path / "cvat" / "annotations" / "instances_default.json"
    assert default_image_dir(cvat) == tmp_path / "cvat" / "images"
    assert default_image_dir(tmp_path / "none" / "a.json") == tmp_path / "none"
    # a folder named after the split: the demo's / split-data's train.json beside train/, COCO's own
    # annotations/instances_val2017.json below val2017/ (the demo's layout was read from data/ and lost)
    _photo(tmp_path / "demo" / "train" / "x.png")
    assert default_image_dir(tmp_path / "demo" / "train.json") == tmp_path / "demo" / "train"
    _photo(tmp_path / "coco" / "val2017" / "x.jpg")
    (tmp_path / "coco" / "annotations").mkdir()
    for name in ("instances_val2017.json", "person_keypoints_val2017.json"):
        assert default_image_dir(tmp_path / "coco" / "annotations" / name) == tmp_path / "coco" / "val2017"


def test_image_dir_or_default_says_which_folder_it_chose(tmp_path, capsys):
    """train, eval and show-data share one "find the image folder and say so": a folder given is kept
    quietly, one left out is found from the export's layout with a line naming it."""
    from maskrcnn.commands.data_report import image_dir_or_default

    path = _roboflow_export(tmp_path)
    assert image_dir_or_default(tmp_path / "mine", path, "--images") == str(tmp_path / "mine")
    assert capsys.readouterr().out == ""
    assert image_dir_or_default(None, path, "--val-images") == str(path.parent)
    assert capsys.readouterr().out == f"--val-images not given: images of {path} read from {path.parent}\n"


def test_a_stray_image_beside_the_json_does_not_hide_the_image_folder(tmp_path, capsys):
    """train.json (file_name "train_00000.png") with its images in train/ and an unrelated logo.png
    beside it: the JSON's folder was chosen for holding an image and every image went missing. The
    candidate holding most of a sample of the file_names is taken, and the line says why; when none
    holds any, the layout's choice and the plain line."""
    from maskrcnn.commands.data_report import image_dir_or_default

    Image.new("RGB", (4, 4)).save(tmp_path / "logo.png")
    names = [f"train_{i:05d}.png" for i in range(30)]
    for name in names:
        (tmp_path / "train").mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "train" / name)
    _write(tmp_path / "train.json", {
        "images": [{"id": i + 1, "file_name": n, "height": 4, "width": 4} for i, n in enumerate(names)],
        "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    path = tmp_path / "train.json"
    assert image_dir_or_default(None, path, "--images") == str(tmp_path / "train")
    assert capsys.readouterr().out == (f"--images not given: images of {path} read from {tmp_path / 'train'}"
                                       f" (25 of 25 sampled file_names found there, 0 in {tmp_path})\n")
    for name in names:  # no candidate holds any: the JSON's folder (it holds an image), the plain line
        (tmp_path / "train" / name).unlink()
    assert image_dir_or_default(None, path, "--images") == str(tmp_path)
    assert capsys.readouterr().out == f"--images not given: images of {path} read from {tmp_path}\n"


def test_is_empty_segmentation_is_the_dataset_and_evaluator_rule():
    """A box without a segmentation: null, [] or {} (absent reads as None); anything else, even a
    malformed segmentation, is one to check."""
    from maskrcnn.data.mask_codec import is_empty_segmentation

    assert all(is_empty_segmentation(s) for s in (None, [], {}))
    assert not any(is_empty_segmentation(s) for s in ([[1, 2, 3, 4, 5, 6]], {"size": [2, 2]}, "", 0, ()))


def test_a_box_of_numbers_too_large_for_a_float_is_skipped_by_dataset_and_evaluator(tmp_path):
    """JSON allows integers of hundreds of digits: the finite-number check (one is_finite_number for the
    dataset and the evaluator) raised OverflowError on them, a traceback naming no file or field."""
    from maskrcnn.data.json_values import is_finite_number
    from maskrcnn.engine.evaluator import load_ground_truth

    assert [is_finite_number(v) for v in (3, 2.5, True, float("nan"), float("inf"), "1", 10**400)] == \
        [True, True, False, False, False, False, False]
    _photo(tmp_path / "a.jpg")
    path = _write(tmp_path / "a.json", {
        "images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10**400, 5, 16, 10]},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10]}],
    })
    with pytest.warns(UserWarning, match="bad_bbox"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path)
    assert ds.skipped == {"bad_bbox": 1} and len(ds) == 1
    with pytest.raises(ValueError, match=r"a.json.*bbox .* is not \[x, y, w, h\] of 4 finite numbers"):
        load_ground_truth(path)


def test_iscrowd_that_is_not_0_or_1_skips_the_annotation_naming_it(tmp_path):
    """``"iscrowd": "0"`` (a string, truthy) made the object a crowd region silently; anything but 0/1
    (true/false, null or absent) is refused, naming the field and value, as the evaluation refuses it."""
    _photo(tmp_path / "a.png")
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10], "iscrowd": crowd}
            for i, crowd in enumerate([0, 1, True, None, "0", "1", 2, 0.5])]
    path = _write(tmp_path / "d.json", {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
                                        "categories": [{"id": 1, "name": "x"}], "annotations": anns})
    with pytest.warns(UserWarning, match="4 bad_iscrowd"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path)
    _, target = ds[0]
    assert target["iscrowd"].tolist() == [False, True, True, False]
    assert ds.skipped == {"bad_iscrowd": 4}
    bad = [m for m in ds.problems if "iscrowd" in m]
    assert "annotation id 5 (image id 1) has iscrowd '0' (a string), not 0 or 1" in bad[0]
    assert "iscrowd '2', not 0 or 1" in bad[2]


def test_a_size_that_is_a_string_is_named_as_one(tmp_path):
    _photo(tmp_path / "a.png")
    path = _write(tmp_path / "d.json", {
        "images": [{"id": 3, "file_name": "a.png", "height": H, "width": str(W)}],
        "categories": [{"id": 1, "name": "x"}], "annotations": []})
    with pytest.warns(UserWarning, match="1 bad_image"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path)
    assert len(ds) == 0
    assert ds.problems[0].endswith(f"image id 3: width '{W}' is a string, not a number; skipped")


def test_an_empty_file_name_is_named_as_empty(tmp_path):
    _photo(tmp_path / "a.png")
    path = _write(tmp_path / "d.json", {
        "images": [{"id": 4, "file_name": "", "height": H, "width": W},
                   {"id": 5, "file_name": 7, "height": H, "width": W}],
        "categories": [{"id": 1, "name": "x"}], "annotations": []})
    for image_dir in (tmp_path, None):
        with pytest.warns(UserWarning, match="2 bad_image"):
            ds = CocoDataset(json_path=path, image_dir=image_dir)
        assert ds.problems[0].endswith("image id 4: file_name is empty; skipped")
        assert ds.problems[1].endswith("image id 5: file_name '7' is no string; skipped")


def test_two_images_resolving_by_path_tail_to_one_file_keep_the_first(tmp_path):
    """Windows paths of two folders ending in the same name both matched the one x.png by the end of
    their path: the second image's boxes trained on the first one's pixels."""
    _photo(tmp_path / "images" / "x.png")
    _photo(tmp_path / "images" / "y.png")
    images = [{"id": 1, "file_name": "C:\\a\\x.png", "height": H, "width": W},
              {"id": 2, "file_name": "D:\\b\\x.png", "height": H, "width": W},
              {"id": 3, "file_name": "y.png", "height": H, "width": W},
              {"id": 4, "file_name": "/elsewhere/y.png", "height": H, "width": W}]
    path = _write(tmp_path / "d.json", {
        "images": images, "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 16, 10]}
                        for i in (1, 2, 3, 4)]})
    with pytest.warns(UserWarning, match="2 ambiguous_file_name"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path / "images")
    assert ds.ids == [1, 3]
    assert ds._images[1]["file_name"] == "x.png"
    assert ds.problems[0].endswith(
        "image id 2: file_name 'D:\\\\b\\\\x.png' and image id 1's 'C:\\\\a\\\\x.png' both resolve to x.png "
        "(by the end of the path); the first keeps it; skipped")
    assert "image id 4: file_name '/elsewhere/y.png' and image id 3's 'y.png'" in ds.problems[1]


def test_images_named_by_coco_urls_ending_alike_keep_the_first(tmp_path):
    """p_datatools F9: coco_url .../camA/f0.png and .../camB/f0.png both looked up as f0.png: the second
    image's annotations were drawn and trained on the first one's pixels. Now the rule of file_name
    paths found by their end applies: the first keeps the file, the other is skipped naming both."""
    _photo(tmp_path / "flat" / "f0.png")
    images = [{"id": 1, "coco_url": "http://h/camA/f0.png", "height": H, "width": W},
              {"id": 2, "coco_url": "http://h/camB/f0.png", "height": H, "width": W}]
    path = _write(tmp_path / "d.json", {
        "images": images, "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 16, 10]} for i in (1, 2)]})
    for image_dir in (tmp_path / "flat", None):  # split-data reads without the folder
        with pytest.warns(UserWarning, match="1 ambiguous_file_name"):
            ds = CocoDataset(json_path=path, image_dir=image_dir)
        assert ds.ids == [1]
        assert ds.problems[0].endswith(
            "image id 2: coco_url 'http://h/camB/f0.png' and image id 1's 'http://h/camA/f0.png' both "
            "resolve to f0.png (by the end of the path); the first keeps it; skipped")


def test_one_file_under_two_image_ids_is_read_for_both_and_said_once(tmp_path, caplog):
    """p_datatools F10: the same file_name under two ids was read twice without a word (each record's
    objects background in the other). Both are still read (eval scores such a file as written), and a
    note names the file and both ids, once for the file; no file is opened or resolved for it."""
    _photo(tmp_path / "images" / "a" / "x.png")
    images = [{"id": 1, "file_name": "a/x.png", "height": H, "width": W},
              {"id": 2, "file_name": "a\\x.png", "height": H, "width": W},
              {"id": 3, "file_name": "a/x.png", "height": H, "width": W}]
    path = _write(tmp_path / "d.json", {
        "images": images, "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 16, 10]}
                        for i in (1, 2, 3)]})
    for image_dir in (None, tmp_path / "images"):  # split-data reads without the folder
        ds = CocoDataset(json_path=path, image_dir=image_dir)
        assert ds.ids == [1, 2, 3] and ds.skipped == {} and ds.shared_files == {"a/x.png": [1, 2, 3]}
    assert [n for n in ds.notes if "more than one image record" in n] == [
        f"{path}: 1 image file(s) named by more than one image record (e.g. a/x.png: image ids 1, 2, 3): "
        "each record is read with its own annotations, so the picture counts once per record and each "
        "record's objects are background in the others; list the file once with all its annotations "
        "(split-data keeps such records in one part)"]


@pytest.mark.parametrize("area", [float("nan"), -3, "12"])
def test_an_area_the_evaluation_refuses_is_skipped_and_counted(tmp_path, area):
    """p_hostile (not filed): "area": NaN was kept by show-data and training while eval refused the same
    file. Now the loader skips it as bad_area, naming the annotation (a missing area, or null as VIA 3
    writes it, is the mask's: coco_exports)."""
    _photo(tmp_path / "x.png")
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10], "area": area},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10]}]
    path = _write(tmp_path / "d.json", {"images": [{"id": 1, "file_name": "x.png", "height": H, "width": W}],
                                        "categories": [{"id": 1, "name": "x"}], "annotations": anns})
    with pytest.warns(UserWarning, match="1 bad_area"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path)
    assert ds.skipped == {"bad_area": 1} and [a["id"] for a in ds.to_coco_dict()["annotations"]] == [2]
    # quoted as written (rev_d1 7): "area": "12" read as area 12, a number, in the message
    assert ds.problems[0].endswith(f"annotation id 1 (image id 1) area {area!r} is not a finite number >= 0; "
                                   "skipped")


def test_one_file_under_two_ids_folds_for_training_and_lists_only_accepted_records(tmp_path):
    """rev_d1 5: both records of one file were kept for training and show-data, each one's objects
    background in the other; and a twin then skipped (height 0) was still listed in shared_files. With
    fold_shared_files (training, show-data) the later records' annotations are the first's: one picture,
    the union of its objects, said in one warning naming the ids; without it (eval) as written."""
    _photo(tmp_path / "a.png")
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W},
              {"id": 2, "file_name": "a.png", "height": H, "width": W},
              {"id": 3, "file_name": "a.png", "height": 0, "width": W}]
    anns = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10]},
            {"id": 20, "image_id": 2, "category_id": 1, "bbox": [30, 20, 10, 10]}]
    path = _write(tmp_path / "d.json", {"images": images, "categories": [{"id": 1, "name": "x"}],
                                        "annotations": anns})
    with pytest.warns(UserWarning, match=r"a\.png: image ids 1, 2\): each file read once, as its first "
                                         r"record, with the annotations of all its records"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path, fold_shared_files=True)
    assert ds.ids == [1] and ds.shared_files == {"a.png": [1, 2]}
    assert [(a["id"], a["image_id"]) for a in ds.to_coco_dict()["annotations"]] == [(10, 1), (20, 1)]
    assert len(ds[0][1]["boxes"]) == 2
    ds = CocoDataset(json_path=path, image_dir=tmp_path)  # eval: as written
    assert ds.ids == [1, 2] and ds.shared_files == {"a.png": [1, 2]}
    assert [(a["id"], a["image_id"]) for a in ds.to_coco_dict()["annotations"]] == [(10, 1), (20, 2)]


def test_training_reads_one_file_under_two_ids_as_one_picture_with_all_its_objects(tmp_path, monkeypatch):
    """The training set is built with fold_shared_files: the picture is trained once, with the objects of
    both records (read as written, each record's objects would be background in the other)."""
    from maskrcnn.config import load_config
    from maskrcnn.engine import training

    _photo(tmp_path / "a.png")
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W},
              {"id": 2, "file_name": "a.png", "height": H, "width": W}]
    anns = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10]},
            {"id": 20, "image_id": 2, "category_id": 1, "bbox": [30, 20, 10, 10]}]
    path = _write(tmp_path / "d.json", {"images": images, "categories": [{"id": 1, "name": "x"}],
                                        "annotations": anns})
    built = []

    class _Stop(Exception):
        pass

    def dataset(**kwargs):  # the training set as build_training makes it, then stop
        built.append(CocoDataset(**kwargs))
        raise _Stop

    monkeypatch.setattr("maskrcnn.data.coco.CocoDataset", dataset)  # build_training imports it when run
    cfg = load_config("demo", {"model.backbone": "resnet18", "data.num_workers": 0})
    with pytest.warns(UserWarning, match=r"image ids 1, 2"), pytest.raises(_Stop):
        training.build_training(cfg, train_json=path, train_images=tmp_path, output=tmp_path / "run")
    (train_set,) = built
    assert train_set.ids == [1] and len(train_set[0][1]["boxes"]) == 2


def test_a_folded_records_id_given_again_is_a_duplicate_id(tmp_path):
    """A record folded into its file's first record still takes its id: a later record with that id (another
    file) makes the id name two files, so both of its records and its annotations are skipped and counted
    (which file annotation 20 was drawn on cannot be told), not given to x.png."""
    _photo(tmp_path / "x.png")
    _photo(tmp_path / "y.png")
    images = [{"id": 1, "file_name": "x.png", "height": H, "width": W},
              {"id": 2, "file_name": "x.png", "height": H, "width": W},
              {"id": 2, "file_name": "y.png", "height": H, "width": W}]
    anns = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10]},
            {"id": 20, "image_id": 2, "category_id": 1, "bbox": [30, 20, 10, 10]}]
    path = _write(tmp_path / "d.json", {"images": images, "categories": [{"id": 1, "name": "x"}],
                                        "annotations": anns})
    with pytest.warns(UserWarning):
        ds = CocoDataset(json_path=path, image_dir=tmp_path, fold_shared_files=True)
    assert ds.ids == [1] and ds.skipped.get("duplicate_image_id") == 2
    assert ds.skipped.get("annotation_of_skipped_image") == 1
    assert ds[0][1]["boxes"].tolist() == [[4.0, 5.0, 20.0, 15.0]]  # x.png's own object alone
