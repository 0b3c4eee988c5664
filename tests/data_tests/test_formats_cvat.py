"""convert-data --from cvat: "CVAT for images 1.1" XML exports — polygons, (rotated) boxes, ellipses, RLE
masks decoded pixel-wise, groups, crowd regions, where images are found, and every bad record or file
named and counted."""

import io
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.formats.common import Report, Skip
from maskrcnn.data.formats.cvat import decode_cvat_rle
from maskrcnn.data.formats.cvat_video import frame_images

H, W = 32, 48


def _convert(src, out, *options):
    return main(["convert-data", "--from", "cvat", str(src), "--output", str(out), *options])


def _png(path, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path)


def _cvat_rle(patch):
    """A (h, w) bool patch as CVAT writes it: runs row by row, starting with a run of 0s (maybe empty).
    Written here from the format's description, independently of the converter."""
    runs, value, n = [], False, 0
    for v in patch.reshape(-1).tolist():
        if v == value:
            n += 1
        else:
            runs.append(n)
            value, n = v, 1
    runs.append(n)
    return ", ".join(str(r) for r in runs)


def _xml(images, *, meta=True):
    head = '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n'
    if meta:
        head += "  <meta><task><name>t</name><labels><label><name>cat</name></label></labels></task></meta>\n"
    return head + "".join(images) + "</annotations>\n"


def _image(name, shapes, size=(H, W), extra=""):
    return (f'  <image id="0" name="{name}" width="{size[1]}" height="{size[0]}"{extra}>\n'
            + "".join(f"    {s}\n" for s in shapes) + "  </image>\n")


def _mask_of(segmentation, size=(H, W)):
    if isinstance(segmentation, dict):
        return mask_utils.decode(segmentation) > 0
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, *size))) > 0


PATCH = np.array([[0, 1, 1, 0, 0],
                  [1, 1, 1, 1, 0],
                  [0, 0, 1, 1, 1],
                  [0, 0, 0, 0, 1]], bool)  # fmt: skip


def _export(src):
    """A task export as CVAT's zip lays it out: annotations.xml and images/."""
    _png(src / "images" / "a.png")
    _png(src / "images" / "b.png", size=(20, 30))
    full = np.ones((3, 2), bool)  # starts with 1s: the rle begins with an empty run of 0s
    shapes_a = [
        '<polygon label="cat" source="manual" occluded="0" '
        'points="2.00,2.00;10.00,2.00;10.00,8.00;2.00,8.00" z_order="0" group_id="1"></polygon>',
        '<box label="cat" occluded="0" xtl="12" ytl="2" xbr="16" ybr="6" z_order="1" group_id="1">'
        '<attribute name="color">black</attribute></box>',
        '<box label="dog" occluded="0" xtl="0" ytl="20" xbr="4" ybr="24" group_id="1"></box>',  # its own
        '<box label="dog" xtl="10" ytl="10" xbr="30" ybr="14" rotation="30.00"></box>',
        '<ellipse label="dog" cx="40" cy="24" rx="4" ry="2" rotation="90"></ellipse>',
        f'<mask label="bird" rle="{_cvat_rle(PATCH)}" left="3" top="20" width="5" height="4"></mask>',
        f'<mask label="bird" rle="{_cvat_rle(full)}" left="44" top="0" width="2" height="3" group_id="7">'
        '</mask>',
        '<polygon label="bird" points="30,0;34,0;34,4" group_id="7"></polygon>',
        '<box label="cat" xtl="20" ytl="26" xbr="30" ybr="30">'
        '<attribute name="is_crowd">true</attribute></box>',
        '<polyline label="cat" points="1,1;5,5"></polyline>',
        '<points label="cat" points="1,1"></points>',
        '<tag label="indoor" source="manual"></tag>',
    ]
    shapes_b = ['<polygon label="猫" points="0,0;6,0;6,5;0,5"></polygon>']
    (src / "annotations.xml").write_text(
        _xml([_image("a.png", shapes_a), _image("b.png", shapes_b, size=(20, 30))]), encoding="utf-8")


def test_cvat_export_round_trip(tmp_path, capsys):
    src, out = tmp_path / "export", tmp_path / "out" / "coco.json"
    _export(src)
    assert _convert(src, out) == 0
    captured = capsys.readouterr()
    coco = json.loads(out.read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names.values()) == ["bird", "cat", "dog", "猫"]
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("images/a.png", H, W), ("images/b.png", 20, 30)]
    anns = [(names[a["category_id"]], a) for a in coco["annotations"]]
    assert [(n, a["image_id"], a["iscrowd"]) for n, a in anns] == [
        ("cat", 1, 0), ("dog", 1, 0), ("dog", 1, 0), ("dog", 1, 0), ("bird", 1, 0), ("bird", 1, 0),
        ("cat", 1, 1), ("猫", 2, 0)]
    masks = [_mask_of(a["segmentation"], (20, 30) if a["image_id"] == 2 else (H, W)) for _, a in anns]

    # Group 1 of cat: a polygon and a box as one instance; the dog in group 1 is its own instance.
    expected = np.zeros((H, W), bool)
    expected[2:8, 2:10] = expected[2:6, 12:16] = True
    assert (masks[0] == expected).all()
    assert anns[1][1]["bbox"] == [0.0, 20.0, 4.0, 4.0]

    # The box turned 30 degrees clockwise on screen about its centre (20, 12), as CVAT turns it: its
    # first corner (10, 10) goes to centre + R(30) (-10, -2).
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    first = [round(20 + (-10 * c + 2 * s), 2), round(12 + (-10 * s - 2 * c), 2)]
    assert anns[2][1]["segmentation"][0][:2] == first
    # The ellipse (rx 4, ry 2) turned a quarter: 4 wide (x 38..42), 8 high (y 20..28).
    assert anns[3][1]["bbox"] == [38.0, 20.0, 4.0, 8.0] and abs(anns[3][1]["area"] - math.pi * 8) < 3

    # The RLE mask, pixel by pixel: PATCH with its top-left pixel at column 3, row 20.
    expected = np.zeros((H, W), bool)
    expected[20:24, 3:8] = PATCH
    assert (masks[4] == expected).all() and anns[4][1]["area"] == int(PATCH.sum())
    # A mask and a polygon in one group: one RLE instance, the union of both.
    expected = np.zeros((H, W), bool)
    expected[0:3, 44:46] = True
    expected |= _mask_of([[30, 0, 34, 0, 34, 4]])
    assert isinstance(anns[5][1]["segmentation"], dict) and (masks[5] == expected).all()
    # is_crowd: a crowd region, written as RLE.
    expected = np.zeros((H, W), bool)
    expected[26:30, 20:30] = True
    assert isinstance(anns[6][1]["segmentation"], dict) and (masks[6] == expected).all()
    assert masks[7].sum() == 30

    err = captured.err
    assert "notes: 1 CVAT points shapes left out (no area), 1 CVAT polyline shapes left out (no area), " \
           "1 CVAT tags (image labels) left out" in err
    assert "skipped 0 record(s)" in err
    assert f"use --train-images {src}" in captured.out

    # Training reads it: every instance decodes, nothing skipped.
    dataset = CocoDataset(json_path=out, image_dir=src)
    assert dataset.skipped == {} and len(dataset) == 2
    image, target = dataset[1]
    assert image.shape == (3, 20, 30) and target["masks"].sum() == 30


def test_cvat_rle_decoding_and_clipping():
    patch = decode_cvat_rle(_cvat_rle(PATCH), left=3, top=20, width=5, height=4, image_width=W,
                            image_height=H)
    assert (patch.top, patch.left) == (20, 3) and (patch.patch == PATCH).all()
    # Partly outside the image on every side: only the inside part is kept, in place.
    big = np.random.default_rng(0).random((40, 60)) > 0.5
    got = decode_cvat_rle(_cvat_rle(big), left=-5, top=-3, width=60, height=40, image_width=W, image_height=H)
    assert (got.top, got.left) == (0, 0) and (got.patch == big[3:3 + H, 5:5 + W]).all()
    # A huge box far outside the image costs its runs, not its area.
    got = decode_cvat_rle("0, 10000000000", left=-50_000, top=-50_000, width=100_000, height=100_000,
                          image_width=W, image_height=H)
    assert got.patch.shape == (H, W) and got.patch.all()
    for text, box, message in [
        ("1, 2, 3", (0, 0, 5, 4), "rle runs cover 6 pixels, the 5x4 box 20"),
        ("1, x, 3", (0, 0, 5, 4), "is not comma-separated whole numbers"),
        ("25, -5", (0, 0, 5, 4), "negative run length"),
        ("0, 99999999999999999999999", (0, 0, 5, 4), "has a run longer than any box"),
        ("20", (0, 0, 5, 4), "covers no pixel"),
        ("0, 20", (W, 0, 5, 4), "outside the 48x32 image"),
        ("0", (0, 0, 0, 4), "mask box is 0x4 pixels"),
    ]:
        with pytest.raises(Skip, match=message):
            left, top, width, height = box
            decode_cvat_rle(text, left=left, top=top, width=width, height=height, image_width=W,
                            image_height=H)


def test_cvat_bad_records_are_named_counted_and_skipped(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "a.png")  # beside the XML file, not under images/
    _png(src / "sub" / "c.png")
    shapes = [
        '<polygon label="cat" points="1,1;9,1;9,9;1,9"></polygon>',  # converted
        '<polygon label="cat"></polygon>',
        '<polygon label="cat" points="1,1;9,x;9,9"></polygon>',
        '<polygon label="cat" points="1,1;9,1;9"></polygon>',
        '<polygon label="cat" points="1,1;9,1"></polygon>',
        '<box label="cat" xtl="1" ytl="1" xbr="nan" ybr="4"></box>',
        '<box label="cat" xtl="1" ytl="1" ybr="4"></box>',
        '<ellipse label="cat" cx="1" cy="1" rx="abc" ry="4"></ellipse>',
        '<mask label="cat" rle="1, 2, 3" left="0" top="0" width="5" height="4"></mask>',
        '<mask label="cat" rle="0, 20" left="0" top="0" width="5.5" height="4"></mask>',
        '<mask label="cat" rle="0, 20" left="-2" top="30" width="5" height="4"></mask>',  # clipped: 3x2 kept
        '<box label="cat" xtl="60" ytl="40" xbr="70" ybr="50"></box>',
        '<box xtl="1" ytl="1" xbr="4" ybr="4"></box>',
        '<box label="dog" xtl="1" ytl="1" xbr="4" ybr="4"></box>',
        '<cuboid label="cat" xtl1="0"></cuboid>',
    ]
    (src / "annotations.xml").write_text(_xml([
        _image("a.png", shapes, size=(H + 1, W)),  # a pixel off: warned about, the shapes as drawn
        _image("sub/c.png", ['<box label="cat" xtl="0" ytl="0" xbr="3" ybr="3"></box>']),  # a relative path
        _image("missing.png", ['<box label="cat" xtl="0" ytl="0" xbr="3" ybr="3"></box>']),
        _image("a.png", ['<box label="cat" xtl="0" ytl="0" xbr="3" ybr="3"></box>']),  # a second time
        '  <image id="9" width="4" height="4"></image>\n',
    ]), encoding="utf-8")
    assert _convert(src / "annotations.xml", out, "--classes", "cat") == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "sub/c.png"]
    assert [(a["image_id"], a["bbox"], a["area"]) for a in coco["annotations"]] == [
        (1, [1.0, 1.0, 8.0, 8.0], 64), (1, [0.0, 30.0, 3.0, 2.0], 6), (2, [0.0, 0.0, 3.0, 3.0], 9)]
    where = "annotations.xml: image 'a.png': shape "
    for line in (
        where + "[1] <polygon> (label 'cat'): <polygon> has no 'points' attribute; skipped",
        where + "[2] <polygon> (label 'cat'): <polygon> points '1,1;9,x;9,9' are not numbers",
        where + "[3] <polygon> (label 'cat'): <polygon> points '1,1;9,1;9' are not x,y pairs",
        where + "[4] <polygon> (label 'cat'): polygon has 2 point(s)",
        where + "[5] <box> (label 'cat'): <box> 'xbr' contain NaN or infinite values",
        where + "[6] <box> (label 'cat'): <box> has no 'xbr' attribute",
        where + "[7] <ellipse> (label 'cat'): <ellipse> 'rx' is 'abc', not a number",
        where + "[8] <mask> (label 'cat'): rle runs cover 6 pixels, the 5x4 box 20",
        where + "[9] <mask> (label 'cat'): <mask> 'width' is '5.5', not a whole number of pixels",
        where + "[11] <box> (label 'cat'): polygon lies outside the 48x32 image",
        where + "[12] <box> (label None): label None is not a non-empty string",
        where + "[13] <box> (label 'dog'): label 'dog' is not one of the classes ['cat']",
        "annotations.xml: image 'a.png': warning: the size it gives, 48x33 (WxH), is a pixel off the image "
        "file's 48x32: the shapes are used as drawn",
        "annotations.xml: image 'missing.png': image ",
        "annotations.xml: image 'a.png': image a.png was converted already, from annotations.xml; skipped",
        "annotations.xml: image [4]: <image> has no 'name' attribute; skipped",
        "notes: 1 CVAT cuboid shapes left out (no area), 1 warnings",
        "skipped 15 record(s): 1 bad_coordinates, 1 bad_image, 1 bad_mask, 6 bad_shape, 1 duplicate_image, "
        "1 empty_mask, 1 few_points, 1 missing_image, 1 missing_label, 1 unknown_label",
    ):
        assert line in err, line
    assert CocoDataset(json_path=out, image_dir=src).skipped == {}


def test_cvat_image_lookup(tmp_path):
    """Project exports (images/<subset>/), a video task's frames (named without their .PNG), a name
    given as a path relative to the XML file's folder, and the folder holding one .xml file of another
    name."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "images" / "Train" / "p.png")
    _png(src / "images" / "frame_000003.PNG")
    _png(src / "pics" / "q.png")
    box = '<box label="cat" xtl="0" ytl="0" xbr="3" ybr="3"></box>'
    (src / "task_1.xml").write_text(_xml([
        _image("p.png", [box], extra=' subset="Train"'),
        _image("frame_000003", [box]),
        _image("pics/q.png", [box]),
    ]))
    assert _convert(src, out) == 0
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == [
        "images/Train/p.png", "images/frame_000003.PNG", "pics/q.png"]
    assert len(coco["annotations"]) == 3


@pytest.mark.parametrize("text, message", [
    ('<?xml version="1.0"?>\n<annotations>\n  <image id="0" name="a.png">\n  </imag>\n</annotations>\n',
     "annotations.xml: line 4, column 4: not well-formed XML (mismatched tag)"),
    ('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>\n'
     "<annotations>&b;</annotations>\n",
     "annotations.xml: has a DOCTYPE declaration (refused"),
    ('<?xml version="1.0"?>\n<!DOCTYPE a SYSTEM "file:///etc/passwd">\n<annotations/>\n',
     "annotations.xml: has a DOCTYPE declaration (refused"),
    ("<dataset><image name='a.png'/></dataset>", "not a CVAT XML export (the root element is <dataset>"),
    ("<annotations><version>2.0</version></annotations>", "CVAT XML version '2.0'; only 1.0 and 1.1 are"),
])
def test_cvat_unreadable_files_are_one_line_errors(tmp_path, capsys, text, message):
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "images" / "a.png")
    (src / "annotations.xml").write_text(text)
    assert _convert(src, out) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


def test_cvat_source_and_options(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _convert(tmp_path / "empty", tmp_path / "o.json") == 1
    assert "empty: no annotations.xml in the folder (no .xml file)" in capsys.readouterr().err
    assert _convert(tmp_path / "empty", tmp_path / "o.json", "--images", str(tmp_path)) == 1
    assert "no annotations.xml in the folder" in capsys.readouterr().err  # --images (a folder) accepted
    (tmp_path / "empty" / "annotations.xml").write_text(_xml([]))
    assert _convert(tmp_path / "empty", tmp_path / "o.json") == 1
    assert "no image could be converted" in capsys.readouterr().err and not (tmp_path / "o.json").exists()


def test_cvat_splits_exported_apart_number_the_classes_of_meta_alike(tmp_path, capsys):
    """The train and val tasks of a project list the same labels in <meta>; val has no 'chien'. The
    categories were the labels met, so val numbered 'chat' 1 and 'personne' 2 where train had 'chien'
    2 and 'personne' 3. A skeleton label is a category (its skeletons are keypoint instances); its points
    and labels for other shapes without area are none."""
    labels = ("<label><name>chat</name><type>any</type></label><label><name>chien</name><type>polygon</type>"
              "</label><label><name>personne</name><type>rectangle</type><attributes><attribute><name>is_crowd"
              "</name></attribute></attributes></label><label><name>pose</name><type>skeleton</type></label>"
              "<label><name>nose</name><type>points</type><parent>pose</parent></label>"
              "<label><name>path</name><type>polyline</type></label>")
    shapes = {"train": ['<box label="chat" xtl="1" ytl="1" xbr="9" ybr="9"/>',
                        '<box label="chien" xtl="12" ytl="2" xbr="20" ybr="9"/>',
                        '<box label="personne" xtl="2" ytl="12" xbr="9" ybr="20"/>'],
              "val": ['<box label="personne" xtl="1" ytl="1" xbr="9" ybr="9"/>']}
    ids = {}
    for split, boxes in shapes.items():
        src = tmp_path / split
        _png(src / "images" / "a.png")
        xml = _xml([_image("a.png", boxes)]).replace("<label><name>cat</name></label>", labels)
        xml = xml.replace("<task>", "<project>").replace("</task>", "</project>")  # a project's export
        (src / "annotations.xml").write_text(xml, encoding="utf-8")
        assert _convert(src, tmp_path / f"{split}.json") == 0
        coco = json.loads((tmp_path / f"{split}.json").read_text(encoding="utf-8"))
        ids[split] = {c["name"]: c["id"] for c in coco["categories"]}
        names = {c["id"]: c["name"] for c in coco["categories"]}
        assert [names[a["category_id"]] for a in coco["annotations"]] == [b.split('"')[1] for b in boxes]
    assert ids["train"] == ids["val"] == {"chat": 1, "chien": 2, "personne": 3, "pose": 4}
    assert "chien 0, personne 1" in capsys.readouterr().out


def test_cvat_project_export_subsets_are_converted_apart(tmp_path, capsys):
    """A project export holds all its subsets in one annotations.xml (images under images/<subset>/):
    there was no way to convert its Train and Validation apart. --split picks one (case aside), with
    the same category ids (the project's labels); a subset it lacks names the ones there are."""
    src = tmp_path / "project"
    for subset, name in (("Train", "a.png"), ("Train", "b.png"), ("Validation", "c.png")):
        _png(src / "images" / subset / name)
    meta = "<label><name>cat</name></label><label><name>dog</name></label>"
    box = '<box label="{}" xtl="1" ytl="1" xbr="9" ybr="9"/>'
    images = [_image(name, [box.format(label)], extra=f' subset="{subset}"')
              for subset, name, label in (("Train", "a.png", "cat"), ("Train", "b.png", "dog"),
                                          ("Validation", "c.png", "dog"))]
    (src / "annotations.xml").write_text(_xml(images).replace("<label><name>cat</name></label>", meta))
    assert _convert(src, tmp_path / "train.json", "--split", "Train") == 0
    assert _convert(src, tmp_path / "val.json", "--split", "validation") == 0
    train, val = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("train", "val"))
    assert [i["file_name"] for i in train["images"]] == ["images/Train/a.png", "images/Train/b.png"]
    assert [i["file_name"] for i in val["images"]] == ["images/Validation/c.png"]
    assert train["categories"] == val["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [a["category_id"] for a in val["annotations"]] == [2]
    capsys.readouterr()
    assert _convert(src, tmp_path / "test.json", "--split", "Test") == 1
    assert "no image of subset 'Test' (its subsets: Train, Validation)" in capsys.readouterr().err


def test_cvat_polygon_bbox_is_its_extent_with_fractions(tmp_path):
    """A polygon's bbox is its extent, fractions kept ([12, 11, 48, 39] from the mask before)."""
    src, out = tmp_path / "export", tmp_path / "coco.json"
    _png(src / "images" / "p.png", size=(64, 80))
    polygon = '<polygon label="cat" points="10.5,10.5;60.25,10.5;60.25,50.75"></polygon>'
    (src / "annotations.xml").write_text(_xml([_image("p.png", [polygon], size=(64, 80))]))
    assert _convert(src, out) == 0
    (ann,) = json.loads(out.read_text())["annotations"]
    assert ann["bbox"] == [10.5, 10.5, 49.75, 40.25]
    assert ann["area"] == int(_mask_of(ann["segmentation"], size=(64, 80)).sum())


def test_cvat_for_video_tracks(tmp_path, capsys):
    """"CVAT for video 1.1" (<track> with a shape on every frame, interpolated ones keyframe="0") was
    refused: each frame's shapes inside the view are instances of frame_NNNNNN.PNG; outside="1" shapes
    left out; a gap in a track is a warning (not interpolated); frames without shapes are negatives."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    for f in range(5):
        _png(src / "images" / f"frame_{f:06d}.PNG")
    box = '<box frame="{}" keyframe="{}" outside="{}" occluded="0" xtl="{}" ytl="2" xbr="{}" ybr="8"/>'
    poly = '<polygon frame="{}" keyframe="1" outside="0" occluded="0" points="1,20;9,20;9,28;1,28"/>'
    (src / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label>'
        '<label><name>dog</name></label></labels></task></meta>'
        '<track id="0" label="car" source="manual">' + box.format(0, 1, 0, 2, 10) + box.format(1, 0, 0, 4, 12)
        + box.format(2, 1, 1, 6, 14) + '</track>'
        '<track id="1" label="dog" group_id="0">' + poly.format(1) + poly.format(3) + '</track>'
        '</annotations>')  # fmt: skip
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = [(files[a["image_id"]], names[a["category_id"]], a["bbox"]) for a in coco["annotations"]]
    assert got == [("images/frame_000000.PNG", "car", [2.0, 2.0, 8.0, 6.0]),
                   ("images/frame_000001.PNG", "car", [4.0, 2.0, 8.0, 6.0]),
                   ("images/frame_000001.PNG", "dog", [1.0, 20.0, 8.0, 8.0]),
                   ("images/frame_000003.PNG", "dog", [1.0, 20.0, 8.0, 8.0])]  # fmt: skip
    assert "track '1' has no shape on frames [2] after a shape inside the view" in err
    assert "1 CVAT track shapes outside the view left out" in err and "2 CVAT tracks converted" in err
    # frames 2 (the car outside, the dog's gap) and 4 (no track) have files and no shape in view: images
    # without instances, as an empty <image> of "CVAT for images" is (they were left out)
    assert sorted(files.values()) == [f"images/frame_{f:06d}.PNG" for f in range(5)]
    assert "2 CVAT video frames without shapes (kept as images without instances)" in err
    assert "warning: 1 frames without shapes lie after every track's last frame (3): frame 4" in err


def test_cvat_video_gap_after_outside_is_not_warned():
    """CVAT writes no shape between an outside="1" keyframe and the track's return: frames 0 in, 1 in,
    2 out, 4 in, 5 out were warned about frame 3; only a gap after a shape in view is."""
    shape = '<box frame="{}" keyframe="1" outside="{}" xtl="1" ytl="1" xbr="5" ybr="5"/>'
    track0 = "".join(shape.format(f, o) for f, o in ((0, 0), (1, 0), (2, 1), (4, 0), (5, 1)))
    track1 = shape.format(0, 0) + shape.format(3, 1)
    root = ET.fromstring(f'<annotations><track id="0" label="car">{track0}</track>'
                         f'<track id="1" label="car">{track1}</track></annotations>')
    report = Report(stream=io.StringIO())
    frames = frame_images(root, [], report=report, where="a.xml")
    assert [el.get("name") for el in frames] == ["frame_000000", "frame_000001", "frame_000004"]
    assert report.messages == ["a.xml: warning: track '1' has no shape on frames [1, 2] after a shape inside "
                               "the view: they are not interpolated here (CVAT's export writes every frame "
                               "in view)"]


def test_cvat_video_huge_gap_lists_eight_frames_lazily():
    """Frames 0 and 2,000,000,000 built a list of every missing frame (memory exhausted) to show eight."""
    shape = '<box frame="{}" keyframe="1" outside="0" xtl="1" ytl="1" xbr="5" ybr="5"/>'
    root = ET.fromstring(f'<annotations><track id="0" label="car">{shape.format(0)}'
                         f'{shape.format(2_000_000_000)}</track></annotations>')
    report = Report(stream=io.StringIO())
    frame_images(root, [], report=report, where="a.xml")
    assert report.messages[0].startswith("a.xml: warning: track '0' has no shape on frames "
                                         "[1, 2, 3, 4, 5, 6, 7, 8] ... after a shape inside the view")


def test_cvat_video_frame_files_found_by_their_own_name(tmp_path, capsys):
    """frame_1.png (no zero padding) and frame_000002.Png (mixed-case extension) were counted as frames
    kept, then looked for as frame_000001.PNG / .png and skipped as not found: their own names are used."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "images" / "frame_000000.PNG")
    _png(src / "images" / "frame_1.png")
    _png(src / "images" / "frame_000002.Png")
    box = '<box frame="{}" keyframe="1" outside="0" occluded="0" xtl="2" ytl="2" xbr="10" ybr="8"/>'
    (src / "annotations.xml").write_text(
        '<annotations><version>1.1</version><track id="0" label="car">' + box.format(0) + box.format(1)
        + box.format(2) + '</track></annotations>')  # fmt: skip
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == [
        "images/frame_000000.PNG", "images/frame_000002.Png", "images/frame_1.png"]
    assert len(coco["annotations"]) == 3 and "not found" not in err


def test_cvat_video_empty_frames_after_the_tracks_are_warned(tmp_path, capsys):
    """A video annotated only in part: the frame files after every track's last frame (and most frames
    empty) were kept as negatives with a note only; a warning names their range and how to leave them out."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    for f in range(10):
        _png(src / "images" / f"frame_{f:06d}.PNG")
    box = '<box frame="{}" keyframe="1" outside="0" occluded="0" xtl="2" ytl="2" xbr="10" ybr="8"/>'
    (src / "annotations.xml").write_text(
        '<annotations><version>1.1</version><track id="0" label="car">' + box.format(0) + box.format(1)
        + '</track></annotations>')  # fmt: skip
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert len(json.loads(out.read_text())["images"]) == 10  # kept, as negatives
    assert ("warning: 8 frames without shapes lie after every track's last frame (1): frames 2-9; kept as "
            "images without instances (negatives); to leave them out, remove their files") in err
    assert "8 CVAT video frames without shapes (kept as images without instances)" in err


def test_cvat_video_mostly_empty_frames_are_warned():
    """More than half of the frames without shapes (not after the tracks): one warning with the range."""
    shape = '<box frame="{}" keyframe="1" outside="0" xtl="1" ytl="1" xbr="5" ybr="5"/>'
    root = ET.fromstring(f'<annotations><track id="0" label="car">{shape.format(0)}{shape.format(9)}'
                         '</track></annotations>')
    report = Report(stream=io.StringIO())
    files = {f: f"frame_{f:06d}.PNG" for f in range(10)}
    frames = frame_images(root, [], report=report, where="a.xml", files=files)
    assert len(frames) == 10
    assert any("8 of the 10 frames have no shape (frames 1-8); kept as images without instances" in m
               for m in report.messages)


def _video_meta(**fields):
    """A "CVAT for video" file's <meta><task> with ``fields`` (start_frame=..., size=...) and one car track
    in view on frames 0 and 1."""
    task = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    box = '<box frame="{}" keyframe="1" outside="0" xtl="1" ytl="1" xbr="5" ybr="5"/>'
    return ET.fromstring(f'<annotations><meta><task>{task}</task></meta><track id="0" label="car">'
                         f'{box.format(0)}{box.format(1)}</track></annotations>')


def test_cvat_video_task_frames_without_shapes_or_files_are_told(tmp_path, capsys):
    """Frames of the task (<meta><task> start_frame, stop_frame, size) with neither a shape in view nor an
    image file were left out without a word: an export without images, or frames removed, lost its
    negatives silently. Those with a file stay images without instances; the others are one warning."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    for f in (0, 1, 2):
        _png(src / "images" / f"frame_{f:06d}.PNG")
    box = '<box frame="{}" keyframe="1" outside="0" occluded="0" xtl="2" ytl="2" xbr="10" ybr="8"/>'
    (src / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><size>10</size><start_frame>0</start_frame>'
        '<stop_frame>9</stop_frame><frame_filter></frame_filter></task></meta>'
        '<track id="0" label="car">' + box.format(0) + box.format(1) + '</track></annotations>')
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == [f"images/frame_{f:06d}.PNG" for f in (0, 1, 2)]
    assert ("warning: 7 of the task's 10 frames (<meta>: from 0, 10 frames) have no shape in view and "
            "no frame_N file found for them: frames 3-9; left out") in err
    assert "7 CVAT task frames without shapes or frame_N files (left out)" in err


def _ten_frame_task(src, extra_task=""):
    box = '<box frame="{}" keyframe="1" outside="0" occluded="0" xtl="2" ytl="2" xbr="10" ybr="8"/>'
    (src / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><size>10</size><start_frame>0</start_frame>'
        f'<stop_frame>9</stop_frame>{extra_task}</task></meta>'
        '<track id="0" label="car">' + box.format(0) + box.format(1) + '</track></annotations>')


def test_cvat_video_jpeg_frames_and_deleted_frames(tmp_path, capsys):
    """JPEG frames (frame_000002.jpg, frame_3.JPEG) are frame files; <deleted_frames> are not told as
    frames without a file."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "images" / "frame_000000.PNG")
    _png(src / "images" / "frame_000001.jpg")
    _png(src / "images" / "frame_000002.jpg")
    _png(src / "images" / "frame_3.JPEG")
    _ten_frame_task(src, "<deleted_frames>4,5, 6</deleted_frames>")
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert sorted(i["file_name"] for i in json.loads(out.read_text())["images"]) == [
        "images/frame_000000.PNG", "images/frame_000001.jpg", "images/frame_000002.jpg",
        "images/frame_3.JPEG"]
    assert "3 of the task's 10 frames (<meta>: from 0, 10 frames) have no shape in view and no frame_N " \
           "file found for them: frames 7-9; left out" in err


def test_cvat_video_other_image_names_in_images_are_not_told_as_missing(tmp_path, capsys):
    """images/ holding files not named frame_N (renamed frames): no claim that frames have no file."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "images" / "frame_000000.PNG")
    _png(src / "images" / "frame_000001.PNG")
    _png(src / "images" / "clip_0002.png")
    _ten_frame_task(src)
    _convert(src, out)
    assert "of the task's 10 frames" not in capsys.readouterr().err


def test_cvat_video_task_frames_follow_the_frame_step():
    """frame_filter step=5 from 10: frames 10, 15, ..., 55; only those not shown are told."""
    shape = '<box frame="{}" keyframe="1" outside="0" xtl="1" ytl="1" xbr="5" ybr="5"/>'
    root = ET.fromstring('<annotations><meta><task><size>10</size><start_frame>10</start_frame>'
                         '<stop_frame>55</stop_frame><frame_filter>step=5</frame_filter></task></meta>'
                         f'<track id="0" label="car">{shape.format(10)}{shape.format(15)}</track>'
                         '</annotations>')
    report = Report(stream=io.StringIO())
    frames = frame_images(root, [], report=report, where="a.xml", files={55: "frame_000055.PNG"})
    assert [el.get("name") for el in frames] == ["frame_000010", "frame_000015", "frame_000055.PNG"]
    told = [m for m in report.messages if "of the task's" in m]
    assert told == ["a.xml: warning: 7 of the task's 10 frames (<meta>: from 10, 10 frames, step 5) have "
                    "no shape in view and no frame_N file found for them: frames 20-50; left out (no image "
                    "to keep them as negatives: export with images, or pass --images FOLDER holding "
                    "frame_000000.PNG ...)"]


@pytest.mark.parametrize("fields, field, why", [
    ({"start_frame": 5, "stop_frame": 2}, "stop_frame", "2 is before <start_frame> 5"),
    ({"start_frame": 0, "size": 2_000_000_000}, "size", "makes 2000000000 frames, more than a video task"),
    ({"start_frame": 0, "stop_frame": 1_999_999_999}, "stop_frame", "makes 2000000000 frames"),
    ({"start_frame": 0, "stop_frame": 5, "size": 9}, "size", "9 frames from 0 (step 1) go past <stop_frame>"),
    ({"stop_frame": 9, "size": 10}, "start_frame", "is missing"),
    ({"start_frame": 0}, "size", "is missing"),
    ({"start_frame": "1e9", "size": 3}, "start_frame", "is '1e9', not a whole number"),
    ({"start_frame": 0, "size": 3, "frame_filter": "step=0"}, "frame_filter", "is 'step=0', not 'step=N'"),
    ({"start_frame": 0, "size": 0}, "size", "is 0"),
])  # fmt: skip
def test_cvat_video_task_meta_not_sane_is_ignored_with_one_warning(fields, field, why):
    """Hostile or damaged <meta>: one warning naming the field, the frames left as the shapes and files
    give them, nothing allocated per frame (2e9 frames: at once)."""
    report = Report(stream=io.StringIO())
    frames = frame_images(_video_meta(**fields), [], report=report, where="a.xml")
    assert [el.get("name") for el in frames] == ["frame_000000", "frame_000001"]
    assert len(report.messages) == 1
    assert report.messages[0].startswith(f"a.xml: warning: <meta><task><{field}> {why}")
    assert report.messages[0].endswith(": the task's frames are not known, so frames without shapes or image "
                                       "files are not told")


def test_cvat_video_huge_sane_task_is_counted_not_listed():
    """A sane task of 10 million frames with two shown: counted from the range's ends, at once."""
    report = Report(stream=io.StringIO())
    frame_images(_video_meta(start_frame=0, size=10_000_000), [], report=report, where="a.xml")
    assert report.messages == [
        "a.xml: warning: 9999998 of the task's 10000000 frames (<meta>: from 0, 10000000 frames) have "
        "no shape in view and no frame_N file found for them: frames 2-9999999; left out (no image to keep "
        "them as negatives: export with images, or pass --images FOLDER holding frame_000000.PNG ...)"]


def test_cvat_video_without_task_meta_claims_no_frames():
    """A hand-made file without <meta><task>: no warning about fields it never had."""
    root = ET.fromstring('<annotations><track id="0" label="car"><box frame="0" keyframe="1" outside="0" '
                         'xtl="1" ytl="1" xbr="5" ybr="5"/></track></annotations>')
    report = Report(stream=io.StringIO())
    assert len(frame_images(root, [], report=report, where="a.xml")) == 1
    assert report.messages == []


def test_cvat_project_export_without_split_names_the_subsets_merged(tmp_path, capsys):
    """Without --split a project export's subsets were all converted, unsaid: a val set converted from it
    later with --split was then in the training file too. One line now names them and how to pick one;
    the result is the same."""
    src = tmp_path / "project"
    for subset, name in (("Train", "a.png"), ("Train", "b.png"), ("Validation", "c.png")):
        _png(src / "images" / subset / name)
    box = '<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9"/>'
    images = [_image(name, [box], extra=f' subset="{subset}"')
              for subset, name in (("Train", "a.png"), ("Train", "b.png"), ("Validation", "c.png"))]
    (src / "annotations.xml").write_text(_xml(images))
    assert _convert(src, tmp_path / "all.json") == 0
    err = capsys.readouterr().err
    assert ("annotations.xml: a project export with subsets Train (2 images), Validation (1 image): all "
            "converted into one file; --split NAME converts one subset (e.g. --split Train)") in err
    coco = json.loads((tmp_path / "all.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["images/Train/a.png", "images/Train/b.png",
                                                        "images/Validation/c.png"]
    assert _convert(src, tmp_path / "train.json", "--split", "Train") == 0
    assert "project export with subsets" not in capsys.readouterr().err


def test_cvat_exif_photo_annotated_on_its_stored_pixels_and_label_spaces(tmp_path, capsys):
    """An <image> whose width / height are the stored size of a photo EXIF turns by a quarter: its shapes
    lie on the stored pixels and are turned with the image (they were kept as drawn, beside the objects
    in the turned image); an <image> a pixel off the turned size still warns. Labels' surrounding spaces
    ("cat " beside <meta>'s "cat", a second class) are stripped, said once."""
    src = tmp_path / "export"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: stored (x, y) at (H - y, x)
    for name in ("f.jpg", "g.jpg"):
        (src / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(src / "images" / name, exif=exif)
    mask = np.ones((2, 3), bool)
    shapes = ['<box label="cat " xtl="3" ytl="2" xbr="12" ybr="8"/>',
              f'<mask label="cat" rle="{_cvat_rle(mask)}" left="10" top="5" width="3" height="2"/>']
    (src / "annotations.xml").write_text(_xml([_image("f.jpg", shapes, size=(20, 40)),
                                               _image("g.jpg", shapes[:1], size=(41, 20))]))
    assert _convert(src, tmp_path / "out.json") == 0
    err = capsys.readouterr().err
    coco = json.loads((tmp_path / "out.json").read_text())
    assert [(i["height"], i["width"]) for i in coco["images"]] == [(40, 20), (40, 20)]
    assert [(a["image_id"], a["bbox"]) for a in coco["annotations"]] == [
        (1, [12.0, 3.0, 6.0, 9.0]), (1, [13.0, 10.0, 2.0, 3.0]), (2, [3.0, 2.0, 9.0, 6.0])]
    assert coco["categories"] == [{"id": 1, "name": "cat"}]
    assert ("annotations.xml: image 'f.jpg': the size it gives, 20x40 (HxW), is the image's stored size, "
            "not its 40x20 once its EXIF orientation 6 is applied") in err
    assert ("image 'g.jpg': warning: the size it gives, 20x41 (WxH), is a pixel off the image file's 20x40: "
            "the shapes are used as drawn") in err
    assert "image 'f.jpg': warning" not in err
    assert err.count("label 'cat ' read as 'cat'") == 1


def _stepped_task(meta="task"):
    """frame_filter step=2 from 10 to 18: CVAT's frames are 10, 12, 14, 16, 18. Track 0 lacks 14 (a real
    gap); track 1 is at 12, outside at 14, back at 16 (complete); track 2 jumps from 10 to 16."""
    shape = '<box frame="{}" keyframe="1" outside="{}" xtl="1" ytl="1" xbr="5" ybr="5"/>'
    tracks = {0: ((10, 0), (12, 0), (16, 0), (18, 0)), 1: ((12, 0), (14, 1), (16, 0)), 2: ((10, 0), (16, 0))}
    body = "".join(f'<track id="{t}" label="car">' + "".join(shape.format(f, o) for f, o in shapes)
                   + "</track>" for t, shapes in tracks.items())
    return ET.fromstring(f'<annotations><meta><{meta}><size>5</size><start_frame>10</start_frame>'
                         f'<stop_frame>18</stop_frame><frame_filter>step=2</frame_filter></{meta}></meta>'
                         f'{body}</annotations>')


def test_cvat_video_gaps_follow_the_frame_step():
    """The gap warning counted every integer frame: with step 2 it named frames 11, 13, 15 ... that the
    task does not have, on every track (4 phantom frames per real one with step 5)."""
    report = Report(stream=io.StringIO())
    files = {f: f"frame_{f:06d}.PNG" for f in (10, 12, 14, 16, 18)}
    frame_images(_stepped_task(), [], report=report, where="a.xml", files=files)
    gaps = [m for m in report.messages if "has no shape on frames" in m]
    assert gaps == [f"a.xml: warning: track '{t}' has no shape on frames {f} after a shape inside the view: "
                    "they are not interpolated here (CVAT's export writes every frame in view)"
                    for t, f in ((0, [14]), (2, [12, 14]))]


def test_cvat_video_job_export_keeps_the_task_frame_checks():
    """"Export job dataset" writes <meta><job> with the task's fields: the step and the missing-frame
    check came from <meta><task> only, so both were off for job exports."""
    report = Report(stream=io.StringIO())
    frame_images(_stepped_task("job"), [], report=report, where="a.xml", files={18: "frame_000018.PNG"})
    assert "a.xml: warning: track '0' has no shape on frames [14] after" in report.messages[0]
    assert report.messages[2].startswith("a.xml: warning: 1 of the job's 5 frames (<meta>: from 10, 5 "
                                         "frames, step 2) have no shape in view and no frame_N file found "
                                         "for them: frame 14; left out")
    assert len(report.messages) == 3
    report = Report(stream=io.StringIO())
    root = ET.fromstring('<annotations><meta><job><start_frame>x</start_frame></job></meta><track id="0" '
                         'label="car"><box frame="0" keyframe="1" outside="0" xtl="1" ytl="1" xbr="5" '
                         'ybr="5"/></track></annotations>')
    frame_images(root, [], report=report, where="a.xml")
    assert report.messages == ["a.xml: warning: <meta><job><start_frame> is 'x', not a whole number: the "
                               "job's frames are not known, so frames without shapes or image files are "
                               "not told"]


def test_cvat_video_frame_tags_are_counted(tmp_path, capsys):
    """CVAT for video writes frame tags as top-level <tag frame label>; they were dropped unsaid (the
    image export counts its tags as image labels left out)."""
    src = tmp_path / "src"
    _png(src / "images" / "frame_000000.PNG")
    (src / "annotations.xml").write_text(
        '<annotations><version>1.1</version><track id="0" label="car"><box frame="0" keyframe="1" '
        'outside="0" xtl="1" ytl="1" xbr="5" ybr="5"/></track><tag frame="0" label="car" source="manual"/>'
        '<tag frame="0" label="night" source="manual"></tag></annotations>')
    assert _convert(src, tmp_path / "o.json") == 0
    assert "2 CVAT tags (image labels) left out" in capsys.readouterr().err


def test_cvat_resized_image_shapes_scaled_other_shape_skipped(tmp_path, capsys):
    """<image width height> of the image drawn on, the file a copy resized to half: the shapes were kept
    at their drawn pixels with a warning that read as handled (boxes twice their place, a polygon past
    the smaller image dropped). Now a resized copy has its shapes scaled (a mask too, pixel by pixel,
    nearest), said once and counted; an image of another shape is skipped by name."""
    src = tmp_path / "export"
    _png(src / "images" / "half.png", size=(H // 2, W // 2))
    _png(src / "images" / "other.png", size=(H // 2, W))
    mask = np.zeros((4, 6), bool)
    mask[:2, :] = True  # rows 10, 11 of x 20..25 drawn: rows 5 of x 10..12 once halved
    shapes = ['<box label="cat" xtl="4" ytl="6" xbr="12" ybr="18"/>',
              '<polygon label="cat" points="30,20;46,20;46,28"/>',
              f'<mask label="cat" rle="{_cvat_rle(mask)}" left="20" top="10" width="6" height="4"/>']
    (src / "annotations.xml").write_text(_xml([_image("half.png", shapes), _image("other.png", shapes)]))
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("images/half.png", H // 2, W // 2)]
    anns = coco["annotations"]
    assert [a["bbox"] for a in anns[:2]] == [[2.0, 3.0, 4.0, 6.0], [15.0, 10.0, 8.0, 4.0]]
    expected = np.zeros((H // 2, W // 2), bool)
    expected[5, 10:13] = True
    assert (mask_utils.decode(anns[2]["segmentation"]) > 0).tolist() == expected.tolist()
    assert (f"image 'half.png': the size it gives, {W}x{H} (WxH), is not the image file's {W // 2}x{H // 2} "
            "but has its shape (a resized copy): the shapes are scaled by 0.5 x 0.5") in err
    assert (f"image 'other.png': drawn on a {W}x{H} image (the width x height the file gives), the image "
            f"file is {W}x{H // 2}, of another shape") in err
    assert "1 images resized since they were annotated" in err and "1 image_size_mismatch" in err
