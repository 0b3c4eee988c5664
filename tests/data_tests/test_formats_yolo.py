"""convert-data --from yolo: Ultralytics YOLO segmentation datasets (Roboflow / CVAT / plain folders), masks
compared pixel by pixel with what the lines draw, box lines, and every bad line, file and YAML named."""

import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.formats.yolo import label_path

H, W = 32, 48  # every test image: 32 rows, 48 columns


def _convert(src, out, *options):
    return main(["convert-data", "--from", "yolo", str(src), "--output", str(out), *options])


def _image(path, height=H, width=W, fmt=None, exif=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.full((height, width, 3), 90, np.uint8))
    img.save(path, format=fmt, **({"exif": exif} if exif is not None else {}))


def _label(path, text, *, encoding="utf-8", bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))


def _line(cls, *pixels, width=W, height=H):
    """A label line from pixel coordinates (x, y, x, y, ...), normalised as YOLO writes them."""
    xs = [v / (width if i % 2 == 0 else height) for i, v in enumerate(pixels)]
    return " ".join([str(cls), *(f"{v:.6f}" for v in xs)])


def _rect_mask(x0, y0, x1, y1, height=H, width=W):
    """Pixels of columns x0..x1-1 and rows y0..y1-1: what the polygon (x0, y0)-(x1, y1) covers."""
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


RECT = (6, 4, 18, 4, 18, 12, 6, 12)  # columns 6..17, rows 4..11
L_SHAPE = (24, 16, 40, 16, 40, 20, 30, 20, 30, 28, 24, 28)  # a concave polygon


def _l_mask():
    return _rect_mask(24, 16, 40, 20) | _rect_mask(24, 20, 30, 28)


def _roboflow(src):
    """A Roboflow "YOLOv8" export: data.yaml beside train/ valid/ test/, each with images/ and labels/,
    split entries written as ../train/images (relative to a folder above the YAML's)."""
    (src).mkdir(parents=True)
    (src / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\n"
        "names: ['cat', 'dog']\n\nroboflow:\n  workspace: me\n  version: 1\n"
    )
    _image(src / "train/images/a.jpg")
    _label(src / "train/labels/a.txt", _line(0, *RECT) + "\n" + _line(1, *L_SHAPE) + "\n")
    _image(src / "train/images/b.png")
    # CRLF, a BOM, blank lines, trailing spaces; a slightly-outside polygon clipped to the image; a
    # box-only line (left out by default); a repeated line (left out once)
    text = (f"{_line(1, -0.2, -0.2, 10, -0.2, 10, 6, -0.2, 6)}   \r\n\r\n"
            f"  0 0.5 0.5 0.25 0.25\r\n{_line(0, 40, 0, 48.3, 0, 48.3, 8, 40, 8)}\r\n"
            f"{_line(0, 40, 0, 48.3, 0, 48.3, 8, 40, 8)}\r\n\r\n")
    _label(src / "train/labels/b.txt", text, bom=True)
    _image(src / "train/images/c.png")  # no label file: a background image
    _image(src / "train/images/d.png")
    _label(src / "train/labels/d.txt", "\n  \n")  # empty: a background image too
    _image(src / "valid/images/v.jpg")
    _label(src / "valid/labels/v.txt", _line(1, *RECT) + "\n")


def test_yolo_roboflow_export_round_trip(tmp_path, capsys):
    src, out = tmp_path / "export", tmp_path / "train.json"
    _roboflow(src)
    assert _convert(src, out) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("train/images/a.jpg", H, W), ("train/images/b.png", H, W), ("train/images/c.png", H, W),
        ("train/images/d.png", H, W)]
    assert "use --train-images " + str(src) in captured.out
    assert "4 images, 4 instances (cat 2, dog 2)" in captured.out
    err = captured.err
    assert "train/labels/b.txt: line 3: warning: a box-only line (class cx cy w h) has no mask" in err
    for note in ("1 box-only lines left out", "1 images with an empty label file (kept, no objects)",
                 "1 images without a label file (kept, no objects)", "1 repeated lines left out"):
        assert note in err, note
    assert "skipped 0 record(s)" in err

    # What training reads: the masks drawn by the lines, pixel for pixel.
    dataset = CocoDataset(json_path=out, image_dir=src)
    assert dataset.skipped == {} and len(dataset) == 4
    assert dataset.class_names == ["__background__", "cat", "dog"]
    expected = [
        [("cat", _rect_mask(6, 4, 18, 12)), ("dog", _l_mask())],
        [("dog", _rect_mask(0, 0, 10, 6)), ("cat", _rect_mask(40, 0, 48, 8))],  # clipped to the image
        [], [],
    ]
    for i, want in enumerate(expected):
        image, target = dataset[i]
        assert tuple(image.shape) == (3, H, W)
        got = [(dataset.class_names[int(lab)], m.numpy().astype(bool))
               for lab, m in zip(target["labels"], target["masks"])]
        assert [name for name, _ in got] == [name for name, _ in want]
        for (_, mask), (_, want_mask) in zip(got, want):
            np.testing.assert_array_equal(mask, want_mask)

    # The validation split (its ../valid/images entry), and a split the YAML does not name.
    out_val = tmp_path / "val.json"
    assert _convert(src / "data.yaml", out_val, "--split", "val") == 0
    coco = json.loads(out_val.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["valid/images/v.jpg"]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in coco["annotations"]] == [
        (2, [6.0, 4.0, 12.0, 8.0], 96)]
    capsys.readouterr()
    assert _convert(src, tmp_path / "t.json", "--split", "test") == 1
    err = capsys.readouterr().err
    assert "data.yaml: 'test': " in err and "test/images not found" in err
    # 'validation' is read as 'val' (Ultralytics renames it); names keyed by strings of digits are indices.
    (src / "data.yaml").write_text("train: ../train/images\nvalidation: valid/images\n"
                                   "names: {'0': cat, '1': dog}\n")
    assert _convert(src, out_val, "--split", "val") == 0
    assert [i["file_name"] for i in json.loads(out_val.read_text())["images"]] == ["valid/images/v.jpg"]
    (src / "data.yaml").write_text("train: ../train/images\nnames: [cat, dog]\n")
    assert _convert(src, tmp_path / "t.json", "--split", "val") == 1
    assert "data.yaml: no 'val' split (it names train); choose one with --split" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_yolo_boxes_as_masks(tmp_path, capsys):
    src = tmp_path / "export"
    _roboflow(src)
    out = tmp_path / "boxes.json"
    # The split's folder given as SRC, its YAML one folder up: said, not silently class_0, class_1.
    assert _convert(src / "train", out) == 0
    err = capsys.readouterr().err
    assert f"they are class_0..class_1; {src / 'data.yaml'} names them: give it as SRC" in err
    assert _convert(src, out, "--boxes-as-masks") == 0
    err = capsys.readouterr().err
    assert "1 box-only lines written as rectangle masks" in err and "box-only line (class" not in err
    coco = json.loads(out.read_text())
    box = [a for a in coco["annotations"] if a["image_id"] == 2][1]
    assert (box["category_id"], box["bbox"], box["area"]) == (1, [18.0, 12.0, 12.0, 8.0], 96)  # cx 24, w 12
    dataset = CocoDataset(json_path=out, image_dir=src)
    _, target = dataset[1]
    np.testing.assert_array_equal(target["masks"][1].numpy().astype(bool), _rect_mask(18, 12, 30, 20))
    # The option is refused for the other formats.
    argv = ["convert-data", "--from", "labelme", str(src), "--output", str(out), "--boxes-as-masks"]
    assert main(argv) == 1
    assert "--boxes-as-masks applies to --from yolo / voc, not labelme" in capsys.readouterr().err


def test_yolo_bad_lines_named_and_counted(tmp_path, capsys):
    src = tmp_path / "ds"
    (src).mkdir()
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: cat\n  1: dog\n")
    _image(src / "images/train/a.png")
    lines = [
        _line(0, *RECT),  # 1: fine
        "x 0.1 0.1 0.2 0.1 0.2 0.2",  # 2: class not a number
        "1.5 0.1 0.1 0.2 0.1 0.2 0.2",  # 3: class not whole
        "-1 0.1 0.1 0.2 0.1 0.2 0.2",  # 4: negative class
        "2 0.1 0.1 0.2 0.1 0.2 0.2",  # 5: out of range
        "0 0.1 0.1 0.2 0.1 0.2",  # 6: odd number of coordinates
        "0 0.1 0.1",  # 7: one point
        "0 0.1 nan 0.2 0.1 0.2 0.2",  # 8: NaN
        "0 0.1 0.1 inf 0.1 0.2 0.2",  # 9: infinite
        "0 0.1 0.1 1.5 0.1 0.2 0.2",  # 10: wildly outside
        "0 10 4 18 4 18 12",  # 11: pixel coordinates
        "0 0.1 0.1 0.2 abc 0.2 0.2",  # 12: not a number
        "1",  # 13: a class without coordinates
        "0 0.1 0.1 0.2 0.1 0.3 0.1",  # 14: no area
        "1.0 0.5 0.5 0.5625 0.5 0.5625 0.5625 0.5 0.5625",  # 15: fine, class 1.0 is 1 (as in Ultralytics)
        "0 1.001 0.1 1.009 0.1 1.009 0.2",  # 16: within the tolerance but outside the image
        "0 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2 0.3",  # 17: odd again (9 numbers)
    ]
    _label(src / "labels/train/a.txt", "\n".join(lines))
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    where = "labels/train/a.txt: line"
    for line in (
        f"{where} 2: class 'x' is not a class index (0, 1, ...); skipped",
        f"{where} 3: class '1.5' is not a class index",
        f"{where} 4: class '-1' is not a class index",
        f"{where} 5: class 2 is out of range: data.yaml names 2 classes (0..1); skipped",
        f"{where} 6: 5 coordinates: x y pairs are expected, the count must be even",
        f"{where} 7: polygon has 1 point(s), at least 3 are needed",
        f"{where} 8: coordinates contain NaN or infinite values",
        f"{where} 9: coordinates contain NaN or infinite values",
        f"{where} 10: coordinate 1.5 is outside 0..1: YOLO coordinates are fractions of the image's width",
        f"{where} 11: coordinate 10 is outside 0..1",
        f"{where} 12: 'abc' is not a number",
        f"{where} 13: a class without coordinates",
        f"{where} 14: polygon lies outside the 48x32 image or has no area",
        f"{where} 16: polygon lies outside the 48x32 image or has no area",
        f"{where} 17: 9 coordinates",
        "skipped 15 record(s): 4 bad_class, 2 bad_coordinates, 4 bad_line, 2 empty_mask, 1 few_points, "
        "2 out_of_range",
    ):
        assert line in err, line
    coco = json.loads(out.read_text())
    assert [(a["category_id"], a["bbox"]) for a in coco["annotations"]] == [
        (1, [6.0, 4.0, 12.0, 8.0]), (2, [24.0, 16.0, 3.0, 2.0])]


def test_yolo_yaml_problems_are_one_line_errors(tmp_path, capsys):
    src = tmp_path / "ds"
    _image(src / "images/train/a.png")
    _label(src / "labels/train/a.txt", _line(0, *RECT))
    cases = [
        ("- just\n- a list\n", "data.yaml: not a YOLO dataset YAML (a mapping with 'names'"),
        ("train: images/train\n", "data.yaml: no 'names' (nor 'nc'): a YOLO dataset YAML names its classes"),
        ("train: images/train\nnames: {0: cat, 2: dog}\n", "'names' indices must be 0..1, not [0, 2]"),
        ("train: images/train\nnc: 3\nnames: [cat, dog]\n", "'nc: 3' but 'names' has 2 classes"),
        ("train: images/train\nnames: [cat, no]\n", "data.yaml: names[1] is False: quote it"),
        ("train: images/train\nnames: [cat, cat]\n", "'names' repeats 'cat' (classes 0 and 1)"),
        ("train: images/train\nnames: cat\n", "'names' must be a list or a mapping {index: name}, not str"),
        ("train: images/train\nnames: [cat]\nkpt_shape: [17, 3]\n", "a pose dataset ('kpt_shape')"),
        ("train: [images/train, images/nowhere]\nnames: [cat]\n", "'train': "),
        ("train: images/train\nnames: [cat\n", "data.yaml: invalid YAML at line"),
    ]
    for text, message in cases:
        (src / "data.yaml").write_text(text)
        assert _convert(src, tmp_path / "out.json") == 1, text
        err = capsys.readouterr().err
        assert message in err, (text, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.json").exists()

    # Several YAML files and none called data.yaml: which one is meant is asked for.
    (src / "data.yaml").unlink()
    (src / "a.yaml").write_text("train: images/train\nnames: [cat]\n")
    (src / "b.yaml").write_text("train: images/train\nnames: [dog]\n")
    assert _convert(src, tmp_path / "out.json") == 1
    err = capsys.readouterr().err
    assert "holds several YAML files (a.yaml, b.yaml); give the dataset's one as SRC" in err
    assert _convert(src / "b.yaml", tmp_path / "out.json") == 0
    assert json.loads((tmp_path / "out.json").read_text())["categories"] == [{"id": 1, "name": "dog"}]


def test_yolo_cvat_export_with_image_lists(tmp_path, capsys):
    """CVAT's "Ultralytics YOLO Segmentation": path ./, train: train.txt listing images/train/NAME
    relative to the root; Ultralytics' own lists write ./images/..; the YAML's 'path' of another machine
    falls back to the YAML's folder with a warning; nc only names the classes class_0.."""
    src = tmp_path / "cvat"
    for name in ("a.png", "b.png"):
        _image(src / "images/train" / name)
    _label(src / "labels/train/a.txt", _line(1, *RECT))
    _label(src / "labels/train/b.txt", _line(0, *L_SHAPE))
    (src / "train.txt").write_text("images/train/a.png\n./images/train/b.png\nimages/train/gone.png\n"
                                   "images/train/a.png\n")
    (src / "data.yaml").write_text("path: /home/someone/datasets/cvat\ntrain: train.txt\nnc: 2\n")
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "data.yaml: warning: 'path: /home/someone/datasets/cvat' is not a folder here" in err
    assert "images/train/gone.png: image " in err and "not found; skipped" in err
    assert "images/train/a.png: image images/train/a.png was converted already, from labels/train/a" in err
    assert "1 duplicate_image, 1 missing_image" in err
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "class_0"}, {"id": 2, "name": "class_1"}]
    assert [i["file_name"] for i in coco["images"]] == ["images/train/a.png", "images/train/b.png"]
    assert [(a["image_id"], a["category_id"], a["area"]) for a in coco["annotations"]] == [
        (1, 2, 96), (2, 1, int(_l_mask().sum()))]


def test_yolo_folder_without_yaml(tmp_path, capsys):
    """images/ + labels/ and no YAML: classes named by index (ids index + 1 up to the largest met), by
    --classes, or by a classes.txt."""
    src = tmp_path / "plain"
    _image(src / "images/a.png")
    _label(src / "labels/a.txt", "\n".join([_line(2, *RECT), _line(0, *L_SHAPE), _line(100000, *RECT)]))
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "labels/a.txt: line 3: class 100000 is more than the 100000 classes allowed without names" in err
    assert ("warning: no dataset YAML or classes.txt names the classes: they are class_0..class_2; "
            "--classes a,b,.. names them") in err
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["class_0", "class_1", "class_2"]
    assert [a["category_id"] for a in coco["annotations"]] == [3, 1]

    assert _convert(src, out, "--classes", "cat,dog") == 0  # names the indices 0, 1: index 2 is out
    assert "labels/a.txt: line 1: class 2 is out of range: --classes names 2 classes (0..1)" in (
        capsys.readouterr().err)
    coco = json.loads(out.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "cat"), (2, "dog")]
    assert [a["category_id"] for a in coco["annotations"]] == [1]

    (src / "classes.txt").write_text("cat\ndog\nbird\n")  # LabelImg / Label Studio / X-AnyLabeling
    assert _convert(src, out) == 0
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog", "bird"]
    assert [a["category_id"] for a in coco["annotations"]] == [3, 1]
    assert _convert(src, out, "--classes", "bird") == 0  # a named dataset: --classes selects by name
    err = capsys.readouterr().err
    assert "1 line(s) of class 'cat' (index 0) left out: not in --classes" in err and "line 2" not in err
    assert json.loads(out.read_text())["categories"] == [{"id": 1, "name": "bird"}]
    assert _convert(src, out, "--classes", "cow") == 1
    assert "--classes cow: not among the classes of classes.txt (cat, dog, bird)" in capsys.readouterr().err


def test_yolo_images_and_label_files_that_cannot_be_used(tmp_path, capsys):
    """Unreadable images and label files, images of one name sharing a label file, and a layout whose
    label files are not where the rule looks."""
    src = tmp_path / "ds"
    _image(src / "images/ok.png")
    _label(src / "labels/ok.txt", _line(0, *RECT))
    (src / "images/broken.jpg").write_bytes(b"not a jpeg")
    _label(src / "labels/broken.txt", _line(0, *RECT))
    _image(src / "images/latin.png")
    _label(src / "labels/latin.txt", "0 0.1 0.1 0.2 0.1 0.2 0.2 \xe9", encoding="latin-1")
    _image(src / "images/twin.jpg")
    _image(src / "images/twin.png")
    _label(src / "labels/twin.txt", _line(0, *RECT))
    _image(src / "images/bg.jpg")  # two images of one name without a label file: both background
    _image(src / "images/bg.png")
    out = tmp_path / "out.json"
    assert _convert(src, out, "--classes", "cat") == 0
    err = capsys.readouterr().err
    assert "images/broken.jpg: image " in err and "cannot be read" in err
    assert "images/latin.png: label file latin.txt cannot be read" in err
    assert ("images/twin.jpg: labels/twin.txt is also the label file of images/twin.png: which image it "
            "describes is unknown; skipped") in err
    assert "images/twin.png: labels/twin.txt is also the label file of images/twin.jpg" in err
    assert "2 ambiguous_label, 1 unreadable_image, 1 unreadable_label" in err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["images/bg.jpg", "images/bg.png", "images/ok.png"]
    assert len(coco["annotations"]) == 1

    # A folder of split folders without a YAML: converted together only with a warning, or one by --split.
    layout = tmp_path / "layout"
    for split in ("train", "val"):
        _image(layout / "images" / split / f"{split}.png")
        _label(layout / "labels" / split / f"{split}.txt", _line(0, *RECT))
    assert _convert(layout, out) == 0
    err = capsys.readouterr().err
    assert "layout: warning: holds the splits train, val, converted together here; --split S converts" in err
    assert len(json.loads(out.read_text())["images"]) == 2
    assert _convert(layout, out, "--split", "val") == 0
    assert "holds the splits" not in capsys.readouterr().err
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["images/val/val.png"]
    assert _convert(layout, out, "--split", "test") == 1
    assert "layout: no split 'test' (looked for " in capsys.readouterr().err

    # Labels kept somewhere the rule does not look: said once, not as a silent background dataset (and,
    # no instance converted, nothing written: rev_d1 1)
    other = tmp_path / "other"
    _image(other / "pics/a.png")
    _label(other / "annotations/a.txt", _line(0, *RECT))
    out.unlink()
    assert _convert(other, out) == 1
    err = capsys.readouterr().err
    assert "warning: no image has a label file (looked for pics/a.txt" in err
    assert "1 image(s) but no instance could be converted (the annotations hold no object)" in err
    assert not out.exists()


def test_label_path_replaces_the_last_images_folder(tmp_path):
    image = tmp_path / "images/x/images/train/a.b.jpg"
    assert label_path(image) == tmp_path / "images/x/labels/train/a.b.txt"
    assert label_path(tmp_path / "train/a.jpg") == tmp_path / "train/a.txt"


@pytest.mark.parametrize("orientation", [6, 3])
def test_yolo_exif_rotated_jpeg(tmp_path, capsys, orientation):
    """A phone photo stored 48 wide, 32 high with EXIF orientation 6 is shown (and trained on) 32 wide,
    48 high: YOLO fractions scale by the size as shown, as Ultralytics (OpenCV applies the orientation)."""
    src = tmp_path / "ds"
    exif = Image.Exif()
    exif[0x0112] = orientation
    _image(src / "images/photo.jpg", fmt="JPEG", exif=exif)  # stored H x W
    turned = orientation in (5, 6, 7, 8)
    height, width = (W, H) if turned else (H, W)
    # columns 8..15, rows 4..27 of the image as shown (in its coordinates)
    _label(src / "labels/photo.txt", _line(0, 8, 4, 16, 4, 16, 28, 8, 28, width=width, height=height))
    (src / "data.yaml").write_text("train: images\nnames: [person]\n")
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    coco = json.loads(out.read_text())
    assert (coco["images"][0]["height"], coco["images"][0]["width"]) == (height, width)
    dataset = CocoDataset(json_path=out, image_dir=src)
    image, target = dataset[0]
    assert tuple(image.shape) == (3, height, width)
    want = _rect_mask(8, 4, 16, 28, height=height, width=width)
    np.testing.assert_array_equal(target["masks"][0].numpy().astype(bool), want)


def test_yolo_classes_left_out_are_told_once_per_class_with_a_count(tmp_path, capsys):
    """--classes picking some classes of a named dataset: the lines of the others were printed one by
    one (thousands for a real dataset); now one line per class with its count, none of them 'skipped'."""
    src = tmp_path / "ds"
    (src / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (src / "classes.txt").write_text("cat\ndog\nbird\n")
    for k in range(3):
        _image(src / f"images/{k}.png")
        lines = [_line(0, *RECT), _line(1, *L_SHAPE), _line(1, *RECT), _line(2, *RECT)]
        _label(src / f"labels/{k}.txt", "\n".join(lines[k % 2:]))
    out = tmp_path / "out.json"
    assert _convert(src, out, "--classes", "dog") == 0
    err = capsys.readouterr().err
    told = [line for line in err.splitlines() if "left out: not in --classes" in line]
    assert [line.split(": ", 1)[1] for line in told] == [
        "2 line(s) of class 'cat' (index 0) left out: not in --classes",
        "3 line(s) of class 'bird' (index 2) left out: not in --classes"]
    assert "5 lines of classes not in --classes left out" in err and "skipped 0 record(s)" in err
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "dog"}] and len(coco["annotations"]) == 6


def test_yolo_path_up_and_back_is_shown_tidy(tmp_path, capsys, monkeypatch):
    """'path: ../ds' (Ultralytics' own YAMLs write it so) printed --train-images ds/../ds."""
    src = tmp_path / "ds"
    src.mkdir()
    (src / "data.yaml").write_text("path: ../ds\ntrain: images/train\nnames:\n  0: cat\n")
    _image(src / "images/train/a.png")
    (src / "labels/train").mkdir(parents=True)
    (src / "labels/train/a.txt").write_text(_line(0, *RECT) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["convert-data", "--from", "yolo", "ds", "--output", "o.json"]) == 0
    out = capsys.readouterr().out
    assert "file_name values are relative to ds: use --train-images ds\n" in out


def test_val_split_hint_names_the_flag_that_takes_it(tmp_path, capsys, monkeypatch):
    """``--split val`` printed "use --train-images ds": a validation JSON goes with --val-images (train) or
    --images (eval)."""
    src = tmp_path / "ds"
    (src / "labels/val").mkdir(parents=True)
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n")
    _image(src / "images/val/a.png")
    (src / "labels/val/a.txt").write_text(_line(0, *RECT) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["convert-data", "--from", "yolo", "ds/data.yaml", "--output", "v.json",
                 "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "file_name values are relative to ds: use --val-images ds (train) or --images ds (eval)\n" in out


def test_yolo_every_box_only_line_left_out_is_named(tmp_path, capsys):
    """Box-only lines were warned about for the first file only; the others were counted, never named.
    Each is now named by file and line (the why said once)."""
    src = tmp_path / "plain"
    for name in ("a", "b", "c"):
        _image(src / f"images/{name}.png")
    _label(src / "labels/a.txt", _line(0, *RECT))
    _label(src / "labels/b.txt", "0 0.5 0.5 0.2 0.2\n")
    _label(src / "labels/c.txt", "\n".join([_line(0, *RECT), "0 0.3 0.3 0.1 0.1", "0 0.6 0.6 0.1 0.1"]))
    assert _convert(src, tmp_path / "out.json", "--classes", "thing") == 0
    err = capsys.readouterr().err
    assert "labels/b.txt: line 1: warning: a box-only line (class cx cy w h) has no mask" in err
    assert "labels/c.txt: line 2: warning: box-only line left out (no mask)" in err
    assert "labels/c.txt: line 3: warning: box-only line left out (no mask)" in err
    assert "3 box-only lines left out" in err and err.count("a box-only line (class cx cy w h)") == 1


def test_yolo_huge_class_index_is_quoted_as_written(tmp_path, capsys):
    """A 20-digit class went through a float: 'class 100000000000000000000 is out of range'."""
    src = tmp_path / "ds"
    src.mkdir()
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [a]\n")
    _image(src / "images/train/a.png")
    tail = " 0.1 0.1 0.5 0.1 0.5 0.5"
    _label(src / "labels/train/a.txt", "\n".join([_line(0, *RECT), "9" * 20 + tail, "9" * 5000 + tail]))
    assert _convert(src, tmp_path / "out.json") == 0
    err = capsys.readouterr().err
    assert "labels/train/a.txt: line 2: class 99999999999999999999 is out of range: data.yaml names 1 " \
           "classes (0..0); skipped" in err
    assert f"labels/train/a.txt: line 3: class '{'9' * 40}...' is not a class index (0, 1, ...)" in err


def test_yolo_blank_line_in_classes_txt_keeps_the_later_indices(tmp_path, capsys):
    """A blank line inside classes.txt (a class deleted by hand) keeps its index, as LabelImg reads the
    file: the classes after it are not shifted onto their neighbours' labels. Blank lines at the end are
    only line ends."""
    src = tmp_path / "plain"
    _image(src / "images/a.png")
    _label(src / "labels/a.txt", "\n".join([_line(0, *RECT), _line(2, *L_SHAPE), _line(1, 1, 1, 4, 1, 4, 4)]))
    (src / "classes.txt").write_text("cat\n\ndog\n\n\n")
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "classes.txt: warning: line 2 is blank: class 1 named 'class_1'" in err
    assert "out of range" not in err
    coco = json.loads(out.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "cat"), (2, "class_1"), (3, "dog")]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_name = {names[a["category_id"]]: a["bbox"] for a in coco["annotations"]}
    assert by_name["dog"] == [24.0, 16.0, 16.0, 12.0]  # index 2's L shape, under its own name
    assert by_name["cat"] == [6.0, 4.0, 12.0, 8.0]
    assert "class_1" in by_name


def test_yolo_blank_name_in_yaml_is_refused_naming_its_index(tmp_path, capsys):
    src = tmp_path / "ds"
    _image(src / "images/train/a.png")
    _label(src / "labels/train/a.txt", _line(2, *RECT))
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nnames: ['cat', '', 'dog']\n")
    assert _convert(src, tmp_path / "out.json") == 1
    assert "names[1] must be a non-empty name" in capsys.readouterr().err


def test_yolo_line_with_a_confidence_is_told_to_look_like_predictions(tmp_path, capsys):
    src = tmp_path / "plain"
    _image(src / "images/a.png")
    _label(src / "labels/a.txt", "0 0.5 0.5 0.2 0.2 0.87\n0 0.1 0.1 0.3 0.1 0.3 0.3 0.91\n" + _line(0, *RECT))
    assert _convert(src, tmp_path / "out.json") == 0
    err = capsys.readouterr().err
    assert ("labels/a.txt: line 1: 5 coordinates: x y pairs are expected, the count must be even; it looks "
            "like a box (cx cy w h) and a confidence, as predictions saved with save_conf are written") in err
    assert "line 2: 7 coordinates: x y pairs are expected, the count must be even; it looks like a " \
           "polygon and a confidence" in err


def test_yolo_blank_line_placeholder_does_not_clash_with_a_real_class_name(tmp_path, capsys):
    """classes.txt '\\ncat\\ndog\\nclass_0': the blank line 1 was named class_0 as line 4 is, and the
    file was refused as repeating 'class_0' (classes 0 and 3), a name the tool itself had made."""
    src = tmp_path / "plain"
    _image(src / "images/a.png")
    _label(src / "labels/a.txt", "\n".join([_line(1, *RECT), _line(3, *L_SHAPE)]))
    (src / "classes.txt").write_text("\ncat\ndog\nclass_0\n")
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "repeats" not in err and "line 1 is blank: class 0 named 'class_0_blank'" in err
    coco = json.loads(out.read_text())
    names = [c["name"] for c in coco["categories"]]
    assert sorted(names) == sorted(["class_0_blank", "cat", "dog", "class_0"])
    by_id = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(by_id[a["category_id"]] for a in coco["annotations"]) == ["cat", "class_0"]


def test_label_files_with_no_image_are_counted_and_named(tmp_path, capsys):
    """A label file whose image was deleted, or whose image has an extension that is not read (.mpo), was
    ignored without a word. Now one line counts and names them; a label file whose image is there but in
    another split (a .txt list in the same folder) is not one."""
    src = tmp_path / "ds"
    line = _line(0, 4, 4, 20, 4, 20, 20) + "\n"
    _image(src / "images" / "a.jpg")
    _image(src / "images" / "other.jpg")  # in the folder, not in the split's list
    _image(src / "images" / "m.mpo", fmt="JPEG")
    for name in ("a", "other", "m", "ghost"):
        _label(src / "labels" / f"{name}.txt", line)
    (src / "train.txt").write_text("images/a.jpg\n")
    (src / "data.yaml").write_text("path: .\ntrain: train.txt\nval: train.txt\nnames: [thing]\n")
    out = tmp_path / "o.json"
    assert _convert(src / "data.yaml", out) == 0
    err = capsys.readouterr().err
    assert ("warning: 2 label file(s) with no image, their lines left out: labels/ghost.txt, labels/m.txt "
            "(m.mpo is not a format read)") in err
    assert "other.txt" not in err
    assert len(json.loads(out.read_text())["annotations"]) == 1


def test_shared_label_file_is_not_called_missing(tmp_path, capsys):
    """a.jpg and a.png sharing labels/a.txt are both skipped; the warning that followed, "no image has a
    label file", was wrong: the label file is there."""
    src = tmp_path / "ds"
    _image(src / "images" / "a.jpg")
    _image(src / "images" / "a.png")
    _label(src / "labels" / "a.txt", _line(0, 4, 4, 20, 4, 20, 20) + "\n")
    _convert(src, tmp_path / "o.json")
    err = capsys.readouterr().err
    assert "ambiguous_label" in err
    assert "no image has a label file" not in err


def test_orphan_scan_lists_each_image_folder_once_and_passes_over_notes_and_lists(tmp_path, capsys,
                                                                                    monkeypatch):
    """Ultralytics' usual layout: one images/ and one labels/ folder for all splits, the splits named by
    train.txt / val.txt. Every label file of the other split is owned by no image of this one, and the
    scan for label files without an image globbed the image folder once for each: 5 s for 8,000 images,
    minutes at 100k. Now each image folder is listed once. And a .txt in labels/ that holds no label lines
    (a README, a split's list of images) was reported as a label file with no image; now only files
    whose lines are numbers (or empty ones) are."""
    import os

    src = tmp_path / "ds"
    line = _line(0, 4, 4, 20, 4, 20, 20) + "\n"
    for i in range(6):
        _image(src / "images" / f"im{i}.jpg")
        _label(src / "labels" / f"im{i}.txt", line)
    _label(src / "labels" / "ghost.txt", line)  # its image deleted: reported
    _label(src / "labels" / "gone.txt", "")  # empty, its image deleted: a label file still
    _label(src / "labels" / "README.txt", "Labels exported from the tool on Monday.\n0 1 2\n")
    _label(src / "labels" / "val.txt", "./images/im4.jpg\n./images/im5.jpg\n")
    (src / "train.txt").write_text("".join(f"./images/im{i}.jpg\n" for i in range(4)))
    (src / "val.txt").write_text("./images/im4.jpg\n./images/im5.jpg\n")
    (src / "data.yaml").write_text("path: .\ntrain: train.txt\nval: val.txt\nnames: [thing]\n")

    listed = []
    real_scandir = os.scandir

    def counting_scandir(path="."):
        listed.append(os.path.abspath(os.fspath(path)))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    out = tmp_path / "o.json"
    assert _convert(src / "data.yaml", out) == 0
    err = capsys.readouterr().err
    assert ("warning: 2 label file(s) with no image, their lines left out: labels/ghost.txt, "
            "labels/gone.txt") in err
    assert "README" not in err and "labels/val.txt" not in err and "im4" not in err
    assert listed.count(str((src / "images").absolute())) == 1  # 6 files owned by no image: 6 before
    assert len(json.loads(out.read_text())["annotations"]) == 4
