"""The area-0 note ("N annotations with a box of positive size have area 0 ...: read as without one")
counted an annotation the loader then skipped for its segmentation (a 2-point polygon): a repair said of
a record that is not used. It counts only the annotations that stay."""

import json
import logging

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.coco_exports import read_tool_exports


def _annotation(aid, segmentation):
    return {"id": aid, "image_id": 1, "category_id": 1, "bbox": [4, 4, 16, 16], "area": 0, "iscrowd": 0,
            "segmentation": segmentation}


DATA = {
    "images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 32}],
    "categories": [{"id": 1, "name": "box"}],
    "annotations": [_annotation(1, [[4, 4, 20, 4, 20, 20, 4, 20]]),  # kept: its area is the mask's
                    _annotation(2, [[10, 10, 20, 20]]),  # 2 points: skipped by the loader
                    _annotation(3, [4, 4, 20, 4, 20, 20]),  # one flat polygon (read wrapped): kept
                    _annotation(4, [])],  # box-only: kept, its area the box's
}


def test_area_zero_note_counts_only_annotations_that_stay(tmp_path, caplog):
    data, notes = read_tool_exports(DATA, "t.json")
    said = [n for n in notes if "area 0" in n]
    assert len(said) == 1 and said[0].startswith("t.json: 3 annotations with a box of positive size"), said
    assert "area" not in data["annotations"][0] and data["annotations"][1]["area"] == 0

    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "1.png")
    (tmp_path / "t.json").write_text(json.dumps(DATA))
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="skipped 1 bad_segmentation"):
        dataset = CocoDataset(json_path=tmp_path / "t.json", image_dir=tmp_path)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "3 annotations with a box of positive size have area 0" in text, text
    assert "annotation id 2 (image id 1) segmentation has no polygon with at least 3 points" in text, text
    assert dataset.skipped.get("bad_segmentation") == 1
