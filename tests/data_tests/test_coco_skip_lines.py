"""What a COCO dataset says about the images and records it skips: an image over the pixel limit counted
as ``image_too_large`` (not ``unreadable_image``) wherever it is found, with the limit and the way to
raise it; file and category names from the JSON printed with their control characters escaped; a user's
transform that raises named by file, image id and index."""

import json
import logging
import warnings

import numpy as np
import pytest
from PIL import Image
from pixel_limit import small_pixel_limit  # tests/ is on the path

from maskrcnn.data.coco import CocoDataset, TransformError
from maskrcnn.data.images import (
    MAX_PIXELS_ENV,
    ImageReadError,
    ImageTooLargeError,
    read_image,
    reason_counts,
    skip_reason,
    too_large_line,
)

RED = "\x1b[31m"  # an ANSI escape: printed raw it turned the terminal red


@pytest.fixture
def small_limit(monkeypatch):
    """PIL refuses images over 2 x 2000 = 4000 pixels: a 80x80 file is too large, 8x8 is not."""
    small_pixel_limit(monkeypatch)


def _coco(tmp_path, files: dict, *, categories=None, annotate=True):
    """A COCO file over ``files`` ({file_name: (H, W) or None for no file}) in tmp_path/images."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    records, anns = [], []
    for iid, (name, size) in enumerate(files.items(), 1):
        h, w = size or (8, 8)
        if size is not None:
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(images / name, format="PNG")
        records.append({"id": iid, "file_name": name, "width": w, "height": h})
        if annotate:
            anns.append({"id": iid, "image_id": iid, "category_id": 1, "bbox": [1, 1, 4, 4],
                         "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]], "area": 16, "iscrowd": 0})
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps({"images": records, "annotations": anns,
                                     "categories": categories or [{"id": 1, "name": "a"}]}))
    return json_path, images


def test_an_image_over_the_limit_is_counted_apart_when_training_reads_it(tmp_path, small_limit):
    json_path, images = _coco(tmp_path, {"big.png": (80, 80), "ok.png": (8, 8)})
    dataset = CocoDataset(json_path=json_path, image_dir=images)
    with pytest.warns(UserWarning) as caught:
        assert dataset[0][1]["image_id"] == 2  # big.png refused, ok.png in its place
    message = str(caught[0].message)
    assert "big.png: image too large (0.0064 MP > limit 0.004 MP" in message and MAX_PIXELS_ENV in message
    assert dataset.skipped == {"image_too_large": 1}  # was unreadable_image, as a corrupt file


def test_a_record_without_size_whose_file_is_too_large_is_counted_as_too_large(tmp_path, small_limit):
    json_path, images = _coco(tmp_path, {"big.png": (80, 80), "ok.png": (8, 8)})
    data = json.loads(json_path.read_text())
    for record in data["images"]:
        del record["width"], record["height"]  # measured from the file: big.png's header refuses it
    json_path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="1 image_too_large") as caught:
        dataset = CocoDataset(json_path=json_path, image_dir=images)
    assert dataset.skipped["image_too_large"] == 1 and "bad_image" not in dataset.skipped
    # the dataset's skipped warning (what train prints) ends with the limit and how to raise it
    skipped = [str(w.message) for w in caught if "1 image_too_large" in str(w.message)]
    assert skipped and "1 image(s) over the limit of 0.004 MP (image_too_large)" in skipped[0]
    assert MAX_PIXELS_ENV in skipped[0]


def test_an_image_that_runs_out_of_memory_decoding_is_unreadable_without_a_limit_hint(tmp_path, monkeypatch):
    """A MemoryError while decoding is not the pixel limit (there may be none): it was counted
    image_too_large with advice to raise MASKRCNN_MAX_IMAGE_PIXELS."""
    from maskrcnn.data import images as images_module

    json_path, images = _coco(tmp_path, {"a.png": (8, 8), "b.png": (8, 8)})

    def no_memory(img, name="image", **kwargs):
        raise MemoryError("cannot allocate 1 TB")

    monkeypatch.setattr(images_module, "_to_rgb_array", no_memory)
    with pytest.raises(ImageReadError, match="a.png: ran out of memory decoding the image") as e:
        read_image(images / "a.png")
    assert type(e.value) is ImageReadError and e.value.reason == "unreadable_image"
    assert skip_reason(e.value) == "unreadable_image"
    assert MAX_PIXELS_ENV not in str(e.value)
    dataset = CocoDataset(json_path=json_path, image_dir=images)
    with pytest.warns(UserWarning) as caught, pytest.raises(RuntimeError, match="no image of the dataset"):
        dataset[0]
    assert dataset.skipped == {"unreadable_image": 2}
    assert too_large_line(dataset.skipped) is None
    assert not any(MAX_PIXELS_ENV in str(w.message) for w in caught)


def test_the_too_large_line_says_the_limit_in_force_and_how_to_raise_it(small_limit):
    assert too_large_line({"unreadable_image": 3}) is None and too_large_line({}) is None
    listing = reason_counts({"unreadable_image": 2, "image_too_large": 1})
    assert listing == "1 image_too_large, 2 unreadable_image"
    assert reason_counts({}) == ""
    line = too_large_line({"image_too_large": 2, "unreadable_image": 1})
    assert line.startswith("2 image(s) over the limit of 0.004 MP (image_too_large): raise it with the "
                           f"environment variable {MAX_PIXELS_ENV}")
    assert "What happens with bad input" in line
    assert skip_reason(ImageTooLargeError("x")) == "image_too_large"
    assert skip_reason(ImageReadError("x")) == "unreadable_image"
    assert skip_reason(OSError("x")) == "unreadable_image"
    assert skip_reason("the model failed on this image (RuntimeError: boom)") == "prediction_failed"


def test_convert_data_counts_a_too_large_image_apart(tmp_path, small_limit):
    from maskrcnn.data.formats.common import Skip, image_size

    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(Skip, match="image .*big.png is over the pixel limit: image too large") as e:
        image_size(tmp_path / "big.png")
    assert e.value.reason == "image_too_large"


def test_convert_data_summary_says_the_limit_after_a_too_large_image(small_limit):
    import io

    from maskrcnn.data.formats.common import Report, Skip

    report = Report(stream=io.StringIO())
    report.skip("a.json", Skip("unreadable_image", "image x cannot be read"))
    assert "image_too_large" not in report.summary()  # no limit line without an image over it
    report.skip("a.json", Skip("image_too_large", "image big.png is over the pixel limit"))
    lines = report.summary().splitlines()
    assert lines[-2] == "skipped 2 record(s): 1 image_too_large, 1 unreadable_image"
    assert lines[-1].startswith("1 image(s) over the limit of 0.004 MP (image_too_large): raise it with")


def _lines(problems, caught, caplog):
    return [*problems, *(str(w.message) for w in caught), *(r.getMessage() for r in caplog.records)]


def test_file_and_category_names_from_the_json_are_printed_escaped(tmp_path, caplog):
    """A file_name holding an ANSI escape or a newline went raw into every problem line and warning."""
    names = {f"gone{RED}.png": None, "new\nline.png": (8, 8), "ok.png": (8, 8)}
    json_path, images = _coco(tmp_path, names)
    (images / "new\nline.png").write_bytes(b"")  # there, but empty: unreadable
    data = json.loads(json_path.read_text())
    data["annotations"].append("\x1b[2Jnot an object")
    data["images"].append(f"\x1b]0;title{RED}")  # no record at all
    json_path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoDataset(json_path=json_path, image_dir=images)
        dataset.check_image_files()
        assert dataset[0][1]["image_id"] == 3
    lines = _lines(dataset.problems, caught, caplog)
    # annotation_of_skipped_image: the missing file's and the unreadable one's (left out by check_image_files)
    assert dataset.skipped == {"missing_image_file": 1, "annotation_of_skipped_image": 2, "bad_annotation": 1,
                               "bad_image": 1, "unreadable_image": 1}
    assert not [line for line in lines if "\x1b" in line or "\n" in line]
    text = "\n".join(lines)
    assert f"'{images}/gone\\x1b[31m.png' not found" in text
    assert f"'{images}/new\\nline.png': empty file (0 bytes)" in text
    assert "annotation '\\x1b[2Jnot an object' is not an object" in text


def test_an_image_unreadable_at_getitem_and_one_left_out_are_named_escaped(tmp_path):
    json_path, images = _coco(tmp_path, {"cut\nshort.png": (8, 8), "ok.png": (8, 8)})
    (images / "cut\nshort.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a header, no image
    dataset = CocoDataset(json_path=json_path, image_dir=images)
    with pytest.warns(UserWarning) as caught:
        dataset[0]
    assert "cut\\nshort.png" in str(caught[0].message) and "\n" not in str(caught[0].message)
    path = images / "cut\nshort.png"
    dataset.leave_out({1: ImageReadError(f"{path}: cannot decode image")})  # as show-data reports it
    assert dataset.problems[-1].startswith(f"{json_path}: '{images}/cut\\nshort.png': cannot decode")


def test_a_category_name_with_a_control_character_is_escaped_in_the_keypoint_set_error(tmp_path):
    categories = [{"id": 1, "name": f"per{RED}son", "keypoints": ["a", "b"]},
                  {"id": 2, "name": "dog\nx", "keypoints": ["a"]}]
    json_path, images = _coco(tmp_path, {"ok.png": (8, 8)}, categories=categories)
    with pytest.raises(ValueError) as e:
        CocoDataset(json_path=json_path, image_dir=images, keypoints=True)
    assert "categories 'per\\x1b[31mson' (2 keypoints) and 'dog\\nx' (1)" in str(e.value)
    assert "\x1b" not in str(e.value) and "\n" not in str(e.value)


def test_a_transform_that_raises_names_the_file_the_image_and_the_index(tmp_path):
    json_path, images = _coco(tmp_path, {"a.png": (8, 8), "b.png": (8, 8)})

    def broken(image, target, generator):
        raise ValueError("crop larger than the image")

    dataset = CocoDataset(json_path=json_path, image_dir=images, transforms=broken)
    with pytest.raises(ValueError) as e:  # the same type: a caller's `except ValueError` still holds
        dataset[1]
    assert str(e.value) == (f"{json_path}: the transforms failed on image id 2 ({images / 'b.png'}, "
                            "dataset index 1): ValueError: crop larger than the image")
    cause = e.value.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "crop larger than the image"

    def clears_then_fails(image, target, generator):
        target.clear()  # the image is named from the dataset, not from what the transform left
        raise RuntimeError("boom")

    dataset.transforms = clears_then_fails
    with pytest.raises(RuntimeError, match=r"image id 1 \(.*a.png, dataset index 0\): RuntimeError: boom"):
        dataset[0]

    def missing_key(image, target, generator):
        return image, {"boxes": target["no_such_key"]}

    dataset.transforms = missing_key
    with pytest.raises(TransformError, match=r"image id 1 \(.*a.png, dataset index 0\): KeyError: "
                                             "'no_such_key'") as e:
        dataset[0]  # a KeyError's message prints quoted: a library error, the KeyError chained
    assert isinstance(e.value.__cause__, KeyError) and isinstance(e.value, RuntimeError)


def test_the_annotations_of_images_left_out_by_the_header_pass_or_when_read_are_counted(tmp_path):
    # show-data: images found unreadable by check_image_files (a 0-byte file) or when decoded (a truncated
    # PNG, leave_out) took their annotations out of the totals without counting them
    import io
    import json as _json

    from PIL import Image as _Image

    from maskrcnn.data.coco import CocoDataset as _Coco
    from maskrcnn.data.images import ImageReadError as _ReadError

    _Image.new("RGB", (20, 20), "gray").save(tmp_path / "good.png")
    (tmp_path / "zero.png").write_bytes(b"")
    buf = io.BytesIO()
    _Image.new("RGB", (20, 20), "gray").save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:60])  # its header reads, its pixels do not
    names = ["good.png", "zero.png", "cut.png"]
    anns = [{"id": 10 * i + k, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 16.0,
             "bbox": [2, 2, 4, 4]} for i in (1, 2, 3) for k in range(i + 1)]  # 2, 3 and 4 annotations
    (tmp_path / "d.json").write_text(_json.dumps({
        "images": [{"id": i, "file_name": n, "width": 20, "height": 20} for i, n in enumerate(names, 1)],
        "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    ds = _Coco(json_path=tmp_path / "d.json", image_dir=tmp_path)
    ds.check_image_files()
    assert ds.skipped.get("annotation_of_skipped_image") == 3  # zero.png's
    ds.leave_out({3: _ReadError("cut.png: cannot decode image")})
    assert ds.skipped.get("annotation_of_skipped_image") == 3 + 4
