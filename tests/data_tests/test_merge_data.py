"""merge-data: categories matched by name and renumbered, image / annotation ids renumbered, file names
relative to one root that the loader finds every image under, a file listed twice merged once,
--classes, keypoint sets that disagree, bad input."""

import json

import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

H, W = 16, 20
SEG = [[2, 2, 10, 2, 10, 10, 2, 10]]


def _ann(aid, iid, cid, **extra):
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [2, 2, 8, 8], "segmentation": SEG,
            "area": 64, "iscrowd": 0, **extra}


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", (W, H), (40 * k, 0, 0)).save(folder / name)


def _img(iid, name, **extra):
    return {"id": iid, "file_name": name, "height": H, "width": W, **extra}


def _two_sources(tmp_path):
    """Site A (images in siteA/imgs, JSON in ann/) and site B (siteB/pics/sub), spelling one class two
    ways; B lists A's a1.png again through '..'."""
    _images(tmp_path / "siteA" / "imgs", ["a1.png", "a2.png"])
    _images(tmp_path / "siteB" / "pics" / "sub", ["b1.png"])
    _images(tmp_path / "siteB" / "pics", ["b2.png"])
    a = {"images": [_img(10, "a1.png", license=3), _img(11, "a2.png"), _img(12, "gone.png")],
         "annotations": [_ann(7, 10, 5), _ann(8, 11, 9), _ann(9, 11, 5), _ann(4, 10, 99)],
         "categories": [{"id": 5, "name": "Traffic_Light", "supercategory": "street"},
                        {"id": 9, "name": "cat"}], "licenses": [{"id": 3, "name": "CC BY 4.0"}]}
    b = {"images": [_img(1, "sub/b1.png"), _img(2, "b2.png"), _img(3, "../../siteA/imgs/a1.png")],
         "annotations": [_ann(1, 1, 2), _ann(2, 2, 1), _ann(3, 3, 1), _ann(5, 1, 1, iscrowd=1)],
         "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "traffic-light"}]}
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.json").write_text(json.dumps(a))
    (tmp_path / "ann" / "b.json").write_text(json.dumps(b))
    return [f"{tmp_path / 'ann' / 'a.json'}:{tmp_path / 'siteA' / 'imgs'}",
            f"{tmp_path / 'ann' / 'b.json'}:{tmp_path / 'siteB' / 'pics'}"]


def test_merge_renumbers_matches_names_and_the_loader_finds_every_image(tmp_path, capsys, caplog, recwarn):
    sources = _two_sources(tmp_path)
    out = tmp_path / "all.json"
    assert main(["merge-data", *sources, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    merged = json.loads(out.read_text())
    # 'traffic-light' is A's 'Traffic_Light'; dog is new, appended; ids 1..K in first-seen order
    assert merged["categories"] == [{"id": 1, "name": "Traffic_Light", "supercategory": "street"},
                                    {"id": 2, "name": "cat"}, {"id": 3, "name": "dog"}]
    # the deepest folder holding siteA/imgs and siteB/pics is tmp_path; ids renumbered 1..N, fields kept
    assert merged["images"] == [_img(1, "siteA/imgs/a1.png", license=1), _img(2, "siteA/imgs/a2.png"),
                                _img(3, "siteB/pics/sub/b1.png"), _img(4, "siteB/pics/b2.png")]
    anns = [(a["id"], a["image_id"], a["category_id"], a["iscrowd"]) for a in merged["annotations"]]
    # A: 7 (a1, light), 8 (a2, cat), 9 (a2, light); 4 (unknown category) skipped. B: 1 (b1, light),
    # crowd 5 (b1, dog), 2 (b2, dog), image by image; 3 is on B's listing of a1.png: left out with it
    assert anns == [(1, 1, 1, 0), (2, 2, 2, 0), (3, 2, 1, 0), (4, 3, 1, 0), (5, 3, 3, 1), (6, 4, 3, 0)]
    # bad records reported as training reports them, and counted per source
    assert "annotation id 4 (image id 10) has unknown category_id 99; skipped" in caplog.text
    assert "image id 12: file" in caplog.text and "gone.png not found; skipped" in caplog.text
    assert "skipped: 1 missing_image_file, 1 unknown_category" in printed
    assert "a.json: 2 images, 3 annotations (Traffic_Light 2, cat 1); 0 duplicate image(s)" in printed
    assert "b.json: 2 images, 3 annotations (Traffic_Light 1, dog 2); 1 duplicate image(s)" in printed
    assert f"--train-images {tmp_path}" in printed
    duplicate = [str(w.message) for w in recwarn if "merged once" in str(w.message)]
    assert len(duplicate) == 1
    folded = [str(w.message) for w in recwarn if "joined with" in str(w.message)]
    assert len(folded) == 1 and "b.json: class 'traffic-light' joined with 'Traffic_Light'" in folded[0]
    assert "b.json: image id 3" in duplicate[0] and "a.json: image id 10" in duplicate[0]
    dataset = CocoDataset(json_path=out, image_dir=tmp_path)
    assert len(dataset) == 4 and dataset.skipped == {}
    assert dataset.class_names == ["__background__", "Traffic_Light", "cat", "dog"]
    image, target = dataset[2]  # b1.png: read from siteB/pics/sub
    assert tuple(image.shape) == (3, H, W) and target["labels"].tolist() == [1, 3]
    # an existing output is refused unless --force
    assert main(["merge-data", *sources, "--output", str(out)]) == 1
    assert "already there; give --force" in capsys.readouterr().err
    assert main(["merge-data", *sources, "--output", str(out), "--force"]) == 0


def test_classes_fix_the_order_and_leave_the_others_out(tmp_path, capsys, recwarn):
    sources = _two_sources(tmp_path)
    out = tmp_path / "all.json"
    root = tmp_path / "siteB"
    assert main(["merge-data", *sources, "--output", str(out), "--classes", "dog,traffic light,Zebra",
                 "--images-root", str(root)]) == 0
    printed = capsys.readouterr().out
    merged = json.loads(out.read_text())
    assert merged["categories"] == [{"id": 1, "name": "dog"},
                                    {"id": 2, "name": "traffic light", "supercategory": "street"},
                                    {"id": 3, "name": "Zebra"}]
    assert any("--classes: no source has a class 'Zebra'" in str(w.message) for w in recwarn)
    assert [a["category_id"] for a in merged["annotations"]] == [2, 2, 2, 1, 1]  # cat's one left out
    assert "a.json: class 'cat' is not in --classes: its 1 annotation(s) left out" in printed
    # an image outside --images-root is reached through '..'
    assert [i["file_name"] for i in merged["images"]][:2] == ["../siteA/imgs/a1.png", "../siteA/imgs/a2.png"]
    assert len(CocoDataset(json_path=out, image_dir=root)) == 4


def test_keypoint_sets_that_disagree_stop_the_merge_naming_both_files(tmp_path, capsys):
    _images(tmp_path, ["p.png"])
    for name, points in (("a", ["nose", "left_eye"]), ("b", ["left_eye", "nose"])):
        coco = {"images": [_img(1, "p.png")], "annotations": [_ann(1, 1, 1, keypoints=[3, 3, 2, 5, 5, 2])],
                "categories": [{"id": 1, "name": "person", "keypoints": points, "skeleton": [[1, 2]]}]}
        (tmp_path / f"{name}.json").write_text(json.dumps(coco))
    out = tmp_path / "all.json"
    assert main(["merge-data", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a.json: category 'person' has ['nose', 'left_eye']" in err
    assert "b.json: category 'person' has keypoints ['left_eye', 'nose']" in err and not out.exists()


def test_folded_names_and_keypoints_declared_by_one_source_only_are_said(tmp_path, capsys, recwarn):
    """Before: 'Circle' and 'circle ' were folded into 'circle' silently, within one file too, and a
    class given keypoints by one source took the other's annotations without any."""
    _images(tmp_path, ["p.png"])
    a = {"images": [_img(1, "p.png")], "annotations": [_ann(1, 1, 1), _ann(2, 1, 2), _ann(3, 1, 3)],
         "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "Circle"},
                        {"id": 3, "name": "person"}]}
    b = {"images": [_img(1, "p.png")], "annotations": [_ann(1, 1, 4, keypoints=[3, 3, 2])],
         "categories": [{"id": 4, "name": "person", "keypoints": ["nose"]}, {"id": 5, "name": "circle "}]}
    for name, coco in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(coco))
    out = tmp_path / "all.json"
    assert main(["merge-data", str(tmp_path / "a.json"), f"{tmp_path / 'b.json'}:{tmp_path}", "--output",
                 str(out)]) == 0
    notes = [str(w.message) for w in recwarn]
    assert f"{tmp_path / 'a.json'}: class 'Circle' joined with 'circle'" in notes[0]
    assert f"{tmp_path / 'b.json'}: class 'circle ' joined with 'circle'" in notes[1]
    kp = [n for n in notes if "keypoints" in n]
    assert len(kp) == 1
    assert kp[0] == (f"{tmp_path / 'a.json'}: class 'person' declares no keypoints but does in "
                     f"{tmp_path / 'b.json'}: its 1 annotation(s) of that class have none labelled")
    merged = json.loads(out.read_text())
    assert merged["categories"] == [{"id": 1, "name": "circle"},
                                    {"id": 2, "name": "person", "keypoints": ["nose"]}]


def test_each_class_without_the_keypoints_another_source_declares_is_counted_apart(tmp_path, recwarn):
    """Two such classes, counted in the one pass over the annotations: crowd regions and a later listing
    of an image already taken are not counted."""
    _images(tmp_path, ["p.png", "q.png"])
    a = {"images": [_img(1, "p.png"), _img(2, "p.png")],
         "annotations": [_ann(1, 1, 1), _ann(2, 1, 1), _ann(3, 1, 1, iscrowd=1), _ann(4, 1, 2),
                         _ann(5, 2, 1), _ann(6, 1, 3)],  # 5: on the second listing of p.png
         "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cat"}]}
    b = {"images": [_img(1, "q.png")], "annotations": [_ann(1, 1, 7, keypoints=[3, 3, 2])],
         "categories": [{"id": 7, "name": "person", "keypoints": ["nose"]},
                        {"id": 8, "name": "dog", "keypoints": ["nose"]}]}
    for name, coco in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(coco))
    out = tmp_path / "all.json"
    assert main(["merge-data", f"{tmp_path / 'a.json'}:{tmp_path}", f"{tmp_path / 'b.json'}:{tmp_path}",
                 "--output", str(out)]) == 0
    kp = [str(w.message) for w in recwarn if "keypoints" in str(w.message)]
    a_json, b_json = tmp_path / "a.json", tmp_path / "b.json"
    expected = (("person", 2), ("dog", 1))
    assert kp == [f"{a_json}: class '{name}' declares no keypoints but does in {b_json}: its {n} "
                  f"annotation(s) of that class have none labelled" for name, n in expected]


@pytest.mark.parametrize("source, message", [
    ("{tmp}/nope.json", "nope.json: no such annotation file"),
    ("{tmp}/bad.json", "bad.json: not valid JSON"),
    ("{tmp}/ok.json:{tmp}/no_folder", "no_folder: no such image folder (for"),
    ("{tmp}/ok.json:", "ok.json:': nothing after ':'; give A.json:IMAGES_FOLDER"),
    ("{tmp}", "is a folder; give a COCO JSON file"),
])
def test_bad_input_is_one_line(tmp_path, capsys, source, message):
    (tmp_path / "bad.json").write_text("{'images': []}")
    (tmp_path / "ok.json").write_text(json.dumps({"images": [], "categories": [{"id": 1, "name": "a"}]}))
    out = tmp_path / "all.json"
    assert main(["merge-data", source.format(tmp=tmp_path), "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maskrcnn merge-data: error: ") and message in err[0]
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:.*categories share the names")
def test_names_repeated_exactly_in_one_file_stay_two_classes_names_alike_but_for_case_become_one(tmp_path):
    _images(tmp_path / "img", ["a.png"])
    classes = {}  # file -> [(output class, annotations)]
    for name, names in {"dup.json": ["cat", "cat", "dog"], "case.json": ["cat", "Cat", "dog"]}.items():
        coco = {"images": [_img(1, "a.png")], "annotations": [_ann(k, 1, k) for k in (1, 2, 3)],
                "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
        (tmp_path / name).write_text(json.dumps(coco))
        out = tmp_path / f"out_{name}"
        assert main(["merge-data", f"{tmp_path / name}:{tmp_path / 'img'}", "--output", str(out)]) == 0
        merged = json.loads(out.read_text())
        classes[name] = [(c["name"], sum(a["category_id"] == c["id"] for a in merged["annotations"]))
                      for c in merged["categories"]]
    assert classes == {"dup.json": [("cat (id 1)", 1), ("cat (id 2)", 1), ("dog", 1)],
                       "case.json": [("cat", 2), ("dog", 1)]}


def test_the_merged_dataset_is_ascii_for_other_tools(tmp_path):
    """A COCO file is read by pycocotools, detectron2, MMDetection with the locale's encoding (cp1252 on
    Windows garbles UTF-8): non-ASCII class names are written as \\u escapes, read back exactly."""
    _images(tmp_path / "imgs", ["a1.png"])
    src = {"images": [_img(1, "a1.png")], "annotations": [_ann(1, 1, 5)],
           "categories": [{"id": 5, "name": "Ölfleck"}]}
    (tmp_path / "a.json").write_text(json.dumps(src, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "all.json"
    assert main(["merge-data", f"{tmp_path / 'a.json'}:{tmp_path / 'imgs'}", "--output", str(out)]) == 0
    raw = out.read_bytes()
    assert raw.isascii() and b'"\\u00d6lfleck"' in raw
    assert json.loads(raw)["categories"] == [{"id": 1, "name": "Ölfleck"}]


def test_source_without_images_folder_finds_train_beside_train_json_as_train_does(tmp_path, capsys):
    """Before: the images of ds/train.json (the demo layout: in ds/train/) were looked for in ds/ only,
    one 'not found' line each, then 'no usable image'. Now the folder train chooses, said in a line."""
    _images(tmp_path / "ds" / "train", ["t0.png", "t1.png"])
    coco = {"images": [_img(1, "t0.png"), _img(2, "t1.png")], "annotations": [_ann(1, 1, 1)],
            "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "ds" / "train.json").write_text(json.dumps(coco))
    out = tmp_path / "m.json"
    assert main(["merge-data", str(tmp_path / "ds" / "train.json"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"train.json:IMAGES not given: images of {tmp_path / 'ds' / 'train.json'} read from " \
           f"{tmp_path / 'ds' / 'train'}" in printed
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["t0.png", "t1.png"]


def test_images_not_found_are_one_line_per_source_and_the_failure_hints_a_folder(tmp_path, capsys, caplog):
    """Before: one line per image not found and one per annotation of it; the failure did not say how to
    give the folder."""
    (tmp_path / "ann").mkdir()
    coco = {"images": [_img(i, f"x{i}.png") for i in range(1, 8)],
            "annotations": [_ann(i, i, 1) for i in range(1, 8)], "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "ann" / "a.json").write_text(json.dumps(coco))
    out = tmp_path / "m.json"
    assert main(["merge-data", str(tmp_path / "ann" / "a.json"), "--output", str(out)]) == 1
    out_text, err = capsys.readouterr()
    assert "no usable image in any source" in err and "a.json:IMAGES" in err
    assert "a.json: 7 of 7 image files not found in the folder looked in; give " in out_text
    lines = [r.getMessage() for r in caplog.records if "not found" in r.getMessage()]
    assert len(lines) == 1 and "a.json: 7 image files not found (" in lines[0]
    assert "x1.png" in lines[0] and "x4.png" not in lines[0] and lines[0].endswith(", ...); skipped")
    assert sum("annotation id" in r.getMessage() for r in caplog.records) == 0
    assert "7 annotation(s) of the images skipped above left out" in caplog.text
    assert not out.exists()


@pytest.mark.parametrize("present, hinted", [(2, False), (1, True)])
def test_the_wrong_folder_hint_only_when_most_images_of_a_source_are_not_found(tmp_path, capsys, present,
                                                                               hinted):
    """Before: one image not found among many was told its folder was likely the wrong one."""
    names = [f"x{i}.png" for i in range(1, 4)]
    _images(tmp_path / "ann", names[:present])
    coco = {"images": [_img(i, n) for i, n in enumerate(names, 1)],
            "annotations": [_ann(i, i, 1) for i in range(1, 4)], "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "ann" / "a.json").write_text(json.dumps(coco))
    assert main(["merge-data", str(tmp_path / "ann" / "a.json"), "--output", str(tmp_path / "m.json")]) == 0
    out_text = capsys.readouterr().out
    assert ("not found in the folder looked in" in out_text) is hinted
    if hinted:
        assert "a.json: 2 of 3 image files not found in the folder looked in; give " in out_text


def _count_json_reads(monkeypatch) -> list:
    """The names of the files json.load reads from now on (every JSON reader of the package uses it)."""
    import json as json_module

    read, load = [], json_module.load

    def counting(f, *args, **kwargs):
        read.append(getattr(f, "name", None))
        return load(f, *args, **kwargs)

    monkeypatch.setattr(json_module, "load", counting)
    return read


def _two_candidate_folders(tmp_path):
    """train.json beside a stray logo.png and train/ holding its images: two candidate folders, so the
    JSON is read to choose one (the one holding its file_names: train/)."""
    _images(tmp_path / "train", ["a.png", "b.png"])
    _images(tmp_path, ["logo.png"])
    coco = {"images": [_img(1, "a.png"), _img(2, "b.png")], "annotations": [_ann(1, 1, 1), _ann(2, 2, 1)],
            "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    return tmp_path / "train.json"


def test_merge_keeps_no_source_parsed_while_choosing_the_folders(tmp_path, monkeypatch, capsys):
    """Every source's folder is chosen before any is merged: a parsed file kept from choosing until
    merging would hold N (LVIS-sized) files at once, so merge-data reads a JSON again to merge it."""
    path = _two_candidate_folders(tmp_path)
    read = _count_json_reads(monkeypatch)
    assert main(["merge-data", str(path), "--output", str(tmp_path / "all.json")]) == 0
    assert f"images of {path} read from {tmp_path / 'train'}" in capsys.readouterr().out
    assert read.count(str(path)) == 2
    assert len(json.loads((tmp_path / "all.json").read_text())["images"]) == 2


def test_show_data_reads_a_json_once_when_its_folder_is_chosen(tmp_path, monkeypatch, capsys):
    """show-data parsed the JSON to choose its image folder and again for the dataset."""
    path = _two_candidate_folders(tmp_path)
    read = _count_json_reads(monkeypatch)
    assert main(["show-data", "--json", str(path), "--output", str(tmp_path / "look"), "--max", "1"]) == 0
    assert f"images of {path} read from {tmp_path / 'train'}" in capsys.readouterr().out
    assert read.count(str(path)) == 1


def test_choose_image_dir_takes_the_file_already_parsed(tmp_path, monkeypatch):
    """A JSON the caller already parsed (eval reads it first) is not read to choose its folder; one read
    there is handed back in ``parsed``, for the dataset."""
    from maskrcnn.data.coco import choose_image_dir, load_coco_json

    path = _two_candidate_folders(tmp_path)
    raw = load_coco_json(path)
    read = _count_json_reads(monkeypatch)
    assert choose_image_dir(path, parsed={path: raw})[0] == tmp_path / "train"
    assert read == []
    parsed: dict = {}
    assert choose_image_dir(path, parsed=parsed)[0] == tmp_path / "train"
    assert read == [str(path)] and parsed[path] == raw


def test_train_reads_its_train_json_once_and_keeps_no_validation_json(tmp_path, monkeypatch):
    """train parsed train.json to choose its folder and again for the training set; the validation JSON
    read to choose its folder is not held while the training set is built (read again for its set)."""
    import maskrcnn.data.coco as coco_module

    path = _two_candidate_folders(tmp_path)
    _images(tmp_path / "val", ["a.png"])
    val = {"images": [_img(1, "a.png")], "annotations": [_ann(1, 1, 1)],
           "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "val.json").write_text(json.dumps(val))
    read = _count_json_reads(monkeypatch)
    seen, real = [], coco_module.CocoDataset

    class Stop(Exception):
        pass

    def training_set(*args, **kwargs):  # the training set built: stop there, before any model
        seen.append((kwargs.get("coco") is not None, list(read)))
        real(*args, **kwargs)
        raise Stop

    import maskrcnn.engine.training as training_module

    handed, build = [], training_module.build_training

    def building(*args, **kwargs):
        handed.append(sorted(str(p) for p in kwargs.get("parsed") or {}))
        return build(*args, **kwargs)

    monkeypatch.setattr(training_module, "build_training", building)
    monkeypatch.setattr(coco_module, "CocoDataset", training_set)
    with pytest.raises(Stop):
        main(["train", "--train-json", str(path), "--val-json", str(tmp_path / "val.json"), "--config",
              "demo", "--output", str(tmp_path / "run"), "--debug"])
    assert seen[0][0]  # handed the file read to choose its folder
    assert read.count(str(path)) == 1
    assert seen[0][1].count(str(tmp_path / "val.json")) == 1  # read to choose its folder
    assert handed == [[str(path)]]  # ... and not kept for the run


def test_annotations_of_a_later_listing_of_a_file_are_counted_by_class(tmp_path, capsys, recwarn):
    """p_datatools F6: cats.json and dogs.json over the same pictures: every dog was left out, and the
    line for dogs.json said '0 annotations' and nothing of the 3 lost."""
    _images(tmp_path / "imgs", ["x.png", "y.png", "z.png"])
    images = [_img(i + 1, name) for i, name in enumerate(["x.png", "y.png", "z.png"])]
    cats = {"images": images, "annotations": [_ann(1, 1, 1), _ann(2, 2, 1)],
            "categories": [{"id": 1, "name": "cat"}]}
    dogs = {"images": images, "annotations": [_ann(1, 1, 1), _ann(2, 2, 1), _ann(3, 3, 1)],
            "categories": [{"id": 1, "name": "dog"}]}
    (tmp_path / "cats.json").write_text(json.dumps(cats))
    (tmp_path / "dogs.json").write_text(json.dumps(dogs))
    out = tmp_path / "m.json"
    assert main(["merge-data", f"{tmp_path / 'cats.json'}:{tmp_path / 'imgs'}",
                 f"{tmp_path / 'dogs.json'}:{tmp_path / 'imgs'}", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("dogs.json: 0 images, 0 annotations (none); 3 duplicate image(s) (their 3 annotation(s) left "
            "out: dog 3), 0 annotation(s) of other classes left out") in printed
    said = [str(w.message) for w in recwarn if "merged once" in str(w.message)]
    assert len(said) == 3 and "its 1 annotation(s) left out (dog 1)" in said[0]
    assert len(json.loads(out.read_text())["annotations"]) == 2


def test_one_source_listing_a_file_twice_says_which_file_and_how_many_annotations_it_left_out(
        tmp_path, capsys, recwarn):
    """Within one file too (an export listing a picture once per task): the later record's annotations
    are left out, said with the file, the count by class and in the source's line; the totals add up."""
    _images(tmp_path / "imgs", ["x.png", "y.png"])
    coco = {"images": [_img(1, "x.png"), _img(2, "./x.png"), _img(3, "y.png")],
            "annotations": [_ann(1, 1, 1), _ann(2, 2, 2), _ann(3, 2, 2), _ann(4, 3, 1)],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    out = tmp_path / "m.json"
    assert main(["merge-data", f"{tmp_path / 'a.json'}:{tmp_path / 'imgs'}", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("a.json: 2 images, 2 annotations (cat 2); 1 duplicate image(s) (their 2 annotation(s) left out: "
            "dog 2)") in printed
    said = [str(w.message) for w in recwarn if "merged once" in str(w.message)]
    assert len(said) == 1 and f"image id 2 ({tmp_path / 'imgs' / 'x.png'}) is the file of " in said[0]
    assert said[0].endswith("a.json: image id 1; merged once with the first's annotations, its 2 "
                            "annotation(s) left out (dog 2)")
    merged = json.loads(out.read_text())
    assert len(merged["images"]) + 1 == 3 and len(merged["annotations"]) + 2 == 4


def test_licenses_are_carried_renumbered_and_image_license_ids_follow(tmp_path, recwarn):
    """p_datatools F3: the licenses were dropped while each image kept its 'license' id: two sites'
    license 1 (different licenses) became one dangling id."""
    _images(tmp_path / "a", ["x.png", "y.png"])
    _images(tmp_path / "b", ["x.png", "w.png"])
    cc = {"name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}
    a = {"images": [_img(1, "x.png", license=1), _img(2, "y.png", license=7)], "annotations": [],
         "categories": [{"id": 1, "name": "cat"}], "licenses": [{"id": 1, "name": "L-A"}, {"id": 2, **cc}]}
    b = {"images": [_img(1, "x.png", license=1), _img(2, "w.png", license=5)], "annotations": [],
         "categories": [{"id": 1, "name": "cat"}], "licenses": [{"id": 1, "name": "L-B"}, {"id": 5, **cc}]}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    out = tmp_path / "m.json"
    assert main(["merge-data", f"{tmp_path / 'a.json'}:{tmp_path / 'a'}",
                 f"{tmp_path / 'b.json'}:{tmp_path / 'b'}", "--output", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["licenses"] == [{"id": 1, "name": "L-A"}, {"id": 2, **cc}, {"id": 3, "name": "L-B"}]
    assert [img.get("license") for img in merged["images"]] == [1, None, 3, 2]
    dropped = [str(w.message) for w in recwarn if "license" in str(w.message)]
    assert len(dropped) == 1 and "a.json: 1 image(s) name a license its 'licenses' does not list (id 7: 1)" \
        in dropped[0]


def test_a_license_listed_twice_is_said_so_and_string_ids_match(tmp_path, recwarn):
    """rev_d1 8: an image naming a license whose id its source lists twice was reported as naming one
    the source "does not list"; "license": "1" (a string) was dropped rather than matched to id 1."""
    _images(tmp_path / "a", ["x.png", "y.png", "z.png"])
    a = {"images": [_img(1, "x.png", license=2), _img(2, "y.png", license="1"), _img(3, "z.png", license=9)],
         "annotations": [], "categories": [{"id": 1, "name": "cat"}],
         "licenses": [{"id": 1, "name": "L1"}, {"id": 2, "name": "L2a"}, {"id": 2, "name": "L2b"}]}
    (tmp_path / "a.json").write_text(json.dumps(a))
    out = tmp_path / "m.json"
    assert main(["merge-data", f"{tmp_path / 'a.json'}:{tmp_path / 'a'}", "--output", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["licenses"] == [{"id": 1, "name": "L1"}]
    assert [img.get("license") for img in merged["images"]] == [None, 1, None]
    said = [str(w.message) for w in recwarn if "license" in str(w.message)]
    assert any("a.json: 1 image(s) name a license id its 'licenses' lists twice or more (id 2: 1)" in m
               for m in said), said
    assert any("a.json: 1 image(s) name a license its 'licenses' does not list (id 9: 1)" in m
               for m in said), said


def test_merge_records_share_no_mutable_default():
    """rev_d1 8: ``licenses: list = []`` and ``Counter()`` defaults were one object shared by every
    record: a caller appending to one record's changed all."""
    from maskrcnn.data.merge import MergeSource, SourceCounts

    src = MergeSource(name="a", images=[], annotations=[], categories=[], image_paths={}, image_keys={})
    counts = SourceCounts(images=0, instances=None, duplicates=0, left_out=None)
    assert src.licenses is None and counts.duplicate_annotations is None


def test_merge_coco_itself_refuses_classes_no_source_has():
    """The refusal was the command's alone: a caller of ``merge_coco`` got a file of classes without any
    annotation."""
    from maskrcnn.data.merge import MergeSource, merge_coco

    src = MergeSource(name="a", images=[], annotations=[], categories=[{"id": 1, "name": "cat"}],
                      image_paths={}, image_keys={})
    refused = r"--classes dgo: no source has any of these classes \(theirs: cat\)"
    with pytest.raises(ValueError, match=refused):
        merge_coco([src], images_root="/", classes=["dgo"])
    assert merge_coco([src], images_root="/", classes=["Cat"])[0]["categories"] == [{"id": 1, "name": "Cat"}]
