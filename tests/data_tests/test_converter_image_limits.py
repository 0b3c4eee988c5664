"""convert-data: a PNG over PIL's decompression-bomb limit anywhere a converter reads one (LabelMe's
imageData and mask shapes, VOC's SegmentationObject / SegmentationClass, Cityscapes' instanceIds) skips
its image (or shape) by name, counted as image_too_large, and the rest is converted. PIL's
DecompressionBombError is no OSError: it escaped the converters' own catches and ended the whole
conversion with a traceback, nothing written."""

import base64
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.images import MAX_PIXELS_ENV, ImageReadError, ImageTooLargeError, open_image

H, W = 8, 10
TOO_LARGE_LINE = "image too large (225 MP > limit 179 MP; raise it with the environment variable"


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


def _bomb_png() -> bytes:
    """A PNG whose header claims 15000 x 15000 (225 MP) and that holds no pixel: PIL refuses it from the
    header, so no test allocates it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 15000, 15000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, **kw).save(path)


def test_open_image_names_the_source_for_every_failure(tmp_path):
    with pytest.raises(ImageTooLargeError, match=r"^mask\.png: image too large \(225 MP > limit 179 MP"):
        open_image(_bomb_png(), "mask.png", decode=False)
    with pytest.raises(ImageReadError, match=r"^x: empty file \(0 bytes\)"):
        open_image(b"", "x")
    with pytest.raises(ImageReadError, match=r"^x: not an image file PIL can identify"):
        open_image(b"not a png", "x")
    png = tmp_path / "a.png"
    _save(png, np.full((H, W), 7, np.uint8))
    png.write_bytes(png.read_bytes()[:-30])  # cut short: the header reads, the pixels do not
    with open_image(png, "a.png", decode=False) as img:
        assert img.size == (W, H)
    with pytest.raises(ImageReadError, match=r"^a\.png: cannot decode image"):
        open_image(png, "a.png")


def _labelme(path, shapes, image_path, image_data=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image_path,
                                "imageData": image_data, "imageHeight": H, "imageWidth": W}))


def _polygon(label):
    return {"label": label, "points": [[1, 1], [6, 1], [6, 5]], "group_id": None, "shape_type": "polygon"}


def test_labelme_image_data_and_mask_over_the_limit_are_skipped_by_name(tmp_path, capsys):
    src = tmp_path / "lm"
    for name in ("good", "masked"):
        _save(src / f"{name}.png", np.full((H, W, 3), 90, np.uint8))
    _labelme(src / "good.json", [_polygon("cat")], "good.png")
    _labelme(src / "big.json", [_polygon("cat")], "big.png", base64.b64encode(_bomb_png()).decode())
    mask = {"label": "dog", "points": [[0, 0], [3, 3]], "group_id": None, "shape_type": "mask",
            "mask": base64.b64encode(_bomb_png()).decode()}
    _labelme(src / "masked.json", [_polygon("cat"), mask], "masked.png")
    out = tmp_path / "out" / "t.json"
    assert main(["convert-data", "--from", "labelme", str(src), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"big.json: imageData: {TOO_LARGE_LINE}" in err
    assert f"masked.json: shapes[1] (label 'dog'): 'mask': {TOO_LARGE_LINE}" in err
    assert "skipped 2 record(s): 2 image_too_large" in err and "Traceback" not in err
    coco = json.loads(out.read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == ["good.png", "masked.png"]
    assert len(coco["annotations"]) == 2  # each file's cat; nothing of big.json, not its image written
    assert not list((tmp_path / "out").rglob("big.*"))


def test_voc_mask_png_over_the_limit_skips_its_image(tmp_path, capsys):
    root = tmp_path / "voc"
    ids = np.zeros((H, W), np.uint8)
    ids[1:5, 2:7] = 1
    for name in ("a", "b"):
        _save(root / "JPEGImages" / f"{name}.jpg", np.full((H, W, 3), 90, np.uint8))
        _save(root / "SegmentationObject" / f"{name}.png", ids, mode="L")
        _save(root / "SegmentationClass" / f"{name}.png", ids * 8, mode="L")  # cat
    (root / "SegmentationObject" / "a.png").write_bytes(_bomb_png())
    (root / "SegmentationClass" / "b.png").write_bytes(_bomb_png())
    _save(root / "JPEGImages" / "c.jpg", np.full((H, W, 3), 90, np.uint8))
    _save(root / "SegmentationObject" / "c.png", ids, mode="L")
    _save(root / "SegmentationClass" / "c.png", ids * 8, mode="L")
    out = tmp_path / "t.json"
    assert main(["convert-data", "--from", "voc", str(root), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"SegmentationObject/a.png: SegmentationObject a.png: {TOO_LARGE_LINE}" in err
    assert f"SegmentationObject/b.png: SegmentationClass b.png: {TOO_LARGE_LINE}" in err
    assert "skipped 2 record(s): 2 image_too_large" in err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["JPEGImages/c.jpg"] and len(coco["annotations"]) == 1


def test_cityscapes_instance_ids_over_the_limit(tmp_path, capsys):
    root = tmp_path / "cs"
    ids = np.full((H, W), 7, np.uint16)
    ids[1:5, 2:7] = 26000
    for stem in ("a_000000_000001", "a_000000_000002", "a_000000_000003"):
        _save(root / "leftImg8bit" / "val" / "a" / f"{stem}_leftImg8bit.png", np.full((H, W, 3), 9, np.uint8))
        _save(root / "gtFine" / "val" / "a" / f"{stem}_gtFine_instanceIds.png", ids)
    gt = root / "gtFine" / "val" / "a"
    (gt / "a_000000_000001_gtFine_instanceIds.png").write_bytes(_bomb_png())  # no polygons: skipped
    (gt / "a_000000_000002_gtFine_instanceIds.png").write_bytes(_bomb_png())  # polygons: drawn instead
    (gt / "a_000000_000002_gtFine_polygons.json").write_text(json.dumps(
        {"imgHeight": H, "imgWidth": W, "objects": [{"label": "car", "polygon": [[1, 1], [6, 1], [6, 5]]}]}))
    out = tmp_path / "t.json"
    assert main(["convert-data", "--from", "cityscapes", str(root), "--split", "val",
                 "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"a_000000_000001_leftImg8bit.png: a_000000_000001_gtFine_instanceIds.png: {TOO_LARGE_LINE}"
            in err)
    assert (f"a_000000_000002_gtFine_instanceIds.png: warning: a_000000_000002_gtFine_instanceIds.png: "
            f"{TOO_LARGE_LINE}") in err and "drawing the polygons instead" in err
    assert "skipped 1 record(s): 1 image_too_large" in err
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 2
