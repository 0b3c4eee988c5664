"""merge-data: LVIS's image-level class lists follow the renumbered category ids (they named another
class), and split-data, which renumbers nothing, keeps them as written."""

import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main

SEG = [[2, 2, 10, 2, 10, 10, 2, 10]]


def _ann(aid, iid, cid):
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [2, 2, 8, 8], "segmentation": SEG,
            "area": 64, "iscrowd": 0}


def _source(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    images = []
    for i in range(4):
        Image.new("RGB", (16, 16), (50 * i, 0, 0)).save(folder / f"p{i}.png")
        images.append({"id": 10 + i, "file_name": f"p{i}.png", "height": 16, "width": 16,
                       "not_exhaustive_category_ids": [3], "neg_category_ids": [90, 44, 7]})
    coco = {"images": images, "annotations": [_ann(i, 10 + i, [1, 3, 44, 90][i]) for i in range(4)],
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                           {"id": 44, "name": "bottle"}, {"id": 90, "name": "toothbrush"}]}
    src = tmp_path / "lvis.json"
    src.write_text(json.dumps(coco))
    return src, folder


def test_merge_maps_the_image_class_lists_through_the_new_ids(tmp_path, capsys, recwarn):
    src, folder = _source(tmp_path)
    out = tmp_path / "merged.json"
    assert main(["merge-data", f"{src}:{folder}", "--output", str(out)]) == 0
    merged = json.loads(out.read_text())
    new = {c["name"]: c["id"] for c in merged["categories"]}
    assert new == {"person": 1, "car": 2, "bottle": 3, "toothbrush": 4}
    for img in merged["images"]:
        assert img["not_exhaustive_category_ids"] == [new["car"]]
        assert img["neg_category_ids"] == [new["toothbrush"], new["bottle"]]  # 7 named no category
    said = [str(w.message) for w in recwarn if "neg_category_ids" in str(w.message)]
    assert len(said) == 1 and "4 id(s) of neg_category_ids name no category kept" in said[0]
    # a class --classes leaves out leaves the lists too
    out2 = tmp_path / "cars.json"
    assert main(["merge-data", f"{src}:{folder}", "--output", str(out2), "--classes", "car"]) == 0
    img = json.loads(out2.read_text())["images"][0]
    assert img["not_exhaustive_category_ids"] == [1] and img["neg_category_ids"] == []


def test_split_keeps_the_class_lists_as_written(tmp_path, capsys):
    src, _ = _source(tmp_path)
    assert main(["split-data", "--json", str(src), "--output-dir", str(tmp_path / "s"),
                 "--fractions", "0.5,0.5"]) == 0
    for part in ("train", "val"):
        data = json.loads((tmp_path / "s" / f"{part}.json").read_text())
        assert [c["id"] for c in data["categories"]] == [1, 3, 44, 90]
        assert all(img["not_exhaustive_category_ids"] == [3] and img["neg_category_ids"] == [90, 44, 7]
                   for img in data["images"])


def _merge_kp_and_other(tmp_path, kp: dict, other: dict) -> dict:
    """merge-data of ``kp`` (an image k.png) and ``other`` (an image n.png) written as kp.json and
    other.json, both 16x16 images in one folder; the merged COCO dict (also in merged.json)."""
    folder = tmp_path / "img"
    folder.mkdir()
    for name in ("k.png", "n.png"):
        Image.new("RGB", (16, 16), (90, 0, 0)).save(folder / name)
    for name, coco in (("kp", kp), ("other", other)):
        (tmp_path / f"{name}.json").write_text(json.dumps(coco))
    out = tmp_path / "merged.json"
    assert main(["merge-data", f"{tmp_path / 'kp.json'}:{folder}", f"{tmp_path / 'other.json'}:{folder}",
                 "--output", str(out)]) == 0
    return json.loads(out.read_text())


def test_persons_of_a_source_without_keypoints_get_none_labelled_and_evaluate(tmp_path, recwarn):
    """Before: the other source's persons had neither keypoints nor num_keypoints, and pycocotools'
    keypoint COCOeval stopped on KeyError 'num_keypoints'."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    kp = {"images": [{"id": 1, "file_name": "k.png", "height": 16, "width": 16}],
          "annotations": [dict(_ann(1, 1, 1), keypoints=[4, 4, 2, 8, 8, 2], num_keypoints=2)],
          "categories": [{"id": 1, "name": "person", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}]}
    plain = {"images": [{"id": 1, "file_name": "n.png", "height": 16, "width": 16}],
             "annotations": [_ann(1, 1, 1)], "categories": [{"id": 1, "name": "person"}]}
    anns = _merge_kp_and_other(tmp_path, kp, plain)["annotations"]
    out = tmp_path / "merged.json"
    assert anns[1]["keypoints"] == [0] * 6 and anns[1]["num_keypoints"] == 0
    assert anns[0]["keypoints"] == [4, 4, 2, 8, 8, 2] and anns[0]["num_keypoints"] == 2
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out))
        dt = gt.loadRes([{"image_id": a["image_id"], "category_id": 1, "keypoints": [4, 4, 1, 8, 8, 1],
                          "score": 0.9} for a in anns])
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array([0.1, 0.1])
        ev.evaluate()
        ev.accumulate()
    assert ev.eval is not None


def test_classes_without_keypoints_get_no_keypoint_fields_and_keypoint_ap_scores_as_before(tmp_path, recwarn):
    """COCO's convention: keypoint fields only on the annotations of categories that have keypoints. A
    keypoint evaluation names those categories (eval does, as COCO's own person_keypoints files hold
    only them); pycocotools over every category stops on KeyError 'num_keypoints' for the source itself
    as for the merged file, so the merge adds no field to the cars of either source, and the keypoint AP
    of the merged file is the source's."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from maskrcnn.engine.evaluator import evaluate_results_file

    kp = {"images": [{"id": 1, "file_name": "k.png", "height": 16, "width": 16}],
          "annotations": [dict(_ann(1, 1, 1), keypoints=[4, 4, 2, 8, 8, 2], num_keypoints=2), _ann(2, 1, 2)],
          "categories": [{"id": 1, "name": "person", "keypoints": ["a", "b"], "skeleton": [[1, 2]]},
                         {"id": 2, "name": "car"}]}
    cars = {"images": [{"id": 1, "file_name": "n.png", "height": 16, "width": 16}],
            "annotations": [_ann(1, 1, 1)], "categories": [{"id": 1, "name": "car"}]}
    merged = _merge_kp_and_other(tmp_path, kp, cars)
    out = tmp_path / "merged.json"
    car = next(c["id"] for c in merged["categories"] if c["name"] == "car")
    assert [("keypoints" in a, "num_keypoints" in a) for a in merged["annotations"]
            if a["category_id"] == car] == [(False, False)] * 2
    results = [{"image_id": 1, "category_id": 1, "keypoints": [4, 4, 1, 8, 8, 1], "score": 0.9,
                "bbox": [2, 2, 8, 8]}]

    def pycocotools_ap(gt_path, every_category):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(gt_path))
            ev = COCOeval(gt, gt.loadRes([dict(r) for r in results]), "keypoints")
            ev.params.kpt_oks_sigmas = np.array([0.1, 0.1])
            if not every_category:
                ev.params.catIds = [c["id"] for c in gt.dataset["categories"] if c.get("keypoints")]
            try:
                ev.evaluate()
            except KeyError as e:
                return f"KeyError {e}"
            ev.accumulate()
            ev.summarize()
        return round(float(ev.stats[0]), 6)

    for every_category in (False, True):  # the merge changes neither reading
        assert pycocotools_ap(out, every_category) == pycocotools_ap(tmp_path / "kp.json", every_category)
    assert pycocotools_ap(out, False) == 1.0
    assert pycocotools_ap(out, True) == "KeyError 'num_keypoints'"  # not the merge's: the source's too
    (tmp_path / "results.json").write_text(json.dumps(results))
    metrics = evaluate_results_file(out, tmp_path / "results.json", iou_types=["keypoints"],
                                    keypoint_sigmas=[0.1, 0.1])  # eval: over the keypoint categories
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0)
    assert list(metrics["keypoints"]["per_category"]) == ["person"]
