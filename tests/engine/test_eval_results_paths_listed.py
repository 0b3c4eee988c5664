"""``eval --results`` as a comma-separated list (the form ``--help`` documents) or naming a folder: a
part that exists but is no regular file, or a folder, is said to be so, not "no such results file"
(``commands/eval._refuse_unreadable_results``)."""

import json
import os

from maskrcnn.cli import main


def _gt(folder):
    gt = folder / "val.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
                              "categories": [{"id": 1, "name": "a"}],
                              "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4],
                                               "area": 16, "iscrowd": 0}]}))
    return gt


def test_a_listed_device_and_a_folder_are_named_as_what_they_are(tmp_path, capsys):
    gt = _gt(tmp_path)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    folder = tmp_path / "data"
    folder.mkdir()
    for given, what in ((f"{empty},{os.devnull}", f"{os.devnull}: not a regular file"),
                        (str(folder), f"{folder}: is a folder"),
                        (f"{empty},{folder}", f"{folder}: is a folder")):
        assert main(["eval", "--results", given, "--json", str(gt)]) == 1
        err = capsys.readouterr().err
        assert err == f"maskrcnn eval: error: --results {what} (a results JSON file is expected)\n", err


def test_a_folder_beside_its_mmdetection_prefix_files_is_still_the_prefix(tmp_path, capsys):
    gt = _gt(tmp_path)
    prefix = tmp_path / "out"
    prefix.mkdir()  # a folder of that name too
    found = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}]
    (tmp_path / "out.bbox.json").write_text(json.dumps(found))
    assert main(["eval", "--results", str(prefix), "--json", str(gt)]) == 0, capsys.readouterr().err
