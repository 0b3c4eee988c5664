"""convert-data --from labelstudio: the brush RLE decoder (a hand-derived vector, a round trip through an
encoder written here, corrupt input), the JSON and JSON-MIN exports end to end (shapes, rotation,
annotation choice, image lookup) and every record it cannot convert named and counted."""

import itertools
import json
import os

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.formats.common import Skip
from maskrcnn.data.formats.labelstudio_rle import _Bits, decode_brush_mask, decode_words
from maskrcnn.data.mask_codec import annotation_to_mask

H, W = 30, 40
_WIDTHS = (2, 5, 9, 16)  # the four run-length widths the encoder below declares
_FOUR = "00000000000000000000000000000100"  # N = 4 as 32 bits: one RGBA pixel


def _pack(bits: str) -> list:
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]


def _encode(words, word=8) -> list:
    """rle-pack as the module docstring describes it: equal neighbours as repeated runs, the rest as
    literal runs; every run length in the narrowest of the four widths that holds it."""
    out = [format(len(words), "032b"), format(word - 1, "05b"), *(format(w - 1, "04b") for w in _WIDTHS)]

    def run(repeated, n):
        k = next(k for k, w in enumerate(_WIDTHS) if n - 1 < 1 << w)
        out.append(f"{repeated}{k:02b}{n - 1:0{_WIDTHS[k]}b}")

    groups = []
    for v in words:
        if groups and groups[-1][0] == v and groups[-1][1] < 1 << 16:
            groups[-1][1] += 1
        else:
            groups.append([int(v), 1])
    literal = []

    def flush():
        if literal:
            run(0, len(literal))
            out.extend(format(v, f"0{word}b") for v in literal)
            literal.clear()

    for v, count in groups:
        if count > 1:
            flush()
            run(1, count)
            out.append(format(v, f"0{word}b"))
        else:
            if len(literal) == 1 << 16:
                flush()
            literal.append(v)
    flush()
    return _pack("".join(out))


def _brush_rle(mask, alpha=None) -> list:
    """A brush region as Label Studio's front end stores it: RGBA (red, alpha 255 on the mask)."""
    rgba = np.zeros(mask.shape + (4,), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    if alpha is not None:
        rgba[..., 3] = alpha
    return _encode(rgba.reshape(-1))


def test_brush_rle_hand_derived_vectors():
    """One RGBA pixel (0, 0, 0, 255) written by hand, bit by bit: N = 4, word size 8, four widths of 2."""
    header = _FOUR + "00111" + "0001" * 4
    repeated = "1" + "00" + "10" + "00000000" + "1" + "00" + "00" + "11111111"  # 3 x 0, then 1 x 255
    literal = "0" + "00" + "11" + "00000000" * 3 + "11111111"  # 4 words one after another
    for body in (repeated, literal):
        words, word = decode_words(_pack(header + body), expected=4)
        assert word == 8 and words.tolist() == [0, 0, 0, 255]
        assert decode_brush_mask(_pack(header + body), 1, 1).tolist() == [[True]]
    # The test's encoder writes the lone 255 as a literal run of one, and declares widths 2, 5, 9, 16.
    widths = "0001" + "0100" + "1000" + "1111"
    single = "0" + "00" + "00" + "11111111"
    assert _encode([0, 0, 0, 255]) == _pack(_FOUR + "00111" + widths + repeated[:13] + single)


def test_brush_rle_round_trip_and_alpha_threshold():
    rng = np.random.default_rng(0)
    mask = np.zeros((H, W), bool)
    mask[5:20, 3:30] = True
    mask[rng.random((H, W)) < 0.05] ^= True  # scattered pixels: literal runs
    got = decode_brush_mask(_brush_rle(mask), H, W)
    assert got.shape == (H, W) and got.dtype == bool and (got == mask).all()
    # Anti-aliased borders: alpha under half is outside.
    alpha = np.zeros((H, W), np.uint8)
    alpha[2, 2], alpha[2, 3], alpha[2, 4], alpha[2, 5] = 127, 128, 255, 1
    got = decode_brush_mask(_brush_rle(alpha > 0, alpha=alpha), H, W)
    assert np.argwhere(got).tolist() == [[2, 3], [2, 4]]
    # An empty mask is one run of 4800 zeros (the widest width).
    assert not decode_brush_mask(_brush_rle(np.zeros((H, W), bool)), H, W).any()


@pytest.mark.parametrize("rle, size, message", [
    ("abc", (H, W), "must be a non-empty list of bytes"),
    ([], (H, W), "must be a non-empty list of bytes"),
    ([1.5, 2], (H, W), "list of whole numbers"),
    ([[1], [2, 3]], (H, W), "list of whole numbers"),
    ([0, 300], (H, W), "bytes are 0..255"),
    ([0, 0, 0], (H, W), "its header alone needs 53"),
    (_brush_rle(np.ones((2, 2), bool)), (H, W), "holds 16 values, the image needs 4800"),
    (_brush_rle(np.ones((H, W), bool))[:-3], (H, W), "ends in the middle of"),
    (_pack(_FOUR + "00111" + "0001" * 4 + "1001000000000" + "1000111111111"), (1, 1), "run of 2 at value 3"),
    (_pack(_FOUR + "01111" + "0001" * 4 + "10011" + "0" * 16), (1, 1), "words are 16 bits"),
])  # fmt: skip
def test_brush_rle_corrupt_input_is_a_skip_with_a_reason(rle, size, message):
    height, width = size
    with pytest.raises(Skip, match=message) as e:
        decode_brush_mask(rle, height, width)
    assert e.value.reason == "bad_rle"


def _convert(src, out, *options):
    return main(["convert-data", "--from", "labelstudio", str(src), "--output", str(out), *map(str, options)])


def _image(path, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), 90, np.uint8)).save(path)


_IDS = itertools.count()


def _result(kind, labels, original=(W, H), **value):
    r = {"id": f"r{next(_IDS)}", "type": kind, "from_name": "label", "to_name": "image",
         "value": {**value, **({kind: labels} if labels is not None else {})}}
    if original:
        r["original_width"], r["original_height"] = original
    r["image_rotation"] = 0
    return r


def _task(tid, image, *annotations, predictions=()):
    return {"id": tid, "data": {"image": image} if image else {"caption": "x"},
            "annotations": [{"id": 100 + i, "result": res, "was_cancelled": cancelled, "ground_truth": gt}
                            for i, (res, cancelled, gt) in enumerate(annotations)],
            "predictions": [{"result": list(p)} for p in predictions]}


def _brush_mask():
    mask = np.zeros((H, W), bool)
    mask[20:26, 2:9] = True
    mask[22:24, 4:6] = False  # a hole
    mask[24:30, 30:40] = True  # a second part, on the border
    return mask


def _tree(tmp_path):
    root = tmp_path / "project"
    _image(root / "a.png")  # uploaded as 5f2c1a3b-a.png
    _image(root / "sub" / "b c.png")  # local storage
    _image(root / "deep" / "er" / "c.png")  # found by name below the images folder
    _image(root / "d.png", size=(H * 2, W))
    _image(root / "e.png")
    polygon = _result("polygonlabels", ["cat"], points=[[5, 10], [30, 10], [30, 30], [5, 30]])
    rect = _result("rectanglelabels", ["dog"], x=50, y=50, width=25, height=20, rotation=0)
    # Turned 90 degrees clockwise around its top-left corner (30, 3): its width now points down.
    turned = _result("rectanglelabels", ["dog"], x=75, y=10, width=10, height=20, rotation=90)
    ellipse = _result("ellipselabels", ["cat"], x=50, y=80, radiusX=10, radiusY=10, rotation=0)
    brush = _result("brushlabels", ["猫"], format="rle", rle=_brush_rle(_brush_mask()))
    tasks = [
        _task(1, "/data/upload/3/5f2c1a3b-a.png",
              ([rect], True, False),  # cancelled
              ([_result("rectanglelabels", ["dog"], x=0, y=0, width=10, height=10)], False, False),
              ([polygon, rect, turned, ellipse, brush,
                _result("keypointlabels", ["nose"], x=10, y=20, width=0.5),  # inside the cat polygon
                {"id": "c1", "type": "choices", "value": {"choices": ["indoor"]}, "from_name": "scene"},
                _result("polygonlabels", [], points=[[1, 1], [9, 1], [9, 9]]),
                _result("polygonlabels", ["cat", "dog"], points=[[1, 1], [9, 1], [9, 9]]),
                _result("rectanglelabels", ["dog"], x=350, y=20, width=40, height=20),  # pixels, not percent
                {**_result("rectanglelabels", ["dog"], x=1, y=1, width=5, height=5), "image_rotation": 90},
                _result("brushlabels", ["cat"], format="rle", rle=[0, 0, 0, 4, 255]),
                ], False, True)),  # the ground truth: taken
        # Local storage, a name with a space (%20); a rectangle a little past the border is clipped;
        # <Rectangle> + <Labels>: the shape and its labels as two results of one id; no original_width.
        _task(2, "/data/local-files/?d=sub/b%20c.png",
              ([_result("rectanglelabels", ["dog"], x=-5, y=0, width=15, height=10, original=None),
                {"id": "s1", "type": "rectangle", "value": {"x": 50, "y": 0, "width": 25, "height": 10}},
                {"id": "s1", "type": "labels", "value": {"labels": ["cat"]}}], False, False),
              ([_result("rectanglelabels", ["dog"], x=0, y=0, width=50, height=50)], False, False)),
        _task(3, "https://example.com/images/c.png?token=1", ([], False, False)),  # no region: a negative
        # original_width / original_height of a resized copy: the percent coordinates fit the image
        _task(4, "d.png", ([_result("rectanglelabels", ["dog"], x=0, y=0, width=50, height=50,
                                    original=(W * 2, H * 4))], False, False)),
        _task(5, "s3://bucket/gone.png", ([], False, False)),
        _task(6, None, ([], False, False)),
        _task(7, "e.png", predictions=[[rect]]),
        _task(8, "e.png", ([rect], True, False)),
        _task(9, "e.png"),
        "not a task",
    ]  # fmt: skip
    (root / "export.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return root


def test_labelstudio_json_export(tmp_path, capsys):
    root = _tree(tmp_path)
    out = tmp_path / "coco.json"
    assert _convert(root / "export.json", out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text(encoding="utf-8"))

    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "cat"), (2, "dog"), (3, "猫")]
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("a.png", H, W), ("sub/b c.png", H, W), ("deep/er/c.png", H, W), ("d.png", H * 2, W)]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = [(a["image_id"], names[a["category_id"]], a["bbox"], a["area"]) for a in coco["annotations"]]
    ellipse, brush = got.pop(3), got.pop(3)
    assert got == [
        (1, "cat", [2.0, 3.0, 10.0, 6.0], 60),
        (1, "dog", [20.0, 15.0, 10.0, 6.0], 60),
        (1, "dog", [24.0, 3.0, 6.0, 4.0], 24),  # turned clockwise: 6 wide to the left, 4 down
        (2, "dog", [0.0, 0.0, 4.0, 3.0], 12),  # -2..4 px clipped to 0..4
        (2, "cat", [20.0, 0.0, 10.0, 3.0], 30),
        (4, "dog", [0.0, 0.0, 20.0, 30.0], 600),  # percent of the 40x60 image, not of 80x120
    ]
    assert ellipse[:3] == (1, "cat", [16.0, 21.0, 8.0, 6.0]) and abs(ellipse[3] - np.pi * 12) < 3
    mask = _brush_mask()
    assert brush == (1, "猫", [2.0, 20.0, 38.0, 10.0], int(mask.sum()))
    assert ((annotation_to_mask(coco["annotations"][4]["segmentation"], H, W).numpy() > 0) == mask).all()

    for line in (
        "export.json: task 1 result[8]: the region has several labels ['cat', 'dog']",
        "export.json: task 1 result[9]: point (350%, 20%) lies far outside the image",
        "export.json: task 1 result[10]: drawn on the image turned by 90 degrees",
        "export.json: task 1 result[11]: brush RLE",
        "export.json: task 4: the size it gives, 80x120 (WxH), is not the image file's 40x60 but has its "
        "shape (a resized copy): the shapes are scaled by 0.5 x 0.5",
        "export.json: task 5: image 'gone.png' (from 's3://bucket/gone.png') not found under",
        "export.json: task 6: no data field names an image file (its keys: caption)",
        "export.json: task 7: the task has predictions (model output) but no annotation",
        "export.json: task 8: every annotation of the task was cancelled",
        "export.json: task 9: the task has no annotation",
        "export.json: tasks[9]: a task must be a JSON object, not str",
        "notes: 2 cancelled annotations left out, 1 choices results (not regions) left out, 1 images resized "
        "since they were annotated: shapes scaled to them, 1 results without labels left out, 2 tasks with "
        "several annotations",
        "skipped 10 record(s): 1 ambiguous_label, 1 bad_coordinates, 1 bad_rle, 1 bad_task, 1 cancelled, "
        "1 image_rotation, 1 missing_image, 1 no_image, 1 only_predictions, 1 unannotated",
    ):
        assert line in err, line
    assert "Traceback" not in err
    # the keypoint is the cat polygon's that holds it: (4, 6) px, less half a pixel (a pixel index)
    assert coco["annotations"][0]["keypoints"] == [3.5, 5.5, 2]
    assert coco["categories"][0]["keypoints"] == ["nose"]

    # Training reads it: nothing skipped, the brush mask pixel for pixel, the turned box as drawn.
    dataset = CocoDataset(json_path=out, image_dir=root)
    assert dataset.skipped == {} and len(dataset) == 4
    _, target = dataset[0]
    assert (target["masks"][4].numpy().astype(bool) == mask).all()
    assert target["boxes"][2].tolist() == [24.0, 3.0, 30.0, 7.0]


def test_labelstudio_json_min_export_and_images_folder(tmp_path, capsys):
    images = tmp_path / "media"
    _image(images / "upload" / "7" / "0a1b2c3d-x.png")  # the hash-prefixed name is found as it is
    _image(images / "y.png")
    mask = np.zeros((H, W), bool)
    mask[1:4, 1:6] = True
    records = [
        {"image": "/data/upload/7/0a1b2c3d-x.png", "id": 11, "annotator": "a@b.c", "annotation_id": 1,
         "label": [{"points": [[5, 10], [30, 10], [30, 30], [5, 30]], "polygonlabels": ["cat"],
                    "original_width": W, "original_height": H},
                   {"x": 50, "y": 50, "width": 25, "height": 20, "rotation": 0, "rectanglelabels": ["dog"],
                    "original_width": W, "original_height": H}],
         "tag": [{"format": "rle", "rle": _brush_rle(mask), "brushlabels": ["dog"],
                  "original_width": W, "original_height": H}],
         "kp": [{"x": 3, "y": 3, "width": 1, "keypointlabels": ["nose"]}],
         "scene": "indoor", "tags": ["a", "b"], "created_at": "2024-01-01T00:00:00Z"},
        {"image": "/data/upload/7/0a1b2c3d-x.png", "id": 11, "annotation_id": 2,  # a second annotator
         "label": [{"x": 0, "y": 0, "width": 100, "height": 100, "rectanglelabels": ["dog"]}]},
        {"image": "http://host/data/y.png", "id": 12, "rect": [{"x": 0, "y": 0, "width": 50, "height": 50,
                                                                "rectanglelabels": ["bird"]}]},
    ]
    export = tmp_path / "exports" / "min.json"
    export.parent.mkdir()
    export.write_bytes(b"\xef\xbb\xbf" + json.dumps(records).encode())  # with a BOM, as Windows editors save
    out = tmp_path / "min_coco.json"
    assert _convert(export, out, "--images", images, "--classes", "dog,cat") == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]
    assert [i["file_name"] for i in coco["images"]] == ["upload/7/0a1b2c3d-x.png", "y.png"]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in coco["annotations"]] == [
        (2, [2.0, 3.0, 10.0, 6.0], 60), (1, [20.0, 15.0, 10.0, 6.0], 60), (1, [1.0, 1.0, 5.0, 3.0], 15)]
    assert "min.json: task 12 rect[0]: label 'bird' is not one of the classes ['cat', 'dog']" in err
    assert "1 Label Studio keypoints in no region of their annotation (object unknown), left out" in err
    assert "1 tasks with several annotations" in err
    assert "skipped 1 record(s): 1 unknown_label" in err
    dataset = CocoDataset(json_path=out, image_dir=images)
    assert dataset.skipped == {} and len(dataset) == 2
    assert (dataset[0][1]["masks"][2].numpy().astype(bool) == mask).all()


def test_labelstudio_bad_files_and_options(tmp_path, capsys):
    _image(tmp_path / "a.png")
    (tmp_path / "obj.json").write_text(json.dumps({"tasks": []}))
    assert _convert(tmp_path / "obj.json", tmp_path / "o.json") == 1
    err = capsys.readouterr().err
    assert "obj.json: not a Label Studio export (a JSON list of tasks is expected, not dict)" in err
    assert "no image could be converted" in err and not (tmp_path / "o.json").exists()

    (tmp_path / "broken.json").write_text("[{")
    assert _convert(tmp_path / "broken.json", tmp_path / "o.json") == 1
    assert "broken.json: not readable JSON" in capsys.readouterr().err

    # One task per file (cloud target storage) is read as a list of one; the same image twice is once.
    task = _task(1, "a.png", ([_result("rectanglelabels", ["dog"], x=0, y=0, width=10, height=10)], False, 0))
    (tmp_path / "one.json").write_text(json.dumps(task))
    (tmp_path / "two.json").write_text(json.dumps([task]))
    assert _convert(tmp_path, tmp_path / "o2.json") == 0
    err = capsys.readouterr().err
    assert "two.json: task 1: image a.png was converted already, from one.json" in err

    assert _convert(tmp_path / "one.json", tmp_path / "o.json", "--images", tmp_path / "nowhere") == 1
    assert "--images " in capsys.readouterr().err
    assert main(["convert-data", "--from", "voc", str(tmp_path), "--output", str(tmp_path / "o.json"),
                 "--images", str(tmp_path)]) == 1
    assert "--images applies to --from labelstudio / cvat / via / labelme, not voc" in capsys.readouterr().err


def test_labelstudio_image_found_twice_is_ambiguous(tmp_path, capsys):
    for folder in ("day", "night"):
        _image(tmp_path / folder / "z.png")
    task = _task(5, "https://host/img/z.png", ([], False, False))
    (tmp_path / "export.json").write_text(json.dumps([task]))
    assert _convert(tmp_path / "export.json", tmp_path / "o.json") == 1
    assert ("export.json: task 5: image 'z.png' (from 'https://host/img/z.png') is in several folders under "
            f"{tmp_path}: day/z.png, night/z.png; skipped") in capsys.readouterr().err


def test_labelstudio_image_field_not_called_image(tmp_path, capsys):
    """A config's <Image value="$img"> (or $image_url) puts the image under that key: a local-storage URL
    there (its file name in ?d=, not in the URL's path) was "the task has no 'image' in its data". The
    key is the results' source "$key" (the config's value) when given, else the one data value naming an
    image file (of several, the one under the results' to_name); else the task's keys are listed."""
    _image(tmp_path / "imgs" / "p.png")
    _image(tmp_path / "imgs" / "sub dir" / "q r.png")
    _image(tmp_path / "imgs" / "thumb.png", size=(10, 10))
    _image(tmp_path / "imgs" / "big.png")
    rect = _result("rectanglelabels", ["dog"], x=0, y=0, width=50, height=50)

    def task(tid, data, source=None, to_name="image"):
        result = {**rect, "to_name": to_name, **({"source": source} if source else {})}
        return {"id": tid, "data": data, "annotations": [{"id": tid, "result": [result]}]}

    tasks = [
        task(1, {"img": "/data/local-files/?d=imgs/p.png"}),
        task(2, {"image_url": "/data/local-files/?d=imgs%2Fsub%20dir%2Fq%20r.png", "caption": "a b.png?"}),
        task(3, {"thumb": "imgs/thumb.png", "photo": "https://host/x?id=3"}, source="$photo"),  # not found
        task(4, {"thumb": "/data/upload/1/thumb.png", "photo": "s3://b/big.png"}, to_name="photo"),
        task(5, {"thumb": "/data/upload/1/thumb.png", "photo": "s3://b/big.png"}),
        task(6, {"text": "a cat", "meta": {"k": 1}, "n": 3}),
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "coco.json"
    assert _convert(tmp_path / "export.json", out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["imgs/p.png", "imgs/sub dir/q r.png", "imgs/big.png"]
    assert [(a["image_id"], a["bbox"]) for a in coco["annotations"]] == [
        (1, [0.0, 0.0, 20.0, 15.0]), (2, [0.0, 0.0, 20.0, 15.0]), (3, [0.0, 0.0, 20.0, 15.0])]
    for line in (
        "export.json: task 3: image 'x' (from 'https://host/x?id=3') not found under",
        "export.json: task 5: several data fields name an image file (thumb, photo) and the results do "
        "not say which the labelling config's <Image> shows",
        "export.json: task 6: no data field names an image file (its keys: text, meta, n)",
    ):
        assert line in err, line

    # JSON-MIN: the data fields beside Label Studio's own (id, annotator, ...) in each record.
    record = {"image_url": "/data/local-files/?d=imgs/p.png", "id": 1, "annotator": "a@b.c",
              "label": [{"x": 0, "y": 0, "width": 50, "height": 50, "rectanglelabels": ["dog"]}]}
    (tmp_path / "min.json").write_text(json.dumps([record]))
    assert _convert(tmp_path / "min.json", tmp_path / "min_coco.json") == 0
    assert [i["file_name"] for i in json.loads((tmp_path / "min_coco.json").read_text())["images"]] == [
        "imgs/p.png"]


@pytest.mark.parametrize("source", ["labelme", "via", "labelstudio", "yolo", "cvat"])
def test_a_folder_without_annotations_is_named_as_such(tmp_path, capsys, source):
    """A folder holding none of the format's files ends in one line that says so (there used to be a
    pointer to "the problems above" with none above)."""
    (tmp_path / "empty").mkdir()
    assert main(["convert-data", "--from", source, str(tmp_path / "empty"), "--output",
                 str(tmp_path / "out.json")]) == 1
    err = capsys.readouterr().err
    assert "problems above" not in err and "no such" not in err
    assert err.strip().splitlines()[-1].startswith("maskrcnn convert-data: error:")
    assert not (tmp_path / "out.json").exists()


def test_a_coco_file_is_not_taken_for_a_task(tmp_path, capsys):
    coco = tmp_path / "train.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "labelstudio", str(coco), "--output", str(out)]) == 1
    assert "a COCO instance file, not a Label Studio export" in capsys.readouterr().err


def _pack_fields(values, widths) -> list:
    """Bit fields (value, width <= 32) one after another, most significant bit first, as bytes."""
    bits = np.unpackbits(np.asarray(values, ">u4").view(np.uint8)).reshape(-1, 32)  # (F, 32)
    keep = np.arange(32) >= 32 - np.asarray(widths)[:, None]  # (F, 32) the low `width` bits of each
    return np.packbits(bits[keep]).tolist()


def _stream(num, run_widths, repeated, choice, length, stored) -> list:
    """An rle-pack stream of 8-bit words from its runs (R,) and the words they store, in order."""
    width = np.asarray(run_widths)[choice]  # (R,)
    header = (repeated.astype(np.int64) << (width + 2)) | (choice << width) | (length - 1)
    kinds = np.concatenate([np.zeros(len(length), int), np.ones(len(stored), int)])
    which = np.repeat(np.arange(len(length)), np.where(repeated, 1, length))  # (V,) run of each stored word
    order = np.argsort(np.concatenate([np.arange(len(length)), which]) * 2 + kinds, kind="stable")
    values = np.concatenate([header, stored])[order]  # each run's header, then its words
    fields = np.concatenate([header * 0 + 3 + width, np.full(len(stored), 8)])[order]
    top = [num, 7, *(w - 1 for w in run_widths)]
    return _pack_fields(np.concatenate([top, values]), np.concatenate([[32, 5, 4, 4, 4, 4], fields]))


def _fast_encode(words) -> list:
    """The converter's way, vectorised: every group of equal neighbours one run (repeated, or a literal of
    one), split at 2^16, its length in the narrowest of the widths 2, 5, 9, 16."""
    words = np.asarray(words, np.int64)
    starts = np.flatnonzero(np.diff(words, prepend=-1))  # (G,) where each group of equal words starts
    counts = np.diff(np.append(starts, len(words)))  # (G,)
    pieces = -(-counts // (1 << 16))
    group = np.repeat(np.arange(len(counts)), pieces)  # (R,) the group of each run
    nth = np.arange(len(group)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    length = np.minimum(counts[group] - nth * (1 << 16), 1 << 16)  # (R,)
    choice = np.searchsorted(np.array([1 << 2, 1 << 5, 1 << 9]), length - 1, side="right")
    return _stream(len(words), _WIDTHS, length > 1, choice, length, words[starts[group]])


def test_brush_rle_large_stroke_round_trip_reads_runs_in_batches(monkeypatch):
    """A 1280x720 stroke of (255, 0, 0, 255): ~0.5 M runs of one size between the rows' empty runs (the
    brush a loop over runs took seconds to read), decoded pixel for pixel, with fewer than 1 run in 50
    read alone (one Python step a run was the slow way)."""
    height, width = 720, 1280
    yy, xx = np.mgrid[:height, :width]
    mask = (yy - 360) ** 2 + (xx - 640) ** 2 < 250 ** 2
    mask[500:, 100:300] = True  # a second part, touching the bottom edge
    mask[np.random.default_rng(1).random((height, width)) < 0.0005] ^= True  # runs of other sizes
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    rle = _fast_encode(rgba.reshape(-1))
    reads = []
    monkeypatch.setattr(_Bits, "read", lambda self, n, read=_Bits.read: reads.append(n) or read(self, n))
    words, word = decode_words(rle, expected=height * width * 4)
    runs = len(np.flatnonzero(np.diff(rgba.reshape(-1).astype(int), prepend=-1)))
    assert word == 8 and (words == rgba.reshape(-1)).all() and runs > 400_000
    assert reads.count(1) < runs / 50  # a run's first bit, read one by one
    assert (decode_brush_mask(rle, height, width) == mask).all()


def test_brush_rle_runs_of_every_kind_and_width_round_trip():
    """Runs drawn at random (repeated or literal, 1..20 words, sometimes thousands, in any width that
    holds the length; widths 2 and 10 make a literal of 2 as long as a repeated run) decode exactly."""
    rng = np.random.default_rng(2)
    widths = (2, 10, 4, 16)
    n = 20000
    length = np.where(rng.random(n) < 0.01, rng.integers(1, 5000, n), rng.integers(1, 21, n))
    repeated = rng.random(n) < 0.5
    fits = (length[:, None] - 1) < (1 << np.asarray(widths))  # (R, 4)
    choice = np.argmax(fits * rng.random((n, 4)), axis=1)  # a random width among those that hold it
    stored = rng.integers(0, 256, int(np.where(repeated, 1, length).sum()))
    which = np.repeat(np.arange(n), np.where(repeated, 1, length))
    expected = np.repeat(stored, np.where(repeated, length, 1)[which])
    rle = _stream(len(expected), widths, repeated, choice, length, stored)
    words, word = decode_words(rle, expected=len(expected))
    assert word == 8 and words.tolist() == expected.tolist()
    with pytest.raises(Skip, match="ends in the middle of"):
        decode_words(rle[:len(rle) // 2], expected=len(expected))


def _box(label, x):
    """A rectangle 10% wide at x percent: its pixel box tells which annotation was taken."""
    return _result("rectanglelabels", [label], x=x, y=0, width=10, height=10, rotation=0)


def _annotation(aid, result, updated, *, created="2024-05-01T08:00:00.000000Z", cancelled=False):
    return {"id": aid, "completed_by": 1, "result": result, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": created, "updated_at": updated, "lead_time": 12.5, "task": 0, "project": 3}


def _prediction(pid, result, updated, version):
    return {"id": pid, "model_version": version, "score": 0.5, "result": result, "created_at": updated,
            "updated_at": updated, "task": 0, "project": 3}


def test_labelstudio_latest_annotation_wins_predictions_on_request(tmp_path, capsys):
    """Of several annotations the most recently updated is taken (the first listed was taken); cancelled
    ones and predictions never beat an annotation; a task with only predictions is read from its latest
    one with --ls-use-predictions (skipped without it), a task whose annotations were all cancelled is
    skipped either way."""
    root = tmp_path / "project"
    for name in ("a.png", "b.png", "c.png"):
        _image(root / name)
    tasks = [
        {"id": 21, "data": {"image": "/data/upload/3/a.png"}, "annotations": [
            _annotation(1, [_box("cat", 0)], "2024-05-01T09:00:00.000000Z"),
            _annotation(2, [_box("cat", 50)], "2024-05-03T10:00:00.000000Z"),  # reviewed last: taken
            _annotation(3, [_box("cat", 80)], "2024-05-09T10:00:00.000000Z", cancelled=True)],
         "predictions": [_prediction(7, [_box("cat", 20)], "2024-06-01T00:00:00.000000Z", "v2")]},
        {"id": 22, "data": {"image": "/data/upload/3/b.png"}, "annotations": [], "predictions": [
            _prediction(8, [_box("dog", 0), _box("dog", 30)], "2024-06-02T00:00:00.000000Z", "v2"),
            _prediction(9, [_box("dog", 60)], "2024-04-01T00:00:00.000000Z", "v1")]},
        {"id": 23, "data": {"image": "/data/upload/3/c.png"},
         "annotations": [_annotation(4, [], "2024-05-01T09:00:00Z", cancelled=True)],
         "predictions": [_prediction(10, [_box("dog", 0)], "2024-06-02T00:00:00Z", "v2")]},
    ]  # fmt: skip
    (root / "export.json").write_text(json.dumps(tasks))

    def boxes(out):
        coco = json.loads(out.read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        return [(a["image_id"], names[a["category_id"]], a["bbox"][0]) for a in coco["annotations"]]

    out = tmp_path / "coco.json"
    assert _convert(root / "export.json", out) == 0
    err = capsys.readouterr().err
    assert boxes(out) == [(1, "cat", 20.0)]  # 50% of 40 px
    assert "task 22: the task has predictions (model output) but no annotation (--ls-use-predictions" in err
    assert "task 23: every annotation of the task was cancelled" in err
    assert "1 tasks with several annotations (the ground truth, else the latest, taken)" in err

    assert _convert(root / "export.json", out, "--ls-use-predictions") == 0
    err = capsys.readouterr().err
    assert boxes(out) == [(1, "cat", 20.0), (2, "dog", 0.0), (2, "dog", 12.0)]  # v2, the latest prediction
    assert "1 tasks read from their predictions (--ls-use-predictions)" in err
    assert "1 tasks with several predictions (the latest taken)" in err
    assert "skipped 1 record(s): 1 cancelled" in err


def test_labelstudio_json_min_takes_the_latest_record_of_a_task(tmp_path, capsys):
    _image(tmp_path / "x.png")
    records = [
        {"image": "/data/upload/1/x.png", "id": 5, "annotation_id": 1, "annotator": 1,
         "label": [{**_box("cat", 0)["value"], "original_width": W, "original_height": H}],
         "created_at": "2024-05-01T08:00:00.000000Z", "updated_at": "2024-05-01T08:00:00.000000Z"},
        {"image": "/data/upload/1/x.png", "id": 5, "annotation_id": 2, "annotator": 2,
         "label": [{**_box("cat", 50)["value"], "original_width": W, "original_height": H}],
         "created_at": "2024-05-01T07:00:00.000000Z", "updated_at": "2024-05-02T08:00:00.000000Z"},
        {"image": "/data/upload/1/x.png", "id": 5, "annotation_id": 3, "annotator": 3,
         "label": [{**_box("cat", 80)["value"], "original_width": W, "original_height": H}],
         "created_at": "2024-04-01T07:00:00.000000Z", "updated_at": "2024-04-01T07:00:00.000000Z"},
    ]  # fmt: skip
    (tmp_path / "min.json").write_text(json.dumps(records))
    out = tmp_path / "coco.json"
    assert _convert(tmp_path / "min.json", out) == 0
    assert [a["bbox"][0] for a in json.loads(out.read_text())["annotations"]] == [20.0]
    err = capsys.readouterr().err
    assert "1 tasks with several annotations (the latest record taken)" in err  # JSON-MIN: no ground truth
    assert "the ground truth" not in err


def test_labelstudio_ground_truth_beats_a_newer_annotation(tmp_path, capsys):
    """An annotation marked ground truth is taken even when a plain one was updated after it."""
    root = tmp_path / "project"
    _image(root / "a.png")
    truth = {**_annotation(1, [_box("cat", 50)], "2024-05-01T09:00:00.000000Z"), "ground_truth": True}
    newer = _annotation(2, [_box("cat", 0)], "2024-05-09T10:00:00.000000Z")
    tasks = [{"id": 31, "data": {"image": "/data/upload/3/a.png"}, "annotations": [truth, newer]}]
    (root / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "coco.json"
    assert _convert(root / "export.json", out) == 0
    assert [a["bbox"][0] for a in json.loads(out.read_text())["annotations"]] == [20.0]  # 50% of 40 px
    err = capsys.readouterr().err
    assert "1 tasks with several annotations (the ground truth, else the latest, taken)" in err


def _predicted_tasks(tmp_path, *, url_prefix=""):
    """predict --export labelstudio's layout: photos/sub/a.png, the tasks in pre/ (naming the image
    relative to photos/, recording photos/ as ../photos), one predicted cat box."""
    from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance
    from maskrcnn.data.pre_annotations.to_labelstudio import labelstudio_tasks

    _image(tmp_path / "photos" / "sub" / "a.png")
    box = Instance(category=Category(label=1, id=1, name="cat"), score=0.9, rle=None,
                   box=(2.0, 2.0, 10.0, 8.0))
    tasks = labelstudio_tasks([ImageRecord(id=1, file_name="sub/a.png", height=H, width=W)], [[box]],
                              url_prefix=url_prefix, images_folder="../photos")
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / "tasks.json").write_text(json.dumps(tasks))
    return tmp_path / "pre" / "tasks.json"


@pytest.mark.parametrize("url_prefix", ["", "/data/local-files/?d="])
def test_labelstudio_tasks_predict_wrote_read_back_without_images(tmp_path, capsys, url_prefix):
    """The tasks predict --export labelstudio writes name images relative to the images folder, not to
    the file: without --images every image was 'not found' under pre/ and nothing was written. The folder
    each task records (relative to the file) is where they are looked for now; file_name relative to it."""
    tasks = _predicted_tasks(tmp_path, url_prefix=url_prefix)
    out = tmp_path / "coco.json"
    assert _convert(tasks, out) == 0
    captured = capsys.readouterr()
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["sub/a.png"]
    assert [a["bbox"] for a in coco["annotations"]] == [[2.0, 2.0, 8.0, 6.0]]
    assert "images looked for under" in captured.err and "(the folder predict recorded in it)" in captured.err
    assert f"file_name values are relative to {tmp_path / 'photos'}" in captured.out


def test_labelstudio_images_option_overrides_the_recorded_folder(tmp_path, capsys):
    """--images stays the override: a copy of the photos elsewhere is read, the recorded folder unused."""
    tasks = _predicted_tasks(tmp_path)
    _image(tmp_path / "copy" / "sub" / "a.png", size=(H + 4, W))  # a copy of another shape: warned about
    out = tmp_path / "coco.json"
    assert _convert(tasks, out, "--images", tmp_path / "copy") == 0
    assert "recorded" not in capsys.readouterr().err
    images = json.loads(out.read_text())["images"]
    assert [(i["file_name"], i["height"]) for i in images] == [("sub/a.png", H + 4)]


@pytest.mark.parametrize("folder, why", [
    ("/abs/photos", "'/abs/photos', not a path relative to the file"),
    ("../elsewhere", "'../elsewhere', not a folder beside it (the file was moved?)"),
    (7, "7, not a folder's path"),
])  # fmt: skip
def test_labelstudio_recorded_folder_not_usable_is_said(tmp_path, capsys, folder, why):
    """A recorded folder that is absolute, missing or not text: a line says so, the default folder used."""
    tasks = _predicted_tasks(tmp_path)
    data = json.loads(tasks.read_text())
    data[0]["data"]["maskrcnn_images_folder"] = folder
    tasks.write_text(json.dumps(data))
    _image(tmp_path / "pre" / "a.png")  # found by name under the default folder (the file's)
    out = tmp_path / "coco.json"
    assert _convert(tasks, out) == 0
    assert f"its tasks' maskrcnn_images_folder is {why}" in capsys.readouterr().err
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["a.png"]


def _tasks_file(path, file_name, images_folder):
    from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance
    from maskrcnn.data.pre_annotations.to_labelstudio import labelstudio_tasks

    box = Instance(category=Category(label=1, id=1, name="cat"), score=0.9, rle=None,
                   box=(2.0, 2.0, 10.0, 8.0))
    tasks = labelstudio_tasks([ImageRecord(id=1, file_name=file_name, height=H, width=W)], [[box]],
                              images_folder=images_folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks))


def test_labelstudio_one_recorded_folder_from_files_in_different_subfolders(tmp_path, capsys):
    """pre/a/ and pre/b/ both record photos/ (as ../../photos): the folder was keyed by its unnormalised
    path (two keys, file_name relative to a common root); now one folder, file_name relative to it."""
    _image(tmp_path / "photos" / "x.png")
    _image(tmp_path / "photos" / "sub" / "y.png")
    _tasks_file(tmp_path / "pre" / "a" / "tasks.json", "x.png", "../../photos")
    _tasks_file(tmp_path / "pre" / "b" / "more" / "tasks.json", "sub/y.png", "../../../photos")
    out = tmp_path / "coco.json"
    assert _convert(tmp_path / "pre", out) == 0
    captured = capsys.readouterr()
    assert sorted(i["file_name"] for i in json.loads(out.read_text())["images"]) == ["sub/y.png", "x.png"]
    assert captured.err.count(f"images looked for under {tmp_path / 'photos'} (the folder predict") == 2
    assert f"file_name values are relative to {tmp_path / 'photos'}" in captured.out


def test_labelstudio_recorded_folder_without_the_first_image_falls_back(tmp_path, capsys, monkeypatch):
    """The export moved to where its recorded path is some other existing folder (no images there): that
    folder was trusted and walked for every image. It is checked for the first task's image first."""
    _tasks_file(tmp_path / "moved" / "tasks.json", "sub/a.png", "../other")
    (tmp_path / "other" / "deep").mkdir(parents=True)  # an unrelated tree
    (tmp_path / "other" / "deep" / "notes.txt").write_text("x")
    _image(tmp_path / "moved" / "sub" / "a.png")  # under the default folder (the file's)
    walked = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, *a, **k: walked.append(str(top)) or real_walk(top, *a, **k))
    out = tmp_path / "coco.json"
    assert _convert(tmp_path / "moved" / "tasks.json", out) == 0
    err = capsys.readouterr().err
    assert ("its tasks' maskrcnn_images_folder is '../other', a folder not holding the first task's image "
            "(the file was moved?): images looked for under the default folder (give --images)") in err
    assert not any("other" in w for w in walked)
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["sub/a.png"]


def test_labelstudio_reference_never_climbs_out_of_the_images_folder(tmp_path, capsys):
    """'../secret.png' (or a/../../secret.png) was joined to the images folder as it was: a file outside it
    was read. Such a path is looked for by its file name only, inside the folder."""
    root = tmp_path / "project"
    _image(tmp_path / "secret.png")
    task = _task(1, "a/../../secret.png", ([_result("rectanglelabels", ["cat"], x=10, y=10, width=20,
                                                    height=20)], False, False))
    root.mkdir()
    (root / "export.json").write_text(json.dumps([task, dict(task, id=2, data={"image": "../secret.png"})]))
    out = tmp_path / "coco.json"
    assert _convert(root / "export.json", out) == 1
    err = capsys.readouterr().err
    assert err.count("image 'secret.png' (from") == 2 and "not found under" in err
    _image(root / "deep" / "secret.png")  # the same name inside the folder: that one
    assert _convert(root / "export.json", out) == 0  # (task 2, the same file again, skipped as a duplicate)
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["deep/secret.png"]


def test_a_bare_string_label_is_stripped_as_a_listed_one(tmp_path, capsys):
    """A label given as a bare string (not a list) was not stripped: " box" became a class of its own
    beside "box". Now it is read as "box", said once as the listed ones are."""
    root = tmp_path / "project"
    _image(root / "a.png")
    bare = _result("rectanglelabels", None, x=0, y=0, width=10, height=10, rotation=0)
    bare["value"]["rectanglelabels"] = " box"
    tasks = [_task(1, "/data/upload/3/a.png", ([_box("box", 50), bare], False, False))]
    (root / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "coco.json"
    assert _convert(root / "export.json", out) == 0
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["box"] and len(coco["annotations"]) == 2
    assert "label ' box' read as 'box'" in capsys.readouterr().err


def test_labelstudio_one_region_labelled_by_two_controls_is_one_region(tmp_path, capsys):
    """<PolygonLabels name="label"> plus <Labels name="attr"> on one image: the export holds one result
    per control, both with the region's id (JSON-MIN: the region under each control's name). That is one
    region with two labels: skipped as ambiguous, or the listed class with --classes; never two
    instances of one polygon under two classes."""
    _image(tmp_path / "a.png")
    points = [[10, 10], [50, 10], [30, 60]]
    pair = [dict(_result("polygonlabels", ["dog"], points=points), id="f"),
            dict(_result("labels", ["small"], points=points), id="f", from_name="attr")]
    (tmp_path / "full.json").write_text(json.dumps([_task(1, "a.png", (pair, False, False))]))
    size = {"original_width": W, "original_height": H}
    record = {"image": "a.png", "id": 1, "annotation_id": 3,
              "label": [{"points": points, "polygonlabels": ["dog"], **size}],
              "attr": [{"points": points, "labels": ["small"], **size}]}
    (tmp_path / "min.json").write_text(json.dumps([record]))
    for export, where in (("full.json", "task 1 result[0]"), ("min.json", "task 1 label[0]")):
        out = tmp_path / f"{export}.coco.json"
        _convert(tmp_path / export, out)
        err = capsys.readouterr().err
        assert f"{export}: {where}: the region has several labels ['dog', 'small']" in err
        assert "1 regions labelled by several label controls (their labels joined)" in err
        assert "skipped 1 record(s): 1 ambiguous_label" in err
        assert _convert(tmp_path / export, out, "--classes", "dog,cat") == 0
        coco = json.loads(out.read_text())
        assert [(a["category_id"], a["bbox"]) for a in coco["annotations"]] == [(1, [4.0, 3.0, 16.0, 15.0])]
        capsys.readouterr()


def test_labelstudio_json_min_unannotated_task_is_skipped(tmp_path, capsys):
    """An "all tasks" JSON-MIN export writes a task nobody annotated as its data with annotation_id null:
    skipped as the JSON export skips it (its objects would train as background); a record of an
    annotation without regions stays an image without objects."""
    _image(tmp_path / "a.png")
    _image(tmp_path / "e.png")
    _image(tmp_path / "n.png")
    records = [
        {"image": "a.png", "id": 1, "annotation_id": 1,
         "label": [{"x": 0, "y": 0, "width": 50, "height": 50, "rectanglelabels": ["cat"]}]},
        {"image": "/data/upload/3/0f0f0f0f-e.png", "id": 5, "annotator": None, "annotation_id": None,
         "created_at": None, "updated_at": None, "lead_time": None},
        {"image": "n.png", "id": 6, "annotation_id": 7, "annotator": 1},  # annotated: nothing there
    ]
    (tmp_path / "min.json").write_text(json.dumps(records))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "min.json", out) == 0
    err = capsys.readouterr().err
    assert "min.json: task 5: the task has no annotation (annotation_id null); skipped" in err
    assert "skipped 1 record(s): 1 unannotated" in err
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["a.png", "n.png"]


def test_labelstudio_task_with_two_images_converts_each_with_its_regions(tmp_path, capsys):
    """A config with two <Image> tags (left, right): each result's to_name (or source) names its image."""
    _image(tmp_path / "c.png")
    _image(tmp_path / "d.png", size=(H * 2, W))
    left = dict(_result("polygonlabels", ["cat"], points=[[10, 10], [50, 10], [30, 60]]), to_name="left")
    right = dict(_result("rectanglelabels", ["dog"], x=0, y=0, width=50, height=50), to_name="right",
                 original_width=W, original_height=H * 2)
    lost = dict(_result("rectanglelabels", ["dog"], x=0, y=0, width=5, height=5), to_name="img_middle")
    task = {"id": 1, "data": {"left": "/data/upload/3/aaaabbbb-c.png",
                              "right": "/data/upload/3/aaaabbbb-d.png"},
            "annotations": [{"id": 1, "result": [left, right, lost]}]}
    (tmp_path / "multi.json").write_text(json.dumps([task]))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "multi.json", out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = sorted((files[a["image_id"]], names[a["category_id"]], a["bbox"]) for a in coco["annotations"])
    assert got == [
        ("c.png", "cat", [4.0, 3.0, 16.0, 15.0]), ("d.png", "dog", [0.0, 0.0, 20.0, 30.0])]
    assert "1 tasks with several images (each converted with its own regions)" in err
    assert ("multi.json: task 1 result[2]: the result does not say which of the task's images (left, right) "
            "it is on") in err


def test_labelstudio_multi_page_task_names_its_image_list(tmp_path, capsys):
    """<Image valueList="$images">: the data holds a list of images; the message names that key."""
    _image(tmp_path / "c.png")
    result = dict(_result("polygonlabels", ["cat"], points=[[5, 5], [25, 5], [15, 25]]), item_index=1)
    task = {"id": 1, "data": {"images": ["/data/upload/3/aaaabbbb-c.png", "/data/upload/3/aaaabbbb-d.png"],
                              "title": "x"}, "annotations": [{"id": 1, "result": [result]}]}
    (tmp_path / "vlist.json").write_text(json.dumps([task]))
    assert _convert(tmp_path / "vlist.json", tmp_path / "o.json") == 1
    err = capsys.readouterr().err
    assert ("vlist.json: task 1: data field 'images' is a list of images (a multi-page <Image valueList>): "
            "multi-image tasks are not converted") in err
    # A full task's list-valued data that is not images is still listed among its keys.
    task["data"] = {"tags": ["a", "b"], "title": "x"}
    (tmp_path / "vlist.json").write_text(json.dumps([task]))
    assert _convert(tmp_path / "vlist.json", tmp_path / "o.json") == 1
    assert "task 1: no data field names an image file (its keys: tags, title)" in capsys.readouterr().err


def test_labelstudio_results_sharing_an_id_join_only_as_one_regions_controls(tmp_path, capsys):
    """rev_d1 3: any results sharing a region id were joined. Pre-annotations imported by a script often
    give every region one id: three polygons of one control, all "r1" (cat, cat, dog), became "2 regions
    labelled by several label controls", one ambiguous_label skip and 0 instances. Now only another
    control's result on the same image with the same geometry (or none) joins; the rest are regions."""
    _image(tmp_path / "a.png")

    def poly(x, label, **extra):
        return {**_result("polygonlabels", [label], points=[[x, 10], [x + 10, 10], [x + 10, 20]]), "id": "r1",
                **extra}

    same_control = [poly(5, "cat"), poly(30, "cat"), poly(50, "dog")]
    # another control, but another geometry or another image: not that region's labels either
    other = [dict(poly(5, "small", from_name="size"), type="labels"),
             dict(poly(30, "big", from_name="size", to_name="image2"), type="labels")]
    for k, v in enumerate(other):
        v["value"]["labels"] = v["value"].pop("polygonlabels")
        if k == 0:
            v["value"]["points"] = [[6, 10], [16, 10], [16, 20]]
    tasks = [_task(1, "a.png", (same_control, False, False))]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "e.json", out, "--classes", "cat,dog") == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert sorted(a["category_id"] for a in coco["annotations"]) == [1, 1, 2]
    assert "several label controls" not in err and "ambiguous_label" not in err
    tasks = [_task(1, "a.png", (same_control + other, False, False))]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    assert _convert(tmp_path / "e.json", out, "--classes", "cat,dog") == 0
    err = capsys.readouterr().err
    assert "several label controls" not in err
    assert len(json.loads(out.read_text())["annotations"]) == 3  # the 'small' / 'big' regions: not classes


def test_labelstudio_images_folder_given_below_the_document_root(tmp_path, capsys):
    """Local-files URLs name the path below the document root (?d=photos/b/1.jpg); given --images the
    folder holding the images (photos), both tasks were skipped as ambiguous (1.jpg is in a/ and b/) and
    nothing was written. The URL's path tail (b/1.jpg) names one file there: that one is taken."""
    for sub, size in (("a", (H, W)), ("b", (2 * H, W))):  # told apart by their sizes
        _image(tmp_path / "photos" / sub / "1.jpg", size=size)
    rect = dict(x=10, y=10, width=50, height=50, rotation=0)
    tasks = [_task(1, "/data/local-files/?d=photos/b/1.jpg",
                   ([_result("rectanglelabels", ["box"], (W, 2 * H), **rect)], False, False)),
             _task(2, "/data/local-files/?d=photos/a/1.jpg",
                   ([_result("rectanglelabels", ["box"], (W, H), **rect)], False, False))]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "export.json", out, "--images", tmp_path / "photos") == 0
    assert "ambiguous" not in capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [(i["file_name"], i["height"]) for i in coco["images"]] == [("b/1.jpg", 2 * H), ("a/1.jpg", H)]
    assert [a["bbox"] for a in coco["annotations"]] == [[4.0, 6.0, 20.0, 30.0], [4.0, 3.0, 20.0, 15.0]]
    # a tail no folder tells apart is still ambiguous
    tasks[0]["data"]["image"] = "/data/local-files/?d=elsewhere/c/1.jpg"
    (tmp_path / "export.json").write_text(json.dumps(tasks[:1]))
    assert _convert(tmp_path / "export.json", out, "--images", tmp_path / "photos") == 1
    assert "is in several folders under" in capsys.readouterr().err


def _exif_photo(path, stored_wh, orientation):
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.zeros((stored_wh[1], stored_wh[0], 3), np.uint8)).save(path, exif=exif.tobytes())


def test_labelstudio_stored_size_of_an_exif_photo_and_a_stretched_copy_convert(tmp_path, capsys):
    """Importers and ML backends give original_width/original_height as a photo's stored size (PIL
    without the EXIF turn), while the percent coordinates are of the upright view Label Studio shows: such
    regions were laid on the upright image before the resize rule, then all skipped as "another shape".
    Now they are used as they are (noted), and so are those on a copy stretched to another aspect ratio
    (warned about), as before; a brush mask on the stored size is refused naming the EXIF turn."""
    _exif_photo(tmp_path / "a.jpg", (200, 100), 6)  # stored 200x100, shown 100x200
    _image(tmp_path / "b.png", size=(64, 64))  # a 40x30 image stretched to 64x64
    rect = dict(x=10, y=10, width=20, height=20, rotation=0)
    brush = _result("brushlabels", ["cat"], (200, 100), format="rle",
                    rle=_brush_rle(np.ones((100, 200), bool)))
    stored = _result("rectanglelabels", ["box"], (200, 100), **rect)
    tasks = [_task(1, "a.jpg", ([stored, brush], False, False)),
             _task(2, "b.png", ([_result("rectanglelabels", ["box"], (W, H), **rect)], False, False))]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "export.json", out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(100, 200), (64, 64)]
    assert [(a["image_id"], a["bbox"]) for a in coco["annotations"]] == [
        (1, [10.0, 20.0, 20.0, 40.0]), (2, [6.4, 6.4, 12.8, 12.8])]
    assert "original_width x original_height 200x100 is the photo's stored size, before its EXIF " \
           "orientation 6" in err
    assert "task 1 result[1]: the brush mask is 200x100 (original_width x original_height), the image " \
           "100x200 once EXIF turns it" in err
    assert "task 2: warning: original_width x original_height 40x30 is of another shape than the image " \
           "file's 64x64" in err
    assert "image_size_mismatch" not in err


def test_labelstudio_brush_mask_on_a_resized_copy_is_scaled_like_its_other_shapes(tmp_path, capsys):
    """A brush mask drawn on a 80x60 image whose file is now 40x30 (a resized copy) was skipped as
    bad_mask while the rectangle beside it was scaled. Now it is resampled to the image (nearest), as
    CVAT and LabelMe masks are."""
    _image(tmp_path / "a.png")
    drawn = np.zeros((2 * H, 2 * W), bool)
    drawn[10:31, 6:27] = True  # odd edges: 21 x 21 px
    brush = _result("brushlabels", ["cat"], (2 * W, 2 * H), format="rle", rle=_brush_rle(drawn))
    rect = _result("rectanglelabels", ["box"], (2 * W, 2 * H), x=10, y=10, width=20, height=20, rotation=0)
    (tmp_path / "export.json").write_text(json.dumps([_task(1, "a.png", ([brush, rect], False, False))]))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "export.json", out) == 0
    err = capsys.readouterr().err
    assert "bad_mask" not in err and "has its shape (a resized copy)" in err
    coco = json.loads(out.read_text())
    masks = [annotation_to_mask(a["segmentation"], H, W).numpy() > 0 for a in coco["annotations"]]
    expected = np.asarray(Image.fromarray(drawn.astype(np.uint8)).resize((W, H), Image.NEAREST)) > 0
    assert len(masks) == 2 and (masks[0] == expected).all()
    assert coco["annotations"][0]["bbox"] == [3.0, 5.0, 10.0, 10.0]


def test_labelstudio_a_dataset_stretched_to_one_size_is_warned_about_once(tmp_path, capsys):
    """A Roboflow "Stretch to 64x64" export has every task of another shape than its file: one warning
    line for the file, not one per task; every task converts and the others are counted in the notes."""
    rect = dict(x=10, y=10, width=20, height=20, rotation=0)
    tasks = []
    for i, drawn_wh in enumerate([(40, 30), (50, 20), (30, 60)], start=1):
        _image(tmp_path / f"{i}.png", size=(64, 64))
        drawn = _result("rectanglelabels", ["box"], drawn_wh, **rect)
        tasks.append(_task(i, f"{i}.png", ([drawn], False, False)))
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "export.json", out) == 0
    err = capsys.readouterr().err
    assert err.count("warning: original_width x original_height") == 1
    assert "task 1: warning: original_width x original_height 40x30" in err
    assert "3 tasks whose original_width/original_height is of another shape" in err
    assert "3 warnings" in err
    assert len(json.loads(out.read_text())["annotations"]) == 3
