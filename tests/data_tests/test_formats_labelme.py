"""convert-data --from labelme: groups, rectangles, circles, __ignore__, embedded images, clipping, and
every bad shape or file named and counted."""

import base64
import io
import json
import math

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

H, W = 30, 40


def _convert(src, out, *options):
    return main(["convert-data", "--from", "labelme", str(src), "--output", str(out), *options])


def _shape(label, points, shape_type="polygon", group_id=None):
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
        "mask": None,
    }


def _labelme(path, shapes, image_path, image_data=None, size=(H, W)):
    """A file as labelme 5 writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "version": "5.5.0",
                "flags": {},
                "shapes": shapes,
                "imagePath": image_path,
                "imageData": image_data,
                "imageHeight": size[0],
                "imageWidth": size[1],
            }
        )
    )


def _png(path=None, size=(H, W)):
    img = Image.fromarray(np.full((*size, 3), 120, np.uint8))
    if path is None:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _tree(src):
    _png(src / "a.png")
    _labelme(
        src / "a.json",
        [
            _shape("cat", [[2, 2], [10, 2], [10, 8], [2, 8]], group_id=1),
            _shape("cat", [[16, 6], [12, 2]], "rectangle", group_id=1),  # same label and group: one instance
            _shape("dog", [[30, 20], [45, 35]], "rectangle"),  # clipped to the image
            _shape("dog", [[20, 15], [20, 20]], "circle"),  # centre, then a point on the circle: r = 5
            _shape("__ignore__", [[0, 0], [5, 0], [5, 5]]),
            _shape("cat", [[1, 1], [6, 6]], "line"),
            _shape("cat", [[1, 1], [6, 6]]),
            _shape("dog", [[1, 1], [float("nan"), 6], [3, 9]]),
            _shape("dog", [[50, 40], [60, 50]], "rectangle", group_id=2),  # wholly outside
            _shape("dog", [[0, 20], [4, 24]], "rectangle", group_id=1),  # group 1, another label: its own
        ],
        "a.png",
    )
    # An image that exists only inside its file (imagePath points nowhere).
    _labelme(
        src / "sub" / "b.json",
        [_shape("bird", [[1, 1], [9, 1], [9, 5], [1, 5]])],
        "../gone/b.jpg",
        base64.b64encode(_png(size=(10, 20))).decode("ascii"),
        size=(10, 20),
    )
    # A Windows path whose file lies beside the JSON file; a wrong imageHeight.
    _png(src / "sub" / "d.png")
    _labelme(
        src / "sub" / "d.json",
        [_shape("bird", [[0, 0], [3, 0], [3, 2], [0, 2]])],
        "C:\\data\\d.png",
        size=(31, W),
    )
    _labelme(src / "c.json", [_shape("cat", [[0, 0], [3, 0], [3, 3]])], "c.jpg")  # no image at all
    (src / "broken.json").write_text("{not json")
    (src / "other.json").write_text(json.dumps({"images": []}))


def _instances(coco):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [
        (a["image_id"], names[a["category_id"]], a["bbox"], a["area"], a["iscrowd"])
        for a in coco["annotations"]
    ]


def test_labelme_folder(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out" / "coco.json"
    _tree(src)
    assert _convert(src, out) == 0
    captured = capsys.readouterr()
    coco = json.loads(out.read_text())

    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "bird"), (2, "cat"), (3, "dog")]
    # The embedded image is written beside OUT.json; every file_name is relative to SRC.
    assert (tmp_path / "out" / "coco_images" / "sub" / "b.png").read_bytes() == _png(size=(10, 20))
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("a.png", H, W),
        ("../out/coco_images/sub/b.png", 10, 20),
        ("sub/d.png", H, W),
    ]

    got = _instances(coco)
    circle = got.pop(2)
    assert got == [
        (1, "cat", [2.0, 2.0, 14.0, 6.0], 48 + 16, 0),
        (1, "dog", [30.0, 20.0, 10.0, 10.0], 100, 0),
        (1, "dog", [0.0, 20.0, 4.0, 4.0], 16, 0),
        (2, "bird", [1.0, 1.0, 8.0, 4.0], 32, 0),
        (3, "bird", [0.0, 0.0, 3.0, 2.0], 6, 0),
    ]
    assert circle[:3] == (1, "dog", [15.0, 10.0, 10.0, 10.0]) and abs(circle[3] - math.pi * 25) < 3
    # Polygons are written clipped, as COCO polygons; the group's two shapes are its two polygons.
    cat, dog = coco["annotations"][0], coco["annotations"][1]
    assert cat["segmentation"] == [[2, 2, 10, 2, 10, 8, 2, 8], [12, 2, 16, 2, 16, 6, 12, 6]]
    assert dog["segmentation"] == [[30, 30, 30, 20, 40, 20, 40, 30]]  # the same square, cut at x = 40, y = 30
    mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(cat["segmentation"], H, W))) > 0
    expected = np.zeros((H, W), bool)
    expected[2:8, 2:10] = expected[2:6, 12:16] = True
    assert (mask == expected).all()

    err = captured.err
    for line in (
        "a.json: shapes[5] (label 'cat'): shape_type 'line' is not converted",
        "a.json: shapes[6] (label 'cat'): polygon has 2 point(s)",
        "a.json: shapes[7] (label 'dog'): points contain NaN or infinite coordinates",
        "a.json: shapes[8] (label 'dog'): polygon lies outside the 40x30 image",
        "c.json: image ",
        "broken.json: not readable JSON",
        "other.json: not a LabelMe file",
        "sub/d.json: warning: the size it gives, 40x31 (WxH), is a pixel off the image file's 40x30",
        "notes: 1 __ignore__ shapes left out, 1 warnings",
        "skipped 7 record(s): 1 bad_coordinates, 1 empty_mask, 1 few_points, 1 missing_image, 1 not_labelme, "
        "1 unreadable_json, 1 unsupported_shape",
    ):
        assert line in err, line
    assert f"use --train-images {src}" in captured.out

    dataset = CocoDataset(json_path=out, image_dir=src)
    assert dataset.skipped == {} and len(dataset) == 3
    image, target = dataset[1]
    assert image.shape == (3, 10, 20) and target["masks"].sum() == 32


def test_labelme_single_file_with_fixed_classes(tmp_path, capsys):
    src = tmp_path / "src"
    _tree(src)
    out = tmp_path / "a_coco.json"
    assert _convert(src / "a.json", out, "--classes", "dog,cat") == 0
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]
    assert [(a["category_id"], a["area"]) for a in coco["annotations"]][:2] == [(2, 64), (1, 100)]
    assert [i["file_name"] for i in coco["images"]] == ["a.png"]

    # Labels outside --classes are named and skipped; with no instance left nothing is written (rev_d1 1:
    # an empty dataset written with status 0 trained nothing)
    out2 = tmp_path / "dogs.json"
    assert _convert(src / "sub" / "b.json", out2, "--classes", "dog") == 1
    captured = capsys.readouterr()
    assert "b.json: shapes[0] (label 'bird'): label 'bird' is not one of the classes ['dog']" in captured.err
    assert "1 unknown_label" in captured.err and "no instance could be converted" in captured.err
    assert not out2.exists()
    out2 = tmp_path / "birds.json"
    assert _convert(src / "sub" / "b.json", out2, "--classes", "dog,bird") == 0
    captured = capsys.readouterr()
    coco = json.loads(out2.read_text())
    # every image came from imageData: file_name relative to OUT.json's folder, not "../../birds_images/.."
    assert len(coco["annotations"]) == 1 and coco["images"][0]["file_name"] == "birds_images/b.png"
    assert f"use --train-images {tmp_path}" in captured.out
    assert CocoDataset(json_path=out2, image_dir=tmp_path).skipped == {}

    # Nothing converted: an error, and nothing written.
    out3 = tmp_path / "none.json"
    assert _convert(src / "broken.json", out3) == 1
    assert "no image could be converted" in capsys.readouterr().err and not out3.exists()


def _mask_b64(mask):
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")  # 0/1, as labelme >= 5.3 writes it
    return base64.b64encode(buf.getvalue()).decode("ascii")


def test_labelme_mask_shapes_and_four_corner_rectangles(tmp_path, capsys):
    """labelme >= 5.3's "mask" shapes (AI / SAM masks) and X-AnyLabeling's four-corner rectangles were
    skipped as unsupported: instances drawn in the tool were missing from the training set."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "m.png")
    patch = np.zeros((7, 11), bool)
    patch[1:5, 2:9] = True  # 4 x 7 = 28 pixels
    _labelme(src / "m.json", [
        {**_shape("cat", [[10, 20], [20, 26]], "mask"), "mask": _mask_b64(patch)},  # rows 20..26, cols 10..20
        {**_shape("dog", [[36, 26], [46, 32]], "mask", group_id=4), "mask": _mask_b64(patch)},  # cut: 40x30
        _shape("dog", [[0, 0], [4, 0], [4, 4], [0, 4]], group_id=4),  # the same instance: 16 pixels more
        _shape("bird", [[30, 2], [36, 2], [36, 6], [30, 6]], "rectangle"),  # X-AnyLabeling: four corners
        # labelme's own cut at the border: box columns 35..40 (x2 = W, exclusive), stored 5 wide
        {**_shape("bird", [[35, 20], [40, 22]], "mask"), "mask": _mask_b64(np.ones((3, 5), bool))},
        {**_shape("cat", [[0, 0], [5, 5]], "mask"), "mask": _mask_b64(patch)},  # a 11x7 PNG on a 6x6 box
        {**_shape("cat", [[0, 0], [5, 5]], "mask"), "mask": None},
    ], "m.png")  # fmt: skip
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [(name, bbox, area) for _, name, bbox, area, _ in _instances(coco)] == [
        ("cat", [12.0, 21.0, 7.0, 4.0], 28),
        ("dog", [0.0, 0.0, 40.0, 30.0], 3 * 2 + 16),  # mask rows 27..29 x columns 38..39 inside
        ("bird", [30.0, 2.0, 6.0, 4.0], 24),
        ("bird", [35.0, 20.0, 5.0, 3.0], 15),
    ]
    cat = mask_utils.decode(coco["annotations"][0]["segmentation"]) > 0
    expected = np.zeros((H, W), bool)
    expected[21:25, 12:19] = True
    assert (cat == expected).all()
    assert "m.json: shapes[5] (label 'cat'): mask image is 11x7, the box of its points 6x6" in err
    assert "m.json: shapes[6] (label 'cat'): a mask shape needs its 'mask'" in err
    assert "skipped 2 record(s): 2 bad_shape" in err
    assert CocoDataset(json_path=out, image_dir=src).skipped == {}


def test_polygon_bbox_is_the_polygon_extent_not_the_rasterised_mask(tmp_path, capsys):
    """The bbox came from the rasterised mask, which loses the acute corners (no pixel centre covered
    there): a triangle (1, 1), (40, 1), (40, 30) got [2, 1, 38, 29]. COCO's files give the polygon's
    extent, clipped to the image; the area stays the rasterised one; the loader trains on that box."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "t.png")
    _labelme(src / "t.json", [
        _shape("cat", [[1, 1], [40, 1], [40, 30]]),
        _shape("dog", [[30, 20], [50, 20], [50, 40]]),  # clipped at x = 40 and y = 30
        {**_shape("bird", [[2, 20], [6, 22]], "mask"), "mask": _mask_b64(np.eye(3, 5, dtype=bool))},
    ], "t.png")  # fmt: skip
    assert _convert(src, out) == 0
    coco = json.loads(out.read_text())
    triangle, cut = (mask_utils.decode(mask_utils.frPyObjects(a["segmentation"], H, W)[0]) > 0
                     for a in coco["annotations"][:2])
    assert [(name, bbox, area) for _, name, bbox, area, _ in _instances(coco)] == [
        ("cat", [1.0, 1.0, 39.0, 29.0], int(triangle.sum())),
        ("dog", [30.0, 20.0, 10.0, 10.0], int(cut.sum())),
        ("bird", [2.0, 20.0, 3.0, 3.0], 3),  # a mask: the box of its pixels (rows 20..22, columns 2..4)
    ]
    ys, xs = np.nonzero(triangle)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (2, 40, 1, 30)  # what the mask box gave
    _, target = CocoDataset(json_path=out, image_dir=src)[0]  # training's boxes, x1 y1 x2 y2
    assert target["boxes"].tolist() == [[1, 1, 40, 30], [30, 20, 40, 30], [2, 20, 5, 23]]


def _photo(path, stored=(20, 40), block=(3, 2, 12, 8)):
    """A JPEG stored as ``stored`` (H, W) pixels with EXIF orientation 6 (shown turned a quarter clockwise,
    W x H), a white block on the stored pixels x1..x2, y1..y2 (``block``, pixel edges)."""
    pixels = np.zeros((*stored, 3), np.uint8)
    x1, y1, x2, y2 = block
    pixels[y1:y2, x1:x2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, exif=exif, quality=100)


def test_labelme_exif_photo_annotated_on_its_stored_pixels_is_turned_with_it(tmp_path, capsys):
    """A photo EXIF turns by a quarter, annotated in a tool that showed its stored pixels (imageHeight /
    imageWidth its stored size): the shapes were kept as drawn and warned about as a size typo ("using
    the image's"), so every mask lay beside its object in the turned image training reads. Now they are
    turned with the image (a mask shape too); a file sized as the turned image keeps its shapes; a size
    a pixel off the turned one is warned about."""
    from maskrcnn.data.images import read_image

    src, out = tmp_path / "src", tmp_path / "coco.json"
    patch = np.ones((2, 3), bool)
    for name, size in (("stored", (20, 40)), ("shown", (40, 20)), ("other", (41, 20))):
        _photo(src / f"{name}.jpg")
        _labelme(src / f"{name}.json", [
            _shape("box", [[3, 2], [12, 8]], "rectangle"),
            {**_shape("dot", [[10, 5], [12, 6]], "mask"), "mask": _mask_b64(patch)},  # x 10..12, y 5, 6
        ], f"{name}.jpg", size=size)  # fmt: skip
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("other.jpg", 40, 20), ("shown.jpg", 40, 20), ("stored.jpg", 40, 20)]
    boxes = {(a["image_id"], a["category_id"]): a["bbox"] for a in coco["annotations"]}
    # turned a quarter clockwise: stored (x, y) is shown at (H - y, x), H = 20 the stored height
    assert boxes[(3, 1)] == [12.0, 3.0, 6.0, 9.0] and boxes[(3, 2)] == [13.0, 10.0, 2.0, 3.0]
    assert boxes[(2, 1)] == boxes[(1, 1)] == [3.0, 2.0, 9.0, 6.0]  # as drawn
    # the turned shapes lie on the block as training reads the image (turned)
    image = read_image(src / "stored.jpg")  # (3, 40, 20)
    box = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(coco["annotations"][4]["segmentation"],
                                                                     40, 20))) > 0
    assert box.sum() == 54 and (image[0][torch.from_numpy(box)] > 0.8).all()
    dot = mask_utils.decode(coco["annotations"][5]["segmentation"]) > 0
    expected = np.zeros((40, 20), bool)
    expected[10:13, 13:15] = True
    assert (dot == expected).all()
    assert ("stored.json: the size it gives, 20x40 (HxW), is the image's stored size, not its 40x20 once its "
            "EXIF orientation 6 is applied: the annotations were drawn on the stored pixels") in err
    assert "1 images annotated on their stored pixels" in err
    assert ("other.json: warning: the size it gives, 20x41 (WxH), is a pixel off the image file's 20x40: the "
            "shapes are used as drawn") in err
    assert "stored.json: warning" not in err and "shown.json: warning" not in err


def test_labelme_label_spaces_are_stripped_once_per_label(tmp_path, capsys):
    """"box " and "box" (a typed label's trailing space) were two classes; now one, said once."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    for name, label in (("a", "box "), ("b", "box"), ("c", "box ")):
        _png(src / f"{name}.png")
        shapes = [_shape(label, [[2, 2], [9, 9]], "rectangle", group_id=1),
                  _shape(label, [[20, 2], [29, 9]], "rectangle", group_id=1)]
        _labelme(src / f"{name}.json", shapes, f"{name}.png")
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "box"}]
    assert len(coco["annotations"]) == 3  # each file's group is still one instance
    assert err.count("label 'box ' read as 'box'") == 1 and "a.json: label 'box ' read as 'box'" in err


def test_labelme_resized_image_shapes_scaled_other_shape_skipped(tmp_path, capsys):
    """imageHeight / imageWidth of the image drawn on, the file a copy resized to half: the shapes were
    kept at their drawn pixels ("using the image's"), boxes twice their place and shapes past the smaller
    image dropped. Now a resized copy has its shapes scaled (said once, counted); an image of another
    shape is skipped by name (image_size_mismatch)."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    for name in ("half", "other"):
        _png(src / f"{name}.png", size=(H // 2, W // 2) if name == "half" else (H // 2, W))
        _labelme(src / f"{name}.json", [_shape("car", [[4, 6], [12, 18]], "rectangle"),
                                        _shape("car", [[30, 20], [38, 20], [38, 28]])], f"{name}.png")
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["half.png"]
    assert [a["bbox"] for a in coco["annotations"]] == [[2.0, 3.0, 4.0, 6.0], [15.0, 10.0, 4.0, 4.0]]
    assert (f"half.json: the size it gives, {W}x{H} (WxH), is not the image file's {W // 2}x{H // 2} but has "
            f"its shape (a resized copy): the shapes are scaled by 0.5 x 0.5") in err
    assert (f"other.json: drawn on a {W}x{H} image (the width x height the file gives), the image file is "
            f"{W}x{H // 2}, of another shape") in err
    assert "1 images resized since they were annotated" in err and "1 image_size_mismatch" in err


def test_x_anylabeling_rotated_box(tmp_path, capsys):
    """X-AnyLabeling's rotated box (shape_type "rotation": its 4 corners, and "direction" in radians) was
    refused as an unconverted shape type; a file of only those failed the conversion."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _png(src / "a.png")
    corners = [[20, 2], [34, 16], [24, 26], [10, 12]]  # a box turned 45 degrees
    _labelme(src / "a.json", [{**_shape("car", corners, "rotation"), "direction": 0.785},
                              _shape("car", corners[:3], "rotation")], "a.png")
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    (ann,) = json.loads(out.read_text())["annotations"]
    assert ann["segmentation"] == [[float(v) for p in corners for v in p]]
    assert ann["bbox"] == [10.0, 2.0, 24.0, 24.0]
    assert "shapes[1] (label 'car'): a rotation (rotated box) needs its 4 corners, got 3 points" in err


def test_labels_differing_only_in_case_are_warned_about_once(tmp_path, capsys):
    """"Cat" beside "cat" became two classes without a word (merge-data joins such names, fine-tuning
    matches names ignoring case): one warning names them, with their counts."""
    src, out = tmp_path / "src", tmp_path / "coco.json"
    for name, labels in (("a", ["cat", "Cat"]), ("b", ["cat", "dog", "DOG ", "Dog"])):
        _png(src / f"{name}.png")
        _labelme(src / f"{name}.json", [_shape(label, [[2 * i, 1], [2 * i + 1, 3]], "rectangle")
                                        for i, label in enumerate(labels)], f"{name}.png")
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert err.count("differ only in case") == 1
    assert (f"{src}: warning: labels that differ only in case are separate classes: 'Cat' (1 instance), "
            f"'cat' (2 instances); 'DOG' (1 instance), 'Dog' (1 instance), 'dog' (1 instance)") in err
    assert _convert(src, out, "--classes", "cat,Cat,dog,DOG,Dog") == 0  # the classes named: no warning
    assert "differ only in case" not in capsys.readouterr().err


def test_labelme_image_named_in_another_case_is_found(tmp_path, capsys):
    """imagePath "IMG_1.JPG" (written on Windows / macOS) for the file IMG_1.jpg beside it: the one file
    differing only in case is used, with a warning; two such files are named, not "pass --images"."""
    src = tmp_path / "lm"
    _png(src / "IMG_1.jpg")
    if (src / "IMG_1.JPG").is_file():
        return  # a file system that ignores case finds it anyway
    _labelme(src / "IMG_1.json", [_shape("cat", [[2, 2], [12, 2], [12, 9]])], "IMG_1.JPG")
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "IMG_1.json: warning: image" in err and "IMG_1.JPG not found; using IMG_1.jpg, which differs " \
                                                  "from it only in case" in err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["IMG_1.jpg"]
    assert coco["annotations"][0]["bbox"] == [2.0, 2.0, 10.0, 7.0]

    _png(src / "img_1.JPG")
    assert _convert(src, out) == 1
    err = capsys.readouterr().err
    assert "IMG_1.JPG not found, and 2 files differ from its name only in case (IMG_1.jpg, img_1.JPG)" in err
    assert "--images" not in err


def test_labelme_copy_of_a_file_is_the_duplicate_skipped_not_the_original(tmp_path, capsys):
    """a.json and its copy "a (copy).json" both name a.jpg: the copy sorted first (" " before ".") and
    a.json, the file labelme saves for a.jpg, was the one skipped; its shapes are counted now."""
    src = tmp_path / "lm"
    _png(src / "a.png")
    _labelme(src / "a.json", [_shape("cat", [[2, 2], [12, 2], [12, 9]])], "a.png")
    _labelme(src / "a (copy).json", [_shape("cat", [[20, 2], [30, 2], [30, 9]]),
                                     _shape("cat", [[20, 12], [30, 12], [30, 19]])], "a.png")
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "a (copy).json: image a.png was converted already, from a.json; its 2 shape(s) left out" in err
    assert [a["bbox"] for a in json.loads(out.read_text())["annotations"]] == [[2.0, 2.0, 10.0, 7.0]]
