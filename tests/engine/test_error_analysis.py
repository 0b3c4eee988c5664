"""Error analysis (engine/error_analysis.py), the per-class table and ``maskrcnn eval --analysis``:
hand-built ground truth and detections with a known count of each kind of error."""

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.engine.analysis_report import confusion_csv
from maskrcnn.engine.class_table import class_rows, format_class_table
from maskrcnn.engine.error_analysis import analyse, box_overlaps, instance_counts, match_image, miss_kinds
from maskrcnn.engine.evaluator import load_ground_truth

SIZE = 100  # every image is SIZE x SIZE


def _ann(image_id, cat, x, y, w, h, crowd=0):
    return {"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "iscrowd": crowd,
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}


def _det(image_id, cat, x, y, w, h, score, mask=None):
    if mask is None:
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[y:y + h, x:x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "score": score,
            "segmentation": {"size": [SIZE, SIZE], "counts": rle["counts"].decode("ascii")}}


def _ground_truth():
    """Image 1: a cat A and a dog B. Image 2: nothing. Image 3: a cat C. Image 4: a crowd of cats only.
    Category 3 (bird) has no instance."""
    anns = [_ann(1, 1, 10, 10, 30, 30), _ann(1, 2, 60, 10, 30, 30), _ann(3, 1, 20, 20, 40, 40),
            _ann(4, 1, 0, 0, SIZE, SIZE, crowd=1)]
    for i, a in enumerate(anns):
        a["id"] = i + 1
    images = [{"id": i, "file_name": f"{i}.png", "height": SIZE, "width": SIZE} for i in (1, 2, 3, 4)]
    return {"images": images,
            "annotations": anns,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]}


def _records():
    return [
        _det(1, 1, 12, 10, 30, 30, 0.8),   # A again, after the better one below: duplicate (listed first)
        _det(1, 1, 10, 10, 30, 30, 0.9),   # A: true positive
        _det(1, 1, 60, 10, 30, 30, 0.7),   # on the dog B, as a cat: wrong class
        _det(1, 2, 75, 10, 25, 30, 0.6),   # the dog B at IoU 1/3: poor localisation (B is missed)
        _det(1, 1, 10, 60, 20, 20, 0.55),  # on nothing: background
        _det(1, 1, 60, 10, 30, 30, 0.3),   # below the threshold: not analysed
        _det(2, 3, 0, 0, 10, 10, 0.9),     # an image without ground truth: background
        _det(4, 1, 10, 10, 20, 20, 0.8),   # inside the cat crowd: ignored
        _det(4, 2, 10, 10, 20, 20, 0.8),   # a dog in the cat crowd: a cat taken for a dog (wrong class)
    ]  # image 3 has no detection: C is missed


ZERO = {"tp": 0, "fp_background": 0, "fp_wrong_class": 0, "duplicate": 0, "poor_localisation": 0,
        "ignored_crowd": 0, "missed": 0, "missed_wrong_class": 0, "missed_poor_localisation": 0,
        "missed_never_detected": 0}
EXPECTED_CLASSES = [  # C never detected; B found as a cat (wrong class wins over its badly placed dog)
    dict(ZERO, category_id=1, name="cat", ground_truth=2, detections=5, tp=1, fp_background=1,
         fp_wrong_class=1, duplicate=1, ignored_crowd=1, missed=1, missed_never_detected=1, precision=0.25,
         recall=0.5),
    dict(ZERO, category_id=2, name="dog", ground_truth=1, detections=2, fp_wrong_class=1, poor_localisation=1,
         missed=1, missed_wrong_class=1, precision=0.0, recall=0.0),
    dict(ZERO, category_id=3, name="bird", ground_truth=0, detections=1, fp_background=1, precision=0.0,
         recall=None),
]
EXPECTED_CONFUSION = [[1, 1, 0, 1],   # cat: found once, taken for a dog once (the crowd), missed once
                      [1, 0, 0, 1],   # dog: taken for a cat once, missed
                      [0, 0, 0, 0],   # bird: none
                      [2, 1, 1, 0]]   # background: duplicate + background cat, badly placed dog, bird
EXPECTED_CSV = ("ground truth \\ predicted,cat,dog,bird,missed\ncat,1,1,0,1\ndog,1,0,0,1\nbird,0,0,0,0\n"
                "background,2,1,1,0\n")


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_each_kind_of_error_counted(iou_type):
    gt = load_ground_truth(_ground_truth()).dataset  # as the evaluator checks and fills it
    out = analyse(gt, _records(), iou_type=iou_type, score_threshold=0.5)
    assert out["classes"] == EXPECTED_CLASSES
    assert out["confusion"]["counts"] == EXPECTED_CONFUSION
    assert out["confusion"]["rows"] == ["cat", "dog", "bird", "background"]
    assert out["confusion"]["columns"] == ["cat", "dog", "bird", "missed"]
    assert confusion_csv(out["confusion"]) == EXPECTED_CSV
    t = out["totals"]
    assert (t["ground_truth"], t["detections"], t["tp"], t["fp_background"], t["missed"]) == (3, 8, 1, 2, 2)
    assert (t["fp_wrong_class"], t["ignored_crowd"]) == (2, 1)
    assert t["precision"] == pytest.approx(1 / 7) and t["recall"] == pytest.approx(1 / 3)
    per_image = {i["image_id"]: (i["ground_truth"], i["detections"], i["errors"]) for i in out["images"]}
    assert per_image == {1: (2, 5, 5), 2: (0, 1, 1), 3: (1, 0, 1), 4: (0, 2, 1)}


def test_masks_judged_by_mask_iou():
    """The right box with a mask covering a quarter of the object: a true positive for boxes, poorly
    localised for masks (and the object missed)."""
    gt = load_ground_truth({"images": [{"id": 1, "height": SIZE, "width": SIZE}],
                            "annotations": [dict(_ann(1, 1, 10, 10, 40, 40), id=1)],
                            "categories": [{"id": 1, "name": "cat"}]}).dataset
    quarter = np.zeros((SIZE, SIZE), np.uint8)
    quarter[10:30, 10:30] = 1
    records = [_det(1, 1, 10, 10, 40, 40, 0.9, mask=quarter)]
    box, segm = (analyse(gt, records, iou_type=k)["classes"][0] for k in ("bbox", "segm"))
    assert (box["tp"], box["missed"], box["poor_localisation"]) == (1, 0, 0)
    assert (segm["tp"], segm["missed"], segm["poor_localisation"]) == (0, 1, 1)


def test_greedy_by_score_and_best_overlap():
    # two cats (columns 0, 1) and a dog (2); the lower-scoring detection comes first in the input
    iou = np.array([[0.9, 0.6, 0.0],    # score 0.5: its best cat is taken by the detection below
                    [0.95, 0.7, 0.0],   # score 0.9: takes cat 0
                    [0.0, 0.0, 0.55],   # a cat on the dog: wrong class
                    [0.0, 0.3, 0.0]])   # a dog near cat 1 only: background (no dog there)
    kinds, gt_index, found = match_image(iou=iou, scores=[0.5, 0.9, 0.8, 0.7], det_labels=[1, 1, 1, 2],
                                         gt_labels=[1, 1, 2], crowd=[False, False, False])
    assert kinds == ["tp", "tp", "fp_wrong_class", "fp_background"]
    assert gt_index == [1, 0, 2, -1] and found == [True, True, False]


def test_another_class_on_a_crowd_region_is_of_the_wrong_class():
    """Before: background. Columns: a crowd of cats (1), a dog (2); an object beats the crowd."""
    iou = np.array([[0.9, 0.0],    # a bird on the cat crowd only: a cat taken for a bird
                    [0.9, 0.6],    # a bird on both: taken for the dog, the object
                    [0.7, 0.0]])   # a cat on the cat crowd: ignored, as COCOeval ignores it
    kinds, gt_index, found = match_image(iou=iou, scores=[0.9, 0.8, 0.7], det_labels=[3, 3, 1],
                                         gt_labels=[1, 2], crowd=[True, False])
    assert kinds == ["fp_wrong_class", "fp_wrong_class", "ignored_crowd"]
    assert gt_index == [0, 1, -1] and found == [False, False]


def test_crowd_overlap_is_over_the_detection_area():
    det = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 100.0, 100.0]])
    iou = box_overlaps(det, gt, torch.tensor([True, False]))
    assert iou[0, 0] == pytest.approx(1.0) and iou[0, 1] == pytest.approx(0.01)


def test_no_detections_at_all_and_empty_images():
    gt = load_ground_truth(_ground_truth()).dataset
    out = analyse(gt, [], iou_type="segm")
    assert [c["missed"] for c in out["classes"]] == [2, 1, 0]
    assert all(c["precision"] is None for c in out["classes"]) and out["totals"]["recall"] == 0.0
    assert out["confusion"]["counts"][-1] == [0, 0, 0, 0]
    empty = analyse({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}, [])
    assert empty["images"] == [] and empty["totals"]["precision"] is None


def test_ground_truth_encoded_only_where_detections_meet_it(monkeypatch):
    import maskrcnn.engine.error_analysis as ea

    encoded = []
    real = ea._gt_rle
    monkeypatch.setattr(ea, "_gt_rle", lambda ann, image: encoded.append(ann["id"]) or real(ann, image))
    gt = load_ground_truth(_ground_truth()).dataset
    out = analyse(gt, _records(), iou_type="segm")
    assert out["classes"] == EXPECTED_CLASSES
    assert encoded == [1, 2, 4]  # images 1 and 4; not 3 (no detection: C missed) nor 2 (no ground truth)


def test_missed_objects_split_into_never_detected_wrong_class_and_poorly_localised():
    """Three cats missed, each another way; a fourth found (a dog on it too: not a miss); a crowd region
    (never missed)."""
    anns = [_ann(1, 1, 0, 0, 20, 20),     # A: no detection anywhere near
            _ann(1, 1, 40, 0, 20, 20),    # B: a dog exactly on it
            _ann(1, 1, 0, 40, 20, 20),    # C: a cat beside it, IoU 1/3
            _ann(1, 1, 60, 60, 20, 20),   # D: a cat at IoU 2/3 (found) and a dog at 2/3
            _ann(1, 1, 0, 80, 20, 20, crowd=1)]
    for i, a in enumerate(anns):
        a["id"] = i + 1
    gt = load_ground_truth({"images": [{"id": 1, "height": SIZE, "width": SIZE}], "annotations": anns,
                            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}).dataset
    records = [_det(1, 2, 40, 0, 20, 20, 0.9), _det(1, 1, 10, 40, 20, 20, 0.8),
               _det(1, 2, 64, 60, 20, 20, 0.7), _det(1, 1, 60, 64, 20, 20, 0.6)]
    out = analyse(gt, records, iou_type="bbox")
    cat = out["classes"][0]
    assert (cat["ground_truth"], cat["tp"], cat["missed"]) == (4, 1, 3)
    split = ("missed_never_detected", "missed_wrong_class", "missed_poor_localisation")
    assert [cat[k] for k in split] == [out["totals"][k] for k in split] == [1, 1, 1]
    assert out["images"][0]["errors"] == 6  # 3 missed, 2 dogs, the cat beside C: the split adds none
    assert miss_kinds(iou=np.array([[0.9, 0.0], [0.05, 0.3]]), det_labels=[2, 1], gt_labels=[1, 1],
                      crowd=[False, False], found=[False, False]) == ["missed_wrong_class",
                                                                      "missed_poor_localisation"]


def test_at_most_max_dets_detections_per_image_and_class_as_cocoeval():
    """101 confident cats on background, then the one on the cat: COCOeval never looks at the 101st."""
    gt = load_ground_truth({"images": [{"id": 1, "height": SIZE, "width": SIZE}],
                            "annotations": [dict(_ann(1, 1, 50, 50, 40, 40), id=1)],
                            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}).dataset
    stray = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}
    records = [stray] * 100 + [{"image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.8},
                               {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.7}]
    out = analyse(gt, records, iou_type="bbox")
    assert (out["max_dets"], out["dropped_by_max_dets"]) == (100, 1)
    cat = out["classes"][0]
    assert (cat["detections"], cat["tp"], cat["fp_background"]) == (100, 0, 100)
    assert cat["missed"] == cat["missed_never_detected"] == 1
    assert out["classes"][1]["detections"] == 1  # the cap is per class: the dog is kept
    assert instance_counts(gt, records) == {1: (1, 100), 2: (0, 1)}
    unlimited = analyse(gt, records, iou_type="bbox", max_dets=None)
    assert (unlimited["classes"][0]["tp"], unlimited["dropped_by_max_dets"]) == (1, 0)


def test_class_table_worst_first():
    gt = _ground_truth()
    metrics = {"bbox": {"per_category": {"cat": 50.0, "dog": 10.0, "bird": float("nan")},
                        "per_category_AP50": {"cat": 60.0, "dog": 20.0, "bird": float("nan")}},
               "segm": {"per_category": {"cat": 40.0, "dog": 30.0, "bird": float("nan")},
                        "per_category_AP50": {"cat": 45.0, "dog": 35.0, "bird": float("nan")}}}
    counts = instance_counts(gt, _records(), score_threshold=0.5)
    assert counts == {1: (2, 5), 2: (1, 2), 3: (0, 1)}
    rows = class_rows(metrics, gt, counts)
    assert [r["name"] for r in rows] == ["dog", "cat", "bird"]  # by segm AP; no ground truth last
    assert rows[0] == {"name": "dog", "category_id": 2, "ground_truth": 1, "detections": 2, "bbox_AP": 10.0,
                       "bbox_AP50": 20.0, "segm_AP": 30.0, "segm_AP50": 35.0}
    lines = format_class_table(rows, 0.5).splitlines()
    assert lines[0].split() == ["class", "bbox", "AP", "bbox", "AP50", "segm", "AP", "segm", "AP50", "gt",
                                "dets>=0.5"]
    assert lines[1].split() == ["dog", "10.00", "20.00", "30.00", "35.00", "1", "2"]
    assert lines[3].split() == ["bird", "-", "-", "-", "-", "0", "1"]


def test_class_table_ties_in_segm_ap_go_by_bbox_ap():
    """With every segm AP 0.00 (a model early in training) the table was alphabetical, the bbox AP that
    tells the classes apart unused; classes tied as shown (0.001 and 0 both print 0.00) now go by it."""
    gt = _ground_truth()
    metrics = {"bbox": {"per_category": {"cat": 5.0, "dog": 1.0, "bird": 3.0}},
               "segm": {"per_category": {"cat": 0.0, "dog": 0.001, "bird": 0.0}}}
    rows = class_rows(metrics, gt, {})
    assert [r["name"] for r in rows] == ["dog", "bird", "cat"]
    metrics["bbox"]["per_category"]["bird"] = 1.0  # tied in both: by name
    assert [r["name"] for r in class_rows(metrics, gt, {})] == ["bird", "dog", "cat"]


@pytest.fixture()
def dataset(tmp_path):
    (tmp_path / "images").mkdir()
    for i in (1, 2, 3, 4):
        Image.fromarray(np.full((SIZE, SIZE, 3), 30 * i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "gt.json").write_text(json.dumps(_ground_truth()))
    (tmp_path / "res.json").write_text(json.dumps(_records()))
    return tmp_path


def test_cli_analysis_from_a_results_file(dataset, capsys):
    out = dataset / "out"
    assert main(["eval", "--results", str(dataset / "res.json"), "--json", str(dataset / "gt.json"),
                 "--output", str(out), "--analysis", "--analysis-images", "2",
                 "--images", str(dataset / "images")]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    # readers of the AP table see what they saw, beside what it was computed from
    assert set(metrics) == {"bbox", "segm", "results", "json", "artefacts"}
    # what this run wrote beside it: the next eval into this folder may move those to stale/
    assert {"analysis.json", "analysis_images"} <= set(metrics["artefacts"])
    for kind in ("bbox", "segm"):
        assert metrics[kind]["per_category_counts"] == {
            "score_threshold": 0.5, "ground_truth": {"cat": 2, "dog": 1, "bird": 0},
            "detections": {"cat": 5, "dog": 2, "bird": 1}}
    # the table, worst segm AP first, with the evaluator's numbers; bird (no ground truth) last
    ap, ap50 = metrics["segm"]["per_category"], metrics["bbox"]["per_category_AP50"]
    table = printed[printed.index("class "):].splitlines()
    order = sorted(["cat", "dog"], key=lambda n: ap[n]) + ["bird"]
    assert [line.split()[0] for line in table[1:4]] == order
    worst = table[1].split()
    assert worst[2] == f"{ap50[order[0]]:.2f}" and worst[3] == f"{ap[order[0]]:.2f}"
    assert worst[-2:] == {"cat": ["2", "5"], "dog": ["1", "2"]}[order[0]]
    assert printed.index("class ") > printed.index("AP75")  # after the AP table
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["score_threshold"] == 0.5
    for kind in ("bbox", "segm"):
        assert analysis[kind]["classes"] == EXPECTED_CLASSES
    assert (out / "confusion.csv").read_text() == EXPECTED_CSV
    assert (out / "confusion_segm.csv").read_text() == EXPECTED_CSV
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = sorted(p.name for p in (out / "analysis_images").iterdir())
    assert drawn == ["001_1.png", "002_2.png"]  # 5 errors; then the first of the images with 1
    with Image.open(out / "analysis_images" / "001_1.png") as im:
        assert im.size == (2 * 500 + 8, 500 + 18)  # ground truth | detections, enlarged 5 times
        left, right = np.asarray(im.convert("RGB"))[18:, :500], np.asarray(im.convert("RGB"))[18:, 508:]
    assert (left != right).any()  # the dog missed left, the stray detections right
    assert ("1 true positives, 2 on background, 2 wrong class, 1 duplicates, 1 poorly localised, 1 ignored "
            "on crowd regions, 2 of 3 objects missed (1 never detected, 1 found only as another class, "
            "0 only poorly localised)") in printed


def test_cli_analysis_argument_errors(dataset, capsys):
    base = ["eval", "--results", str(dataset / "res.json"), "--json", str(dataset / "gt.json")]
    assert main(base + ["--analysis"]) == 1
    assert "--analysis writes analysis.json" in capsys.readouterr().err
    assert main(base + ["--output", str(dataset / "o"), "--analysis", "--analysis-images", "3"]) == 1
    assert "give --images D" in capsys.readouterr().err
    assert main(base + ["--output", str(dataset / "o"), "--analysis-images", "3"]) == 1
    assert "add --analysis" in capsys.readouterr().err
    for score in ("1.5", "-1"):  # a threshold no probability reaches, or every one does
        assert main(base + ["--output", str(dataset / "o"), "--analysis", "--analysis-score", score]) == 1
        err = capsys.readouterr().err
        assert f"--analysis-score {score}: a score threshold is between 0 and 1" in err, err
    assert not (dataset / "o").exists()  # refused before anything was written


def test_cli_analysis_of_an_empty_results_file(dataset, capsys):
    (dataset / "empty.json").write_text("[]")
    out = dataset / "out"
    assert main(["eval", "--results", str(dataset / "empty.json"), "--json", str(dataset / "gt.json"),
                 "--output", str(out), "--analysis", "--analysis-images", "5",
                 "--images", str(dataset / "images")]) == 0
    assert "0 true positives" in capsys.readouterr().out
    analysis = json.loads((out / "analysis.json").read_text())
    # an empty file misses every kind of object the ground truth has: its boxes and its masks
    assert set(analysis) == {"score_threshold", "bbox", "segm"}
    for kind in ("bbox", "segm"):
        assert [(c["missed"], c["precision"]) for c in analysis[kind]["classes"]] == [(2, None), (1, None),
                                                                                     (0, None)]
    # images 1 (2 missed) and 3 (1 missed) have errors; 2 and 4 (crowd only) none
    assert sorted(p.name for p in (out / "analysis_images").iterdir()) == ["001_1.png", "002_3.png"]


def test_confusion_csv_names_that_a_spreadsheet_reads_as_formulas_are_written_as_text():
    """A class named '=HYPERLINK(...)' was written as is: Excel / LibreOffice opened it as a live formula.
    Each name starting with = + - @ tab or CR now gets a leading apostrophe; the counts stay numbers and
    the other names stay as written. A CR inside a name is quoted (it was left bare and ended the row)."""
    import csv
    import io

    names = ['=HYPERLINK("http://x","y")', "+1", "-cmd", "@SUM(A1)", "\tTAB", "\rCR", "plain = name", "c\rr",
             "n\nl"]
    k = len(names)
    counts = [[(r * 7 + c) % 5 for c in range(k + 1)] for r in range(k + 1)]
    text = confusion_csv({"rows": names + ["background"], "columns": names + ["missed"], "counts": counts})
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == k + 2 and text.count("\r") == 2 * 2  # each CR kept, inside quotes
    shown = ["'" + n for n in names[:6]] + names[6:]
    assert rows[0][1:] == shown + ["missed"]
    assert [r[0] for r in rows[1:]] == shown + ["background"]
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == counts
