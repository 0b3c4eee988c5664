"""split-data, merge-data and show-data on records that name one file in two spellings, one id for two
files, string category ids, a folder in a part's place, Windows separators under --group-by, --classes
matching nothing, an --output ending in '/', box-only objects, a bbox of zeros beside a polygon and a
file of many classes."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.io_utils import atomic_write_all
from maskrcnn.visualize import draw_targets

SEG = [[2, 2, 10, 2, 10, 10, 2, 10]]


def _ann(aid, iid, cid, **extra):
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [2, 2, 8, 8], "segmentation": SEG,
            "area": 64, "iscrowd": 0, **extra}


def _img(iid, name):
    return {"id": iid, "file_name": name, "height": 16, "width": 16}


def _write(path, images, anns, categories=({"id": 1, "name": "p"}, {"id": 2, "name": "q"})):
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": list(categories)}))
    return str(path)


def _pictures(folder, names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (90, 90, 90)).save(folder / name)


def test_split_writes_category_ids_as_the_annotations_now_use_them(tmp_path, recwarn):
    """Ids written as strings of digits are read as integers and the annotations written so; the
    categories were copied as written ("3"), and pycocotools found no annotation of any category."""
    from pycocotools.coco import COCO

    images = [{**_img(str(i), f"{i}.jpg")} for i in range(1, 9)]
    anns = [_ann(str(i), str(i), str(3 + 4 * (i % 2))) for i in range(1, 9)]
    src = _write(tmp_path / "s.json", images, anns, [{"id": "3", "name": "a"}, {"id": "7", "name": "b"}])
    assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "sp")]) == 0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "sp" / "train.json"))
    written = json.loads((tmp_path / "sp" / "train.json").read_text())
    assert len(coco.getAnnIds(catIds=coco.getCatIds())) == len(written["annotations"]) > 0
    assert {a["category_id"] for a in written["annotations"]} <= set(coco.getCatIds())


def test_one_file_spelled_with_dot_or_double_slash_is_one_file(tmp_path, recwarn):
    """'./d0/x.png', 'd0//x.png' and 'd0/x.png' name one file: read once by show-data's loader (with both
    records' objects) and kept in one part by split-data, as 'd0\\x.png' already was."""
    names = [f"d{i}/x.png" for i in range(6)]
    _pictures(tmp_path / "img", names)
    images, anns = [], []
    for i, name in enumerate(names):
        twin = f"./{name}" if i % 2 else name.replace("/", "//")
        images += [_img(2 * i + 1, name), _img(2 * i + 2, twin)]
        anns += [_ann(2 * i + 1, 2 * i + 1, 1), _ann(2 * i + 2, 2 * i + 2, 2)]
    src = _write(tmp_path / "same.json", images, anns)
    ds = CocoDataset(json_path=src, image_dir=tmp_path / "img", fold_shared_files=True)
    assert len(ds) == 6 and all(len(ds[k][1]["labels"]) == 2 for k in range(6))
    assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "sp"),
                 "--fractions", "0.5,0.5"]) == 0
    parts = [json.loads((tmp_path / "sp" / f"{p}.json").read_text()) for p in ("train", "val")]
    files = [{os.path.normpath(img["file_name"]) for img in part["images"]} for part in parts]
    assert files[0] and files[1] and not files[0] & files[1]


def test_an_image_id_given_to_two_files_skips_both_records_and_their_annotations(tmp_path, caplog, capsys):
    """The annotations are joined by id: the second record's objects were put on the first record's
    picture, and the line said only "image id 1 appears twice"."""
    _pictures(tmp_path / "img", ["camA/f0.png", "ok.png", "other.png"])
    images = [_img(1, "camA/f0.png"), _img(1, "ok.png"), _img(2, "other.png")]
    anns = [_ann(1, 1, 1), _ann(2, 1, 2), _ann(3, 2, 2)]
    src = _write(tmp_path / "d.json", images, anns)
    with pytest.warns(UserWarning, match="duplicate_image_id"):
        ds = CocoDataset(json_path=src, image_dir=tmp_path / "img")
    assert ds.ids == [2]
    assert ds.skipped == {"duplicate_image_id": 2, "annotation_of_skipped_image": 2}
    lines = [p for p in ds.problems if "image id 1 " in p]
    assert len(lines) == 1 and "'camA/f0.png'" in lines[0] and "'ok.png'" in lines[0]
    out = tmp_path / "m.json"
    with pytest.warns(UserWarning):
        assert main(["merge-data", f"{src}:{tmp_path / 'img'}", "--output", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert [img["file_name"] for img in merged["images"]] == ["other.png"] and len(merged["annotations"]) == 1


def test_one_file_listed_twice_under_one_id_keeps_its_annotations(tmp_path):
    _pictures(tmp_path / "img", ["a.png"])
    src = _write(tmp_path / "d.json", [_img(1, "a.png"), _img(1, "./a.png")], [_ann(1, 1, 1), _ann(2, 1, 2)])
    with pytest.warns(UserWarning, match="duplicate_image_id"):
        ds = CocoDataset(json_path=src, image_dir=tmp_path / "img")
    assert ds.ids == [1] and ds[0][1]["labels"].tolist() == [1, 2]
    assert any("appears twice, for one file (file_name 'a.png', then file_name './a.png')" in p
               for p in ds.problems)


def test_split_force_with_a_folder_in_a_parts_place_replaces_no_part(tmp_path, capsys, recwarn):
    """val.json a folder: train.json was replaced, then the rename onto the folder failed."""
    src = _write(tmp_path / "s.json", [_img(i, f"{i}.jpg") for i in range(1, 11)],
                 [_ann(i, i, 1) for i in range(1, 11)])
    out = tmp_path / "out"
    (out / "val.json").mkdir(parents=True)
    (out / "train.json").write_text("OLD")
    assert main(["split-data", "--json", src, "--output-dir", str(out), "--force"]) == 1
    assert (out / "train.json").read_text() == "OLD" and sorted(os.listdir(out)) == ["train.json", "val.json"]
    assert "val.json: is a folder" in capsys.readouterr().err
    with pytest.raises(IsADirectoryError, match="val.json"):  # the writer itself, for any caller
        atomic_write_all({out / "train.json": b"NEW", out / "val.json": b"NEW"})
    assert (out / "train.json").read_text() == "OLD" and sorted(os.listdir(out)) == ["train.json", "val.json"]


def test_group_by_warning_points_at_windows_separators(tmp_path, capsys):
    images = [_img(i + 1, (f"vid{i % 3}\\f{i}.jpg" if i % 2 else f"vid{i % 3}/f{i}.jpg")) for i in range(12)]
    src = _write(tmp_path / "g.json", images, [_ann(i + 1, i + 1, 1) for i in range(12)])
    with pytest.warns(UserWarning) as caught:
        assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "o"),
                     "--group-by", "^([^/]+)/"]) == 0
    said = next(str(w.message) for w in caught if "matched no part" in str(w.message))
    assert "6 file_name(s)" in said and "6 of them are written with '\\' separators" in said
    assert "'^([^/\\\\]+)[/\\\\]'" in said  # the regex hinted at matches both separators


def test_merge_classes_that_match_no_class_refuse_and_write_nothing(tmp_path, capsys, recwarn):
    _pictures(tmp_path / "img", ["a.png"])
    src = _write(tmp_path / "d.json", [_img(1, "a.png")], [_ann(1, 1, 1)])
    out = tmp_path / "m.json"
    assert main(["merge-data", f"{src}:{tmp_path / 'img'}", "--output", str(out),
                 "--classes", "dgo,cta"]) == 1
    err = capsys.readouterr().err
    assert "no source has any of these classes" in err and "p, q" in err and not out.exists()


def test_merge_output_ending_in_a_slash_is_refused_as_a_folder(tmp_path, capsys, recwarn):
    _pictures(tmp_path / "img", ["a.png"])
    src = _write(tmp_path / "d.json", [_img(1, "a.png")], [_ann(1, 1, 1)])
    assert main(["merge-data", f"{src}:{tmp_path / 'img'}", "--output", f"{tmp_path / 'new' / 'x'}/"]) == 1
    assert "ends in '/', as a folder's path does" in capsys.readouterr().err
    assert not (tmp_path / "new" / "x").exists()


def test_a_box_only_object_is_outlined_not_filled():
    image = torch.full((3, 40, 40), 0.5)
    masks = torch.zeros(2, 40, 40, dtype=torch.uint8)
    masks[0, 5:15, 5:15] = 1
    masks[1, 22:35, 22:35] = 1  # a box-only object's mask is its box
    target = {"boxes": torch.tensor([[5.0, 5, 15, 15], [22, 22, 35, 35]]), "labels": torch.tensor([1, 1]),
              "masks": masks, "iscrowd": torch.tensor([False, False]),
              "has_mask": torch.tensor([True, False])}
    drawn = np.asarray(draw_targets(image, target, ["__background__", "cat"]))
    plain = np.asarray(draw_targets(image, {**target, "has_mask": torch.tensor([True, True])},
                                    ["__background__", "cat"]))
    grey = np.full(3, 128)
    assert np.abs(drawn[30, 30].astype(int) - grey).max() <= 1  # inside the box: the image, untinted
    assert np.abs(plain[30, 30].astype(int) - grey).max() > 10  # as a mask: tinted
    assert np.abs(drawn[10, 10].astype(int) - grey).max() > 10  # the masked object still filled
    assert not np.array_equal(drawn[22], np.tile(grey, (40, 1)))  # its box still drawn


def test_a_zero_bbox_beside_a_polygon_takes_the_polygons_box(tmp_path, recwarn):
    _pictures(tmp_path / "img", ["a.png"])
    src = _write(tmp_path / "d.json", [_img(1, "a.png")], [_ann(1, 1, 1, bbox=[0, 0, 0, 0], area=0)])
    ds = CocoDataset(json_path=src, image_dir=tmp_path / "img")
    assert ds.skipped == {} and ds[0][1]["boxes"].tolist() == [[2.0, 2.0, 10.0, 10.0]]
    assert any("bbox [0, 0, 0, 0]" in n for n in ds.notes)


def test_show_data_sums_up_the_classes_without_objects_of_a_large_file(tmp_path, capsys, recwarn):
    _pictures(tmp_path / "img", ["a.png"])
    cats = [{"id": i, "name": f"class{i}"} for i in range(1, 201)]
    src = _write(tmp_path / "d.json", [_img(1, "a.png")], [_ann(1, 1, 7), _ann(2, 1, 150)], cats)
    assert main(["show-data", "--json", src, "--images", str(tmp_path / "img"),
                 "--output", str(tmp_path / "look")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("  class")]
    assert [r.split()[0] for r in rows[1:]] == ["class7", "class150"]
    assert "198 classes without instances or crowd regions: class1, class2" in out


def test_split_data_sums_up_the_classes_without_instances_of_a_large_file(tmp_path, capsys):
    cats = [{"id": i, "name": f"class{i}"} for i in range(1, 201)]
    src = _write(tmp_path / "d.json", [_img(i, f"{i}.png") for i in range(1, 5)],
                 [_ann(i, i, 7 if i % 2 else 150) for i in range(1, 5)], cats)
    with pytest.warns(UserWarning) as caught:
        assert main(["split-data", "--json", src, "--output-dir", str(tmp_path / "o"),
                     "--fractions", "0.5,0.5"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  class")]
    assert rows[1:] == ["class7", "class150"]
    said = [str(w.message) for w in caught]
    assert sum("198 classes have no instance in any part: class1, class2" in m for m in said) == 1
    assert len(said) < 5  # not a warning per empty class


def test_a_rename_that_fails_after_another_puts_the_old_files_back(tmp_path, monkeypatch):
    """Any rename failing (not only onto a folder): the parts renamed before it get their old files
    back, a part that had none is removed, and no temporary file or backup stays."""
    (tmp_path / "a.json").write_text("OLD A")
    real_replace = os.replace

    def failing(src, dst):
        if str(dst).endswith("c.json"):
            raise PermissionError(1, "Operation not permitted", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(PermissionError):
        atomic_write_all({tmp_path / name: b"NEW" for name in ("a.json", "b.json", "c.json")})
    assert (tmp_path / "a.json").read_text() == "OLD A" and sorted(os.listdir(tmp_path)) == ["a.json"]
    monkeypatch.setattr(os, "replace", real_replace)
    atomic_write_all({tmp_path / "a.json": b"NEW", tmp_path / "b.json": b"NEW"})
    assert (tmp_path / "a.json").read_text() == "NEW" and sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]
