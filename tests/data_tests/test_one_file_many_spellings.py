"""split-data and show-data take the records that name one file in other ways ('a.png', '../img/a.png'
from the folder img/, '/abs/img/a.png') as one picture, by the rule merge-data uses (the file's real
path, ``data/file_keys.py``): before, split-data put such a file in train and in val, and show-data
counted and drew it once per record."""

import json
import os

from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.file_keys import file_key
from maskrcnn.data.split import written_file_keys

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def _ann(aid, iid, cid):
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0,
            "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]]}


def _dataset(tmp_path):
    """img/p0..p7.png listed plainly (ids 1..8), then p0 as '../img/p0.png' (id 50) and p1 by its
    absolute path (id 51), each of those two with a dog the plain record lacks."""
    folder = tmp_path / "img"
    folder.mkdir()
    images, anns = [], []
    for i in range(8):
        Image.new("RGB", (16, 16), (40 * i % 255, 90, 30)).save(folder / f"p{i}.png")
        images.append({"id": i + 1, "file_name": f"p{i}.png", "height": 16, "width": 16})
        anns.append(_ann(i + 1, i + 1, 1))
    images.append({"id": 50, "file_name": "../img/p0.png", "height": 16, "width": 16})
    images.append({"id": 51, "file_name": str(folder / "p1.png"), "height": 16, "width": 16})
    anns += [_ann(50, 50, 2), _ann(51, 51, 2)]
    src = tmp_path / "all.json"
    src.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return src, folder


def test_file_key_with_a_folder_is_the_real_path(tmp_path):
    (tmp_path / "img").mkdir()
    plain = file_key("a.png", tmp_path / "img")
    assert file_key("../img/a.png", tmp_path / "img") == plain
    assert file_key(str(tmp_path / "img" / "a.png"), tmp_path / "img") == plain
    assert file_key("b.png", tmp_path / "img") != plain
    # without a folder, names only: '..' kept, but an absolute or '..' path goes with its longest end
    assert written_file_keys(["a.png", "../img/a.png", "C:\\data\\img\\a.png", "x/b.png", "/d/x/b.png",
                              "/d/c.png"]) == ["a.png", "a.png", "a.png", "x/b.png", "x/b.png", "/d/c.png"]


def test_split_data_keeps_every_spelling_of_a_file_in_one_part(tmp_path, capsys):
    src, folder = _dataset(tmp_path)
    for images in ([], ["--images", str(folder)]):
        for seed in range(6):
            out = tmp_path / f"s{seed}{len(images)}"
            assert main(["split-data", "--json", str(src), "--output-dir", str(out), "--seed", str(seed),
                         "--fractions", "0.5,0.5", *images]) == 0
            parts = {p: json.loads((out / f"{p}.json").read_text()) for p in ("train", "val")}
            where = {}
            for p, part in parts.items():
                for img in part["images"]:
                    where.setdefault(os.path.realpath(folder / img["file_name"]), set()).add(p)
            assert all(len(ps) == 1 for ps in where.values()), (images, seed, where)
        said = capsys.readouterr().out
        if images:  # the real paths: one file each
            assert "2 image file(s) named by more than one image record" in said
            assert "the records of each file are kept in one part" in said
        else:  # names only: said as the guess it is
            assert ("2 absolute or '..' file_name(s) kept in one part with the record whose name is their "
                    "end, taken for one file as the image folder is not known (e.g. ../img/p0.png with "
                    "p0.png)") in said


def test_show_data_draws_one_picture_with_the_union_of_its_objects(tmp_path, capsys, recwarn):
    src, folder = _dataset(tmp_path)
    out = tmp_path / "look"
    assert main(["show-data", "--json", str(src), "--images", str(folder), "--output", str(out),
                 "--overlay-min-size", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 8 and len(summary["overlays"]) == 8
    assert summary["per_class"]["dog"] == {"instances": 2, "crowd": 0, "images": 2}
    said = [str(w.message) for w in recwarn if "named by more than one image record" in str(w.message)]
    assert len(said) == 1 and said[0].count("image file(s)") == 1 and "2 image file(s)" in said[0]


def test_part_names_alike_but_for_case_or_json_and_fractions_near_one(tmp_path, capsys):
    src, _ = _dataset(tmp_path)
    args = ["split-data", "--json", str(src), "--output-dir", str(tmp_path / "a"), "--names", "a,A"]
    assert main(args) == 1
    assert "ignoring case" in capsys.readouterr().err
    out = tmp_path / "b"
    assert main(["split-data", "--json", str(src), "--output-dir", str(out), "--names", "x.json,y,z",
                 "--fractions", "0.333,0.333,0.333"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.json", "y.json", "z.json"]
    assert "scaled to sum to 1" in capsys.readouterr().out


def test_names_that_end_alike_are_kept_together_without_images_and_the_line_says_why(tmp_path, capsys):
    """Two different absolute (or '..') names ending in one plain name ('/d/a/x.png', '/e/b/x.png' and
    'x.png') were left apart from 'x.png' without --images: where '/d/a/x.png' IS x.png, one picture went
    to train and val. They are one unit again (files kept together only shift the fractions), and the
    line says at most one of them is x.png and that --images tells them apart."""
    from maskrcnn.data.split import written_file_matches

    names = ["x.png", "/d/a/x.png", "/e/b/x.png", "a/y.png", "b/y.png", "../img/a/y.png", "z.png", "z.png"]
    keys, joined, crowded = written_file_matches(names)
    assert keys == ["x.png", "x.png", "x.png", "a/y.png", "b/y.png", "a/y.png", "z.png", "z.png"]
    assert joined == [("../img/a/y.png", "a/y.png")] and crowded == {"x.png": ["/d/a/x.png", "/e/b/x.png"]}
    # two '..' names that differ: kept with it too; one '..' and one absolute name may be one file, and a
    # drive path in another case is the same path
    assert written_file_matches(["x.png", "../a/x.png", "../b/x.png"])[0] == ["x.png"] * 3
    assert written_file_matches(["x.png", "../i/x.png", "/d/i/x.png", "C:\\i\\x.png", "c:/I/x.png"])[0] == \
        ["x.png"] * 5
    images = [{"id": i + 1, "file_name": n, "height": 8, "width": 8} for i, n in enumerate(names)]
    src = tmp_path / "all.json"
    src.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "c"}]}))
    assert main(["split-data", "--json", str(src), "--output-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "1 image file(s) named by more than one image record (e.g. z.png: image ids 7, 8)" in out
    assert ("1 absolute or '..' file_name(s) kept in one part with the record whose name is their end, "
            "taken for one file as the image folder is not known (e.g. ../img/a/y.png with a/y.png)") in out
    assert ("3 names kept together in one part: at most one of /d/a/x.png, /e/b/x.png is x.png; "
            "--images FOLDER tells them apart") in out
    parts = {p: json.loads((tmp_path / "s" / f"{p}.json").read_text()) for p in ("train", "val")}
    x_names = {"x.png", "/d/a/x.png", "/e/b/x.png"}
    held = {p: x_names & {i["file_name"] for i in d["images"]} for p, d in parts.items()}
    assert sorted(map(len, held.values())) == [0, 3], held  # all three in one part, whichever
