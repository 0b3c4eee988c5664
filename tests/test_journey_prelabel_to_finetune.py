"""The pre-labelling journey through today's features, chained as a user would, all through the command line:
train with repeat-factor sampling (a rare class) -> predict new images with every pre-annotation export
-> correct the LabelMe files (one instance deleted, one renamed) and convert them back, and the CVAT XML
too -> fine-tune from the first checkpoint (--init) on the corrected set -> eval it with TTA and with
tiles -> predict on a video with the fine-tuned checkpoint.

Every step reads what the step before wrote: the point is the seams between the features (the paths an
export writes and a converter reads, the class numbering kept across them, a fine-tuned checkpoint that
TTA, tiling and video prediction all load).
"""

import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from maskrcnn.cli import main

S = 64  # every image is S x S
CLASSES = ("disc", "square")  # "square" is in one training image of eight: the rare class
TRAINING = ["--config", "demo", "--device", "cpu", "--set", "solver.iters=2", "solver.batch_size=2",
            "solver.warmup_iters=1", "solver.checkpoint_period=0", "solver.log_period=1",
            f"input.min_size=[{S}]", f"input.max_size={S}", f"input.min_size_test={S}",
            f"input.max_size_test={S}", "model.fpn_dim=16", "model.rpn.pre_nms_topk_test=50",
            "model.rpn.post_nms_topk_test=20", "model.roi_heads.box_head_dim=32",
            "model.roi_heads.mask_head_dim=8", "model.roi_heads.score_thresh=0.0",
            "model.roi_heads.detections_per_image=4"]


def _draw(path, rng, shapes):
    """An S x S noisy image with ``shapes`` ((class, x, y, r) each) drawn; their COCO polygons."""
    image = Image.fromarray(rng.integers(0, 80, (S, S, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    polygons = []
    for cls, x, y, r in shapes:
        if cls == "disc":
            ring = [(x + r * math.cos(a), y + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 16)[:-1]]
            colour = (230, 60, 60)
        else:
            ring = [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
            colour = (60, 60, 230)
        draw.polygon(ring, fill=colour)
        polygons.append((cls, [round(v, 2) for p in ring for v in p]))
    image.save(path)
    return polygons


def _training_set(root):
    """8 images under ``root``/images and ``root``/train.json: a disc in each, a square in the last."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    coco = {"images": [], "annotations": [], "categories": categories}
    for i in range(8):
        shapes = [("disc", 20 + 3 * i, 22, 12)] + ([("square", 46, 46, 10)] if i == 7 else [])
        for cls, poly in _draw(root / "images" / f"t{i}.png", rng, shapes):
            xs, ys = poly[0::2], poly[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1, "iscrowd": 0,
                                        "category_id": CLASSES.index(cls) + 1, "segmentation": [poly],
                                        "bbox": box, "area": box[2] * box[3]})
        coco["images"].append({"id": i + 1, "file_name": f"t{i}.png", "width": S, "height": S})
    (root / "train.json").write_text(json.dumps(coco))
    return root / "train.json"


def _cli(capsys, *args):
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    assert rc == 0, text
    return text


def _make_video(av, path, n):
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = S, S, "yuv420p"
        for i in range(n):
            a = np.full((S, S, 3), 30, np.uint8)
            a[20:40, 4 * i : 4 * i + 20] = (230, 60, 60)
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _finite_metrics(folder):
    metrics = json.loads((folder / "metrics.json").read_text())
    for task in ("bbox", "segm"):
        assert all(math.isfinite(metrics[task][k]) for k in ("AP", "AP50", "AP75")), metrics
        # an area range without ground truth is null (JSON has no NaN): every object here is small
        assert all(v is None or math.isfinite(v) for v in metrics[task].values() if not isinstance(v, dict))
        assert set(metrics[task]["per_category"]) == set(CLASSES)
    return metrics


@pytest.mark.slow
def test_prelabel_correct_finetune_tta_tiles_video(tmp_path, capsys, single_thread):
    # 1. train briefly with repeat-factor sampling: the summary names the rare class
    train_json = _training_set(tmp_path / "data")
    first = tmp_path / "first"
    text = _cli(capsys, "train", *TRAINING[:4], "--train-json", train_json, "--train-images",
                tmp_path / "data" / "images", "--output", first, "--set", *TRAINING[5:],
                "data.repeat_threshold=0.5")
    assert "repeat-factor sampling (data.repeat_threshold=0.5): 1 of 8 images repeated" in text
    assert "rarest classes' repeat factors: square 2.00" in text  # sqrt(0.5 / (1/8))
    checkpoint = first / "model_final.pth"

    # 2. pre-annotate new images in all four formats
    new = tmp_path / "new"
    new.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        _draw(new / f"n{i}.png", rng, [("disc", 24 + 4 * i, 30, 13), ("square", 48, 14, 8)])
    pred = tmp_path / "pred"
    _cli(capsys, "predict", "--weights", checkpoint, new, "--output", pred, "--device", "cpu",
         "--score-thresh", "0", "--no-overlays", "--no-winograd", "--export", "coco,labelme,cvat,labelstudio")
    exported = json.loads((pred / "coco_instances.json").read_text())
    assert [c["name"] for c in exported["categories"]] == list(CLASSES)
    assert sorted(i["file_name"] for i in exported["images"]) == ["n0.png", "n1.png", "n2.png"]
    per_image = {i["file_name"]: sum(a["image_id"] == i["id"] for a in exported["annotations"])
                 for i in exported["images"]}
    assert sum(per_image.values()) >= 2, per_image  # something to delete and something to rename
    tasks = json.loads((pred / "labelstudio_tasks.json").read_text())
    assert len(tasks) == 3 and sum(len(r["result"]) for t in tasks for r in t["predictions"]) > 0

    # 3. correct: in the LabelMe file of the image with most instances, delete one and rename another
    edited = max(per_image, key=lambda name: (per_image[name], name))
    labelme = pred / "labelme"
    files = sorted(labelme.rglob("*.json"))
    assert [f.name for f in files] == ["n0.json", "n1.json", "n2.json"]
    page_path = labelme / edited.replace(".png", ".json")
    page = json.loads(page_path.read_text())
    groups = sorted({s["group_id"] for s in page["shapes"]})
    assert len(groups) == per_image[edited]  # one group per exported instance
    if len(groups) >= 2:
        deleted, renamed = groups[0], groups[1]
    else:  # one instance only there: rename it in this file, delete one of another file's
        deleted, renamed = None, groups[0]
    gone = {s["label"] for s in page["shapes"] if s["group_id"] == deleted}
    page["shapes"] = [s for s in page["shapes"] if s["group_id"] != deleted]
    old = {s["label"] for s in page["shapes"] if s["group_id"] == renamed}.pop()
    new_label = CLASSES[1 - CLASSES.index(old)]
    for s in page["shapes"]:
        if s["group_id"] == renamed:
            s["label"] = new_label
    page_path.write_text(json.dumps(page))
    if deleted is None:
        other = next(f for f in files if f != page_path and json.loads(f.read_text())["shapes"])
        other_page = json.loads(other.read_text())
        first_group = other_page["shapes"][0]["group_id"]
        gone = {s["label"] for s in other_page["shapes"] if s["group_id"] == first_group}
        other_page["shapes"] = [s for s in other_page["shapes"] if s["group_id"] != first_group]
        other.write_text(json.dumps(other_page))

    corrected = tmp_path / "corrected.json"
    _cli(capsys, "convert-data", "--from", "labelme", labelme, "--output", corrected,
         "--classes", ",".join(CLASSES))
    fixed = json.loads(corrected.read_text())
    assert [c["name"] for c in fixed["categories"]] == list(CLASSES)
    assert len(fixed["images"]) == 3 and len(fixed["annotations"]) == len(exported["annotations"]) - 1
    def per_class(coco):
        return {c: sum(a["category_id"] == k for a in coco["annotations"]) for k, c in enumerate(CLASSES, 1)}

    by_class, before = per_class(fixed), per_class(exported)
    (gone,) = gone  # one label per instance
    before[gone] -= 1
    before[old] -= 1
    before[new_label] += 1
    assert by_class == before

    # the CVAT XML back too, as written: it records the images folder predict read them from
    from_cvat = tmp_path / "from_cvat.json"
    _cli(capsys, "convert-data", "--from", "cvat", pred / "cvat_annotations.xml", "--output", from_cvat,
         "--classes", ",".join(CLASSES))
    cvat = json.loads(from_cvat.read_text())
    assert sorted(i["file_name"] for i in cvat["images"]) == [f"n{i}.png" for i in range(3)]
    assert sorted((a["category_id"], a["area"]) for a in cvat["annotations"]) == sorted(
        (a["category_id"], a["area"]) for a in exported["annotations"])

    # 4. fine-tune from step 1's checkpoint on the corrected file (its images are reached from labelme/)
    tuned = tmp_path / "tuned"
    text = _cli(capsys, "train", *TRAINING[:4], "--train-json", corrected, "--train-images", labelme,
                "--init", checkpoint, "--output", tuned, "--set", *TRAINING[5:])
    assert (tuned / "model_final.pth").is_file(), text
    for extra, out in ((["--tta", "--tta-sizes", "48,64", "--tta-max-size", "96"], tmp_path / "eval_tta"),
                       (["--tile", "48"], tmp_path / "eval_tile")):
        _cli(capsys, "eval", "--weights", tuned / "model_final.pth", "--json", corrected, "--images", labelme,
             "--output", out, "--device", "cpu", *extra)
        _finite_metrics(out)

    # 5. the fine-tuned checkpoint on a video: one JSONL line per frame, then the summary
    av = pytest.importorskip("av")  # the video extra: steps 1-4 have run without it
    clip = tmp_path / "clip.mp4"
    _make_video(av, clip, 4)
    _cli(capsys, "predict", "--weights", tuned / "model_final.pth", clip, "--output", tmp_path / "video",
         "--device", "cpu", "--score-thresh", "0", "--no-overlays", "--no-winograd")
    jsonl = tmp_path / "video" / "clip.predictions.jsonl"
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in lines[:-1]] == [0, 1, 2, 3]
    assert lines[-1]["summary"]["status"] == "complete" and lines[-1]["summary"]["frames_predicted"] == 4
