"""COCO files as VIA 3 exports them (sizes -1, unwrapped polygons, null boxes, [[]] shapes, ids from 0)
read as meant; an unwrapped polygon's message names the list of polygons expected."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.mask_codec import segmentation_problem
from maskrcnn.engine.evaluator import load_ground_truth


def test_via3_coco_export_reads_as_meant(tmp_path, caplog):
    for name in ("v1.png", "v2.png"):
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / name)
    unknown = {"width": -1, "height": -1}
    coco = {
        "images": [{"id": 1, "file_name": "v1.png", **unknown}, {"id": 2, "file_name": "v2.png", **unknown}],
        "annotations": [
            {"id": 0, "image_id": 1, "category_id": 0, "bbox": [None, None, None, None],
             "segmentation": [10, 10, 50, 10, 50, 30, 10, 30], "iscrowd": False, "area": None},
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10],
             "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]], "iscrowd": False, "area": 100},
            {"id": 2, "image_id": 2, "category_id": 0, "bbox": [[]], "segmentation": [[]], "iscrowd": False,
             "area": None},
        ],
        "categories": [{"id": 0, "name": "cat", "supercategory": "kind"},
                       {"id": 1, "name": "dog", "supercategory": "kind"}],
    }  # fmt: skip
    path = tmp_path / "p-coco.json"
    path.write_text(json.dumps(coco))
    before = json.loads(path.read_text())
    with pytest.warns(UserWarning, match="skipped 1 bad_segmentation"):
        dataset = CocoDataset(json_path=path, image_dir=tmp_path, coco=before)
    assert before == coco  # the parsed file is not modified
    assert dataset.skipped == {"bad_segmentation": 1}
    assert [dataset.image_info(i)["height"] for i in range(2)] == [40, 40]
    target = dataset[0][1]
    assert target["boxes"].tolist() == [[10.0, 10.0, 50.0, 30.0], [5.0, 5.0, 15.0, 15.0]]
    assert target["labels"].tolist() == [1, 2] and int(target["masks"][0].sum()) == 40 * 20
    log = caplog.text
    assert "annotation id 2 (image id 2) segmentation holds only empty polygons ([[]]" in log
    assert "2 images have width and height -1, unknown (as VIA 3 exports them)" in log
    assert "1 segmentations are one flat polygon [x1, y1, ...] not wrapped in a list" in log
    assert "1 annotations have a bbox of nulls" in log  # not the [[]] one, skipped for its shape


def test_unwrapped_polygon_message_names_the_list_of_polygons():
    problem = segmentation_problem([1, 1, 9, 1, 9], 20, 20)
    assert problem.startswith("segmentation must be a list of polygons [[x1, y1, x2, y2, ...], ...]")
    assert segmentation_problem([[1, 1, 9, 1, 9]], 20, 20) == (
        "a polygon must be a flat list [x1, y1, x2, y2, ...] of even length")


def test_eval_ground_truth_reads_via3_export(tmp_path):
    """eval --json X --results R read the raw file and refused VIA 3's export ("bbox [None, ...] is not
    ..."): its flat polygons, null boxes and null areas are read as the dataset reads them, said in
    warnings."""
    coco = {
        "images": [{"id": 1, "file_name": "v1.png", "width": 60, "height": 40}],
        "annotations": [{"id": 0, "image_id": 1, "category_id": 0, "bbox": [None, None, None, None],
                         "segmentation": [10, 10, 50, 10, 50, 30, 10, 30], "iscrowd": False, "area": None}],
        "categories": [{"id": 0, "name": "cat"}],
    }  # fmt: skip
    path = tmp_path / "p-coco.json"
    path.write_text(json.dumps(coco))
    with pytest.warns(UserWarning) as caught:
        gt = load_ground_truth(path)
    (ann,) = gt.dataset["annotations"]
    assert ann["bbox"] == [10, 10, 40, 20] and ann["area"] == 800.0
    assert ann["segmentation"] == [[10, 10, 50, 10, 50, 30, 10, 30]]
    messages = [str(w.message) for w in caught]
    assert f"{path}: 1 annotations have a bbox of nulls (as VIA 3 exports them)" in messages[1]
    assert len(messages) == 3 and "area null" in messages[2]
    with pytest.warns(UserWarning, match="ground truth: 1 segmentations are one flat polygon"):
        assert load_ground_truth(coco).dataset["annotations"][0]["area"] == 800
    assert coco["annotations"][0]["bbox"] == [None] * 4  # the caller's dict is not modified


def _via3_export_with_unknown_sizes(folder):
    """VIA 3's "Export as COCO" of a project whose images it had not measured: width and height -1."""
    coco = {
        "info": {"year": 2026, "description": "VGG Image Annotator (VIA)"},
        "images": [{"id": 1, "width": -1, "height": -1, "file_name": "v1.png", "license": 1,
                    "flickr_url": "v1.png", "coco_url": "v1.png", "date_captured": ""}],
        "annotations": [{"segmentation": [10, 10, 50, 10, 50, 30, 10, 30], "area": None,
                         "bbox": [None, None, None, None], "iscrowd": 0, "id": 0, "image_id": 1,
                         "category_id": 0}],
        "categories": [{"supercategory": "kind", "id": 0, "name": "cat"}],
    }  # fmt: skip
    (folder / "gt.json").write_text(json.dumps(coco))
    (folder / "r.json").write_text(json.dumps([{"image_id": 1, "category_id": 0, "score": 0.9,
                                                "bbox": [10, 10, 40, 20],
                                                "segmentation": [[10, 10, 50, 10, 50, 30, 10, 30]]}]))
    return folder / "gt.json", folder / "r.json"


def test_eval_results_reads_unknown_sizes_from_the_image_files(tmp_path, capsys):
    """eval --results refused VIA 3's COCO export ("image 1 has no integer height and width") although
    its note said the files' sizes were used: they are now, from --images; without the image file the
    error names the file, the image and the field."""
    from maskrcnn.cli import main

    gt, results = _via3_export_with_unknown_sizes(tmp_path)
    images = tmp_path / "pics"
    images.mkdir()
    argv = ["eval", "--results", str(results), "--json", str(gt), "--images", str(images),
            "--output", str(tmp_path / "ev")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert (f"{gt}: 1 images of unknown size whose masks need it: image id 1 ('v1.png') has width and "
            f"height -1 and its file {images / 'v1.png'} is not found (give --images D") in err
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(images / "v1.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the VIA 3 notes (flat polygon, null bbox and area)
        assert main(argv) == 0
    assert f"{gt}: 1 images without a size (width and height -1" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["segm"]["AP"] == pytest.approx(100.0)


def test_unknown_sizes_of_images_without_masks_are_not_needed(tmp_path):
    """A box-only image (or one without annotations) is checked without its size: no file is needed."""
    from maskrcnn.data.coco_exports import sizes_from_files

    data = {"images": [{"id": 1, "file_name": "gone.png", "width": -1, "height": -1}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                             "segmentation": []}]}
    out, notes = sizes_from_files(data, tmp_path, "gt.json")
    assert out["images"] == data["images"] and notes == []


def test_eval_results_box_only_unknown_sizes_reads_no_file(tmp_path, capsys, monkeypatch):
    """Boxes need no size: eval --results with sizes -1, box-only annotations and no image file looked
    for no folder ("--images not given: ..."), and its note claimed the files' sizes were used."""
    from maskrcnn.cli import main

    coco = {"images": [{"id": 1, "width": -1, "height": -1, "file_name": "gone.png"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 20],
                             "area": 800, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "cat"}]}  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    (tmp_path / "r.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9,
                                                  "bbox": [10, 10, 40, 20]}]))
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", "--results", "r.json", "--json", "gt.json", "--output", "ev"]) == 0
    out, err = capsys.readouterr()
    said = out + err + "\n".join(str(w.message) for w in caught)
    assert "--images not given" not in said and "read from their files" not in said
    assert "their files' sizes are used" not in said
    assert "1 images have width and height -1, unknown (as VIA 3 exports them): left unknown" in said
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["bbox"]["AP"] == pytest.approx(100.0)


def test_needs_size_with_keypoints_and_no_segmentation(tmp_path):
    """Keypoints are checked against the image's size: a person without a segmentation needs its file."""
    from maskrcnn.data.coco_exports import needs_sizes, sizes_from_files

    data = {"images": [{"id": 1, "file_name": "gone.png"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                             "keypoints": [2, 2, 2], "num_keypoints": 1}]}
    assert needs_sizes(data)
    with pytest.raises(ValueError, match=r"gt.json: 1 images of unknown size whose masks need it: image "
                                         r"id 1 \('gone.png'\) has no width and height and its file .* is "
                                         r"not found"):
        sizes_from_files(data, tmp_path, "gt.json")


@pytest.mark.parametrize("name", ["a" * 300 + ".png", "dir/" + "b" * 300 + "/x.png", "nul\x00.png"])
def test_unreadable_file_names_are_not_found(tmp_path, name):
    """A 300-character path part (ENAMETOOLONG) or a NUL byte in file_name raised OSError / ValueError
    from is_file(): the file is not found, said as for any missing file."""
    from maskrcnn.data.coco_exports import sizes_from_files

    data = {"images": [{"id": 1, "file_name": name, "width": -1, "height": -1}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "segmentation": [[1, 1, 5, 1, 5, 5]]}]}
    with pytest.raises(ValueError, match="1 images of unknown size whose masks need it: image id 1 .* is not "
                                         "found"):
        sizes_from_files(data, tmp_path, "gt.json")


def test_unhashable_annotation_image_id_is_left_to_the_checks(tmp_path):
    """An annotation whose image_id is a list raised TypeError (unhashable) before the ground truth's
    checks: it is left to them, which name the record."""
    from maskrcnn.data.coco_exports import needs_sizes, sizes_from_files

    data = {"images": [{"id": 1, "file_name": "gone.png", "width": -1, "height": -1}],
            "annotations": [{"id": 1, "image_id": [1], "category_id": 1, "bbox": [1, 1, 4, 4],
                             "segmentation": [[1, 1, 5, 1, 5, 5]]}],
            "categories": [{"id": 1, "name": "cat"}]}
    assert not needs_sizes(data)
    out, notes = sizes_from_files(data, tmp_path, "gt.json")
    assert out["images"] == data["images"] and notes == []
    with pytest.raises(ValueError, match="image_id"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note on the sizes -1
        load_ground_truth(out)


def _cvat_xml_boxes(tmp_path, boxes) -> list:
    """The bboxes ``convert-data --from cvat`` gives the rotated boxes ``boxes`` ((x, y, w, h, degrees))
    drawn in a CVAT XML export of a 200x150 image: the reader whose turn is checked against CVAT."""
    from maskrcnn.cli import main

    folder = tmp_path / "xml"
    folder.mkdir()
    Image.fromarray(np.zeros((150, 200, 3), np.uint8)).save(folder / "a.png")
    shapes = "".join(f'<box label="car" xtl="{x}" ytl="{y}" xbr="{x + w}" ybr="{y + h}" rotation="{d}"/>'
                     for x, y, w, h, d in boxes)
    (folder / "annotations.xml").write_text(
        '<annotations><version>1.1</version><image id="0" name="a.png" width="200" height="150">'
        f"{shapes}</image></annotations>")
    assert main(["convert-data", "--from", "cvat", str(folder), "--output", str(tmp_path / "x.json")]) == 0
    return [a["bbox"] for a in json.loads((tmp_path / "x.json").read_text())["annotations"]]


def _cvat_coco_boxes(tmp_path, boxes, *, occluded: bool = False):
    """CVAT's "COCO 1.0" export of box-only annotations (x, y, w, h, rotation degrees) on a 200x150
    image: ``(coco dict, its path, the CocoDataset, the loaded boxes as [x, y, w, h])``; ``occluded``: the
    attributes also carry CVAT's occluded flag, as its exports write it."""
    Image.fromarray(np.zeros((150, 200, 3), np.uint8)).save(tmp_path / "a.jpg")
    attributes = [{"occluded": False, "rotation": d} if occluded else {"rotation": d} for *_, d in boxes]
    coco = {
        "images": [{"id": 1, "width": 200, "height": 150, "file_name": "a.jpg"}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": [], "area": w * h,
                         "bbox": [x, y, w, h], "iscrowd": 0, "attributes": attributes[i]}
                        for i, (x, y, w, h, _) in enumerate(boxes)],
        "categories": [{"id": 1, "name": "car"}],
    }
    path = tmp_path / "instances_default.json"
    path.write_text(json.dumps(coco))
    dataset = CocoDataset(json_path=path, image_dir=tmp_path)
    got = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in dataset[0][1]["boxes"].tolist()]
    return coco, path, dataset, got


def test_cvat_coco_export_rotated_boxes_are_read_turned(tmp_path, caplog):
    """CVAT's "COCO 1.0" export writes a rotated box as its unturned bbox beside attributes.rotation: it
    was read as the upright box, silently (a 40x20 car turned 90 degrees trained as lying flat). Now the
    box is the turned box's extent, as the CVAT XML of the same boxes converts; a rewritten file is not
    turned twice; the evaluator reads it alike."""
    boxes = [(40, 40, 40, 20, 90.0), (100, 60, 50, 10, 30.0), (20, 100, 30, 20, 0.0)]
    expected = _cvat_xml_boxes(tmp_path, boxes)
    coco, path, dataset, got = _cvat_coco_boxes(tmp_path, boxes, occluded=True)
    assert np.allclose(got, expected, atol=0.01), (got, expected)
    assert got[0] == [50.0, 30.0, 20.0, 40.0]  # 40x20 about its centre (60, 50): 20 wide, 40 high
    assert "2 box-only annotations have attributes.rotation" in caplog.text
    # written back (merge-data, show-data's records): the turned box, no rotation left to turn again
    written = dataset.to_coco_dict()
    assert [a["attributes"].get("rotation") for a in written["annotations"]] == [None, None, 0.0]
    path.write_text(json.dumps({**coco, "annotations": written["annotations"]}))
    again = [[x1, y1, x2 - x1, y2 - y1]
             for x1, y1, x2, y2 in CocoDataset(json_path=path, image_dir=tmp_path)[0][1]["boxes"].tolist()]
    assert again == got
    with pytest.warns(UserWarning, match="2 box-only annotations have attributes.rotation"):
        gt = load_ground_truth(coco)
    assert np.allclose([a["bbox"] for a in gt.dataset["annotations"]], expected, atol=0.01)


def test_a_rotation_that_is_not_a_number_is_said_not_read_upright_silently(tmp_path, caplog):
    # a hand-edited export: "abc" and NaN rotations were read upright without a word
    boxes = [(40, 40, 40, 20, "abc"), (100, 60, 50, 10, float("nan")), (20, 100, 30, 20, 90.0)]
    _, _, _, got = _cvat_coco_boxes(tmp_path, boxes)
    assert got == [[40.0, 40.0, 40.0, 20.0], [100.0, 60.0, 50.0, 10.0], [25.0, 95.0, 20.0, 30.0]]
    assert "2 annotations have an attributes.rotation that is not a finite number (annotation id 1, 2): " \
           "their boxes are read upright" in caplog.text


def test_cvat_coco_rotated_box_past_the_border_is_clipped_as_the_xml_reader_clips_it(tmp_path, caplog):
    """A turned box with corners past the image: its extent was taken unclipped (x 5.25..54.75, y from
    -19.75) and the loader clipped that afterwards, to a box wider than the CVAT XML reader's, with a
    warning blaming the record's width/height. Now the turned box is clipped to its image first."""
    boxes = [(0, 0, 60, 10, 45.0), (170, 130, 40, 30, -30.0)]
    expected = _cvat_xml_boxes(tmp_path, boxes)
    coco, path, dataset, got = _cvat_coco_boxes(tmp_path, boxes)
    assert np.allclose(got, expected, atol=0.01), (got, expected)
    assert "past their image's border" not in caplog.text


@pytest.mark.parametrize("seg, box", [
    ({"size": [40, 40], "counts": [100, 20, 20, 20, 1440]}, [2.0, 20.0, 2.0, 20.0]),  # two columns' ends
    ({"size": [40, 40], "counts": [30, 20, 1550]}, [0.0, 0.0, 2.0, 40.0]),  # one run across a column
    ({"size": [40, 40], "counts": [85, 10, 1505]}, [2.0, 5.0, 1.0, 10.0]),  # within one column
    ({"size": [40, 40], "counts": ""}, None),  # covers no pixel: skipped for its segmentation
    ([[1, 1, 5, 5]], None),  # a 2-point polygon: skipped for its segmentation
])
def test_a_zero_bbox_beside_an_rle_is_said_once(tmp_path, seg, box):
    """A zero bbox beside an RLE gave two notes, the second ("without a bbox") wrong, and the first was
    said of segmentations then skipped as giving no box."""
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": seg,
                             "bbox": [0, 0, 0, 0], "iscrowd": 0, "area": 0}],
            "categories": [{"id": 1, "name": "p"}]}
    (tmp_path / "d.json").write_text(json.dumps(coco))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(json_path=tmp_path / "d.json", image_dir=tmp_path)
    assert not any("without a bbox" in n for n in ds.notes)
    said = [n for n in ds.notes if "bbox [0, 0, 0, 0]" in n]
    if box is None:
        assert not said and ds.skipped == {"bad_segmentation": 1}
    else:
        assert len(said) == 1 and ds[0][1]["boxes"].tolist() == [[box[0], box[1], box[0] + box[2],
                                                                   box[1] + box[3]]]


def test_rle_extent_refuses_counts_that_are_not_integers():
    """[5.7, 2] was cut to [5, 2] (an int64 array) and given a box, where a size of 4.0 is refused."""
    from maskrcnn.data.coco_exports import _rle_extent
    assert _rle_extent({"size": [4, 4], "counts": [5, 2]}) == [1, 1, 1, 2]
    assert _rle_extent({"size": [4, 4], "counts": [5.7, 2]}) is None
    assert _rle_extent({"size": [4, 4], "counts": [5, True]}) is None
