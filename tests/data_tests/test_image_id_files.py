"""Whether an image id is given to two files is decided by the files its records resolve to: one picture
spelled two ways under one id keeps its annotations, a broken second record does not take the good one
down, and many ids given to two files each (two exports concatenated) are said in one line."""

import json
import logging

import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

SEG = [[2, 2, 10, 2, 10, 10, 2, 10]]


def _ann(aid, iid, cid):
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [2, 2, 8, 8], "segmentation": SEG,
            "area": 64, "iscrowd": 0}


def _write(path, images, anns):
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "p"}, {"id": 2, "name": "q"}]}))
    return path


def _picture(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (90, 90, 90)).save(path)


@pytest.mark.parametrize("second", [
    {"file_name": "img/a.png"},  # the folder's own name in front: found by the end of its path
    {"file_name": "C:\\data\\img\\a.png"},  # another machine's absolute path
    {"coco_url": "http://h/x/a.png"},  # no file_name: looked up by its coco_url
    {"file_name": ""},  # names no file: skipped for itself
])
def test_one_picture_under_one_id_keeps_its_annotations(tmp_path, second):
    """Decided from the spelled names, each of these dropped a.png with both its annotations, saying it
    was given to "2 different files"."""
    _picture(tmp_path / "img" / "a.png")
    size = {"height": 16, "width": 16}
    images = [{"id": 1, "file_name": "a.png", **size}, {"id": 1, **second, **size}]
    src = _write(tmp_path / "d.json", images, [_ann(1, 1, 1), _ann(2, 1, 2)])
    with pytest.warns(UserWarning, match="skipped 1 "):
        ds = CocoDataset(json_path=src, image_dir=tmp_path / "img")
    assert ds.ids == [1] and ds[0][1]["labels"].tolist() == [1, 2]
    assert not any("different files" in p for p in ds.problems)


def test_two_pictures_found_by_the_end_of_their_paths_are_two_files(tmp_path):
    """C:\\a\\x.png and D:\\b\\x.png both come to x.png: at most one of them is the picture in the folder."""
    _picture(tmp_path / "img" / "x.png")
    size = {"height": 16, "width": 16}
    images = [{"id": 1, "file_name": "C:\\a\\x.png", **size}, {"id": 1, "file_name": "D:\\b\\x.png", **size}]
    src = _write(tmp_path / "d.json", images, [_ann(1, 1, 1)])
    with pytest.warns(UserWarning, match="duplicate_image_id"):
        ds = CocoDataset(json_path=src, image_dir=tmp_path / "img")
    assert len(ds) == 0 and ds.skipped["duplicate_image_id"] == 2


def test_concatenated_exports_are_said_in_one_line_with_merge_data(tmp_path, caplog):
    """Two exports whose ids both start at 0 (Roboflow) or 1, joined by hand: 2 lines per id, each
    repeating both names, and no word of the cause."""
    images, anns = [], []
    for part in ("A", "B"):
        for i in range(10):
            _picture(tmp_path / "img" / f"{part}{i}.png")
            images.append({"id": i, "file_name": f"{part}{i}.png", "height": 16, "width": 16})
            anns.append(_ann(len(anns) + 1, i, 1))
    src = _write(tmp_path / "d.json", images, anns)
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="duplicate_image_id"):
        ds = CocoDataset(json_path=src, image_dir=tmp_path / "img")
    lines = [r.getMessage() for r in caplog.records if "given to" in r.getMessage()]
    assert len(lines) == 1 and "10 image ids" in lines[0] and "merge-data" in lines[0]
    assert "start alike" in lines[0] and "start at 1?" not in lines[0]
    assert ds.skipped["duplicate_image_id"] == 20 and len(ds.problems) >= 10


def test_a_name_through_a_linked_folder_and_up_is_another_file(tmp_path):
    """'lnk/../a.png' with lnk a link to a folder elsewhere is elsewhere's a.png: folded textually into
    'a.png', the other picture's objects were drawn and trained on img/a.png."""
    _picture(tmp_path / "img" / "a.png")
    _picture(tmp_path / "elsewhere" / "a.png")
    (tmp_path / "elsewhere" / "deep").mkdir()
    (tmp_path / "img" / "lnk").symlink_to(tmp_path / "elsewhere" / "deep", target_is_directory=True)
    size = {"height": 16, "width": 16}
    images = [{"id": 1, "file_name": "a.png", **size}, {"id": 2, "file_name": "lnk/../a.png", **size}]
    src = _write(tmp_path / "d.json", images, [_ann(1, 1, 1), _ann(2, 2, 2)])
    ds = CocoDataset(json_path=src, image_dir=tmp_path / "img", fold_shared_files=True)
    assert ds.ids == [1, 2] and [ds[k][1]["labels"].tolist() for k in range(2)] == [[1], [2]]


def _present_and_missing(tmp_path):
    """Image id 1 given to a.png (in the folder) and b.png (not copied), one annotation drawn on each;
    ids 2..5 plain pictures, so that the tools have something to write."""
    size = {"height": 16, "width": 16}
    images = [{"id": 1, "file_name": "a.png", **size}, {"id": 1, "file_name": "b.png", **size}]
    anns = [_ann(1, 1, 1), _ann(2, 1, 2)]
    for name in ["a.png"] + [f"c{i}.png" for i in range(2, 6)]:
        _picture(tmp_path / "img" / name)
        if name != "a.png":
            iid = int(name[1])
            images.append({"id": iid, "file_name": name, **size})
            anns.append(_ann(len(anns) + 1, iid, 1))
    return _write(tmp_path / "d.json", images, anns)


def test_a_file_not_found_still_names_another_picture(tmp_path):
    """Left out of the comparison, b.png's record let a.png keep id 1 with b.png's object too: 2 objects
    on a.png, said only as "1 image file not found"."""
    src = _present_and_missing(tmp_path)
    with pytest.warns(UserWarning, match="duplicate_image_id"):
        ds = CocoDataset(json_path=src, image_dir=tmp_path / "img")
    assert ds.ids == [2, 3, 4, 5] and [ds[k][1]["labels"].tolist() for k in range(4)] == [[1]] * 4
    assert ds.skipped["duplicate_image_id"] == 2
    assert any("image id 1 is given to 2 different files" in p and "'b.png'" in p for p in ds.problems)


def test_merge_and_split_data_agree_on_a_file_not_found(tmp_path):
    """merge-data wrote a.png with both objects; split-data with --images wrote it too."""
    src = _present_and_missing(tmp_path)
    img = tmp_path / "img"
    with pytest.warns(UserWarning, match="duplicate_image_id"):
        assert main(["merge-data", f"{src}:{img}", "--output", str(tmp_path / "m.json")]) == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    plain = [f"c{i}.png" for i in range(2, 6)]
    assert sorted(i["file_name"] for i in merged["images"]) == plain and len(merged["annotations"]) == 4
    for k, images in enumerate(([], ["--images", str(img)])):
        out = tmp_path / f"split{k}"
        with pytest.warns(UserWarning, match="duplicate_image_id"):
            assert main(["split-data", "--json", str(src), "--output-dir", str(out), "--seed", "0"]
                        + images) == 0
        parts = [json.loads(f.read_text()) for f in sorted(out.glob("*.json"))]
        assert sorted(i["file_name"] for d in parts for i in d["images"]) == plain
        assert sum(len(d["annotations"]) for d in parts) == 4


def test_one_id_for_every_file_is_said_short_with_merge_data(tmp_path, caplog):
    """An exporter writing "id": 0 for every image: each file named in one line (200+ KB for 10000
    images), and no word of the cause, as only many ids got the hint."""
    images = [{"id": 0, "file_name": f"f{i}.png", "height": 16, "width": 16} for i in range(40)]
    src = _write(tmp_path / "d.json", images, [_ann(1, 0, 1)])
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="duplicate_image_id"):
        ds = CocoDataset(json_path=src, image_dir=None)
    lines = [r.getMessage() for r in caplog.records if "given to" in r.getMessage()]
    assert len(lines) == 1 and "merge-data" in lines[0] and "f39.png" not in lines[0]
    assert "(37 more)" in lines[0] and ds.skipped["duplicate_image_id"] == 40
