"""CocoDataset: segmentation formats, label mapping, validation with counts, unreadable images."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.mask_codec import mask_to_rle
from maskrcnn.data.transforms import build_train_transforms


def _write_images(folder, names, size=(20, 30)):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((*size, 3), 40 * i, dtype=np.uint8)).save(folder / name)


def _square_rle(h=20, w=30, compressed=True):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[2:6, 3:9] = True
    rle = mask_to_rle(m)
    if compressed:
        return rle, m
    flat = m.t().reshape(-1).to(torch.uint8).numpy()
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))
    runs = np.diff(np.concatenate([[0], change]))
    return {"size": [h, w], "counts": [int(r) for r in runs[runs.cumsum() <= flat.size]]}, m


def _coco(tmp_path, annotations, images=None, categories=None, files=("a.png", "b.png", "c.png")):
    _write_images(tmp_path / "img", files)
    data = {
        "images": images
        or [
            {"id": i + 1, "file_name": f, "height": 20, "width": 30}
            for i, f in enumerate(("a.png", "b.png", "c.png"))
        ],
        "annotations": annotations,
        "categories": categories or [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


POLY = [[3.0, 2.0, 9.0, 2.0, 9.0, 6.0, 3.0, 6.0]]


def test_formats_labels_crowd_and_empty_images(tmp_path):
    rle, square = _square_rle()
    unc, _ = _square_rle(compressed=False)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [3, 2, 6, 4], "segmentation": POLY, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [3, 2, 6, 4], "segmentation": rle, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [3, 2, 6, 4], "segmentation": unc, "iscrowd": 1},
    ]
    path = _coco(tmp_path, anns)
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    assert len(ds) == 3 and ds.num_classes == 3
    assert ds.class_names == ["__background__", "dog", "cat"]  # sorted by category id: 3, 7
    assert ds.category_id_to_label == {3: 1, 7: 2} and ds.label_to_category_id == {1: 3, 2: 7}
    image, t = ds[0]
    assert image.shape == (3, 20, 30) and t["image_id"] == 1 and tuple(t["orig_size"]) == (20, 30)
    assert t["labels"].tolist() == [2, 1] and t["boxes"].tolist()[0] == [3.0, 2.0, 9.0, 6.0]
    assert t["masks"].dtype == torch.uint8 and t["masks"].shape == (2, 20, 30)
    assert torch.equal(t["masks"][1].bool(), square) and t["masks"][0].sum() >= square.sum()
    _, t2 = ds[1]
    assert t2["iscrowd"].tolist() == [True] and torch.equal(t2["masks"][0].bool(), square)
    _, t3 = ds[2]  # no annotations: empty, well-shaped target
    assert (
        t3["boxes"].shape == (0, 4) and t3["masks"].shape == (0, 20, 30) and t3["labels"].dtype == torch.int64
    )
    filtered = CocoDataset(json_path=path, image_dir=tmp_path / "img", filter_empty=True)
    assert len(filtered) == 1 and filtered.skipped == {  # crowd-only: left out, counted apart
        "image_without_annotations": 1, "image_with_only_crowd_annotations": 1}


def test_validation_skips_and_counts_each_problem(tmp_path):
    ok = {"image_id": 1, "category_id": 7, "bbox": [3, 2, 6, 4], "segmentation": POLY}
    anns = [
        {"id": 1, **ok},
        {"id": 1, **ok},  # the same id, the same object: an exact copy
        {"id": 2, **{**ok, "category_id": 99}},
        {"id": 3, **{**ok, "bbox": [3, 2, 0, 4]}},
        {"id": 4, **{**ok, "bbox": [3, 2, float("nan"), 4]}},
        {"id": 5, **{**ok, "bbox": [50, 50, 5, 5]}},
        {"id": 6, **{**ok, "segmentation": [[1.0, 2.0]]}},
        {"id": 7, **{**ok, "segmentation": {"size": [10, 10], "counts": "abc"}}},
        {"id": 8, "image_id": 1, "category_id": 7},  # no bbox, no segmentation to take one from
        {"id": 9, **{**ok, "image_id": 42}},
        {"id": 10, **{**ok, "bbox": [-2, -3, 10, 10]}},  # partly outside: clipped, kept
    ]
    images = [
        {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
        {"id": 1, "file_name": "./a.png", "height": 20, "width": 30},  # listed again: its annotations a.png's
        {"id": 2, "file_name": "gone.png", "height": 20, "width": 30},
        {"id": 3, "file_name": "c.png", "height": 0, "width": 30},
    ]
    path = _coco(tmp_path, anns, images=images)
    with pytest.warns(UserWarning, match="skipped"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    assert ds.skipped == {
        "duplicate_annotation": 1,  # an exact copy (id 1 twice)
        "unknown_category": 1,
        "bad_bbox": 2,
        "bbox_outside_image": 1,
        "bad_segmentation": 2,
        "missing_field": 1,
        "unknown_image": 1,
        "duplicate_image_id": 1,
        "missing_image_file": 1,
        "bad_image": 1,
    }
    text = "\n".join(ds.problems)
    assert "ann.json" in text and "annotation id 2 (image id 1) has unknown category_id 99" in text
    assert "gone.png" in text and "annotation id 5" in text
    _, t = ds[0]
    assert t["boxes"].tolist() == [[3.0, 2.0, 9.0, 6.0], [0.0, 0.0, 8.0, 7.0]]


def test_without_an_image_folder_records_are_validated_but_files_not_looked_for(tmp_path):
    ok = {"image_id": 2, "category_id": 7, "bbox": [3, 2, 6, 4], "segmentation": POLY}
    images = [{"id": 1, "file_name": 5, "height": 20, "width": 30},  # no file name: still refused
              {"id": 2, "file_name": "gone.png", "height": 20, "width": 30}]  # no such file: kept
    path = _coco(tmp_path, [{"id": 1, **ok}, {"id": 2, **ok, "category_id": 99}], images=images)
    with pytest.warns(UserWarning, match="skipped"):
        ds = CocoDataset(json_path=path, image_dir=None)
    assert ds.skipped == {"bad_image": 1, "unknown_category": 1}
    assert ds.image_info(0)["path"] is None and len(ds.to_coco_dict()["annotations"]) == 1
    with pytest.raises(RuntimeError, match="read without an image folder"):
        ds[0]


def test_unreadable_image_is_replaced_deterministically(tmp_path):
    anns = [{"id": 1, "image_id": 2, "category_id": 7, "bbox": [3, 2, 6, 4], "segmentation": POLY}]
    path = _coco(tmp_path, anns)
    (tmp_path / "img" / "a.png").write_bytes(b"garbage")  # exists (passes load) but cannot be decoded
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    with pytest.warns(UserWarning, match="a.png"):
        _, t = ds[0]
    assert t["image_id"] == 2 and ds.skipped["unreadable_image"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert ds[0][1]["image_id"] == 2  # remembered: no second attempt, no second warning


def test_indices_are_read_as_a_list_reads_them(tmp_path):
    ds = CocoDataset(json_path=_coco(tmp_path, []), image_dir=tmp_path / "img")
    assert [ds[i][1]["image_id"] for i in (-1, -3, np.int64(1), torch.tensor(2))] == [3, 1, 2, 3]
    assert [t["image_id"] for _, t in ds] == [1, 2, 3]  # iteration stops at the IndexError
    for bad in (3, -4):  # -4 wrapped round to image 3 before
        with pytest.raises(IndexError, match=f"ann.json: index {bad} out of range for 3 images"):
            ds[bad]
    for bad, name in ((1.5, "float"), (slice(0, 2), "slice")):  # 1.5 was image 2; a slice a TypeError on <
        with pytest.raises(TypeError, match=f"ann.json: dataset indices must be integers .*got {name}$"):
            ds[bad]
    assert ds[(-1, 5)][1]["image_id"] == 3  # the loader's (index, seed) form


def test_an_unreadable_last_image_is_replaced_by_the_first(tmp_path):
    path = _coco(tmp_path, [])
    (tmp_path / "img" / "c.png").write_bytes(b"garbage")
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    with pytest.warns(UserWarning, match="c.png"):
        assert ds[-1][1]["image_id"] == 1  # the next readable one wraps round, as in training


def test_bad_files_raise_clear_errors(tmp_path):
    (tmp_path / "img").mkdir()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        CocoDataset(json_path=bad, image_dir=tmp_path / "img")
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="categories"):
        CocoDataset(json_path=bad, image_dir=tmp_path / "img")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoDataset(json_path=tmp_path / "missing.json", image_dir=tmp_path / "img")


def test_keypoints_and_seeded_transforms(tmp_path):
    kp = [0.0] * 51
    kp[3:6] = [5.0, 4.0, 2.0]  # left eye
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 1,
            "bbox": [3, 2, 6, 4],
            "segmentation": POLY,
            "keypoints": kp,
        }
    ]
    cats = [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)]}]
    path = _coco(tmp_path, anns, categories=cats)
    tf = build_train_transforms(min_size=(20, 40), max_size=100, flip_prob=0.5)
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "img", keypoints=True, transforms=tf)
    outs = [ds[(0, seed)] for seed in range(8)]
    again = [ds[(0, seed)] for seed in range(8)]
    for (i1, t1), (i2, t2) in zip(outs, again):
        assert torch.equal(i1, i2) and torch.equal(t1["keypoints"], t2["keypoints"])
    assert all(t["keypoints"].shape == (1, 17, 3) for _, t in outs)
    assert len({tuple(t["boxes"][0].tolist()) for _, t in outs}) >= 3  # sizes and flips vary with the seed


def test_files_written_on_windows_load(tmp_path):
    """A UTF-8 BOM (Notepad, PowerShell) and "sub\\a.png" file names (exports made on Windows): the file
    was refused as "not valid JSON", then every image skipped as missing."""
    (tmp_path / "img").mkdir()
    _write_images(tmp_path / "img" / "sub", ["a.png"])
    data = {"images": [{"id": 1, "file_name": "sub\\a.png", "height": 20, "width": 30}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [3, 2, 6, 4],
                             "segmentation": POLY}],
            "categories": [{"id": 1, "name": "cat"}]}  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data).encode())
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    assert ds.skipped == {} and ds.image_info(0)["file_name"] == "sub/a.png"
    assert ds[0][1]["masks"].sum() == 24


def test_image_sizes_written_as_floats_load(tmp_path):
    """Exporters that compute sizes by division write "height": 20.0; every such image was skipped as
    "invalid size" (RLE sizes written so were already accepted, see mask_codec)."""
    images = [{"id": i + 1, "file_name": f, "height": 20.0, "width": 30.0}
              for i, f in enumerate(("a.png", "b.png"))]
    ann = {"id": 1, "image_id": 1, "category_id": 7, "bbox": [3, 2, 6, 4], "segmentation": POLY}
    path = _coco(tmp_path, [ann], images=images)
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    assert ds.skipped == {} and len(ds) == 2
    image, target = ds[0]
    assert image.shape == (3, 20, 30) and target["masks"].sum() == 24
    assert ds.to_coco_dict()["images"][0]["height"] == 20 and isinstance(ds.aspect_ratios()[0], float)


def test_category_names_written_as_numbers_are_read(tmp_path):
    """Digit classes ('name': 7, as converters from YOLO class lists write them) were skipped as bad
    categories, and every annotation of them as of an unknown category."""
    ann = {"id": 1, "image_id": 1, "category_id": 7, "bbox": [3, 2, 6, 4], "segmentation": POLY, "iscrowd": 0}
    path = _coco(tmp_path, [ann], categories=[{"id": 7, "name": 7}, {"id": 3, "name": "dog"}])
    ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    assert ds.skipped == {} and ds.class_names == ["__background__", "dog", "7"]
    assert ds.to_coco_dict()["categories"][1] == {"id": 7, "name": "7"}


def test_one_integer_check_for_every_validator():
    from maskrcnn.data import coco, mask_codec, validated
    from maskrcnn.data.json_values import is_int, is_whole

    assert [is_int(v) for v in (3, -1, np.int64(3), True, 3.0, "3", None)] == [
        True, True, True, False, False, False, False]
    assert [is_whole(v) for v in (480, 480.0, 480.5, float("nan"), float("inf"), False)] == [
        True, True, False, False, False, False]
    assert coco._is_int is is_int and coco._is_whole is is_whole
    assert mask_codec.is_int is validated.is_int is is_int and mask_codec.is_whole is is_whole


@pytest.mark.parametrize("missing, where", [(1, "each named above"), (3, "each named above"),
                                            (21, "summed up above")])
def test_skip_summary_points_to_the_lines_above_not_a_python_attribute(tmp_path, missing, where):
    # it said "(see dataset.problems)", which a command-line user cannot see; files not found are one line
    # naming the first 3 when there are more (21 used to give 20 lines and "the first 20 named above")
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}] + [
        {"id": i, "file_name": f"gone{i}.png", "height": 20, "width": 30} for i in range(2, missing + 2)]
    path = _coco(tmp_path, [], images=images, files=("a.png",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    assert len(ds.problems) == missing
    assert [str(w.message) for w in caught] == [f"{path}: skipped {missing} missing_image_file ({where})"]


def test_an_rle_of_the_file_size_under_a_swapped_record_blames_the_record(tmp_path):
    """p_formats F1: a record with width/height swapped made every (right) RLE 'not match the image size';
    the record's size, not the RLE, is what is wrong. Still skipped as before; an RLE of another size
    than a record that is the file's size is still blamed on the RLE."""
    rle, _ = _square_rle()  # [20, 30]: the files' size (HxW)
    anns = [{"id": 5, "image_id": 1, "category_id": 7, "segmentation": rle, "bbox": [3, 2, 6, 4]},
            {"id": 6, "image_id": 2, "category_id": 7, "segmentation": _square_rle(10, 30)[0],
             "bbox": [3, 2, 6, 4]}]
    images = [{"id": 1, "file_name": "a.png", "height": 30, "width": 20},  # swapped
              {"id": 2, "file_name": "b.png", "height": 20, "width": 30}]
    path = _coco(tmp_path, anns, images=images)
    with pytest.warns(UserWarning, match="skipped 2 bad_segmentation"):
        ds = CocoDataset(json_path=path, image_dir=tmp_path / "img")
    assert ds.skipped == {"bad_segmentation": 2} and len(ds) == 2
    assert ds.problems[0] == (
        f"{path}: annotation id 5 (image id 1) has an RLE of size [20, 30] (the file's size); the image "
        f"record's width/height are wrong: {tmp_path / 'img' / 'a.png'}: image is 20x30 (HxW), {path} says "
        "30x20 (image id 1); skipped")
    assert ds.problems[1] == (f"{path}: annotation id 6 (image id 2) RLE size [10, 30] does not match the "
                              "image size [20, 30]; skipped")
