"""An ``image_id`` string of thousands of digits (``results_file.match_image_ids``, the writer's
``coco_results._checked_image_id``): ``int()`` stopped on Python's own limit (4300 digits), naming neither
the file nor the field. No id has more than 20 digits: refused so, shown by its length."""

import contextlib
import io
import warnings

import pytest
from pycocotools.coco import COCO

from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.engine.results_file import match_image_ids, read_category_map


def _ground_truth(file_name="a.jpg"):
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "file_name": file_name, "width": 10, "height": 10}],
                    "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _record(image_id):
    return {"image_id": image_id, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 1.0}


@pytest.mark.parametrize("read_as", ["auto", "id", "file-name"])
def test_a_5000_digit_image_id_is_refused_naming_the_file_and_the_field(read_as):
    with pytest.raises(ValueError) as e:
        match_image_ids([_record("9" * 5000)], _ground_truth(), "r.json", read_as=read_as)
    message = str(e.value)
    assert message.startswith("r.json: image_id '999999999999'... (a string of 5000 digits) is not an "
                              "image id")
    assert len(message) < 200


def test_a_long_digit_file_stem_is_still_matched_by_name():
    stem = "1" * 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = match_image_ids([_record(stem)], _ground_truth(stem + ".jpg"), "r.json")
    assert [r["image_id"] for r in out] == [1]


def test_a_long_digit_category_map_key_stays_a_string(tmp_path):
    path = tmp_path / "map.json"
    path.write_text('{"%s": 1}' % ("7" * 5000))
    assert read_category_map(path) == {"7" * 5000: 1}


def test_the_writer_refuses_a_5000_digit_image_id_by_its_length():
    with pytest.raises(ValueError, match=r"image_id '111111111111'\.\.\. \(a string of 5000 digits\) is not "
                                         r"an image id"):
        detections_to_coco_results({"boxes": [], "scores": [], "labels": []}, image_id="1" * 5000)
