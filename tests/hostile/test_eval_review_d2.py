"""``maskrcnn eval`` findings of the d2 review: a record blamed for masks that fit neither size, or for
masks that are malformed, a same-named file of another folder taken for an image's, digit-like ids that
crashed int(), quoted values shown bare, and results paths resolved twice."""

import json
import warnings

import pytest
from hostile_helpers import box_rle, coco_dataset, gt_as_results, save_image

from maskrcnn.cli import main


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def _eval(capsys, *args):
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.err + captured.out


def test_a_record_is_blamed_only_when_its_masks_fit_the_file(tmp_path, capsys):
    """Image 1's record says 40x100, its file is 40x50. Its masks were blamed on the record ("their
    annotations' masks fit the file, not the record") whatever they were: masks of a third size (40x60)
    that fit neither, and malformed ones (bad RLE counts, a string) that fit no size at all."""
    path, images, data = coco_dataset(tmp_path)
    data["images"][0]["width"] = 100
    del data["annotations"][1]  # image 1's other mask, which fits the file, would tell the record wrong
    res = _write(tmp_path / "res.json", gt_as_results(data))
    for segmentation in (box_rle(40, 60, [2, 3, 10, 12]), {"counts": "abc", "size": [40, 100]}, "str"):
        data["annotations"][0]["segmentation"] = segmentation
        _write(path, data)
        rc, text = _eval(capsys, "--results", res, "--json", path, "--images", images)
        assert rc == 1 and "annotation id 1" in text, text
        assert "image record(s) give a width/height" not in text and "fit the file" not in text
    # masks of the file's size: the record is named, as before
    data["annotations"][0]["segmentation"] = box_rle(40, 50, [2, 3, 10, 12])
    _write(path, data)
    rc, text = _eval(capsys, "--results", res, "--json", path, "--images", images)
    assert rc == 1 and "1 image record(s) give a width/height other than their file's" in text
    assert "image is 40x50 (HxW)" in text and "annotation id" not in text


def test_suspect_records_are_those_whose_masks_fail_on_their_size_alone():
    from maskrcnn.engine.record_sizes import suspect_records

    def data(segmentation):
        return {"images": [{"id": 1, "width": 10, "height": 10, "file_name": "a.png"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation}]}

    malformed = [{"counts": 5, "size": "x"}, {"counts": "abc", "size": [1]}, {"size": [10, 10]},
                 [[1, 2, "a"]], [1, 2, 3], {"counts": [1, 2], "size": [10.5, 10]}, [[float("nan")] * 6],
                 "str", 5, {"counts": [1, 2], "size": [-1, 10]}, {"counts": "abc", "size": [10, 20]}]
    for segmentation in malformed:
        assert suspect_records(data(segmentation)) == [], segmentation
    for segmentation in ({"counts": [200], "size": [10, 20]}, [[0, 0, 30, 0, 30, 5]]):
        ((record, misfits),) = suspect_records(data(segmentation))
        assert record["id"] == 1 and misfits == [segmentation]


def test_a_file_name_not_found_as_written_is_taken_by_name_only_when_one_file_has_it(tmp_path, capsys):
    """A file_name not found as written was looked up as FOLDER/its last part: another folder's image of
    that name (another image) was read and its size blamed on the record."""
    path, images, data = coco_dataset(tmp_path)
    data["images"][0].update(width=100, file_name="lost/im1.png")
    res = _write(tmp_path / "res.json", gt_as_results(data))
    _write(path, data)
    # images/im1.png is the one file of that name: it is the image
    rc, text = _eval(capsys, "--results", res, "--json", path, "--images", images)
    assert rc == 1 and f"image id 1 ({images / 'im1.png'}): image is 40x50 (HxW)" in text, text
    # a second im1.png (another image, 40x60) makes the name ambiguous: no file is judged
    save_image(images / "other" / "im1.png", 40, 60, seed=3)
    rc, text = _eval(capsys, "--results", res, "--json", path, "--images", images)
    assert rc == 1 and "RLE size [40, 50] does not match the image size [40, 100]" in text
    assert "image record(s) give a width/height" not in text


def test_the_record_check_reads_the_suspects_once(tmp_path, capsys, monkeypatch):
    """suspect_records ran twice (in wrong_record_sizes and in eval's blame), and resolve_results_paths
    twice (evaluate_results_file, then again for metrics.json's "results")."""
    import maskrcnn.engine.evaluator as evaluator
    import maskrcnn.engine.record_sizes as record_sizes
    import maskrcnn.engine.results_file as results_file

    calls = []
    for module, name in ((record_sizes, "suspect_records"), (evaluator, "resolve_results_paths"),
                         (results_file, "resolve_results_paths")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))
    path, images, data = coco_dataset(tmp_path)
    res = _write(tmp_path / "res.json", gt_as_results(data))
    assert _eval(capsys, "--results", res, "--json", path, "--output", tmp_path / "ev")[0] == 0
    assert calls == ["resolve_results_paths"]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["results"] == [str(res)]
    calls.clear()
    data["images"][0]["width"] = 100
    _write(path, data)
    for image in images.iterdir():  # no --images, and no image file to read: the hint to give them
        image.unlink()
    rc, text = _eval(capsys, "--results", res, "--json", path)
    assert rc == 1 and "give --images D, the images' folder, to compare them with the files" in text, text
    assert calls == ["suspect_records"]


@pytest.mark.parametrize("value", ["²", "-²", "٣"])
def test_digit_like_string_ids_are_refused_in_words(value):
    """"²".isdigit() is True and int("²") raises: the string-ids hint and the category map crashed with
    a bare "invalid literal for int()" instead of the refusal of an unknown id."""
    from maskrcnn.engine.evaluator import _string_ids_hint
    from maskrcnn.engine.results_file import _map_key, _name_keys

    hint = _string_ids_hint({value}, {1, 2, 3}, "category_id")
    assert hint == ("" if value != "٣" else
                    '; they are strings (quoted in the file) of the ground truth\'s integer ids: write '
                    'category_id as a JSON number (3, not "٣")')
    assert _map_key(value, {1: 1, 3: 3}) == (3 if value == "٣" else None)
    assert (3 in _name_keys(f"{value}.png")) == (value == "٣")


def test_a_category_map_key_of_superscript_digits_is_a_plain_key(tmp_path, capsys):
    path, _, data = coco_dataset(tmp_path)
    res = _write(tmp_path / "res.json", [dict(r, category_id="²") for r in gt_as_results(data)])
    mapping = _write(tmp_path / "map.json", {"²": 1})
    rc, text = _eval(capsys, "--results", res, "--json", path, "--category-map", mapping)
    assert rc == 0 and "invalid literal" not in text, text
    rc, text = _eval(capsys, "--results", res, "--json", path)
    assert rc == 1 and "category ids '²' are not in the ground truth (which has 1, 2)" in text, text


def test_a_string_area_or_iscrowd_is_quoted(tmp_path):
    """area "12" (a string) was said as 'area 12 is not a finite number >= 0': a number, to the reader."""
    from maskrcnn.engine.evaluator import load_ground_truth

    _, _, data = coco_dataset(tmp_path)
    data["annotations"][0]["area"] = "12"
    data["annotations"][1]["iscrowd"] = "1"
    with pytest.raises(ValueError) as info:
        load_ground_truth(data, source="gt.json")
    assert "area '12' is not a finite number >= 0" in str(info.value)
    assert "iscrowd '1' is not 0 or 1" in str(info.value)
