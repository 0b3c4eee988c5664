"""What predict and show-data write beside their pictures: class names that tell classes apart, overlays
laid out as the images are (and named in the records), detections an export leaves out counted, and the
colours the server gives the page (the overlays' own)."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from tiny_model import build_tiny, save_tiny_checkpoint  # tests/ is on the path

from maskrcnn.class_names import distinct_class_names
from maskrcnn.cli import main
from maskrcnn.data.coco import distinct_category_names
from maskrcnn.data.mask_codec import annotation_to_mask

pytestmark = pytest.mark.usefixtures("single_thread")


def test_one_rule_tells_repeated_and_empty_names_apart():
    assert distinct_class_names(["__background__", "", " ", "dog", "dog", "cat"]) == \
        ["__background__", "(id 1)", "(id 2)", "dog (id 3)", "dog (id 4)", "cat"]
    assert distinct_category_names({7: "", 9: "a", 12: "a", 3: "b"}) == \
        {7: "(id 7)", 9: "a (id 9)", 12: "a (id 12)", 3: "b"}
    names = distinct_class_names(["__background__", "x", "x"])
    assert distinct_class_names(names) == names  # idempotent: serve applies it to a Predictor's names again


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory):
    """A checkpoint whose two classes are both named "" and images a/x.png (red), b/x.png (blue) and a
    1x1 one (whose detections' masks are empty)."""
    root = tmp_path_factory.mktemp("vizout")
    model, cfg = build_tiny()
    ckpt = save_tiny_checkpoint(root / "blank.pth", model, cfg, class_names=("__background__", "", ""))
    for folder, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
        (root / "imgs" / folder).mkdir(parents=True)
        Image.new("RGB", (64, 48), colour).save(root / "imgs" / folder / "x.png")
    Image.new("RGB", (1, 1), (255, 255, 255)).save(root / "imgs" / "tiny.png")
    return ckpt, root / "imgs"


def test_predict_names_overlays_and_exports(run_inputs, tmp_path, capsys):
    ckpt, images = run_inputs
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="class names repeat or are empty") as caught:
        rc = main(["predict", "--weights", str(ckpt), str(images), "--output", str(out), "--device", "cpu",
                   "--score-thresh", "0", "--export", "coco,labelme,labelstudio,cvat"])
    err = capsys.readouterr().err
    assert rc == 0, err
    # 1. one warning naming the renamed classes; every output uses the new names
    said = [str(w.message) for w in caught if "class names" in str(w.message)]
    assert len(said) == 1 and "1: '' -> '(id 1)', 2: '' -> '(id 2)'" in said[0], said
    records = json.loads((out / "predictions.json").read_text())
    assert records and {r["category_name"] for r in records} <= {"(id 1)", "(id 2)"}
    assert {r["category_id"] for r in records} <= {1, 2}  # the class index stays
    config = ET.fromstring((out / "labelstudio_config.xml").read_text())
    assert [e.get("value") for e in config.iter("Label")] == ["(id 1)", "(id 2)"]
    cvat = ET.fromstring((out / "cvat_annotations.xml").read_text())
    assert [e.findtext("name") for e in cvat.iter("label")] == ["(id 1)", "(id 2)"]
    shapes = [s["label"] for p in (out / "labelme").rglob("*.json")
              for s in json.loads(p.read_text())["shapes"]]
    assert shapes and set(shapes) <= {"(id 1)", "(id 2)"}
    # 2. overlays/ mirrors the images' folders; each record names its own image's overlay
    assert sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png")) == \
        ["a/x.png", "b/x.png", "tiny.png"]
    for r in records:
        folder = "a" if "/a/" in r["file_name"] else "b" if "/b/" in r["file_name"] else ""
        assert r["overlay"] == "overlays/" + (f"{folder}/x.png" if folder else "tiny.png")
    red, blue = (np.asarray(Image.open(out / "overlays" / f).convert("RGB"), float).mean((0, 1))
                 for f in ("a/x.png", "b/x.png"))
    assert red[0] > red[2] and blue[2] > blue[0]  # each overlay is drawn over its own image
    # 3. the detections of the 1x1 image have empty masks: left out of the exports, counted and said
    empty = [r for r in records
             if not annotation_to_mask(r["segmentation"], *r["segmentation"]["size"]).any()]
    assert empty and {r["file_name"] for r in empty} == {str(images / "tiny.png")}
    assert f"left out {len(empty)} detection(s) on 1 image(s) whose mask covers no pixel" in err, err
    coco = json.loads((out / "coco_instances.json").read_text())
    assert len(coco["annotations"]) == len(records) - len(empty)

    # a second run of the a/ folder alone: b's overlay (and its emptied folder) go, the user's PNG stays
    (out / "overlays" / "legend.png").write_bytes(b"the user's")
    with pytest.warns(UserWarning, match="class names repeat"):
        assert main(["predict", "--weights", str(ckpt), str(images / "a"), "--output", str(out), "--device",
                     "cpu", "--score-thresh", "0"]) == 0
    err = capsys.readouterr().err
    assert sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*")) == \
        ["legend.png", "written.json", "x.png"], err  # images a/ given: relative to it
    assert "removed 3 overlay(s)" in err, err


def test_show_data_overlays_keep_the_folders(tmp_path, capsys):
    images = tmp_path / "imgs"
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i, folder in enumerate(("a", "b"), 1):
        (images / folder).mkdir(parents=True)
        Image.new("RGB", (40, 30), (10 * i, 80, 80)).save(images / folder / "x.jpg")
        coco["images"].append({"id": i, "file_name": f"{folder}/x.jpg", "height": 30, "width": 40})
        coco["annotations"].append({"id": i, "image_id": i, "category_id": 1, "bbox": [5, 5, 10, 10],
                                    "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]], "area": 100,
                                    "iscrowd": 0})
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    assert main(["show-data", "--json", str(tmp_path / "gt.json"), "--images", str(images),
                 "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overlays"] == ["a/x.png", "b/x.png"]
    assert summary["overlay_images"] == {"a/x.png": "a/x.jpg", "b/x.png": "b/x.jpg"}
    assert (out / "overlays" / "a" / "x.png").is_file() and (out / "overlays" / "b" / "x.png").is_file()


@pytest.mark.parametrize("large", [False, True])
def test_cleanup_keeps_flat_pngs_named_like_images_whose_records_name_their_overlay(tmp_path, monkeypatch,
                                                                                    large):
    """A record naming its overlay (overlays/a/x.png) made the stem 'x' an earlier run's, and the flat-name
    rule of runs before that field removed the user's overlays/x.png and x_2.png."""
    from maskrcnn.commands import earlier_run

    out = tmp_path / "out"
    (out / "overlays" / "a").mkdir(parents=True)
    for rel in ("a/x.png", "x.png", "x_2.png", "old.png"):
        (out / "overlays" / rel).write_bytes(b"png")
    records = [{"image_id": 1, "file_name": "/d/a/x.jpg", "overlay": "overlays/a/x.png", "score": 0.5},
               {"image_id": 2, "file_name": "/d/old.jpg", "score": 0.5}]  # a run's before the field
    (out / "predictions.json").write_text(json.dumps(records))
    if large:  # scanned, not parsed
        monkeypatch.setattr(earlier_run, "LARGE_RESULTS_BYTES", 10)
    words, count, stems, paths = earlier_run.earlier_run(out)
    assert (stems, paths, count) == ({"old"}, {"overlays/a/x.png"}, 4)
    assert earlier_run.remove_earlier_overlays(out, stems, paths, written=set()) == 2
    assert sorted(p.name for p in (out / "overlays").rglob("*")) == ["x.png", "x_2.png"]


def test_large_results_scan_reads_each_records_fields(tmp_path):
    """The scan of a large results file pairs each record's file_name with its overlay field, whatever the
    chunk's end cuts and whatever the strings hold (braces, a field's name, escapes)."""
    from maskrcnn.commands.earlier_run import scan_records

    records = [{"image_id": 1, "category_name": "file_name", "file_name": '/d/{a}"x".jpg',
                "segmentation": {"size": [2, 2], "counts": "a\\\\b{"}, "overlay": "overlays/a/x.png"},
               {"image_id": 2, "file_name": '/d/\u00e9 "overlay": "q".jpg'},
               {"image_id": 3, "file_name": "c.jpg", "overlay": None},
               {"image_id": 4, "meta": {"overlay": "o", "file_name": "f"}, "file_name": "d.jpg"}]
    expected = {('/d/{a}"x".jpg', True, "overlays/a/x.png"), ('/d/\u00e9 "overlay": "q".jpg', False, None),
                ("c.jpg", True, None), ("d.jpg", False, None)}
    path = tmp_path / "predictions.json"
    jsonl = "".join(json.dumps(r) + "\n" for r in records) + '{"file_name": "cut sho'  # a killed run's
    for text in (json.dumps(records), json.dumps(records, ensure_ascii=False, indent=1), jsonl):
        path.write_text(text, encoding="utf-8")
        for chunk in (1, 7, 1 << 20):
            assert scan_records(path, chunk=chunk) == expected, (text, chunk)


def test_cleanup_of_recorded_paths_spelled_with_dot_dot(tmp_path):
    """'overlays/sub/../sub/x.png' removed sub/ and then listed it (FileNotFoundError); 'overlays/y.png' and
    'overlays/../overlays/y.png' were one file unlinked twice. The error came from predict's finally block:
    the exports were not written and the run's own error was hidden."""
    from maskrcnn.commands.earlier_run import remove_earlier_overlays

    out = tmp_path / "out"
    (out / "overlays" / "sub").mkdir(parents=True)
    for rel in ("sub/x.png", "y.png", "keep.png"):
        (out / "overlays" / rel).write_bytes(b"png")
    paths = {"overlays/sub/../sub/x.png", "overlays/y.png", "overlays/../overlays/y.png",
             "overlays/../outside.png"}
    (out / "outside.png").write_bytes(b"not an overlay")
    (out / "overlays" / "old.png").symlink_to(out / "outside.png")  # an older run's flat name: the link goes
    assert remove_earlier_overlays(out, {"old"}, paths, written=set()) == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        ["outside.png", "overlays", "overlays/keep.png"]


def test_overlay_paths_stay_inside_the_overlays_folder():
    """'C:foo.jpg' kept its ':' (on Windows a name relative to drive C's current folder, outside
    overlays/) and a NUL passed through (saving the overlay raised)."""
    from maskrcnn.overlay_paths import overlay_relpaths

    got = overlay_relpaths(["C:foo.jpg", "C:/x/y.jpg", "..\\..\\a:b\\c.jpg", "n\0ul.jpg", "../../etc/z.jpg",
                            ":"])
    assert got == ["C_foo.png", "x/y.png", "a_b/c.png", "n_ul.png", "etc/z.png", "image.png"]


def test_overlay_names_of_images_sharing_a_name_do_not_depend_on_the_order():
    """y.jpg then y.png gave y.png and y.png.png, y.png then y.jpg the reverse: which overlay showed which
    image depended on the order given. Both are now named by their whole name, as the mask export does,
    also when only one is drawn and the other lies beside it."""
    from maskrcnn.overlay_paths import overlay_relpaths

    assert overlay_relpaths(["y.jpg", "y.png", "z.jpg"]) == ["y.jpg.png", "y.png.png", "z.png"]
    assert overlay_relpaths(["y.png", "y.jpg", "z.jpg"]) == ["y.png.png", "y.jpg.png", "z.png"]
    assert overlay_relpaths(["y.jpg"], beside=["y.png"]) == ["y.jpg.png"]
    assert overlay_relpaths(["a/y.jpg", "b/y.png"]) == ["a/y.png", "b/y.png"]  # other folders: no clash
    # the same name twice (two drives), and an image whose own name is a made one: unique, never lost
    assert overlay_relpaths(["x.png", "x.png"]) == ["x.png", "x.png.png"]
    assert overlay_relpaths(["x.jpg", "x.png", "x.jpg.png"]) == ["x.jpg.png", "x.png.png", "x.jpg.png.png"]


def test_overlay_and_mask_names_clash_whatever_the_case():
    """y.jpg and Y.PNG would write y.png and Y.png: one file on a macOS or Windows disk."""
    from maskrcnn.data.pre_annotations.mask_files import mask_file_stems
    from maskrcnn.overlay_paths import overlay_relpaths

    assert overlay_relpaths(["y.jpg", "Y.PNG"]) == ["y.jpg.png", "Y.PNG.png"]
    assert overlay_relpaths(["y.jpg"], beside=["Y.PNG"]) == ["y.jpg.png"]
    assert overlay_relpaths(["x.png", "X.png"]) == ["x.png.png", "X.png_2.png"]  # names only case tells apart
    assert mask_file_stems(["y.jpg", "Y.PNG", "z.jpg"]) == {"y.jpg": "y.jpg", "Y.PNG": "Y.PNG", "z.jpg": "z"}


def test_overlay_and_mask_file_names_sort_clashing_images_alike(tmp_path):
    """The overlays sorted the images by str(path), the mask files by their relative name: a spelling
    with '..' sorts differently, and the short name new_line went to one image's overlay and to the other
    image's mask files."""
    from maskrcnn.commands.overlay_names import overlay_names
    from maskrcnn.data.pre_annotations.export import relative_file_name
    from maskrcnn.data.pre_annotations.mask_files import mask_file_stems

    root = tmp_path / "r"
    files = [root / "a" / ".." / "new_line.png", root / "new\nline.png"]  # 'a/..' sorts first by str(path)
    rel = [relative_file_name(f, root) for f in files]
    assert rel == ["new_line.png", "new\nline.png"]
    overlays, stems = overlay_names(files, root, []), mask_file_stems(rel)
    assert overlays == {0: "new_line.png.png", 1: "new_line.png"}
    assert {i: stems[rel[i]] + ".png" for i in range(2)} == overlays


def test_predictor_tells_names_apart_by_the_checkpoints_category_ids(tmp_path):
    """With label_to_category_id {1: 2, 2: 7} the names were told apart by class index, 'a (id 1)' and
    'a (id 2)', next to category_id 2 and 7, while CocoDataset names the same classes 'a (id 2)' and
    'a (id 7)': eval's matching by name found neither."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import _ids_by_name
    from maskrcnn.predictor import Predictor

    model, cfg = build_tiny()
    with pytest.warns(UserWarning, match=r"'NAME \(id ID\)', ID the category id .*1: 'a' -> 'a \(id 2\)'"):
        predictor = Predictor(model, cfg, ["__background__", "a", "a"], device="cpu",
                              label_to_category_id={"1": 2, "2": 7})
    assert predictor.class_names == ["__background__", "a (id 2)", "a (id 7)"]
    gt = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "a"}, {"id": 2, "name": "a"},
                                                          {"id": 9, "name": "b"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.warns(UserWarning, match="categories share the names"):
        dataset = CocoDataset(json_path=tmp_path / "gt.json", image_dir=tmp_path)
    assert dataset.class_names[1:3] == ["a (id 2)", "a (id 7)"]
    assert _ids_by_name(predictor.class_names, dataset) == {1: 2, 2: 7}  # eval's matching by name
    # a mapping that gives two labels one id is not used: the class index tells them apart
    with pytest.warns(UserWarning, match=r"named 'NAME \(id INDEX\)'"):
        other = Predictor(model, cfg, ["__background__", "a", "a"], device="cpu",
                          label_to_category_id={1: 5, 2: 5})
    assert other.class_names == ["__background__", "a (id 1)", "a (id 2)"]


def test_names_told_apart_never_repeat():
    """A kept name equal to a made one repeated: ['a', 'a', 'a (id 1)'] gave 'a (id 1)' twice, ['', '(id 1)']
    gave '(id 1)' twice."""
    import random

    from maskrcnn.class_names import distinct_names

    assert distinct_class_names(["bg", "a", "a", "a (id 1)"]) == \
        ["bg", "a (id 1)", "a (id 2)", "a (id 1) (id 3)"]
    assert distinct_class_names(["bg", "", "(id 1)"]) == ["bg", "(id 1)", "(id 1) (id 2)"]
    assert distinct_class_names(["bg", "", "(id 1)", "(id 1) (id 2)"]) == \
        ["bg", "(id 1)", "(id 1) (id 2)", "(id 1) (id 2) (id 3)"]  # a chain: one more round each
    rng = random.Random(0)
    pool = ["", " ", "a", "b", "a (id 1)", "a (id 2)", "(id 1)", "(id 2)", "(id 3)", "a (id 1) (id 2)"]
    for _ in range(300):
        names = {i: rng.choice(pool) for i in rng.sample(range(1, 6), rng.randint(1, 5))}
        out = distinct_names(names)
        assert len(set(out.values())) == len(out) and all(n.strip() for n in out.values()), names
        assert distinct_names(out) == out, names  # idempotent
        assert all(out[i] == n for i, n in names.items() if list(names.values()).count(n) == 1 and n.strip()
                   and n not in {f"{m} (id {j})".strip() for j, m in names.items()}), names  # fine names kept
