"""convert-data --from voc: palette indices (not colours), the void band, class by majority of
SegmentationClass checked against the XML, difficult -> crowd, RGB masks through VOC's colour map or a
labelmap.txt, splits, and every bad record named and counted."""

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.images import read_image

H, W = 32, 48
# VOC's published colours (devkit colour map), written here rather than computed by the code under test
VOC_RGB = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 8: (64, 0, 0), 12: (64, 0, 128),
           15: (192, 128, 128), 255: (224, 224, 192)}
PERSON, CAT, DOG, BIRD, AEROPLANE, BICYCLE = 15, 8, 12, 3, 1, 2


def _convert(src, out, *options):
    return main(["convert-data", "--from", "voc", str(src), "--output", str(out), *options])


def _palette_png(path, indices):
    """A palette PNG as VOC ships them: pixel = index, the palette any colours (here grey ramps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette([v for i in range(256) for v in ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)])
    img.save(path)


def _rgb_png(path, indices):
    """The same indices painted in VOC colours (tools that wrote RGB masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((*indices.shape, 3), np.uint8)
    for index, colour in VOC_RGB.items():
        rgb[indices == index] = colour
    Image.fromarray(rgb).save(path)


def _image(root, name, size=(H, W), exif=None):
    path = root / "JPEGImages" / f"{name}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size[::-1], (90, 90, 90)).save(path, **({"exif": exif} if exif is not None else {}))
    return path


def _xml(root, name, objects):
    path = root / "Annotations" / f"{name}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><truncated>0</truncated>"
                   f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
                   for n, d in objects)
    path.write_text(f"<annotation><filename>{name}.jpg</filename>{body}</annotation>")


def _split(root, split, names):
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names))


def _box(y1, y2, x1, x2):
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


def _tree(root):
    # Image a (palette PNGs): a person with a void ring, a difficult cat, a dog the XML calls a cat, and
    # an instance 4 the XML does not list.
    objects, classes = np.zeros((H, W), int), np.zeros((H, W), int)
    for k, cls, (y1, y2, x1, x2) in ((1, PERSON, (2, 12, 3, 15)), (2, CAT, (15, 26, 20, 41)),
                                      (3, DOG, (2, 8, 30, 46)), (4, BIRD, (28, 31, 2, 10))):
        objects[y1:y2, x1:x2], classes[y1:y2, x1:x2] = k, cls
    ring = _box(2, 12, 3, 15) & ~_box(3, 11, 4, 14)  # the void band along the person's outline
    objects[ring], classes[ring] = 255, 255
    classes[3, 31] = CAT  # one stray pixel does not outvote the dog's others
    _image(root, "2007_000001")
    _palette_png(root / "SegmentationObject" / "2007_000001.png", objects)
    _palette_png(root / "SegmentationClass" / "2007_000001.png", classes)
    _xml(root, "2007_000001", [("person", 0), ("cat", 1), ("cat", 0)])
    # Image b (RGB PNGs, no XML): an aeroplane and a bicycle.
    objects, classes = np.zeros((H, W), int), np.zeros((H, W), int)
    objects[5:10, 5:20], classes[5:10, 5:20] = 1, AEROPLANE
    objects[20:30, 30:40], classes[20:30, 30:40] = 2, BICYCLE
    objects[19, 29:41], classes[19, 29:41] = 255, 255
    _image(root, "2007_000002")
    _rgb_png(root / "SegmentationObject" / "2007_000002.png", objects)
    _rgb_png(root / "SegmentationClass" / "2007_000002.png", classes)
    # Named in the split: PNGs without their image; an image without its PNG.
    _palette_png(root / "SegmentationObject" / "2007_000003.png", objects)
    _image(root, "2007_000004")
    _split(root, "train", ["2007_000001", "2007_000002", "2007_000003", "2007_000004"])
    _split(root, "val", ["2007_000002"])


def _masks(coco, image_id):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [(names[a["category_id"]], a["iscrowd"], a["bbox"], mask_utils.decode(a["segmentation"]) > 0)
            for a in coco["annotations"] if a["image_id"] == image_id]


def test_voc_instances_void_difficult_xml_checks_and_round_trip(tmp_path, capsys):
    root = tmp_path / "VOC2012"
    _tree(root)
    out = tmp_path / "train.json"
    assert _convert(root, out) == 0
    captured = capsys.readouterr()
    coco = json.loads(out.read_text())

    assert [c["name"] for c in coco["categories"]][:3] == ["aeroplane", "bicycle", "bird"]
    assert [c["id"] for c in coco["categories"]] == list(range(1, 21))
    assert coco["categories"][14] == {"id": 15, "name": "person"}
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("JPEGImages/2007_000001.jpg", H, W), ("JPEGImages/2007_000002.jpg", H, W)]

    # Image a: the person is its pixels inside the void ring; the cat is difficult -> crowd; the dog is
    # a dog (SegmentationClass wins over the XML); instance 4 takes its class from SegmentationClass.
    got = _masks(coco, 1)
    expected = [("person", 0, _box(3, 11, 4, 14)), ("cat", 1, _box(15, 26, 20, 41)),
                ("dog", 0, _box(2, 8, 30, 46)), ("bird", 0, _box(28, 31, 2, 10))]
    assert [(g[0], g[1]) for g in got] == [(e[0], e[1]) for e in expected]
    for g, e in zip(got, expected):
        assert (g[3] == e[2]).all(), g[0]
    assert got[0][2] == [4.0, 3.0, 10.0, 8.0]  # the box of the mask, inside the void band

    # Image b: RGB masks mapped back through VOC's colour map; the void row belongs to nobody.
    got = _masks(coco, 2)
    assert [g[0] for g in got] == ["aeroplane", "bicycle"]
    assert (got[0][3] == _box(5, 10, 5, 20)).all() and (got[1][3] == _box(20, 30, 30, 40)).all()

    err = captured.err
    assert ("SegmentationObject/2007_000001.png: warning: instance 3 is 'dog' in SegmentationClass but "
            "'cat' in the XML; using 'dog'") in err
    assert "instance 4 has no object in the XML (3 objects)" in err
    assert ("ImageSets/Segmentation/train.txt line 3 (2007_000003): no image JPEGImages/2007_000003.jpg; "
            "skipped") in err
    assert "train.txt line 4 (2007_000004): no SegmentationObject/2007_000004.png; skipped" in err
    assert "skipped 2 record(s): 1 missing_annotation, 1 missing_image" in err
    assert "1 difficult objects written as crowd regions" in err
    assert f"--train-images {root}" in captured.out

    # Training reads it: every file_name resolves under SRC, masks as converted.
    dataset = CocoDataset(json_path=out, image_dir=root)
    assert dataset.skipped == {} and len(dataset) == 2
    _, target = dataset[0]
    assert target["iscrowd"].tolist() == [False, True, False, False]
    assert (target["masks"][0].numpy().astype(bool) == _box(3, 11, 4, 14)).all()

    # --split val: only image b.
    assert _convert(root, tmp_path / "val.json", "--split", "val") == 0
    assert [i["file_name"] for i in json.loads((tmp_path / "val.json").read_text())["images"]] == [
        "JPEGImages/2007_000002.jpg"]


def test_no_split_files_converts_every_object_png_empty_png_and_16bit_grey(tmp_path, capsys):
    root = tmp_path / "voc"
    # an object PNG with no instance (only background and void): an image without instances
    empty = np.zeros((H, W), int)
    empty[0, :] = 255
    _image(root, "a")
    _palette_png(root / "SegmentationObject" / "a.png", empty)
    _palette_png(root / "SegmentationClass" / "a.png", empty)
    # a 16-bit object PNG (ids as values, one above 255) and a greyscale 'L' class PNG
    ids, cls = np.zeros((H, W), np.uint16), np.zeros((H, W), np.uint8)
    ids[1:5, 1:9], cls[1:5, 1:9] = 1, PERSON
    ids[10:20, 10:30], cls[10:20, 10:30] = 300, CAT
    _image(root, "b", size=(H, W))
    (root / "SegmentationObject").mkdir(exist_ok=True)
    Image.fromarray(ids).save(root / "SegmentationObject" / "b.png")
    Image.fromarray(cls, mode="L").save(root / "SegmentationClass" / "b.png")
    assert Image.open(root / "SegmentationObject" / "b.png").mode.startswith("I")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "b.xml").write_text("<annotation><object><name>cat")  # cut short
    (root / "Annotations" / "a.xml").write_text(_DOCTYPE_XML)
    out = tmp_path / "all.json"
    assert _convert(root, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["JPEGImages/a.jpg", "JPEGImages/b.jpg"]
    assert _masks(coco, 1) == []
    got = _masks(coco, 2)
    assert [g[0] for g in got] == ["person", "cat"]
    assert (got[0][3] == _box(1, 5, 1, 9)).all() and (got[1][3] == _box(10, 20, 10, 30)).all()
    assert ("2 images of SegmentationObject/ taken (no ImageSets/Segmentation/train.txt; split files: "
            "none)") in err
    assert "1 images without instances" in err
    assert ("SegmentationObject/b.png: warning: b.xml cannot be read (line 1, column 29: not well-formed XML "
            "(no element found)); classes from SegmentationClass only") in err
    assert "classes from SegmentationClass only, difficult flags unknown" in err
    assert "SegmentationObject/a.png: warning: a.xml cannot be read (has a DOCTYPE declaration" in err
    assert "skipped 0 record(s)" in err


def test_mask_size_unknown_colour_unknown_index_are_named_and_skipped(tmp_path, capsys):
    root = tmp_path / "voc"
    ids = np.zeros((H, W), int)
    ids[2:6, 2:6] = 1
    # a mask of another size than its image
    _image(root, "small", size=(H - 2, W))
    _palette_png(root / "SegmentationObject" / "small.png", ids)
    _palette_png(root / "SegmentationClass" / "small.png", ids * PERSON)
    # an RGB object PNG with a colour of no index
    _image(root, "odd")
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[4, 7] = (1, 2, 3)
    (root / "SegmentationObject" / "odd.png").parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(root / "SegmentationObject" / "odd.png")
    _palette_png(root / "SegmentationClass" / "odd.png", ids)
    # class index 21: no VOC class has it; a second instance is fine
    both = ids.copy()
    both[10:12, 10:12] = 2
    cls = ids * 21
    cls[10:12, 10:12] = DOG
    _image(root, "ok")
    _palette_png(root / "SegmentationObject" / "ok.png", both)
    _palette_png(root / "SegmentationClass" / "ok.png", cls)
    out = tmp_path / "out.json"
    assert _convert(root, out) == 0
    err = capsys.readouterr().err
    assert ("SegmentationObject/small.png: SegmentationObject small.png is 48x32, the image 48x30; "
            "skipped") in err
    assert ("SegmentationObject/odd.png: SegmentationObject odd.png: colour (1, 2, 3) (at x=7, y=4) is no "
            "index's colour (1 unknown colour(s)); skipped") in err
    assert ("SegmentationObject/ok.png: instance 1: class index 21 has no name in the 20 VOC classes; "
            "skipped") in err
    assert "skipped 3 record(s): 1 bad_mask_size, 1 unknown_class_index, 1 unknown_colour" in err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["JPEGImages/ok.jpg"]
    assert [(a["category_id"], a["area"]) for a in coco["annotations"]] == [(DOG, 4)]


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_exif_orientation_masks_turned_like_the_image(tmp_path, capsys):
    """read_image turns a JPEG by its EXIF orientation; masks of the stored pixels are turned the same
    way, masks already of the turned size are left as they are, and training reads both aligned."""
    root = tmp_path / "voc"
    stored = np.zeros((H, W), int)  # (32, 48) as stored; orientation 6 is read as 48 rows x 32 columns
    stored[2:6, 30:44] = 1
    path = _image(root, "turn", size=(H, W), exif=_exif(6))
    pixels = np.full((H, W, 3), 20, np.uint8)
    pixels[stored == 1] = 250
    Image.fromarray(pixels).save(path, exif=_exif(6), quality=100)
    _palette_png(root / "SegmentationObject" / "turn.png", stored)
    _palette_png(root / "SegmentationClass" / "turn.png", stored * CAT)
    # a quarter turn whose masks already follow it (48 x 32): used as they are
    _image(root, "already", size=(H, W), exif=_exif(8))
    turned = np.zeros((W, H), int)
    turned[40:46, 1:4] = 1
    _palette_png(root / "SegmentationObject" / "already.png", turned)
    _palette_png(root / "SegmentationClass" / "already.png", turned * DOG)
    out = tmp_path / "out.json"
    assert _convert(root, out) == 0
    err = capsys.readouterr().err
    assert ("SegmentationObject/turn.png: warning: the image has EXIF orientation 6 and is read turned; "
            "its masks are turned the same way (check with show-data)") in err
    assert "already.png: warning" not in err
    coco = json.loads(out.read_text())
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("JPEGImages/already.jpg", W, H), ("JPEGImages/turn.jpg", W, H)]
    (name_a, _, _, mask_a), = _masks(coco, 1)
    (name_t, _, _, mask_t), = _masks(coco, 2)
    assert name_a == "dog" and (mask_a == (turned == 1)).all()
    assert name_t == "cat" and (mask_t == np.rot90(stored == 1, k=-1)).all()  # 6: turned 90 degrees clockwise
    # the bright pixels of the image as training reads it are exactly the mask's
    image = read_image(path)[0].numpy()  # (48, 32)
    assert image.shape == mask_t.shape and ((image > 0.5) == mask_t).all()
    dataset = CocoDataset(json_path=out, image_dir=root)
    assert dataset.skipped == {}
    _, target = dataset[1]
    assert (target["masks"][0].numpy().astype(bool) == mask_t).all()


def test_labelmap_and_classes_give_custom_categories(tmp_path, capsys):
    """A CVAT 'Segmentation mask' export: RGB class masks in labelmap.txt's colours, background listed
    anywhere, ImageSets/Segmentation/default.txt only; --classes names the indices instead."""
    root = tmp_path / "cvat"
    root.mkdir()
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nwidget:10,200,30::\n"
                                       "background:0,0,0::\ngadget:250,5,5::\n")
    ids = np.zeros((H, W), int)
    ids[1:4, 1:4], ids[10:15, 20:30] = 1, 2
    cls = np.zeros((H, W, 3), np.uint8)
    cls[1:4, 1:4], cls[10:15, 20:30] = (250, 5, 5), (10, 200, 30)
    _image(root, "frame_000000")
    _rgb_png(root / "SegmentationObject" / "frame_000000.png", ids)
    (root / "SegmentationClass").mkdir()
    Image.fromarray(cls).save(root / "SegmentationClass" / "frame_000000.png")
    _split(root, "default", ["frame_000000"])
    out = tmp_path / "out.json"
    assert _convert(root, out, "--split", "default") == 0
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "widget"}, {"id": 2, "name": "gadget"}]
    assert [(a["category_id"], a["area"]) for a in coco["annotations"]] == [(2, 9), (1, 50)]

    # --classes: the palette indices 1..N are named by the list, labelmap.txt is not read
    palette_cls = np.zeros((H, W), int)
    palette_cls[ids == 1], palette_cls[ids == 2] = 2, 1
    _palette_png(root / "SegmentationClass" / "frame_000000.png", palette_cls)
    assert _convert(root, out, "--split", "default", "--classes", "screw,bolt") == 0
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "screw"}, {"id": 2, "name": "bolt"}]
    assert [a["category_id"] for a in coco["annotations"]] == [2, 1]
    capsys.readouterr()


def test_voc_option_and_layout_errors(tmp_path, capsys):
    root = tmp_path / "voc"
    _tree(root)
    assert _convert(root, tmp_path / "o.json", "--split", "test") == 1
    err = capsys.readouterr().err
    assert "ImageSets/Segmentation/test.txt: no such split file (found: train, val)" in err
    assert _convert(root, tmp_path / "o.json", "--class-attribute", "x") == 1
    assert "--class-attribute applies to --from via, not voc" in capsys.readouterr().err
    bare = tmp_path / "bare"
    (bare / "SegmentationObject").mkdir(parents=True)
    assert _convert(bare, tmp_path / "o.json") == 1
    assert "JPEGImages: no such folder" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_other_png_modes_read_as_indices(tmp_path, mode):
    root = tmp_path / "voc"
    ids = np.zeros((H, W), int)
    ids[3:7, 3:9] = 1
    _image(root, "x")
    (root / "SegmentationObject").mkdir()
    if mode == "RGBA":
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[..., 3] = 255
        rgba[ids == 1, :3] = VOC_RGB[1]
        Image.fromarray(rgba).save(root / "SegmentationObject" / "x.png")
    else:
        Image.fromarray(np.stack([ids, np.full_like(ids, 255)], -1).astype(np.uint8), mode="LA").save(
            root / "SegmentationObject" / "x.png")
    _palette_png(root / "SegmentationClass" / "x.png", ids * PERSON)
    out = tmp_path / "o.json"
    assert _convert(root, out) == 0
    coco = json.loads(out.read_text())
    (ann,) = coco["annotations"]
    assert ann["category_id"] == PERSON and (mask_utils.decode(ann["segmentation"]) == ids).all()


_DOCTYPE_XML = ('<!DOCTYPE annotation [<!ENTITY x "cat">]><annotation><object><name>&x;</name>'
                '<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>')


def _det_xml(root, name, objects, size=None):
    """A detection XML: (name, difficult, (xmin, ymin, xmax, ymax) 1-based inclusive or None); ``size``
    (H, W) its <size>, none when None."""
    path = root / "Annotations" / f"{name}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult>"
        + ("" if box is None else "<bndbox>" + "".join(
            f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box)) + "</bndbox>")
        + "<part><name>head</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>3</xmax><ymax>3</ymax></bndbox>"
          "</part></object>"
        for n, d, box in objects)
    given = "" if size is None else f"<size><width>{size[1]}</width><height>{size[0]}</height></size>"
    path.write_text(f"<annotation><filename>{name}.jpg</filename>{given}{body}</annotation>")


def test_voc_detection_tree_boxes_only(tmp_path, capsys):
    """Annotations/ + ImageSets/Main without SegmentationObject PNGs (LabelImg, CVAT's VOC export of box
    tasks) was refused "SegmentationObject: no such folder" (and, with the folder empty, "no voc
    annotations there"): box-only COCO, or rectangles with --boxes-as-masks; split from ImageSets/Main."""
    root = tmp_path / "det"
    for name in ("a", "b", "c"):
        _image(root, name)
    _det_xml(root, "a", [("dog", 0, (11, 6, 20, 15)), ("cat", 1, (1, 1, 48, 40)), ("cat", 0, None)])
    _det_xml(root, "b", [("person", 0, (5, 5, 10, 10))])
    _det_xml(root, "c", [("bird", 0, (1, 1, 2, 2))])
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nmissing\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    (root / "SegmentationObject").mkdir()  # empty, as some exports leave it
    out = tmp_path / "train.json"
    assert _convert(root, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["JPEGImages/a.jpg"]
    got = [(a["category_id"], a["bbox"], a["area"], a["segmentation"], a["iscrowd"])
           for a in coco["annotations"]]
    assert got == [(DOG, [10.0, 5.0, 10.0, 10.0], 100.0, [], 0),
                   (CAT, [0.0, 0.0, 48.0, 32.0], 1536.0, [], 1)]  # clipped to the 48x32 image
    assert "ImageSets/Main/train.txt line 2 (missing): no image JPEGImages/missing.jpg; skipped" in err
    assert "Annotations/a.xml: object 3 (cat): the object has no <bndbox>; skipped" in err
    assert "box-only annotations (segmentation []" in err
    dataset = CocoDataset(json_path=out, image_dir=root)  # the loader trains them as boxes
    assert dataset.box_only_annotations == 2
    target = dataset[0][1]
    assert target["boxes"].tolist()[0] == [10.0, 5.0, 20.0, 15.0]
    assert target["has_mask"].tolist() == [False, False]

    assert _convert(root, out, "--split", "val", "--boxes-as-masks") == 0
    coco = json.loads(out.read_text())
    ann = coco["annotations"][0]
    assert ann["segmentation"] == [[4.0, 4.0, 10.0, 4.0, 10.0, 10.0, 4.0, 10.0]] and ann["area"] == 36
    assert _convert(tmp_path / "voc_seg_missing", out, "--boxes-as-masks") == 1


def test_voc_detection_xml_with_doctype_refused(tmp_path, capsys):
    """VOC XML was read with plain ET.parse, entities expanded (CVAT's reader refuses a DOCTYPE): the
    file is skipped as unreadable, named."""
    root = tmp_path / "det"
    for name in ("a", "b"):
        _image(root, name)
    _det_xml(root, "b", [("dog", 0, (11, 6, 20, 15))])
    (root / "Annotations" / "a.xml").write_text(_DOCTYPE_XML)
    out = tmp_path / "o.json"
    assert _convert(root, out) == 0
    err = capsys.readouterr().err
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["JPEGImages/b.jpg"]
    assert "Annotations/a.xml: a.xml cannot be read (has a DOCTYPE declaration (refused" in err
    assert "skipped 1 record(s): 1 unreadable_xml" in err


def test_voc_detection_notes_count_the_images_converted_only(tmp_path, capsys):
    """Its only XML refused: the notes said "1 ... written as box-only annotations" and then "nothing
    written"; one of two refused: the note counts the one converted."""
    root = tmp_path / "det"
    _image(root, "a")
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "a.xml").write_text(_DOCTYPE_XML)
    out = tmp_path / "o.json"
    assert _convert(root, out) == 1
    err = capsys.readouterr().err
    assert "nothing written" in err and "written as box-only" not in err and " converted (no " not in err
    _image(root, "b")
    _det_xml(root, "b", [("dog", 0, (11, 6, 20, 15))])
    assert _convert(root, out) == 0
    err = capsys.readouterr().err
    assert "1 VOC images with boxes only (no SegmentationObject PNGs): written as box-only" in err
    assert "2 images of Annotations/ taken" in err


def test_voc_detection_exif_photo_boxes_on_its_stored_pixels_are_turned(tmp_path, capsys):
    """LabelImg shows a photo's stored pixels and writes their size in <size>: on a photo EXIF turns by a
    quarter the boxes were kept as drawn (<size> never read), beside the objects of the turned image
    training reads, without a word. Now they are turned with it; a <size> of the turned image keeps them;
    another <size> is warned about naming both sizes (0, as some tools write, is not)."""
    root = tmp_path / "det"
    for name, size in (("stored", (20, 40)), ("shown", (40, 20)), ("other", (41, 20)), ("zero", (0, 0))):
        _image(root, name, size=(20, 40), exif=_exif(6))  # stored 20x40 (HxW), shown 40x20
        _det_xml(root, name, [("dog", 0, (4, 3, 12, 8))], size=size)  # pixels x 3..11, y 2..7
    out = tmp_path / "out.json"
    assert _convert(root, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        (f"JPEGImages/{n}.jpg", 40, 20) for n in ("other", "shown", "stored", "zero")]
    # turned a quarter clockwise: stored (x, y) is shown at (H - y, x), H = 20 the stored height
    assert [a["bbox"] for a in coco["annotations"]] == [[3.0, 2.0, 9.0, 6.0], [3.0, 2.0, 9.0, 6.0],
                                                        [12.0, 3.0, 6.0, 9.0], [3.0, 2.0, 9.0, 6.0]]
    assert ("Annotations/stored.xml: the size it gives, 20x40 (HxW), is the image's stored size, not its "
            "40x20 once its EXIF orientation 6 is applied") in err
    assert ("Annotations/other.xml: warning: the size it gives, 20x41 (WxH), is a pixel off the image file's "
            "20x40: the shapes are used as drawn") in err
    assert not any(f"{n}.xml: warning" in err for n in ("shown", "zero", "stored"))
    assert _convert(root, out, "--boxes-as-masks") == 0
    ann = json.loads(out.read_text())["annotations"][2]
    assert ann["segmentation"] == [[12.0, 3.0, 18.0, 3.0, 18.0, 12.0, 12.0, 12.0]] and ann["area"] == 54


def test_voc_xml_objects_without_pixels_are_named_with_their_file(tmp_path, capsys):
    """XML objects with no index in the object PNG were only counted ("1 XML objects without pixels"),
    the image unnamed, and one in a gap (indices 1 and 3 of 3 objects) not even counted. Each is now
    named with its XML file."""
    root = tmp_path / "voc"
    ids, cls = np.zeros((H, W), int), np.zeros((H, W), int)
    ids[2:8, 2:8], cls[2:8, 2:8] = 1, CAT
    ids[10:20, 10:20], cls[10:20, 10:20] = 3, DOG
    _image(root, "a")
    _palette_png(root / "SegmentationObject" / "a.png", ids)
    _palette_png(root / "SegmentationClass" / "a.png", cls)
    _xml(root, "a", [("cat", 0), ("bird", 0), ("dog", 0), ("bus", 0)])
    assert _convert(root, tmp_path / "out.json") == 0
    err = capsys.readouterr().err
    for k, name in ((2, "bird"), (4, "bus")):
        assert (f"Annotations/a.xml: object {k} ({name}): no pixel of index {k} in "
                f"SegmentationObject/a.png; left out") in err
    assert "2 XML objects without pixels in SegmentationObject" in err
    coco = json.loads((tmp_path / "out.json").read_text())
    assert len(coco["annotations"]) == 2


def test_labelimg_folder_xmls_beside_the_images_is_read_as_boxes(tmp_path, capsys):
    """LabelImg saves a.xml beside a.jpg by default: --from voc said "SegmentationObject: no such folder;
    a VOC tree has JPEGImages/, SegmentationObject/ ..." (naming no box-only layout)."""
    flat = tmp_path / "labelimg"
    for name in ("a", "b", "c"):
        _image(flat, name)
    _det_xml(flat, "a", [("dog", 0, (11, 6, 20, 15))])
    _det_xml(flat, "b", [("cat", 1, (1, 1, 10, 10))])
    _det_xml(flat, "d", [("cat", 0, (1, 1, 10, 10))])  # no d.jpg
    for path in (flat / "JPEGImages").iterdir():
        path.rename(flat / path.name)
    for path in (flat / "Annotations").iterdir():
        path.rename(flat / path.name)
    (flat / "JPEGImages").rmdir()
    (flat / "Annotations").rmdir()
    out = tmp_path / "li.json"
    assert _convert(flat, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg"]  # c.jpg has no XML: not listed
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in coco["annotations"]] == [
        (DOG, [10.0, 5.0, 10.0, 10.0], 0), (CAT, [0.0, 0.0, 10.0, 10.0], 1)]
    assert "d.xml: no image d.jpg; skipped" in err and "3 images of a LabelImg folder" in err
    assert _convert(flat, out, "--split", "val") == 1
    assert "has no ImageSets/Main/ split files; convert it whole, then split it with split-data" in (
        capsys.readouterr().err)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _convert(empty, out) == 1
    err = capsys.readouterr().err
    assert "SegmentationObject: no such folder" in err and "one with boxes only has Annotations/*.xml" in err


def test_labelimg_folder_of_its_own_classes_takes_the_xml_names(tmp_path, capsys):
    """rev_d1 1: a LabelImg folder labelled 'helmet' / 'vest', with no --classes and no labelmap.txt, was
    read against VOC's 20 classes: every object skipped as unknown, "2 images, 0 instances" and an empty
    COCO file written with status 0. Now its classes are the XMLs' names, sorted, said in one line; and
    a conversion that leaves no instance fails, writing nothing."""
    flat = tmp_path / "labelimg"
    for name in ("a", "b"):
        _image(flat, name)
    _det_xml(flat, "a", [("vest", 0, (11, 6, 20, 15)), ("helmet", 0, (1, 1, 10, 10))])
    _det_xml(flat, "b", [("helmet", 0, (2, 2, 12, 12))])
    for folder in ("JPEGImages", "Annotations"):
        for path in (flat / folder).iterdir():
            path.rename(flat / path.name)
        (flat / folder).rmdir()
    out = tmp_path / "li.json"
    assert _convert(flat, out) == 0
    err = capsys.readouterr().err
    assert "classes from the XMLs' <name>s (no --classes, no labelmap.txt): helmet, vest (sorted" in err
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "helmet"}, {"id": 2, "name": "vest"}]
    assert [a["category_id"] for a in coco["annotations"]] == [2, 1, 1]
    # --classes naming none of them: every object skipped, so nothing is written and the status is 1
    assert _convert(flat, tmp_path / "none.json", "--classes", "dog") == 1
    err = capsys.readouterr().err
    assert "2 image(s) but no instance could be converted (see the problems above); nothing written" in err
    assert not (tmp_path / "none.json").exists()


def test_voc_inverted_bndbox_is_sorted_before_the_one_based_shift(tmp_path, capsys):
    """<xmin>20</xmin> ... <xmax>11</xmax>: the box of pixels 11..20 (as written the right way round),
    with a warning; the -1 was applied to xmin before the corners were sorted, shifting the box 2 px."""
    root = tmp_path / "det"
    _image(root, "a")
    _det_xml(root, "a", [("dog", 0, (20, 6, 11, 15)), ("dog", 0, (11, 6, 20, 15))])
    out = tmp_path / "det.json"
    for options in ((), ("--boxes-as-masks",)):
        assert _convert(root, out, *options) == 0
        err = capsys.readouterr().err
        assert "a.xml: object 1 (dog): warning: <bndbox> xmin 20 > xmax 11: its corners swapped" in err
        assert "object 2" not in err
        boxes = [a["bbox"] for a in json.loads(out.read_text())["annotations"]]
        assert boxes == [[10.0, 5.0, 10.0, 10.0]] * 2
