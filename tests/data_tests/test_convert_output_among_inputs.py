"""convert-data --output that is one of the files the conversion reads: refused before anything is written
(it was left out of a LabelMe / VIA folder and then replaced, or read and then replaced: a CVAT XML, a
Label Studio export, the user's labels lost with status 0); this command's own earlier COCO output in
the source folder is left out instead, so a re-run works. And an --output whose folder takes no files
is said naming --output before the conversion (it was said after it, naming the embedded-images
folder)."""

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main

SHAPE = {"label": "cat", "points": [[5, 5], [15, 15]], "group_id": None, "shape_type": "rectangle",
         "flags": {}}


def _convert(fmt, src, out, *options):
    return main(["convert-data", "--from", fmt, str(src), "--output", str(out), *options])


def _jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), 99, np.uint8)).save(path)


def _labelme(folder, names="ab", embedded=False):
    for n in names:
        data = None
        if embedded:
            buf = io.BytesIO()
            Image.fromarray(np.full((40, 40, 3), 99, np.uint8)).save(buf, "PNG")
            data = base64.b64encode(buf.getvalue()).decode()
        else:
            _jpg(folder / f"{n}.jpg")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n}.json").write_text(json.dumps(
            {"version": "5.5.0", "flags": {}, "shapes": [SHAPE, SHAPE], "imagePath": f"{n}.jpg",
             "imageData": data, "imageHeight": 40, "imageWidth": 40}))
    return folder


def _under(root):
    return f"a file under {root}, a folder the"


def _refused(capsys, shown, *, what="one of the source's labelme annotation files"):
    err = capsys.readouterr().err
    assert f"error: --output {shown}: is {what}" in err, err
    assert "choose another file, e.g. --output " in err and "would replace it" not in err
    return err


def test_an_output_that_is_a_labelme_file_of_the_folder_is_refused_by_any_spelling(tmp_path, capsys,
                                                                                   monkeypatch):
    src = _labelme(tmp_path / "rep" / "lm")
    before = (src / "b.json").read_bytes()
    (tmp_path / "link.json").symlink_to(src / "b.json")
    os.link(src / "b.json", tmp_path / "hard.json")
    # under the folder SRC (as spelt or once the link is followed): refused before reading; a hard link
    # outside it: as the file is opened
    spellings = [(src / "b.json", _under(src)), (src / "new" / ".." / "b.json", _under(src)),
                 (tmp_path / "link.json", _under(src)),
                 (tmp_path / "hard.json", "one of the source's labelme annotation files")]
    for out, what in spellings:
        assert _convert("labelme", src, out) == 1
        _refused(capsys, out, what=what)
        assert (src / "b.json").read_bytes() == before
    assert not (src / "new").exists() and not list(tmp_path.rglob("*_images"))
    # relative, as typed in the folder's parent: the suggestion is beside the folder, out of it
    monkeypatch.chdir(tmp_path)
    assert _convert("labelme", "rep/lm", "rep/lm/b.json") == 1
    assert _refused(capsys, "rep/lm/b.json", what=_under("rep/lm")).rstrip().endswith(
        "e.g. --output rep/coco.json")
    # the folder's only JSON file: said as what it is, not "no labelme annotations there"
    only = _labelme(tmp_path / "only", names="b")
    assert _convert("labelme", only, only / "b.json") == 1
    _refused(capsys, only / "b.json", what=_under(only))
    # SRC one file, --output the same file
    assert _convert("labelme", src / "a.json", src / "a.json") == 1
    _refused(capsys, src / "a.json", what="SRC itself")


def test_a_rerun_into_the_source_folder_leaves_the_earlier_coco_output_out(tmp_path, capsys):
    src = _labelme(tmp_path / "lm")
    for _ in range(2):
        assert _convert("labelme", src, src / "coco.json") == 0
        coco = json.loads((src / "coco.json").read_text())
        assert len(coco["images"]) == 2 and len(coco["annotations"]) == 4
    err = capsys.readouterr().err
    assert err.count(f"{src / 'coco.json'}: left out: a COCO file (an earlier output of convert-data)") == 1
    assert "not_labelme" not in err


def test_a_via_project_or_a_cvat_or_label_studio_export_named_as_output_is_refused(tmp_path, capsys):
    via = tmp_path / "via"
    _jpg(via / "a.jpg")
    region = {"shape_attributes": {"name": "rect", "x": 5, "y": 5, "width": 10, "height": 10},
              "region_attributes": {"class": "cat"}}
    (via / "project.json").write_text(json.dumps({"_via_img_metadata": {
        "a.jpg1": {"filename": "a.jpg", "size": 1, "regions": [region], "file_attributes": {}}}}))
    cvat = tmp_path / "cvat"
    _jpg(cvat / "a.jpg")
    (cvat / "annotations.xml").write_text(
        '<annotations><version>1.1</version><image id="0" name="a.jpg" width="40" height="40">'
        '<box label="cat" occluded="0" xtl="5" ytl="5" xbr="15" ybr="15" z_order="0"/></image></annotations>')
    ls = tmp_path / "ls"
    _jpg(ls / "a.jpg")
    (ls / "export.json").write_text(json.dumps([{"id": 1, "data": {"image": "a.jpg"}, "annotations": [
        {"id": 1, "result": [{"type": "rectanglelabels", "original_width": 40, "original_height": 40,
                              "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0,
                                        "rectanglelabels": ["cat"]}}]}]}]))
    for fmt, src, out, what in [("via", via, via / "project.json", _under(via)),
                                ("cvat", cvat, cvat / "annotations.xml", _under(cvat)),
                                ("cvat", cvat / "annotations.xml", cvat / "annotations.xml", "SRC itself"),
                                ("labelstudio", ls / "export.json", ls / "export.json", "SRC itself")]:
        before = out.read_bytes()
        assert _convert(fmt, src, out) == 1
        _refused(capsys, out, what=what)
        assert out.read_bytes() == before
        assert _convert(fmt, src, tmp_path / f"{fmt}.json") == 0  # the files convert: refused for the name


def test_a_yolo_dataset_yaml_or_label_file_named_as_output_is_refused(tmp_path, capsys):
    root = tmp_path / "y"
    _jpg(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat]\n")
    for src, out, what in [(root / "data.yaml", root / "data.yaml", "SRC itself"),
                           (root, root / "labels" / "train" / "a.txt", _under(root))]:
        before = out.read_bytes()
        assert _convert("yolo", src, out, "--boxes-as-masks") == 1
        _refused(capsys, out, what=what)
        assert out.read_bytes() == before
    assert _convert("yolo", root, root / "train.json", "--boxes-as-masks") == 0  # a COCO file beside: fine
    assert _convert("yolo", root, root / "train.json", "--boxes-as-masks") == 0  # and again, over it


@pytest.fixture
def refusing_folder(tmp_path, monkeypatch):
    """tmp_path / "ro": a folder that refuses new files (as /proc or a read-only mount does; root writes
    anywhere, so the refusal is faked)."""
    real_open = os.open

    def refusing(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == str(tmp_path / "ro"):
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_open(path, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", refusing)
    return tmp_path / "ro"


def test_an_output_folder_that_takes_no_files_is_said_naming_output_before_converting(tmp_path, capsys,
                                                                                     refusing_folder):
    src = _labelme(tmp_path / "lm", embedded=True)  # images only inside the JSON: written beside OUT
    out = refusing_folder / "nope.json"
    assert _convert("labelme", src, out) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"maskrcnn convert-data: error: --output {out}: its folder {refusing_folder}: "
                          "cannot write there"), err
    assert "nope_images" not in err and "skipped" not in err  # nothing converted first


def _yolo(root, yaml="path: .\ntrain: images/train\nnames: [cat]\n"):
    _jpg(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text(yaml)
    return root


def test_a_yolo_label_file_is_refused_when_src_is_the_yaml_or_its_path_points_elsewhere(tmp_path, capsys):
    # was read, then replaced by the COCO file (status 0): only the folder SRC was looked in
    root = _yolo(tmp_path / "y")
    other = _yolo(tmp_path / "B")
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "data.yaml").write_text("path: ../B\ntrain: images/train\nnames: [cat]\n")
    for src, out, under in [(root / "data.yaml", root / "labels" / "train" / "a.txt", root),
                            (tmp_path / "A" / "data.yaml", other / "labels" / "train" / "a.txt", other),
                            (tmp_path / "A", other / "labels" / "train" / "a.txt", other)]:
        before = out.read_bytes()
        assert _convert("yolo", src, out, "--boxes-as-masks") == 1, (src, out)
        _refused(capsys, out, what=_under(under))
        assert out.read_bytes() == before
    assert _convert("yolo", tmp_path / "A", tmp_path / "A" / "coco.json", "--boxes-as-masks") == 0


def _voc_tree(root):
    from test_formats_voc import _tree

    _tree(root)
    return root


def _cityscapes_tree(root):
    from test_formats_cityscapes import _tree

    _tree(root)
    return root


@pytest.mark.parametrize("fmt,make,rel", [
    ("voc", _voc_tree, "ImageSets/Segmentation/train.txt"),
    ("voc", _voc_tree, "Annotations/2007_000001.xml"),
    ("voc", _voc_tree, "SegmentationObject/2007_000001.png"),
    ("cityscapes", _cityscapes_tree, "gtFine/train/aachen/aachen_000000_000019_gtFine_polygons.json"),
    ("cityscapes", _cityscapes_tree, "gtFine/train/aachen/aachen_000001_000019_gtFine_instanceIds.png"),
])
def test_a_voc_or_cityscapes_file_of_the_folder_named_as_output_is_refused(tmp_path, capsys, fmt, make, rel):
    src = make(tmp_path / fmt)
    out = src / rel
    assert out.is_file()
    before = out.read_bytes()
    assert _convert(fmt, src, out, "--split", "train") == 1
    _refused(capsys, out, what=_under(src))
    assert out.read_bytes() == before


def test_an_existing_file_under_the_source_that_its_reader_does_not_read_is_refused_too(tmp_path, capsys):
    # the guard compared --output with the files the reader happened to open only: a Cityscapes polygons
    # JSON beside the instanceIds PNG read, a leftImg8bit image, VOC's val.txt, YOLO's labels of a split not
    # converted (and a notes.txt) were replaced by the COCO file with status 0
    voc = _voc_tree(tmp_path / "voc")
    cityscapes = _cityscapes_tree(tmp_path / "cityscapes")
    yolo = _yolo(tmp_path / "y")
    (yolo / "labels" / "val").mkdir()  # the split not converted: its labels are the user's all the same
    (yolo / "labels" / "val" / "b.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (yolo / "notes.txt").write_text("my own notes\n")
    (voc / "notes.txt").write_text("my own notes\n")
    (voc / "ImageSets" / "Segmentation" / "mine.txt").write_text("my own list\n")
    polygons = next(p for p in (cityscapes / "gtFine" / "train").rglob("*_gtFine_polygons.json")
                    if Path(str(p).replace("polygons.json", "instanceIds.png")).is_file())
    image = next((cityscapes / "leftImg8bit" / "train").rglob("*.png"))
    cases = [("voc", voc, voc / "notes.txt", voc, ["--split", "train"]),
             ("voc", voc, voc / "ImageSets" / "Segmentation" / "mine.txt", voc, ["--split", "train"]),
             ("voc", voc, voc / "ImageSets" / "Segmentation" / "val.txt", voc, ["--split", "train"]),
             ("cityscapes", cityscapes, polygons, cityscapes, ["--split", "train"]),
             ("cityscapes", cityscapes, image, cityscapes, ["--split", "train"]),
             ("yolo", yolo / "data.yaml", yolo / "notes.txt", yolo, ["--boxes-as-masks"]),
             ("yolo", yolo / "data.yaml", yolo / "labels" / "val" / "b.txt", yolo, ["--boxes-as-masks"]),
             ("yolo", yolo / "data.yaml", yolo / "images" / "train" / "a.jpg", yolo, ["--boxes-as-masks"])]
    for fmt, src, out, root, options in cases:
        before = out.read_bytes()
        assert _convert(fmt, src, out, *options) == 1, out
        err = _refused(capsys, out, what=_under(root))
        assert "no COCO file of convert-data (nothing written)" in err
        assert out.read_bytes() == before
    # a new name under SRC, and over it this command's own COCO file: no user's data there
    for fmt, src, out, options in [("voc", voc, voc / "train.json", ["--split", "train"]),
                                   ("cityscapes", cityscapes, cityscapes / "train.json",
                                    ["--split", "train"]),
                                   ("yolo", yolo / "data.yaml", yolo / "train.json", ["--boxes-as-masks"])]:
        for _ in range(2):
            assert _convert(fmt, src, out, *options) == 0, capsys.readouterr().err
            assert json.loads(out.read_text())["annotations"]


def test_a_link_outside_the_source_to_an_image_or_label_read_is_refused_as_that_file_is_opened(tmp_path,
                                                                                                capsys):
    yolo = _yolo(tmp_path / "y")
    # hard links: no path of theirs leads under the folders read
    os.link(yolo / "images" / "train" / "a.jpg", tmp_path / "image.json")
    os.link(yolo / "labels" / "train" / "a.txt", tmp_path / "label.json")
    for out, what in [(tmp_path / "image.json", "one of the source's yolo images ("),
                      (tmp_path / "label.json", "one of the source's yolo annotation files (")]:
        before = out.read_bytes()
        assert _convert("yolo", yolo / "data.yaml", out, "--boxes-as-masks") == 1
        _refused(capsys, out, what=what)
        assert out.read_bytes() == before


def test_the_exact_file_check_raises_at_the_file_read_and_keeps_no_list(tmp_path):
    from maskrcnn.data.formats.common import Report
    from maskrcnn.data.formats.output_guard import FileGuard, OutputIsSource

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    report = Report(guard=FileGuard(output=tmp_path / "b.txt", src=tmp_path, source_format="yolo"))
    assert report.reading(tmp_path / "a.txt") == tmp_path / "a.txt"
    with pytest.raises(OutputIsSource, match="b.txt: is one of the source's yolo annotation files"):
        report.reading(tmp_path / "b.txt")
    assert not hasattr(report, "read_files")
