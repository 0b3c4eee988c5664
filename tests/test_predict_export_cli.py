"""``maskrcnn predict --export``: a tiny random-weight checkpoint on two tiny images writes the five
pre-annotation formats beside predictions.json; each parses, holds what predictions.json holds, and
reads back through our converters; the COCO file loads as a training set. No detections: valid files
all the same."""

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tiny_model import TINY, cat_dog_inputs  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.formats.common import CocoBuilder, Report
from maskrcnn.data.formats.cvat import read_cvat
from maskrcnn.data.formats.labelme import read_labelme
from maskrcnn.data.formats.yolo import read_yolo
from maskrcnn.data.mask_codec import annotation_to_mask
from maskrcnn.modeling.mask_rcnn import build_model

pytestmark = pytest.mark.usefixtures("single_thread")
SIZES = {"a.png": (50, 70), "sub/b.jpg": (40, 60)}  # (H, W)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return cat_dog_inputs(tmp_path_factory.mktemp("export"), SIZES)


def _predict(ckpt, images, out, *options):
    return main(["predict", "--weights", str(ckpt), str(images), "--output", str(out), "--device", "cpu",
                 "--no-overlays", "--export", "coco,labelme,cvat,labelstudio,yolo,masks,cutouts", *options])


EARLIER_EXPORTS = ["coco_instances.json", "labelme/a.json", "cvat_annotations.xml", "labelstudio_tasks.json",
                   "labelstudio_config.xml", "yolo/labels/a.txt", "yolo/data.yaml", "masks/a.png",
                   "masks/index.json"]


def _earlier_exports(out):
    """``out`` holding an earlier run's export files, one of each format (written by hand: what is in them
    does not matter, only that their bytes stay)."""
    for name in EARLIER_EXPORTS:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(f"the earlier run's {name}".encode())
    return out


def test_predict_export_writes_every_format(setup, tmp_path, capsys):
    ckpt, images = setup
    out = tmp_path / "out"
    assert _predict(ckpt, images, out, "--score-thresh", "0", "--export-url-prefix",
                    "/data/local-files/?d=") == 0
    assert "pre-annotations: wrote" in capsys.readouterr().err
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions, "score_thresh 0 with random weights should give detections"
    nonempty = [p for p in predictions
                if annotation_to_mask(p["segmentation"], *p["segmentation"]["size"]).any()]
    assert len(nonempty) >= 5, len(nonempty)

    coco = json.loads((out / "coco_instances.json").read_text())
    assert [(im["file_name"], im["height"], im["width"]) for im in coco["images"]] == \
        [(name, h, w) for name, (h, w) in SIZES.items()]
    assert coco["categories"] == [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    assert [(a["category_id"], a["segmentation"]) for a in coco["annotations"]] == \
        [(p["category_id"], p["segmentation"]) for p in nonempty]  # the predictions' own masks
    dataset = CocoDataset(json_path=out / "coco_instances.json", image_dir=images)
    assert len(dataset) == 2 and dataset.skipped == {}

    labelme = sorted(p.relative_to(out / "labelme").as_posix() for p in (out / "labelme").rglob("*.json"))
    assert labelme == ["a.json", "sub/b.json"]
    b = json.loads((out / "labelme" / "sub" / "b.json").read_text())
    assert (out / "labelme" / "sub" / b["imagePath"]).resolve() == (images / "sub" / "b.jpg").resolve()
    builder, report = CocoBuilder(root=images), Report()
    read_labelme(sorted((out / "labelme").rglob("*.json")), builder=builder, report=report,
                 embedded_dir=tmp_path / "unused")
    assert len(builder.images) == 2 and sum(report.skipped.values()) == 0
    assert len(builder.annotations) == len(nonempty)

    tree = ET.parse(out / "cvat_annotations.xml").getroot()
    assert [el.get("name") for el in tree.iter("image")] == list(SIZES)
    assert len(list(tree.iter("mask"))) == len(nonempty)
    builder, report = CocoBuilder(root=images), Report()
    read_cvat(out / "cvat_annotations.xml", builder=builder, report=report)
    masks = [annotation_to_mask(a["segmentation"], *a["segmentation"]["size"]).numpy()
             for a in builder.to_dict()["annotations"]]
    assert all(np.array_equal(m, annotation_to_mask(p["segmentation"], *m.shape).numpy())
               for m, p in zip(masks, nonempty)) and len(masks) == len(nonempty)

    tasks = json.loads((out / "labelstudio_tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["/data/local-files/?d=a.png",
                                                  "/data/local-files/?d=sub/b.jpg"]
    assert sum(len(t["predictions"][0]["result"]) for t in tasks) == len(nonempty)
    assert tasks[0]["predictions"][0]["model_version"] == "tiny.pth"
    assert "<BrushLabels" in (out / "labelstudio_config.xml").read_text()

    data = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    assert data == {"path": str(images.absolute()), "train": ".", "val": ".", "names": ["cat", "dog"]}
    # one line per instance: class index (cat 0, dog 1), then x y fractions
    for image_id, name in enumerate(SIZES, start=1):
        lines = (out / "yolo" / "labels" / name).with_suffix(".txt").read_text().splitlines()
        assert [int(line.split()[0]) for line in lines] == \
            [{5: 0, 9: 1}[p["category_id"]] for p in nonempty if p["image_id"] == image_id]
        values = [[float(v) for v in line.split()[1:]] for line in lines]
        assert all(len(v) >= 6 and len(v) % 2 == 0 and 0 <= min(v) and max(v) <= 1 for v in values)
    ds = tmp_path / "ds"  # the layout Ultralytics reads: labels/ beside images/
    ds.mkdir()
    (ds / "images").symlink_to(images.absolute(), target_is_directory=True)
    (ds / "labels").symlink_to((out / "yolo" / "labels").absolute(), target_is_directory=True)
    builder, report = CocoBuilder(root=ds / "images"), Report()
    read_yolo([ds / "images" / name for name in SIZES], label_of=["cat", "dog"].__getitem__, builder=builder,
              report=report)
    yolo = builder.to_dict()
    assert len(yolo["images"]) == 2 and sum(report.skipped.values()) == 0
    assert len(yolo["annotations"]) == len(nonempty)

    # mask PNGs: id i the image's i-th prediction, the higher score on top; the class PNG its category id
    index = json.loads((out / "masks" / "index.json").read_text())
    assert list(index) == list(SIZES)
    names = {5: "cat", 9: "dog"}
    for image_id, (name, (h, w)) in enumerate(SIZES.items(), start=1):
        mine = [p for p in predictions if p["image_id"] == image_id]
        assert [(r["id"], r["category_id"], r["category"], r["score"], r["bbox"]) for r in index[name]] == \
            [(i, p["category_id"], names[p["category_id"]], p["score"], p["bbox"])
             for i, p in enumerate(mine, start=1)]
        expected_ids, expected_classes = np.zeros((h, w), np.int64), np.zeros((h, w), np.int64)
        for i, p in sorted(enumerate(mine, start=1), key=lambda ip: ip[1]["score"]):  # best painted last
            m = annotation_to_mask(p["segmentation"], h, w).numpy() > 0
            expected_ids[m], expected_classes[m] = i, p["category_id"]
        stem = name.rsplit(".", 1)[0]
        assert np.array_equal(np.array(Image.open(out / "masks" / f"{stem}.png")), expected_ids)
        assert np.array_equal(np.array(Image.open(out / "masks" / f"{stem}_classes.png")), expected_classes)
        cutouts = sorted((out / "cutouts" / stem).iterdir()) if (out / "cutouts" / stem).exists() else []
        areas = {f"{i:03d}_{names[p['category_id']]}.png":
                 int(annotation_to_mask(p["segmentation"], h, w).sum()) for i, p in enumerate(mine, start=1)}
        assert [c.name for c in cutouts] == sorted(k for k, a in areas.items() if a > 0)
        for c in cutouts:  # the whole mask is in the cut-out (its box)
            assert int((np.array(Image.open(c))[..., 3] == 255).sum()) == areas[c.name]


def test_predict_export_without_detections_and_bad_formats(setup, tmp_path, capsys):
    ckpt, images = setup
    out = tmp_path / "out"
    assert _predict(ckpt, images / "a.png", out, "--score-thresh", "1") == 0
    coco = json.loads((out / "coco_instances.json").read_text())
    assert len(coco["images"]) == 1 and coco["annotations"] == []
    assert len(CocoDataset(json_path=out / "coco_instances.json", image_dir=images)) == 1
    assert json.loads((out / "labelme" / "a.json").read_text())["shapes"] == []
    assert (out / "yolo" / "labels" / "a.txt").read_text() == ""
    assert json.loads((out / "masks" / "index.json").read_text()) == {"a.png": []}
    assert not np.array(Image.open(out / "masks" / "a.png")).any() and not (out / "cutouts" / "a").exists()
    assert [len(el) for el in ET.parse(out / "cvat_annotations.xml").getroot().iter("image")] == [0]
    assert json.loads((out / "labelstudio_tasks.json").read_text()) == [
        {"data": {"image": "a.png", "maskrcnn_images_folder": Path(os.path.relpath(images, out)).as_posix(),
                  "maskrcnn_classes": ["cat", "dog"]},  # the model's order: read back with its ids
         "predictions": [{"model_version": "tiny.pth", "score": 0.0, "result": []}]}]
    capsys.readouterr()
    rc = main(["predict", "--weights", str(ckpt), str(images), "--output", str(tmp_path / "bad"),
               "--export", "coco,voc"])
    assert rc == 1 and "--export 'coco,voc': 'voc' is not a format" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before the model was loaded
    rc = main(["predict", "--weights", str(ckpt), str(images), "--output", str(tmp_path / "bad"),
               "--export", "labelme", "--export-tolerance", "nan"])
    assert rc == 1 and "--export-tolerance must be a finite number >= 0, got nan" in capsys.readouterr().err
    rc = main(["predict", "--weights", str(ckpt), str(images), "--output", str(tmp_path / "bad"),
               "--export", "cutouts", "--export-min-area", "-1"])
    assert rc == 1 and "--export-min-area must be a number of pixels >= 0, got -1" in capsys.readouterr().err


def test_a_box_only_model_exports_rectangles_under_hostile_names_and_they_read_back(tmp_path, capsys):
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.data.formats.labelstudio import read_labelstudio

    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), {**TINY, "model.roi_heads.mask_on": False})
    names = ["__background__", 'a<b & "c\'', "image"]  # XML-special, and a Label Studio control's name
    save_checkpoint(tmp_path / "box.pth", model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=names)
    images = tmp_path / "in"
    rng = np.random.default_rng(0)
    for rel in ("x y.png", "ü#?%.png"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(images / rel)
    out = tmp_path / "out"
    assert _predict(tmp_path / "box.pth", images, out, "--score-thresh", "0", "--tile", "32",
                    "--export-url-prefix", "/data/local-files/?d=") == 0
    err = capsys.readouterr().err
    assert err.count("the model has no mask head: instances are exported as rectangles") == 1
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 20  # 10 per image (detections_per_image) at score 0

    coco = json.loads((out / "coco_instances.json").read_text())
    assert len(coco["annotations"]) == 20 and [c["name"] for c in coco["categories"]] == names[1:]
    for a, p in zip(coco["annotations"], predictions):
        x, y, w, h = a["bbox"]
        assert a["bbox"] == pytest.approx(p["bbox"], abs=0.01)
        assert a["segmentation"] == [pytest.approx([x, y, x + w, y, x + w, y + h, x, y + h])]
    assert len(CocoDataset(json_path=out / "coco_instances.json", image_dir=images)) == 2

    shapes = json.loads((out / "labelme" / "x y.json").read_text())["shapes"]
    assert {s["shape_type"] for s in shapes} == {"rectangle"} and len(shapes) == 10
    builder, report = CocoBuilder(root=images), Report()
    read_labelme(sorted((out / "labelme").rglob("*.json")), builder=builder, report=report,
                 embedded_dir=tmp_path / "unused")
    assert len(builder.annotations) == 20 and sum(report.skipped.values()) == 0

    builder, report = CocoBuilder(root=images), Report()
    read_cvat(out / "cvat_annotations.xml", builder=builder, report=report)
    cvat = builder.to_dict()
    assert len(cvat["annotations"]) == 20 and sum(report.skipped.values()) == 0
    assert sorted(c["name"] for c in cvat["categories"]) == sorted(names[1:])
    assert len(list(ET.parse(out / "cvat_annotations.xml").getroot().iter("box"))) == 20

    lines = [line.split() for rel in ("x y.txt", "ü#?%.txt")
             for line in (out / "yolo" / "labels" / rel).read_text().splitlines()]
    assert len(lines) == 20 and all(len(t) == 5 and t[0] in ("0", "1") for t in lines)  # class cx cy w h
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["names"] == names[1:]

    config = ET.fromstring((out / "labelstudio_config.xml").read_text())
    assert config.find("RectangleLabels").get("name") == "tag"
    assert [label.get("value") for label in config.iter("Label")] == names[1:]
    tasks = json.loads((out / "labelstudio_tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["/data/local-files/?d=x%20y.png",
                                                  "/data/local-files/?d=%C3%BC%23%3F%25.png"]
    for t in tasks:  # accepted as they are: predictions become annotations
        t["annotations"] = [{"result": t.pop("predictions")[0]["result"]}]
    (tmp_path / "accepted.json").write_text(json.dumps(tasks))
    builder, report = CocoBuilder(root=images), Report()
    read_labelstudio([tmp_path / "accepted.json"], builder=builder, report=report, images=images)
    ls = builder.to_dict()
    assert len(ls["images"]) == 2 and sum(report.skipped.values()) == 0
    assert sorted(a["bbox"][0] for a in ls["annotations"]) == pytest.approx(  # (its reader rasterises)
        sorted(a["bbox"][0] for a in coco["annotations"]), abs=1)


def test_predict_output_folders_inside_the_images_are_left_out_and_files_given_twice_listed_once(tmp_path,
                                                                                                  capsys):
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    for rel in ("a.png", "sub/a.png", "out/overlays/a.png", "old/overlays/a.png", "old/x/b.png",
                "overlays/c.png", "keep/overlays/d.png"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(images / rel)
    (images / "old" / "predictions.json").write_text("[]")  # an earlier run's output, under another name
    (images / "out" / "predictions.partial.jsonl").write_text("")  # this run's, being written
    found = expand_inputs([images, images / "sub", images / "a.png"], output=images / "out")
    assert [p.relative_to(images).as_posix() for p in found] == \
        ["a.png", "keep/overlays/d.png", "overlays/c.png", "sub/a.png"]
    assert "left out 3 image file(s) inside predict output folders" in capsys.readouterr().err
    assert [p.relative_to(images).as_posix() for p in expand_inputs([images])] == \
        ["a.png", "keep/overlays/d.png", "overlays/c.png", "sub/a.png"]  # (out/ holds a partial run)
    (images / "predictions.json").write_text("[]")  # --output the images folder itself: its overlays/ go
    found = expand_inputs([images], output=images)
    assert [p.relative_to(images).as_posix() for p in found] == ["a.png", "keep/overlays/d.png", "sub/a.png"]
    asked = images / "old" / "overlays"  # given as an input itself: predicted
    assert expand_inputs([asked]) == [asked / "a.png"]
    from maskrcnn.commands.predict import _found_in_output

    clip = images / "out" / "clip.overlay.mp4"  # a video run's overlay, beside its results
    assert _found_in_output(clip, [images], images / "out")
    assert not _found_in_output(clip, [clip], images / "out")  # given by name


def test_predict_output_folders_are_looked_at_once_per_folder_not_per_file(tmp_path, monkeypatch):
    from pathlib import Path

    from maskrcnn.commands.predict import _found_in_output, _OutputFolders, expand_inputs

    images = tmp_path / "in"
    (images / "sub" / "deeper").mkdir(parents=True)
    for i in range(30):
        (images / "sub" / f"{i}.png").write_bytes(b"")  # listed by name: never read here
        (images / "sub" / "deeper" / f"{i}.png").write_bytes(b"")
    looked, is_file = [], Path.is_file

    def counting(self):
        if self.name.startswith("predictions"):
            looked.append(self.parent.relative_to(images).as_posix())
        return is_file(self)

    monkeypatch.setattr(Path, "is_file", counting)
    assert len(expand_inputs([images], output=tmp_path / "out")) == 60
    # predictions.json and predictions.partial.jsonl, once per folder (sub/ answered once for deeper/ too)
    assert sorted(looked) == ["sub", "sub", "sub/deeper", "sub/deeper"]
    looked.clear()
    outputs = _OutputFolders({(tmp_path / "out").resolve()})
    for i in range(5):  # videos, each checked with one run's shared answers
        assert not _found_in_output(images / "sub" / f"{i}.mp4", [images], tmp_path / "out", outputs)
    assert sorted(looked) == ["sub", "sub"]
    looked.clear()
    shared = _OutputFolders({(tmp_path / "out").resolve()})  # one for the listing and the videos, as run()
    assert len(expand_inputs([images], outputs=shared)) == 60
    assert not _found_in_output(images / "sub" / "0.mp4", [images], tmp_path / "out", shared)
    assert sorted(looked) == ["sub", "sub", "sub/deeper", "sub/deeper"]  # sub/ not looked at again


def test_paths_found_and_not_predicted_are_reported_once_each(tmp_path):
    """A symlink beside its target and a broken link were dropped from a folder's listing without a word;
    each is now reported with its reason, once, however often its folder is given."""
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(images / "sub" / "good.png")
    (images / "sub" / "link.png").symlink_to(images / "sub" / "good.png")
    (images / "dangling.png").symlink_to(tmp_path / "gone.png")
    told = []
    found = expand_inputs([images, images / "sub", images / "sub" / "good.png"],
                          on_left_out=lambda path, reason: told.append((path, reason)))
    assert found == [images / "sub" / "good.png"]
    assert told == [(images / "dangling.png", f"broken link (to {tmp_path / 'gone.png'})"),
                    (images / "sub" / "link.png", f"same file as {images / 'sub' / 'good.png'}")]


def test_a_link_named_on_the_command_line_beside_its_file_is_predicted_under_both_names(setup, tmp_path,
                                                                                         capsys):
    """`predict a.png link_to_a.png` said "left out link_to_a.png: same file as a.png" and gave it no
    results nor overlay: an argument the user typed was dropped as an alias. Each name typed is predicted,
    with a note that they are one file; a link found in a folder is still left out."""
    from maskrcnn.commands.predict import expand_inputs

    ckpt, _ = setup
    images = tmp_path / "imgs"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(images / "a.png")
    (images / "link_to_a.png").symlink_to("a.png")
    a, link = images / "a.png", images / "link_to_a.png"
    for inputs, expected, note in [
        ([a, link], [a, link], (link, a)),
        ([link, a], [link, a], (a, link)),
        ([images, link], [a, link], (link, a)),  # the link found in the folder, and typed: predicted
        ([link, images], [link, a], (link, a)),  # the file itself found in the folder beside it
    ]:
        told, same = [], []
        found = expand_inputs(inputs, on_left_out=lambda *x, to=told: to.append(x),
                              on_same_file=lambda *x, to=same: to.append(x))
        assert (found, told, same) == (expected, [], [note]), inputs
    told, same = [], []
    spelled_twice = [a, f"{images}/sub/../a.png", f"{images}/./a.png"]  # one path: once, nothing said
    assert expand_inputs(spelled_twice, on_left_out=told.append, on_same_file=same.append) == [a]
    assert told == same == []
    assert expand_inputs([images], on_left_out=lambda *x: told.append(x)) == [a]  # found only: left out
    assert told == [(link, f"same file as {a}")]

    out = tmp_path / "out"
    assert main(["predict", "--weights", str(ckpt), str(a), str(link), "--output", str(out),
                 "--device", "cpu", "--overlay-min-size", "0", "--score-thresh", "0"]) == 0
    err = capsys.readouterr().err
    assert "left out" not in err and f"{link} is the same file as {a}: predicted under both names" in err
    records = json.loads((out / "predictions.json").read_text())
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["a.png", "link_to_a.png"]
    assert {r["file_name"] for r in records} == {str(a), str(link)}
    assert "done: 2 image(s)" in err


def test_a_link_sorting_before_its_file_is_the_one_left_out(tmp_path):
    """imgs/link.jpg -> rgb.jpg sorts first: the file itself was dropped ("left out imgs/rgb.jpg: same
    file as imgs/link.jpg") and the alias kept, by sort order alone."""
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(images / "rgb.png")
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(images / "z.png")
    (images / "link.png").symlink_to("rgb.png")
    told = []
    found = expand_inputs([images], on_left_out=lambda path, reason: told.append((path, reason)))
    assert found == [images / "rgb.png", images / "z.png"]  # the file, in the link's place in the order
    assert told == [(images / "link.png", f"same file as {images / 'rgb.png'}")]


def test_control_characters_in_file_names_are_escaped_when_printed_and_replaced_in_overlays(tmp_path, capsys):
    """A newline in a file name broke the printed line in two and went into the overlay's name."""
    from maskrcnn.commands.overlay_names import overlay_file_name
    from maskrcnn.commands.predict import print_left_out, shown_path
    from maskrcnn.overlay_paths import overlay_relpaths, safe_file_name

    path = tmp_path / "new\nline.jpg"
    assert shown_path(path) == "'" + str(tmp_path).replace("\\", "\\\\") + "/new\\nline.jpg'"
    print_left_out(path, "broken link")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "new\\nline.jpg" in err
    assert overlay_relpaths([overlay_file_name(path, tmp_path)]) == ["new_line.png"]
    assert overlay_file_name(path, None) == "new_line.jpg"
    assert safe_file_name("a/b\tc\u202ed\x1b.png") == "a/b_c_d_.png"
    assert safe_file_name("ü 漢字.png") == "ü 漢字.png"


def test_labelme_cvat_and_labelstudio_exports_read_back_as_the_lines_printed_say(setup, tmp_path, capsys,
                                                                                 monkeypatch):
    """The README's round trip: predict --export into pre/, then convert-data on the LabelMe folder, the
    XML and the tasks as written, as the lines printed say (before: a line for CVAT and Label Studio
    only, though the README said one for each format convert-data reads; none for coco, which trains as
    it is, nor yolo, read only once laid out as Ultralytics needs it)."""
    import shlex

    ckpt, images = setup
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--weights", str(ckpt), str(images), "--output", "pre", "--device", "cpu",
                 "--no-overlays", "--score-thresh", "0", "--export",
                 "coco,labelme,cvat,labelstudio,yolo,masks,cutouts"]) == 0
    err = capsys.readouterr().err
    commands = [line.split("read back with: maskrcnn ", 1)[1] for line in err.splitlines()
                if "read back with: " in line]
    # LabelMe's files name their images relative to themselves: --images names them from the images folder
    # (here outside the working folder: absolute)
    assert commands == [
        f"convert-data --from labelme pre/labelme --images {shlex.quote(str(images))} --output train.json",
        "convert-data --from cvat pre/cvat_annotations.xml --output train.json",
        # the tasks record the images folder too (before: only --images could say it)
        "convert-data --from labelstudio pre/labelstudio_tasks.json --output train.json"]
    counts = []
    for k, command in enumerate(commands):
        argv = shlex.split(command)
        argv[argv.index("--output") + 1] = f"rt{k}.json"
        assert main(argv) == 0, capsys.readouterr().err
        coco = json.loads((tmp_path / f"rt{k}.json").read_text())
        assert sorted(i["file_name"] for i in coco["images"]) == sorted(SIZES)
        counts.append(len(coco["annotations"]))
    exported = json.loads((tmp_path / "pre" / "coco_instances.json").read_text())["annotations"]
    assert counts == [len(exported)] * 3 and exported


def test_the_images_of_the_same_name_beside_are_listed_once_per_run(setup, tmp_path, monkeypatch, capsys):
    """The overlays and the mask files each listed the images' folders for a same-named image beside them
    (``same_name_beside``): twice per run, on a folder of 100,000 photos twice the listing. Once now, and
    both still name an image by its whole name when one of the same name lies beside it."""
    import maskrcnn.overlay_paths as overlay_paths

    ckpt, _ = setup
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("x.jpg", "x.png"):
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(images / name)
    calls, listing = [], overlay_paths.same_name_beside

    def counting(paths, extensions):
        calls.append(list(paths))
        return listing(paths, extensions)

    monkeypatch.setattr(overlay_paths, "same_name_beside", counting)
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(ckpt), str(images / "x.jpg"), "--output", str(out), "--device",
                 "cpu", "--overlay-min-size", "0", "--export", "masks"]) == 0
    assert calls == [[images / "x.jpg"]]
    assert [p.name for p in (out / "overlays").glob("*.png")] == ["x.jpg.png"]  # x.png beside it
    assert sorted(p.name for p in (out / "masks").glob("*.png")) == ["x.jpg.png", "x.jpg_classes.png"]


def test_a_path_with_dotdot_past_a_linked_folder_is_another_file_not_a_duplicate(tmp_path, capsys):
    """'imgs/sub/../a.png' with imgs/sub a link to other/real is other/a.png: it was dropped as a
    duplicate of imgs/a.png, compared by its text only."""
    from maskrcnn.commands.predict import expand_inputs

    imgs, other = tmp_path / "imgs", tmp_path / "other"
    (other / "real").mkdir(parents=True)
    imgs.mkdir()
    for path in (imgs / "a.png", other / "a.png"):
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(path)
    (imgs / "sub").symlink_to(other / "real")
    found = expand_inputs([str(imgs / "a.png"), str(imgs) + "/sub/../a.png"])
    assert [p.resolve() for p in found] == [(imgs / "a.png").resolve(), (other / "a.png").resolve()]
    # the same path spelled twice is still listed once
    assert len(expand_inputs([str(imgs / "a.png"), str(imgs) + "/./a.png"])) == 1


def test_files_in_an_output_folder_named_and_predicted_are_not_counted_as_left_out(tmp_path, capsys):
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    for rel in ("a.png", "old/overlays/a.png", "old/overlays/b.png"):
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(images / rel)
    (images / "old" / "predictions.json").write_text("[]")
    named = images / "old" / "overlays" / "a.png"
    for inputs in ([images, named], [named, images]):
        found = expand_inputs(inputs)
        assert sorted(p.relative_to(images).as_posix() for p in found) == ["a.png", "old/overlays/a.png"]
        assert "left out 1 image file(s) inside predict output folders" in capsys.readouterr().err


def test_predict_writes_its_overlays_atomically_not_through_a_link(setup, tmp_path, capsys):
    ckpt = setup[0]
    images, out = tmp_path / "imgs", tmp_path / "out"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(images / "a.png")
    (out / "overlays").mkdir(parents=True)
    (tmp_path / "elsewhere.png").write_bytes(b"the user's")
    (out / "overlays" / "a.png").symlink_to(tmp_path / "elsewhere.png")
    assert main(["predict", "--weights", str(ckpt), str(images), "--output", str(out),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "elsewhere.png").read_bytes() == b"the user's"
    assert not (out / "overlays" / "a.png").is_symlink()
    assert Image.open(out / "overlays" / "a.png").size[0] > 0


def test_ctrl_c_before_the_first_image_keeps_an_earlier_runs_export_files(setup, tmp_path, monkeypatch,
                                                                          capsys):
    """Stopped before its first image, a run wrote every end-of-run export (COCO, LabelMe's folder, CVAT,
    Label Studio, YOLO) again with no image: the earlier run's good files were lost. Now none is written,
    and the stop line says so."""
    from maskrcnn.predictor import Predictor

    ckpt, images = setup
    out = _earlier_exports(tmp_path / "out")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(self, paths, *, on_error=None):
        raise KeyboardInterrupt
        yield  # a generator, as the real one is

    monkeypatch.setattr(Predictor, "predict_files", interrupted)
    assert _predict(ckpt, images, out) == 130
    err = capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert "interrupted: after 0 of 2 images; nothing written" in err, err
    assert ("no pre-annotation file written (coco, labelme, cvat, labelstudio, yolo, masks, cutouts): any "
            "earlier ones stay as they were") in err, err
    assert "pre-annotations: wrote" not in err


def test_an_error_before_the_first_image_writes_no_export_and_says_so(setup, tmp_path, monkeypatch, capsys):
    """An error (not Ctrl-C, whose stop line says it) that ends the run before the first image: no export
    file is written, a line says none was and that the earlier files stay, and they are byte for byte as
    they were. (An OSError, a full disk say: a RuntimeError or ValueError of the model is one image's
    prediction_failed skip, and the run goes on.)"""
    from maskrcnn.predictor import Predictor

    ckpt, images = setup
    out = _earlier_exports(tmp_path / "out")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def failing(self, paths, *, on_error=None):
        raise OSError("no space left on device")
        yield  # a generator, as the real one is

    monkeypatch.setattr(Predictor, "predict_files", failing)
    assert _predict(ckpt, images, out) == 1
    err = capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (f"pre-annotations: none written (stopped before the first image): any earlier files in {out} "
            "stay as they were") in err, err
    assert "no space left on device" in err and "pre-annotations: wrote" not in err


def test_a_run_that_predicts_no_image_keeps_the_earlier_export_files(setup, tmp_path, monkeypatch, capsys):
    """Every image failing (each a prediction_failed skip, the run going on to its end): no image was
    predicted, so no export file replaces the earlier run's, and a line says so."""
    from maskrcnn.predictor import Predictor

    ckpt, images = setup
    out = _earlier_exports(tmp_path / "out")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def failing(self, images):
        raise RuntimeError("the model failed")

    monkeypatch.setattr(Predictor, "_predict_loaded", failing)
    _predict(ckpt, images, out)
    err = capsys.readouterr().err
    assert "the model failed" in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert (f"pre-annotations: none written (no image was predicted): any earlier files in {out} "
            "stay as they were") in err, err
    assert "pre-annotations: wrote" not in err


def test_export_file_names_replace_control_characters_as_the_overlays_do(setup, tmp_path, capsys):
    """``--export labelme/masks/cutouts`` kept a newline in their file names while the overlay replaced it
    with '_'; an image already named with '_' there keeps its own files (numbered, not dropped). YOLO keeps
    the image's own name: Ultralytics finds a label file by the image's name."""
    ckpt, _ = setup
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(1)
    for name in ("new\nline.png", "new_line.png"):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(images / name)
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(ckpt), str(images), "--output", str(out), "--device", "cpu",
                 "--score-thresh", "0", "--export", "labelme,masks,cutouts"]) == 0, capsys.readouterr().err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.parent.name != "cutouts"
                     and p.parent.parent.name != "cutouts")  # fmt: skip
    assert not [w for w in written if "\n" in w], written
    assert {"labelme/new_line.json", "labelme/new_line.png.json", "masks/new_line.png",
            "masks/new_line.png.png", "overlays/new_line.png", "overlays/new_line.png.png"} <= set(written), \
        written
    masks_index = json.loads((out / "masks" / "index.json").read_text())
    assert sorted(masks_index) == ["new\nline.png", "new_line.png"]  # the images' own names, as predicted
    cutouts = sorted(p.name for p in (out / "cutouts").iterdir() if p.is_dir())
    assert cutouts == ["new_line", "new_line.png"]
    # which files are whose: named in each record, by the overlays' rule (the mask files were numbered the
    # other way round, and nothing said which was which)
    files = {Path(r["file_name"]).name: (r["overlay"], r["mask"])
             for r in json.loads((out / "predictions.json").read_text())}
    assert files == {"new\nline.png": ("overlays/new_line.png", "masks/new_line.png"),
                     "new_line.png": ("overlays/new_line.png.png", "masks/new_line.png.png")}
    records = json.loads((out / "predictions.json").read_text())
    for name, (_, mask) in files.items():  # each mask image covers its own image's detections
        masks = [annotation_to_mask(r["segmentation"], 40, 50).numpy().astype(bool)
                 for r in records if Path(r["file_name"]).name == name]
        assert np.array_equal(np.array(Image.open(out / mask)) > 0, np.logical_or.reduce(masks)), name


def test_labelme_file_names_differ_beyond_case(setup, tmp_path, capsys):
    """A.png beside a.jpg: 'A.json' and 'a.json' are one file on macOS's and Windows' disks."""
    ckpt, _ = setup
    images = tmp_path / "in"
    images.mkdir()
    for name in ("Case.png", "case.jpg"):
        Image.new("RGB", (50, 40), (90, 120, 30)).save(images / name)
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(ckpt), str(images), "--output", str(out), "--device", "cpu",
                 "--export", "labelme"]) == 0, capsys.readouterr().err
    names = sorted(p.name for p in (out / "labelme").glob("*.json"))
    assert len(names) == 2 and len({n.casefold() for n in names}) == 2, names
