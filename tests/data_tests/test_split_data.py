"""split-data: fractions and per-class stratification on a multi-label set (exact counts), groups kept
whole, determinism, and the command (outputs, table, warnings, validation, refusals, bad input)."""

import json
import random
import re

import pytest

from maskrcnn.cli import main
from maskrcnn.data.split import compile_group_by, split_coco, split_table

CATEGORIES = [{"id": 1, "name": "common"}, {"id": 2, "name": "other"}, {"id": 3, "name": "rare"},
              {"id": 4, "name": "never", "supercategory": "thing"}]
NAMES = {c["id"]: c["name"] for c in CATEGORIES}


def _ann(aid, iid, cid, crowd=0):
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [1, 1, 5, 5],
            "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]], "area": 25, "iscrowd": crowd}


def _dataset(rows):
    """rows: (file_name, [category ids]) -> a COCO dict (ids from 100 and 500: kept as they are)."""
    images, anns = [], []
    for i, (name, cats) in enumerate(rows):
        images.append({"id": 100 + i, "file_name": name, "height": 20, "width": 20, "license": 1})
        anns += [_ann(500 + len(anns) + k, 100 + i, c) for k, c in enumerate(cats)]
    return {"info": {"description": "synthetic"}, "images": images, "annotations": anns,
            "categories": CATEGORIES, "licenses": [{"id": 1, "name": "CC-BY"}]}


# 5 images of the rare class (each with two of the common class too), 15 of the common class alone,
# 5 of 'other', 10 without annotations, 1 with only a crowd region: 36 images
MULTI_LABEL = ([(f"r{i}.jpg", [3, 1, 1]) for i in range(5)] + [(f"c{i}.jpg", [1]) for i in range(15)]
               + [(f"o{i}.jpg", [2]) for i in range(5)] + [(f"e{i}.jpg", []) for i in range(10)])


def _multi_label():
    coco = _dataset(MULTI_LABEL + [("crowd.jpg", [])])
    coco["annotations"].append(_ann(999, coco["images"][-1]["id"], 1, crowd=1))
    return coco


def _images_of(table, part):
    return {name: row[part][0] for name, row in table.items()}


def test_fractions_and_stratification_give_exact_counts_per_class():
    parts, _ = split_coco(_multi_label(), fractions=[0.8, 0.2], names=["train", "val"], seed=0)
    table = split_table(parts, NAMES)
    # every class spread 4:1, and the 11 images without instances (the crowd-only one among them) too
    assert _images_of(table, "train") == {"common": 16, "other": 4, "rare": 4, "never": 0, None: 29}
    assert _images_of(table, "val") == {"common": 4, "other": 1, "rare": 1, "never": 0, None: 7}
    assert table["common"]["train"][1] + table["common"]["val"][1] == 25  # instances follow their images
    parts3, _ = split_coco(_multi_label(), fractions=[0.6, 0.2, 0.2], names=["a", "b", "c"], seed=3)
    table3 = split_table(parts3, NAMES)
    assert [table3["common"][p][0] for p in "abc"] == [12, 4, 4]
    assert [table3["rare"][p][0] for p in "abc"] == [3, 1, 1]
    assert [table3["other"][p][0] for p in "abc"] == [3, 1, 1]
    empty = [sum(1 for img in parts3[p]["images"] if img["file_name"].startswith(("e", "crowd")))
             for p in "abc"]
    assert empty == [7, 2, 2]  # 11 images without instances: 6.6 / 2.2 / 2.2 still wanted


def test_every_part_keeps_categories_info_licenses_and_ids():
    coco = _multi_label()
    parts, _ = split_coco(coco, fractions=[0.8, 0.2], names=["train", "val"], seed=0)
    for part in parts.values():
        assert part["categories"] == CATEGORIES and part["info"] == coco["info"]
        assert part["licenses"] == coco["licenses"]
        ids = {img["id"] for img in part["images"]}
        assert all(a["image_id"] in ids for a in part["annotations"])
    assert sorted(i["id"] for p in parts.values() for i in p["images"]) == [i["id"] for i in coco["images"]]
    assert sorted(a["id"] for p in parts.values() for a in p["annotations"]) == sorted(
        a["id"] for a in coco["annotations"])


def test_same_seed_same_split_whatever_the_order_of_the_file():
    coco = _multi_label()
    parts, _ = split_coco(coco, fractions=[0.8, 0.2], names=["t", "v"], seed=0)
    val = [i["file_name"] for i in parts["v"]["images"]]
    # pinned: the draw is a BLAKE2b hash of the seed and the file names, the same on every machine
    assert val == ["r0.jpg", "c5.jpg", "c6.jpg", "c8.jpg", "o1.jpg", "e5.jpg", "e7.jpg"]
    shuffled = dict(coco, images=random.Random(1).sample(coco["images"], len(coco["images"])))
    again = split_coco(shuffled, fractions=[0.8, 0.2], names=["t", "v"], seed=0)[0]["v"]["images"]
    assert sorted(i["file_name"] for i in again) == sorted(val)
    other = split_coco(coco, fractions=[0.8, 0.2], names=["t", "v"], seed=1)[0]["v"]["images"]
    assert sorted(i["file_name"] for i in other) != sorted(val)


def test_group_by_keeps_the_frames_of_one_video_in_one_part():
    # 20 videos of 4 frames; video k shows class 1 + k % 2: 40 images of each class, 8 wanted in val
    rows = [(f"video{k:02d}/frame{f}.jpg", [1 + k % 2]) for k in range(20) for f in range(4)]
    rows += [("loose.jpg", [])]  # matches no group: a unit of its own
    coco = _dataset(rows)
    for pattern in (r"^(video\d+)/", r"^video\d+"):  # the first group, or the whole match
        parts, unmatched = split_coco(coco, fractions=[0.8, 0.2], names=["train", "val"], seed=0,
                                      group_by=compile_group_by(pattern))
        assert unmatched == 1
        videos = {p: {i["file_name"].split("/")[0] for i in parts[p]["images"] if "/" in i["file_name"]}
                  for p in parts}
        assert not videos["train"] & videos["val"] and len(videos["train"] | videos["val"]) == 20
        for p in parts:  # whole videos only
            assert sum(1 for i in parts[p]["images"] if "/" in i["file_name"]) == 4 * len(videos[p])
        assert sorted(int(v[-2:]) % 2 for v in videos["val"]) == [0, 0, 1, 1]  # two videos of each class
    # without grouping the frames of a video are spread over both parts
    parts, _ = split_coco(coco, fractions=[0.8, 0.2], names=["train", "val"], seed=0)
    split_videos = {i["file_name"].split("/")[0] for i in parts["val"]["images"]} & {
        i["file_name"].split("/")[0] for i in parts["train"]["images"]}
    assert split_videos


def _write(path, coco):
    path.write_text(json.dumps(coco))
    return str(path)


def test_command_writes_the_parts_prints_the_table_and_warns_by_class(tmp_path, capsys, caplog, recwarn):
    coco = _dataset(MULTI_LABEL[:20] + [("one.jpg", [2])])  # 'other' in one image: one part lacks it
    coco["annotations"].append(_ann(990, 100, 42))  # unknown category: reported, left out, counted
    src = _write(tmp_path / "all.json", coco)
    out = tmp_path / "splits"
    assert main(["split-data", "--json", src, "--output-dir", str(out), "--seed", "0"]) == 0
    captured = capsys.readouterr()
    train, val = (json.loads((out / f"{n}.json").read_text()) for n in ("train", "val"))
    assert train["categories"] == val["categories"] == CATEGORIES and val["licenses"] == coco["licenses"]
    assert len(train["images"]) + len(val["images"]) == 21
    assert 990 not in {a["id"] for a in train["annotations"] + val["annotations"]}
    # reported as training reports it (the dataset's validation), and counted
    assert "annotation id 990 (image id 100) has unknown category_id 42; skipped" in caplog.text
    assert "skipped: 1 unknown_category" in captured.out
    lines = captured.out.splitlines()
    assert lines[1].split() == ["class", "train", "images", "train", "instances", "val", "images", "val",
                                "instances"]
    rows = {" ".join(line.split()[:-4]): line.split()[-4:] for line in lines[2:7]}
    assert rows["rare"] == ["4", "4", "1", "1"] and rows["(all images)"][0::2] == ["17", "4"]
    assert list(rows) == ["common", "other", "rare", "never", "(all images)"]
    warned = [re.match(r"class '(\w+)' has no instance in ([\w, ]+) \(", str(w.message)) for w in recwarn]
    warned = [m.groups() for m in warned if m]
    assert sorted(warned) == [("never", "train, val"), ("other", "val")]
    # an existing output is refused (nothing rewritten), unless --force
    before = (out / "val.json").read_text()
    assert main(["split-data", "--json", src, "--output-dir", str(out), "--seed", "5"]) == 1
    assert "already there; give --force to overwrite" in capsys.readouterr().err
    assert (out / "val.json").read_text() == before
    assert main(["split-data", "--json", src, "--output-dir", str(out), "--seed", "5", "--force"]) == 0


def test_images_option_leaves_out_images_without_their_file(tmp_path, caplog):
    coco = _dataset([("here.jpg", [1]), ("gone.jpg", [1]), ("too.jpg", [2])])
    (tmp_path / "img").mkdir()
    for name in ("here.jpg", "too.jpg"):
        (tmp_path / "img" / name).write_bytes(b"not read")
    src = _write(tmp_path / "all.json", coco)
    assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "o"), "--images",
                 str(tmp_path / "img"), "--fractions", "0.5,0.5"]) == 0
    assert "image id 101: file" in caplog.text and "gone.jpg not found; skipped" in caplog.text
    names = [i["file_name"] for n in ("train", "val")
             for i in json.loads((tmp_path / "o" / f"{n}.json").read_text())["images"]]
    assert sorted(names) == ["here.jpg", "too.jpg"]


def test_a_part_left_without_images_is_warned_about(tmp_path, recwarn):
    src = _write(tmp_path / "all.json", _dataset([("only.jpg", [1])]))
    assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "o")]) == 0
    assert (f"part 'val' ({tmp_path / 'o' / 'val.json'}, fraction 0.2) is empty: none of the 1 image(s) fell "
            f"in it") in [str(w.message) for w in recwarn]
    assert json.loads((tmp_path / "o" / "val.json").read_text())["images"] == []


@pytest.mark.parametrize("regex, words", [
    ("^", "--group-by '^' put all 4 images in 1 group: every part but one is empty"),
    ("(x)?val", "--group-by '(x)?val' put all 4 images in 1 group: every part but one is empty"),
    ("(v[12])_", "--group-by '(v[12])_' made 2 groups of the 4 images for 3 parts: at least 1 part(s) are "
                 "empty"),
])
def test_group_by_making_fewer_groups_than_parts_is_warned_about(tmp_path, recwarn, regex, words):
    """Before: a --group-by matching the same text in every file_name made one group, silently."""
    src = _write(tmp_path / "all.json", _dataset([(f"val/v{i % 2 + 1}_{i}.jpg", [1]) for i in range(4)]))
    assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "o"), "--group-by", regex,
                 "--fractions", "0.4,0.3,0.3"]) == 0
    assert words in [str(w.message) for w in recwarn]


@pytest.mark.parametrize("args, message", [
    (["--json", "{tmp}/nope.json"], "nope.json: no such annotation file"),
    (["--json", "{tmp}/bad.json"], "bad.json: not valid JSON"),
    (["--json", "{tmp}/ok.json", "--fractions", "0.7,0.2"], "--fractions 0.7,0.2: they sum to 0.9, not 1"),
    (["--json", "{tmp}/ok.json", "--group-by", "(frame"],
     "--group-by '(frame': not a valid regular expression"),
    (["--json", "{tmp}/ok.json", "--fractions", "0.5,0.5", "--names", "train,train"],
     "the names must differ"),
    (["--json", "{tmp}/ok.json", "--fractions", "1"], "--fractions 1: give at least two fractions"),
    (["--json", "{tmp}/ok.json", "--fractions", "nan"], "--fractions nan: give at least two fractions"),
    (["--json", "{tmp}"], "is a folder; give the COCO JSON file to split"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    (tmp_path / "bad.json").write_text('{"images": [')
    _write(tmp_path / "ok.json", _dataset([("a.jpg", [1])]))
    argv = ["split-data", "--output-dir", str(tmp_path / "o")] + [a.format(tmp=tmp_path) for a in args]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maskrcnn split-data: error: ") and message in err[0]
    assert not (tmp_path / "o").exists()


def test_read_validated_parses_the_file_once_and_leaves_the_parsed_dict_as_written(tmp_path, monkeypatch):
    import copy

    import maskrcnn.data.coco as coco_module
    from maskrcnn.data.validated import read_validated

    coco = _dataset([("a\\x.jpg", [1, 3]), ("b.jpg", [2])])
    coco["categories"] = CATEGORIES + [{"id": 7, "name": "rare"}, {"id": 8, "name": 9}]  # renamed, digit
    coco["annotations"].append(_ann(990, 100, 42))  # unknown category: left out
    src = _write(tmp_path / "all.json", coco)
    loads = []
    real_load = json.load  # the one parser every reader calls (data/json_values.read_json_file)
    monkeypatch.setattr(json, "load", lambda f, **kw: loads.append(1) or real_load(f, **kw))
    data = read_validated(src)
    assert len(loads) == 1
    assert data.raw == json.loads(json.dumps(coco))  # nothing the validation did shows in the parsed dict
    assert [c["name"] for c in data.categories] == ["common", "other", "rare (id 3)", "never", "rare (id 7)",
                                                    "9"]
    assert data.images[0]["file_name"] == "a\\x.jpg" and data.skipped == {"unknown_category": 1}
    assert [a["id"] for a in data.annotations] == [500, 501, 502] and "_box" not in data.annotations[0]
    before = copy.deepcopy(data.raw)
    coco_module.CocoDataset(json_path=src, image_dir=None, coco=data.raw)
    assert data.raw == before


def test_group_keys_are_drawn_once(tmp_path, monkeypatch):
    """The command looks at the groups (to warn of too few) and splits by the same keys: one pass."""
    import maskrcnn.data.split as split_module

    calls = []
    real = split_module.group_keys
    monkeypatch.setattr(split_module, "group_keys", lambda names, pat: calls.append(1) or real(names, pat))
    src = _write(tmp_path / "all.json", _multi_label())
    assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "o"), "--group-by", "^(.)"]) == 0
    assert len(calls) == 1


def test_a_failed_write_of_one_part_leaves_every_old_part_and_no_temp_file(tmp_path, capsys, monkeypatch):
    import maskrcnn.io_utils as io_utils

    src = _write(tmp_path / "all.json", _multi_label())
    out = tmp_path / "splits"
    out.mkdir()
    for name in ("train", "val"):
        (out / f"{name}.json").write_text(f"the old {name}")
    real, made = io_utils.create_temp_file, []

    def second_fails(folder, **kwargs):  # the disk fills up after the first part
        made.append(1)
        if len(made) == 2:
            raise OSError(28, "No space left on device")
        return real(folder, **kwargs)

    monkeypatch.setattr(io_utils, "create_temp_file", second_fails)
    assert main(["split-data", "--json", src, "--output-dir", str(out), "--force"]) == 1
    assert "no space left on device" in capsys.readouterr().err.lower()
    assert sorted(p.name for p in out.iterdir()) == ["train.json", "val.json"]
    assert [(out / f"{n}.json").read_text() for n in ("train", "val")] == ["the old train", "the old val"]


@pytest.mark.parametrize("seed", range(5))
def test_two_groups_give_val_the_small_one_instead_of_leaving_it_empty(seed):
    """Before: the rare class's group went to train (wanting most of it), then the other group too: val
    was empty for every seed. Now the group bringing the sizes closest to 80/20 fills val: 12/2."""
    rows = [(f"big/b{i}.jpg", [1]) for i in range(12)] + [(f"lm/l{i}.jpg", [3]) for i in range(2)]
    parts, _ = split_coco(_dataset(rows), fractions=[0.8, 0.2], names=["train", "val"], seed=seed,
                          group_by=compile_group_by("^([^/]+)/"))
    assert sorted(i["file_name"] for i in parts["val"]["images"]) == ["lm/l0.jpg", "lm/l1.jpg"]
    assert len(parts["train"]["images"]) == 12


@pytest.mark.parametrize("seed", range(8))
def test_filling_val_keeps_the_only_unit_of_a_class_in_train(seed):
    """Before: the move to fill an empty val looked at sizes only, and for seeds 0, 5, 6 took `rare` (the
    only unit of class 3) out of train. Now a unit whose class train also holds elsewhere goes instead."""
    rows = ([(f"big/b{i}.jpg", [1]) for i in range(12)] + [(f"rare/r{i}.jpg", [3]) for i in range(2)]
            + [(f"other/o{i}.jpg", [1]) for i in range(2)])
    parts, _ = split_coco(_dataset(rows), fractions=[0.8, 0.2], names=["train", "val"], seed=seed,
                          group_by=compile_group_by("^([^/]+)/"))
    train_ids = {i["id"] for i in parts["train"]["images"]}
    assert 3 in {a["category_id"] for a in parts["train"]["annotations"] if a["image_id"] in train_ids}
    assert parts["val"]["images"]


def test_records_of_one_file_always_stay_in_one_part(tmp_path, capsys):
    """p_datatools F10: the same file_name under two image ids (an export listing a picture once per
    task) went once to train and once to val, without --group-by nothing said: the picture leaked into
    val. Now the records of one file are one unit (separators alike), and the command says so."""
    rows = [(f"c{i}.jpg", [1]) for i in range(8)]
    for seed in range(6):
        coco = _dataset(rows + [("c0.jpg", [2]), ("c1.jpg", [3]), ("sub\\c7.jpg", [1]), ("sub/c7.jpg", [2])])
        parts, _ = split_coco(coco, fractions=[0.5, 0.5], names=["train", "val"], seed=seed)
        for name in ("c0.jpg", "c1.jpg", "sub/c7.jpg"):
            where = {p for p, part in parts.items() for img in part["images"]
                     if img["file_name"].replace("\\", "/") == name}
            assert len(where) == 1, (seed, name, where)
    src = _write(tmp_path / "all.json", _dataset(rows + [("c0.jpg", [2])]))
    assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "s")]) == 0
    assert ("1 image file(s) named by more than one image record (e.g. c0.jpg: image ids 100, 108); the "
            "records of each file are kept in one part") in capsys.readouterr().out



def test_one_files_records_stay_in_one_part_with_group_by():
    """rev_d1 4: with --group-by, 'cam1/x1.png' (key cam1) and 'cam1\\x1.png' (the pattern's '/' misses:
    no key) were two units: one picture in train and in val for 4 seeds of 6. The records of one file
    (separators alike) are now one unit whatever the keys."""
    images = [{"id": i, "file_name": f"cam{i}/x{i}.png"} for i in range(1, 9)]
    images.append({"id": 100, "file_name": "cam1\\x1.png"})
    coco = {"images": images, "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1} for i in [*range(1, 9), 100]]}
    for seed in range(6):
        parts, _ = split_coco(coco, fractions=[0.5, 0.5], names=["train", "val"], seed=seed,
                              group_by=re.compile(r"^(cam\d+)/"))
        where = {img["id"]: name for name, part in parts.items() for img in part["images"]}
        assert where[1] == where[100], seed


def test_command_says_crowd_regions_are_counted_apart(tmp_path, capsys):
    """The table's instances leave crowd regions out, with nothing saying so: its totals did not match the
    files. A line now counts them per part."""
    src = _write(tmp_path / "all.json", _multi_label())
    out = tmp_path / "splits"
    assert main(["split-data", "--json", src, "--output-dir", str(out), "--seed", "0"]) == 0
    printed = capsys.readouterr().out
    crowd = {n: sum(a["iscrowd"] for a in json.loads((out / f"{n}.json").read_text())["annotations"])
             for n in ("train", "val")}
    assert sum(crowd.values()) == 1
    assert (f"crowd regions (iscrowd 1), counted apart from the instances above: train {crowd['train']}, "
            f"val {crowd['val']}") in printed
