"""``maskrcnn eval --results`` of ``maskrcnn predict``'s predictions.json (p_photos2 F8): predict numbers
images 1..N in its own order, so its records are matched to the ground truth's images by ``file_name``;
and the analysis drawings of photos whose record gives their stored size (F9)."""

import json
import warnings

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image
from tiny_model import save_cat_dog_checkpoint  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.engine.evaluator import load_ground_truth
from maskrcnn.engine.results_file import match_image_ids

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ["a.png", "b.png", "c.png"]  # predict's order (sorted); the ground truth lists them reversed


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """(folder, predict's records) of a tiny random-weight model on three different images."""
    root = tmp_path_factory.mktemp("f8")
    save_cat_dog_checkpoint(root / "tiny.pth")
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir()
    for name in NAMES:
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(root / "imgs" / name)
    assert main(["predict", "--weights", str(root / "tiny.pth"), str(root / "imgs"), "--output",
                 str(root / "out"), "--device", "cpu", "--score-thresh", "0", "--no-overlays"]) == 0
    records = json.loads((root / "out" / "predictions.json").read_text())
    assert {_base(r) for r in records} == set(NAMES)
    return root, records


def _base(record) -> str:
    return record["file_name"].replace("\\", "/").rsplit("/", 1)[-1]


def _ground_truth(records) -> dict:
    """Each image's 3 best detections as its objects, the images listed (and numbered) in reverse order."""
    gt_id = {name: i + 1 for i, name in enumerate(reversed(NAMES))}  # c.png 1, b.png 2, a.png 3
    anns = []
    for name in NAMES:
        best = sorted((r for r in records if _base(r) == name), key=lambda r: -r["score"])[:3]
        for r in best:
            anns.append({"id": len(anns) + 1, "image_id": gt_id[name], "category_id": r["category_id"],
                         "bbox": r["bbox"], "segmentation": r["segmentation"], "iscrowd": 0,
                         "area": r["bbox"][2] * r["bbox"][3]})
    images = [{"id": gt_id[n], "file_name": n, "width": 80, "height": 60} for n in reversed(NAMES)]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]}, gt_id


def _eval(args, capsys) -> tuple:
    """(exit status, stderr and every warning's text) of ``maskrcnn eval ARGS``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["eval"] + [str(a) for a in args])
    return rc, capsys.readouterr().err + " | ".join(str(w.message) for w in caught)


def _ap(tmp_path, name, records, gt, capsys) -> tuple:
    (tmp_path / name).write_text(json.dumps(records))
    out = tmp_path / f"m_{name}"
    rc, err = _eval(["--results", tmp_path / name, "--json", gt, "--output", out], capsys)
    assert rc == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    return (metrics["bbox"]["AP"], metrics["segm"]["AP"]), err


def test_predict_output_scored_against_the_images_it_names(predicted, tmp_path, capsys):
    root, records = predicted
    data, gt_id = _ground_truth(records)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(data))
    got, err = _ap(tmp_path, "pred.json", records, gt, capsys)
    # the AP of a correct matching: the same records with the ground truth's ids and no file_name
    right = [{k: v for k, v in dict(r, image_id=gt_id[_base(r)]).items() if k != "file_name"}
             for r in records]
    expected, _ = _ap(tmp_path, "right.json", right, gt, capsys)
    # by predict's ids (1 = a.png, the ground truth's c.png): what eval scored before, silently
    by_id = [{k: v for k, v in r.items() if k != "file_name"} for r in records]
    wrong, _ = _ap(tmp_path, "wrong.json", by_id, gt, capsys)
    assert got == expected, err
    assert wrong[0] < expected[0] - 20 and wrong != expected  # (the matching matters here)
    assert "image_id taken from file_name, matched to the ground truth's file names (3 images; 2 had " \
           "another image_id in the file" in err, err  # b.png is 2 either way


def _gt(images) -> object:
    data = {"images": [{"id": i, "file_name": n, "width": 10, "height": 10} for i, n in images],
            "annotations": [{"id": 1, "image_id": images[0][0], "category_id": 1, "bbox": [1, 1, 4, 4],
                             "iscrowd": 0, "area": 16}],
            "categories": [{"id": 1, "name": "x"}]}
    return load_ground_truth(data, source="gt.json")


def _record(file_name, image_id=1):
    return {"image_id": image_id, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9,
            "file_name": file_name}


def test_file_names_matched_by_path_then_by_unique_base_name(recwarn):
    gt = _gt([(1, "x/a.jpg"), (2, "y/a.jpg"), (3, "b.jpg")])
    out = match_image_ids([_record("C:\\data\\imgs\\y\\a.jpg"), _record("./imgs/b.jpg", 7),
                           _record("/home/u/x/a.jpg", 3)], gt, "p.json")
    assert [r["image_id"] for r in out] == [2, 3, 1]
    assert "3 images; 3 had another image_id in the file" in str(recwarn.list[-1].message)


@pytest.mark.parametrize("records, words", [
    ([_record("imgs/a.jpg")], "file_name 'imgs/a.jpg' names 2 images of the ground truth (ids 1, 2"),
    ([_record("imgs/zz.jpg")], "file_name 'imgs/zz.jpg' names no image of the ground truth, whose file names "
                               "are as 'x/a.jpg'"),
    ([_record("b.jpg"), dict(_record("b.jpg"), file_name=None)], "result 1 has file_name 'None', not a file"),
    ([_record("b.jpg"), {k: v for k, v in _record("b.jpg").items() if k != "file_name"}],
     "1 of 2 results have a file_name and the others not (result 1)"),
    ([_record("imgs/b.jpg"), _record("other/b.jpg")],
     "file_names 'imgs/b.jpg' and 'other/b.jpg' both name image id 3 of the ground truth"),
])  # fmt: skip
def test_file_names_that_cannot_be_matched_are_refused(records, words):
    with pytest.raises(ValueError) as e:
        match_image_ids(records, _gt([(1, "x/a.jpg"), (2, "y/a.jpg"), (3, "b.jpg")]), "p.json")
    assert str(e.value).startswith("p.json: ") and words in str(e.value), str(e.value)


def test_results_without_file_name_keep_their_ids(recwarn):
    records = [{k: v for k, v in _record("b.jpg", 1).items() if k != "file_name"}]
    assert match_image_ids(records, _gt([(1, "x/a.jpg"), (3, "b.jpg")]), "p.json") is records


def test_images_without_detections_named_with_eval_skipped_hint(tmp_path, capsys):
    data = {"images": [{"id": i, "file_name": f"{n}.jpg", "width": 10, "height": 10}
                       for i, n in ((1, "one"), (2, "two"))],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 0,
                             "area": 16} for i in (1, 2)],
            "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "gt.json").write_text(json.dumps(data))
    (tmp_path / "r.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4],
                                                   "score": 0.9}]))
    rc, err = _eval(["--results", tmp_path / "r.json", "--json", tmp_path / "gt.json"], capsys)
    assert rc == 0, err
    assert ("1 of 2 ground-truth images with objects have no detection in the results (two.jpg): their "
            "objects count as misses") in err, err
    assert "the images it skipped, its metrics.json's images_skipped, are among them" in err


def _stored_size_photo(folder):
    """A photo stored 60 wide x 100 high with EXIF orientation 6 (upright 100 x 60), its record giving
    the stored size and its square annotated (and detected) on the stored pixels."""
    folder.mkdir()
    pixels = np.full((100, 60, 3), 128, np.uint8)
    pixels[20:50, 10:40] = (230, 40, 40)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(folder / "s6.jpg", exif=exif)
    mask = np.zeros((100, 60), np.uint8)
    mask[20:50, 10:40] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    seg = {"size": [100, 60], "counts": rle["counts"].decode("ascii")}
    gt = {"images": [{"id": 1, "file_name": "s6.jpg", "width": 60, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 30], "iscrowd": 0,
                           "area": 900, "segmentation": [[10, 20, 40, 20, 40, 50, 10, 50]]}],
          "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "other"}]}
    results = [{"image_id": 1, "category_id": 2, "bbox": [10, 20, 30, 30], "score": 0.9, "segmentation": seg}]
    return gt, results


def _analyse(tmp_path, capsys):
    gt, results = _stored_size_photo(tmp_path / "imgs")
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(results))
    out = tmp_path / "out"
    rc, err = _eval(["--results", tmp_path / "r.json", "--json", tmp_path / "gt.json", "--output", out,
                     "--analysis", "--analysis-images", "1", "--images", tmp_path / "imgs"], capsys)
    return rc, out, err


def test_analysis_draws_a_stored_size_photo_on_its_stored_pixels(tmp_path, capsys):
    rc, out, err = _analyse(tmp_path, capsys)
    assert rc == 0, err  # was: RLE size [100, 60] does not match the image size [60, 100], rc 1
    [drawn] = (out / "analysis_images").iterdir()
    with Image.open(drawn) as im:
        picture = np.asarray(im.convert("RGB"))
    panel = picture[18:, : (picture.shape[1] - 8) // 2]  # the ground-truth half, under its title
    assert panel.shape[0] > panel.shape[1]  # 100 high x 60 wide, as stored (turned: 60 x 100)
    scale = panel.shape[0] / 100
    red = panel[int(35 * scale), int(25 * scale)]  # the square's middle, stored-pixel coordinates
    assert red[0] > 150 and red[1] < 120, red


def test_a_drawing_failure_does_not_fail_eval(tmp_path, capsys, monkeypatch):
    import maskrcnn.visualize_errors as visualize_errors

    def broken(*args, **kwargs):
        raise RuntimeError("no font")

    monkeypatch.setattr(visualize_errors, "draw_errors", broken)
    rc, out, err = _analyse(tmp_path, capsys)
    assert rc == 0, err
    assert (out / "metrics.json").is_file() and (out / "analysis.json").is_file()
    shown = tmp_path / "imgs" / "s6.jpg"
    assert f"analysis: skipping image {shown}: cannot draw it (RuntimeError: no font)" in err, err
