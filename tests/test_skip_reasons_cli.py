"""The commands' summaries count an image over the pixel limit as ``image_too_large``, apart from
unreadable files, with a line saying the limit and how to raise it (``show-data``, ``predict``,
``eval``); eval's skip lines print a file name from the JSON escaped."""

import json

import numpy as np
import pytest
from PIL import Image
from pixel_limit import small_pixel_limit
from tiny_model import save_cat_dog_checkpoint  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.data.images import MAX_PIXELS_ENV

pytestmark = pytest.mark.usefixtures("single_thread")

HINT = f"1 image(s) over the limit of 0.004 MP (image_too_large): raise it with the environment variable " \
       f"{MAX_PIXELS_ENV}"


@pytest.fixture
def small_limit(monkeypatch):
    """PIL refuses images over 2 x 2000 = 4000 pixels: 80x80 is too large, 40x40 is not."""
    small_pixel_limit(monkeypatch)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_cat_dog_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _images(folder):
    """ok.png (40x40), big.png (80x80: over the small limit), and a 0-byte file named with a newline."""
    folder.mkdir()
    for name, side in (("ok.png", 40), ("big.png", 80)):
        Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(folder / name)
    (folder / "empty\nname.png").write_bytes(b"")
    return {"ok.png": 40, "big.png": 80, "empty\nname.png": 40}


def _coco(tmp_path):
    images = tmp_path / "images"
    sides = _images(images)
    records = [{"id": i, "file_name": n, "width": s, "height": s}
               for i, (n, s) in enumerate(sides.items(), 1)]
    anns = [{"id": i, "image_id": i, "category_id": 5, "bbox": [2, 2, 20, 20], "area": 400, "iscrowd": 0,
             "segmentation": [[2, 2, 22, 2, 22, 22, 2, 22]]} for i in range(1, 4)]
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps({"images": records, "annotations": anns,
                                     "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]}))
    return json_path, images


def test_show_data_counts_a_too_large_image_apart_and_says_the_limit(tmp_path, small_limit, capsys):
    json_path, images = _coco(tmp_path)
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output",
                 str(tmp_path / "show")]) == 0
    out = capsys.readouterr().out
    assert "skipped: 2 annotation_of_skipped_image, 1 image_too_large, 1 unreadable_image" in out
    assert HINT in out and "What happens with bad input" in out
    summary = json.loads((tmp_path / "show" / "summary.json").read_text())
    # and the two images' objects
    assert summary["skipped"] == {"image_too_large": 1, "unreadable_image": 1,
                                  "annotation_of_skipped_image": 2}


def test_predict_counts_a_too_large_image_apart_and_says_the_limit(tmp_path, small_limit, checkpoint, capsys):
    images = tmp_path / "in"
    _images(images)
    assert main(["predict", "--weights", str(checkpoint), str(images), "--output", str(tmp_path / "out"),
                 "--device", "cpu", "--no-overlays"]) == 0
    err = capsys.readouterr().err
    assert "done: 1 of 3 image(s) predicted" in err
    assert "2 skipped (1 image_too_large, 1 unreadable_image)" in err
    assert HINT in err


def test_eval_counts_a_too_large_image_apart_and_prints_names_escaped(tmp_path, small_limit, checkpoint,
                                                                      capsys):
    json_path, images = _coco(tmp_path)
    assert main(["eval", "--weights", str(checkpoint), "--json", str(json_path), "--images", str(images),
                 "--device", "cpu", "--output", str(tmp_path / "ev")]) == 0
    err = capsys.readouterr().err
    assert "2 images left out of the evaluation (1 image_too_large, 1 unreadable_image)" in err
    assert HINT in err
    assert f"skipping image: '{images}/empty\\nname.png': empty file (0 bytes)" in err
    assert not any(line.startswith("name.png") for line in err.splitlines())  # no line cut in two
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["images_evaluated"] == 1
    # the files as before, each with its message, and its stable reason key; the keys counted beside
    assert metrics["images_skipped_by_reason"] == {"image_too_large": 1, "unreadable_image": 1}
    skipped = sorted(metrics["images_skipped"], key=lambda r: r["file_name"])
    assert [(r["file_name"], r["reason_key"]) for r in skipped] == \
        [("big.png", "image_too_large"), ("empty\nname.png", "unreadable_image")]
    assert skipped[1]["reason"] == "empty file (0 bytes)" and "image too large" in skipped[0]["reason"]


def test_show_data_says_the_pixel_limit_once_when_a_record_without_a_size_is_over_it(tmp_path, small_limit,
                                                                                      capsys):
    """A record without width and height is measured while the file is read: over the limit, it ended the
    dataset's skipped-records warning with the limit line, and the summary printed it again. Now once,
    in the summary, counting it with the one the header pass finds (a record with its size)."""
    import warnings

    json_path, images = _coco(tmp_path)
    data = json.loads(json_path.read_text())
    Image.fromarray(np.full((80, 80, 3), 90, np.uint8)).save(images / "big2.png")
    data["images"].append({"id": 4, "file_name": "big2.png"})  # no size: measured while the file is read
    json_path.write_text(json.dumps(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output",
                     str(tmp_path / "show")]) == 0
    captured = capsys.readouterr()
    said = "\n".join([captured.out, captured.err, *(str(w.message) for w in caught)])
    assert said.count("(image_too_large): raise it") == 1, said
    assert f"2 image(s) over the limit of 0.004 MP (image_too_large): raise it with the environment " \
           f"variable {MAX_PIXELS_ENV}" in captured.out
    assert json.loads((tmp_path / "show" / "summary.json").read_text())["skipped"]["image_too_large"] == 2
