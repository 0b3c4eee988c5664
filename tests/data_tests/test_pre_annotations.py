"""Pre-annotation writers (data/pre_annotations): each format written from drawn masks and read back by
our own importers (data/formats), compared with what was drawn: exactly for the RLE and mask formats
(COCO, CVAT, Label Studio), IoU >= 0.95 for LabelMe's traced polygons; class names kept; an image
without instances listed with none. Also the tracer and the two run-length encoders on their own."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.formats.common import CocoBuilder, Report
from maskrcnn.data.formats.cvat import decode_cvat_rle, read_cvat
from maskrcnn.data.formats.labelme import read_labelme
from maskrcnn.data.formats.labelstudio import read_labelstudio
from maskrcnn.data.formats.labelstudio_rle import decode_brush_mask, encode_brush_mask
from maskrcnn.data.mask_codec import annotation_to_mask
from maskrcnn.data.pre_annotations.contours import bridge_holes, mask_to_components, ring_area, simplify_ring
from maskrcnn.data.pre_annotations.instances import ImageRecord, categories_of, instances_from_detections
from maskrcnn.data.pre_annotations.to_coco import coco_instances
from maskrcnn.data.pre_annotations.to_cvat import cvat_xml, encode_cvat_rle
from maskrcnn.data.pre_annotations.to_labelme import labelme_file
from maskrcnn.data.pre_annotations.to_labelstudio import labelstudio_config, labelstudio_tasks
from maskrcnn.data.pre_annotations.to_yolo import yolo_data_yaml, yolo_labels

H, W = 72, 96
CLASS_NAMES = ["__background__", "cat", "dog"]
CATEGORIES = categories_of(CLASS_NAMES, {1: 5, 2: 9})
YY, XX = np.mgrid[:H, :W]


def _shapes() -> dict:
    """name -> (label, (H, W) bool mask): the drawn instances."""
    rect = np.zeros((H, W), bool)
    rect[6:26, 8:40] = True
    disc = (XX - 70) ** 2 + (YY - 20) ** 2 <= 14**2
    ell = np.zeros((H, W), bool)
    ell[36:68, 4:14] = True
    ell[58:68, 4:44] = True
    r2 = (XX - 64) ** 2 + (YY - 48) ** 2
    ring = (r2 <= 22**2) & (r2 > 11**2)
    two = np.zeros((H, W), bool)
    two[4:22, 4:22] = True
    two[40:60, 10:34] = True
    return {"rectangle": (1, rect), "disc": (2, disc), "L": (1, ell), "ring": (2, ring),
            "two parts": (1, two)}


# image -> the instances drawn on it (none on the third: the empty case)
LAYOUT = {"a.png": ["rectangle", "disc", "L"], "sub/b.png": ["ring", "two parts"], "c.png": []}


@pytest.fixture()
def drawn(tmp_path):
    """(images root, ImageRecords, Instances per image, drawn (label name, mask) per image)."""
    shapes = _shapes()
    root = tmp_path / "images"
    images, instances, expected = [], [], []
    for i, (name, drawn_names) in enumerate(LAYOUT.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 100, np.uint8)).save(root / name)
        labels = [shapes[n][0] for n in drawn_names]
        masks = np.stack([shapes[n][1] for n in drawn_names]) if drawn_names else np.zeros((0, H, W), bool)
        det = {"boxes": torch.zeros(len(labels), 4), "scores": torch.linspace(0.9, 0.5, len(labels)),
               "labels": torch.tensor(labels, dtype=torch.int64), "masks": torch.from_numpy(masks)}
        images.append(ImageRecord(i + 1, name, H, W))
        instances.append(instances_from_detections(det, CATEGORIES))
        expected.append([(CLASS_NAMES[lab], m) for lab, m in zip(labels, masks)])
    return root, images, instances, expected


def _read_back(coco: dict, root) -> dict:
    """file_name -> [(category name, (H, W) bool mask)] of a COCO dict written by a converter."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    out = {name: [] for name in files.values()}
    for a in coco["annotations"]:
        mask = annotation_to_mask(a["segmentation"], H, W).numpy() > 0
        out[files[a["image_id"]]].append((names[a["category_id"]], mask))
    return out


def _ious_by_shape(got: dict, images, expected) -> dict:
    """Shape name (LAYOUT) -> IoU of the mask read back with the one drawn, after checking that each
    image's classes came back in order."""
    ious = {}
    for image, want in zip(images, expected):
        back = got[image.file_name]
        assert [n for n, _ in back] == [n for n, _ in want]
        for name, (_, m_back), (_, m_drawn) in zip(LAYOUT[image.file_name], back, want):
            ious[name] = _iou(m_back, m_drawn)
    return ious


def _iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_coco_round_trip_exact_and_loads_as_a_training_set(drawn, tmp_path):
    root, images, instances, expected = drawn
    data = coco_instances(images, instances, CATEGORIES)
    assert data["categories"] == [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    assert [a["score"] for a in data["annotations"][:3]] == [0.9, 0.7, 0.5]
    assert all(a["iscrowd"] == 0 for a in data["annotations"])
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    dataset = CocoDataset(json_path=path, image_dir=root)  # what train --train-json reads
    assert len(dataset) == 3 and dataset.skipped == {} and dataset.class_names == CLASS_NAMES
    for i, want in enumerate(expected):
        _, target = dataset[i]
        assert target["labels"].tolist() == [CLASS_NAMES.index(n) for n, _ in want]
        for got, (_, mask) in zip(target["masks"], want):
            assert np.array_equal(got.numpy() > 0, mask)
        for box, (_, mask) in zip(target["boxes"].tolist(), want):  # the mask's own tight box
            ys, xs = np.nonzero(mask)
            assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_labelme_round_trip_polygons_iou(drawn, tmp_path):
    root, images, instances, expected = drawn
    out = tmp_path / "labelme"
    files = []
    for image, found in zip(images, instances):
        target = out / image.file_name.replace(".png", ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        rel = "../" * image.file_name.count("/") + "../images/" + image.file_name
        data = labelme_file(image, found, image_path=rel)
        assert data["imageData"] is None and (data["imageHeight"], data["imageWidth"]) == (H, W)
        assert all(s["shape_type"] == "polygon" for s in data["shapes"])
        target.write_text(json.dumps(data))
        files.append(target)
    two_parts = json.loads((out / "sub/b.json").read_text())["shapes"]
    assert [s["group_id"] for s in two_parts] == [1, 2, 2]  # the ring; the two parts: one instance
    builder, report = CocoBuilder(root=root), Report()
    read_labelme(files, builder=builder, report=report, embedded_dir=tmp_path / "unused")
    assert sum(report.skipped.values()) == 0
    got = _read_back(builder.to_dict(), root)
    ious = _ious_by_shape(got, images, expected)
    # measured at the default 0.5 px tolerance: rectangle, L and two parts 1.0, disc 0.994, ring 0.991
    # (at 1 px: disc 0.987, ring 0.974)
    assert min(ious.values()) >= 0.95, ious
    assert ious["rectangle"] == ious["L"] == ious["two parts"] == 1.0  # straight outlines stay exact
    assert got["c.png"] == []


def test_yolo_round_trip_through_the_dataset_yaml(drawn, tmp_path):
    from maskrcnn.data.formats.yolo import convert_yolo

    root, images, instances, expected = drawn
    for image, found in zip(images, instances):  # labels/ beside images/, where Ultralytics looks
        target = tmp_path / "labels" / image.file_name.replace(".png", ".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yolo_labels(image, found, tolerance=0.5))
    (tmp_path / "data.yaml").write_text(yolo_data_yaml(str(root), CATEGORIES))
    assert (tmp_path / "labels" / "c.txt").read_text() == ""  # no instances: an empty file
    lines = (tmp_path / "labels" / "sub" / "b.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "0"]  # dog, cat: one line per instance
    values = [float(v) for line in lines for v in line.split()[1:]]
    assert all(0 <= v <= 1 and len(f"{v:.6f}") == 8 for v in values)
    report = Report()
    builder = convert_yolo(tmp_path / "data.yaml", split="train", classes=None, boxes_as_masks=False,
                           report=report)
    assert sum(report.skipped.values()) == 0
    got = _read_back(builder.to_dict(), root)
    ious = _ious_by_shape(got, images, expected)
    # measured at 0.5 px: rectangle, L and two parts 1.0, disc 0.994, ring 0.991
    assert min(ious.values()) >= 0.95, ious
    assert ious["rectangle"] == ious["two parts"] == 1.0  # the two parts joined: one instance, exact
    assert got["c.png"] == []


def test_yolo_box_lines():
    image = ImageRecord(1, "a.png", 50, 100)
    det = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 45.0]]), "scores": torch.tensor([0.8]),
           "labels": torch.tensor([2])}
    assert yolo_labels(image, instances_from_detections(det, CATEGORIES), tolerance=0.5) == \
        "1 0.200000 0.500000 0.200000 0.800000\n"  # class cx cy w h, fractions


def test_cvat_round_trip_exact(drawn):
    root, images, instances, expected = drawn
    text = cvat_xml(images, instances, CATEGORIES)
    tree = ET.fromstring(text)
    assert [el.findtext("name") for el in tree.iter("label")] == ["cat", "dog"]
    assert [el.get("name") for el in tree.iter("image")] == list(LAYOUT)
    assert len(tree.findall("image")[2]) == 0  # the empty image: listed, no shape
    xml_path = root / "annotations.xml"
    xml_path.write_text(text, encoding="utf-8")
    builder, report = CocoBuilder(root=root), Report()
    read_cvat(xml_path, builder=builder, report=report)
    assert sum(report.skipped.values()) == 0 and report.notes == {}
    got = _read_back(builder.to_dict(), root)
    for image, want in zip(images, expected):
        back = got[image.file_name]
        assert [n for n, _ in back] == [n for n, _ in want]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(back, want))


def test_labelstudio_round_trip_exact(drawn, tmp_path):
    root, images, instances, expected = drawn
    tasks = labelstudio_tasks(images, instances, url_prefix="/data/local-files/?d=", model_version="m.pth")
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=sub/b.png"
    prediction = tasks[0]["predictions"][0]
    assert prediction["model_version"] == "m.pth" and prediction["score"] == pytest.approx(0.7)
    assert tasks[2]["predictions"][0]["result"] == [] and tasks[2]["predictions"][0]["score"] == 0.0
    config = labelstudio_config(CATEGORIES)
    assert '<BrushLabels name="tag" toName="image">' in config and '<Label value="dog"/>' in config
    # the annotator accepts the predictions: Label Studio copies them into an annotation
    accepted = [{"id": i, "data": t["data"], "annotations": [{"result": t["predictions"][0]["result"]}]}
                for i, t in enumerate(tasks)]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(accepted))
    builder, report = CocoBuilder(root=root), Report()
    read_labelstudio([path], builder=builder, report=report, images=root)
    assert sum(report.skipped.values()) == 0
    got = _read_back(builder.to_dict(), root)
    for image, want in zip(images, expected):
        back = got[image.file_name]
        assert [n for n, _ in back] == [n for n, _ in want]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(back, want))
    # the tasks file itself (predictions only, nothing annotated yet): its predictions are read back
    path.write_text(json.dumps(tasks))
    builder, report = CocoBuilder(root=root), Report()
    read_labelstudio([path], builder=builder, report=report, images=root)
    assert sum(report.skipped.values()) == 0
    assert report.notes["tasks read from their predictions (no annotation in the file)"] == len(tasks)
    got = _read_back(builder.to_dict(), root)
    for image, want in zip(images, expected):
        back = got[image.file_name]
        assert [n for n, _ in back] == [n for n, _ in want]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(back, want))


def test_instances_leave_out_empty_masks_and_refuse_unknown_labels():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 2:4, 2:4] = True
    det = {"boxes": torch.zeros(2, 4), "scores": torch.tensor([0.8, 0.6]), "labels": torch.tensor([2, 1]),
           "masks": masks}
    found = instances_from_detections(det, CATEGORIES)
    assert [(i.category.name, i.category.id, i.score) for i in found] == [("dog", 9, pytest.approx(0.8))]
    with pytest.raises(ValueError, match="label 3 is not one of the model's classes"):
        instances_from_detections({**det, "labels": torch.tensor([3, 1])}, CATEGORIES)


def _fill(rings) -> np.ndarray:
    """The union of rings, each filled as pycocotools fills a polygon (even-odd)."""
    return annotation_to_mask([r.reshape(-1).tolist() for r in rings], H, W).numpy() > 0


def test_tracer_exact_without_simplification_on_random_masks():
    rng = np.random.default_rng(0)
    for p in (0.3, 0.5, 0.7):  # many parts, holes, diagonal contacts
        mask = np.zeros((H, W), bool)
        mask[5:35, 10:50] = rng.random((30, 40)) < p
        components = mask_to_components(mask, tolerance=0)
        assert np.array_equal(_fill([bridge_holes(c) for c in components]), mask)


def test_tracer_parts_holes_and_diagonal_contact():
    mask = np.zeros((H, W), bool)
    mask[10:40, 10:40] = True
    mask[15:35, 15:35] = False  # a hole...
    mask[20:30, 20:30] = True  # ...with an island in it
    mask[40, 40] = True  # touches the square's corner diagonally: the same part
    parts = mask_to_components(mask, tolerance=0)
    assert [len(c.holes) for c in parts] == [1, 0]
    assert np.array_equal(_fill([bridge_holes(c) for c in parts]), mask)
    square = np.array([[x, 0.0] for x in range(11)] + [[10.0, y] for y in range(1, 11)]
                      + [[x, 10.0] for x in range(9, -1, -1)] + [[0.0, y] for y in range(9, 0, -1)])
    assert simplify_ring(square, 0.5).tolist() == [[0, 0], [10, 0], [10, 10], [0, 10]]


def test_tracer_min_area_drops_specks_but_never_the_whole_mask():
    mask = np.zeros((H, W), bool)
    mask[5:15, 5:15] = True  # 100 pixels
    mask[30, 30] = True  # a speck (its traced ring: half a pixel)
    mask[40:42, 40:42] = True  # 4 pixels
    assert len(mask_to_components(mask, tolerance=0)) == 3  # the default keeps every part
    kept = mask_to_components(mask, tolerance=0, min_area=3)
    assert [abs(ring_area(c.outer)) for c in kept] == [100.0, 4.0]
    specks = np.zeros((H, W), bool)
    specks[30, 30] = specks[40:42, 40:42] = True
    only = mask_to_components(specks, tolerance=0, min_area=10)  # all too small: the largest stays
    assert len(only) == 1 and abs(ring_area(only[0].outer)) == 4.0


def test_labelstudio_brush_encoder():
    # one pixel set: header N=4 words, word size 8, run widths 3/4/8/16; then one repeated run of four 255s
    # (bits 1 | 00 | 011 | 11111111), derived by hand from the rle-pack layout (labelstudio_rle)
    assert encode_brush_mask(np.ones((1, 1), bool)) == [0, 0, 0, 4, 57, 27, 252, 127, 224]
    rng = np.random.default_rng(1)
    for shape, p in (((30, 40), 0.5), ((30, 40), 0.02), ((200, 200), 1.0), ((7, 3), 0.0)):
        mask = rng.random(shape) < p  # (200, 200) full: 160000 equal words, runs longer than 65536
        assert np.array_equal(decode_brush_mask(encode_brush_mask(mask), *shape), mask)


def test_cvat_mask_encoder():
    assert encode_cvat_rle(np.array([[1, 0], [0, 1]], bool)) == "0, 1, 2, 1"  # starts with an empty 0 run
    assert encode_cvat_rle(np.array([[0, 0, 1], [1, 1, 1]], bool)) == "2, 4"
    patch = np.random.default_rng(2).random((9, 13)) < 0.4
    patch[0, 0] = True
    got = decode_cvat_rle(encode_cvat_rle(patch), left=3, top=5, width=13, height=9, image_width=W,
                          image_height=H)
    assert (got.top, got.left) == (5, 3) and np.array_equal(got.patch, patch)


def test_yolo_export_gives_one_label_file_to_one_of_two_images_sharing_it(tmp_path, capsys):
    from maskrcnn.data.pre_annotations.export import PreAnnotationExport

    export = PreAnnotationExport(out_dir=tmp_path / "pre", formats=["yolo"], root=tmp_path,
                                 class_names=CLASS_NAMES)
    rect = np.zeros((1, H, W), bool)
    rect[0, 6:26, 8:40] = True
    for i, (name, label) in enumerate([("a.png", 1), ("a.jpg", 2)], start=1):
        det = {"boxes": torch.zeros(1, 4), "scores": torch.tensor([0.9]), "labels": torch.tensor([label]),
               "masks": torch.from_numpy(rect)}
        export.add(i, tmp_path / name, H, W, det)
    assert export.finish() == [tmp_path / "pre" / "yolo"]
    err = capsys.readouterr().err
    assert "yolo: a.jpg left without labels: a.png has the same label file labels/a.txt" in err
    assert (tmp_path / "pre" / "yolo" / "labels" / "a.txt").read_text() == \
        "0 0.083333 0.083333 0.416667 0.083333 0.416667 0.361111 0.083333 0.361111\n"  # a.png's rectangle


def test_yolo_export_keeps_classes_txt_for_the_names_when_an_image_is_called_classes(tmp_path, capsys):
    """Before: an image classes.png at the root had its label file labels/classes.txt overwritten by the
    class names (its labels lost, and the names read back as labels); now the name is reserved and the
    image gets the clash warning, as a.jpg beside a.png does."""
    from maskrcnn.data.pre_annotations.export import PreAnnotationExport

    export = PreAnnotationExport(out_dir=tmp_path / "pre", formats=["yolo"], root=tmp_path,
                                 class_names=CLASS_NAMES)
    rect = np.zeros((1, H, W), bool)
    rect[0, 6:26, 8:40] = True
    for i, name in enumerate(["classes.png", "sub/classes.png"], start=1):
        det = {"boxes": torch.zeros(1, 4), "scores": torch.tensor([0.9]), "labels": torch.tensor([1]),
               "masks": torch.from_numpy(rect)}
        export.add(i, tmp_path / name, H, W, det)
    export.finish()
    err = capsys.readouterr().err
    assert ("yolo: classes.png left without labels: the class names file has the same label file "
            "labels/classes.txt") in err
    labels = tmp_path / "pre" / "yolo" / "labels"
    assert (labels / "classes.txt").read_text() == "cat\ndog\n"
    assert "sub/classes.png" not in err  # only the root's name is taken
    assert (labels / "sub" / "classes.txt").read_text().startswith("0 ")


def test_cvat_export_read_back_as_written_finds_the_images_where_the_xml_records_them(drawn, tmp_path,
                                                                                      capsys):
    """Before: the XML (in pre/) names images relative to the photos folder, the converter looked beside
    the XML: 'image pre/a.png not found' for each, nothing written, and --images was refused for cvat."""
    from maskrcnn.cli import main

    root, images, instances, expected = drawn
    pre = tmp_path / "pre"
    pre.mkdir()
    plain = pre / "plain.xml"  # without the recorded folder (another tool's export)
    plain.write_text(cvat_xml(images, instances, CATEGORIES), encoding="utf-8")
    out = tmp_path / "rt.json"
    assert main(["convert-data", "--from", "cvat", str(plain), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "a.png not found (pass --images ROOT" in err and err.rstrip().endswith(
        "; pass --images ROOT, the folder the image names are relative to); nothing written")
    assert main(["convert-data", "--from", "cvat", str(plain), "--images", str(root), "--output",
                 str(out)]) == 0
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == list(LAYOUT)
    # as predict --export writes it: the images folder relative to the XML's, in a comment CVAT ignores
    recorded = pre / "cvat_annotations.xml"
    recorded.write_text(cvat_xml(images, instances, CATEGORIES, images_folder="../images"), encoding="utf-8")
    assert [el.get("name") for el in ET.fromstring(recorded.read_text()).iter("image")] == list(LAYOUT)
    assert main(["convert-data", "--from", "cvat", str(recorded), "--output", str(out)]) == 0
    assert "(the folder predict recorded in it)" in capsys.readouterr().err
    got = _read_back(json.loads(out.read_text()), root)
    for image, want in zip(images, expected):
        back = got[image.file_name]
        assert [n for n, _ in back] == [n for n, _ in want]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(back, want))


def test_labelstudio_tasks_not_found_say_to_pass_images_and_read_back_with_it(drawn, tmp_path, capsys):
    """Before: "image 'a.png' (from 'a.png') not found under pre; skipped", then "no image could be
    converted", neither mentioning --images."""
    from maskrcnn.cli import main

    root, images, instances, _ = drawn
    pre = tmp_path / "pre"
    pre.mkdir()
    tasks = pre / "labelstudio_tasks.json"
    tasks.write_text(json.dumps(labelstudio_tasks(images, instances)))
    out = tmp_path / "rt.json"
    assert main(["convert-data", "--from", "labelstudio", str(tasks), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "not found under" in line]
    assert len(lines) == 3 and lines[0].endswith("(pass --images ROOT, the folder the image names are "
                                                  "relative to); skipped")
    assert not any("--images" in line for line in lines[1:])  # the hint on the first line only
    assert "no image could be converted (see the problems above; pass --images ROOT" in err
    assert main(["convert-data", "--from", "labelstudio", str(tasks), "--images", str(root), "--output",
                 str(out)]) == 0
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == list(LAYOUT)
