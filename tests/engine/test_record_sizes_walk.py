"""The by-name lookup of record_sizes stops its walk at _MAX_FILES entries, folders counted: it counted
files only, so a tree of empty folders (a home directory taken for the image folder) was walked whole."""

import os

from maskrcnn.engine import record_sizes


def test_the_walk_stops_at_the_bound_counting_folders(tmp_path, monkeypatch):
    for i in range(30):
        (tmp_path / f"d{i:02d}").mkdir()
    steps = []
    real_walk = os.walk

    def counting_walk(top, *args, **kwargs):
        for step in real_walk(top, *args, **kwargs):
            steps.append(step[0])
            yield step

    monkeypatch.setattr(record_sizes, "_MAX_FILES", 10)
    monkeypatch.setattr(record_sizes.os, "walk", counting_walk)
    assert record_sizes._Files(tmp_path).find("missing.png") is None
    assert len(steps) == 1  # the root's 30 folders are past the bound: none of them is walked


def test_a_record_of_the_stored_size_whose_rle_is_the_exif_turned_size_is_blamed_naming_exif(tmp_path):
    # eval --results: the converter wrote Image.open(f).size (stored 30 wide x 50 high) of a photo EXIF 6
    # turns to 50 wide x 30 high, and the tool's RLE is of the turned picture: it was skipped as corrupt
    import numpy as np
    import pycocotools.mask as mask_utils
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (30, 50), "gray").save(tmp_path / "p.jpg", exif=exif)
    mask = np.zeros((30, 50), np.uint8, order="F")
    mask[5:15, 20:40] = 1
    rle = mask_utils.encode(mask)
    data = {"images": [{"id": 1, "file_name": "p.jpg", "width": 30, "height": 50}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 200.0,
                             "bbox": [20, 5, 20, 10],
                             "segmentation": {"size": [30, 50], "counts": rle["counts"].decode()}}]}
    sizes = record_sizes.wrong_record_sizes(record_sizes.suspect_records(data), tmp_path, "gt.json")
    (shown, message), = sizes.values()
    assert shown == (30, 50)
    assert "image is 30x50 (HxW) once its EXIF orientation 6 is applied (the record gives its stored " \
           "size, 50x30, but its masks are drawn on the turned picture), gt.json says 50x30" in message
