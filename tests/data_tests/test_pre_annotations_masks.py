"""Mask images and cut-outs (data/pre_annotations/to_masks.py, mask_files.py) from drawn detections, no
model: the PNGs' pixels are the drawn instances' ids and category ids (the higher score on top where
they overlap), 16-bit past 255 instances or category ids; each cut-out's alpha is its mask and its RGB
the photo's pixels; index.json says what each id is; names that collide are handled as YOLO's are."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.images import read_image
from maskrcnn.data.mask_codec import masks_to_rles
from maskrcnn.data.pre_annotations.export import PreAnnotationExport
from maskrcnn.data.pre_annotations.to_masks import safe_file_name, voc_palette

H, W = 24, 32
CLASS_NAMES = ["__background__", "cat", "dog/wolf"]
YY, XX = np.mgrid[:H, :W]


def _drawn() -> tuple:
    """(boxes xyxy, scores, labels, (D, H, W) masks): a rectangle, a disc over it with a higher score, a
    small square under the disc with a lower score, and a 3-pixel speck."""
    masks = np.zeros((4, H, W), bool)
    masks[0, 4:16, 2:20] = True
    masks[1] = (XX - 18) ** 2 + (YY - 12) ** 2 <= 6**2
    masks[2, 10:20, 14:24] = True
    masks[3, 21, 28:31] = True
    boxes = torch.tensor([[2.0, 4.0, 20.0, 16.0], [11.6, 5.5, 25.0, 19.0], [14.0, 10.0, 24.0, 20.0],
                          [28.0, 21.0, 31.0, 22.0]])
    return boxes, torch.tensor([0.5, 0.9, 0.7, 0.6]), torch.tensor([1, 2, 1, 2]), masks


def _export(tmp_path, formats, **kw) -> PreAnnotationExport:
    return PreAnnotationExport(out_dir=tmp_path / "pre", formats=formats, root=tmp_path / "in",
                               class_names=CLASS_NAMES, label_to_category_id={1: 5, 2: 9}, **kw)


def _photo(tmp_path, rel, seed=0):
    path = tmp_path / "in" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def test_mask_pngs_cutouts_and_index_hold_the_drawn_instances(tmp_path):
    boxes, scores, labels, masks = _drawn()
    rles = masks_to_rles(torch.from_numpy(masks))  # as predict has them (Predictor(masks="rle"))
    det = {"boxes": boxes, "scores": scores, "labels": labels, "masks_rle": rles}
    none = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64),
            "masks_rle": []}
    export = _export(tmp_path, ["masks", "cutouts"], min_area=4)
    a, c = _photo(tmp_path, "sub/a.png"), _photo(tmp_path, "c.png", seed=1)
    export.add(1, a, H, W, det, read_image(a))
    export.add(2, c, H, W, none)  # no pixels given: not needed (no instance)
    assert export.instances == [] and export.images == []  # written image by image: no RLEs kept
    assert export.finish() == [tmp_path / "pre" / "masks", tmp_path / "pre" / "cutouts"]

    expected_ids = np.zeros((H, W), np.uint8)
    for i in np.argsort(scores.numpy()):  # the lowest score first: the higher ones painted over it
        expected_ids[masks[i]] = i + 1
    ids = Image.open(tmp_path / "pre" / "masks" / "sub" / "a.png")
    assert ids.mode == "L" and np.array_equal(np.array(ids), expected_ids)
    assert set(np.unique(expected_ids)) == {0, 1, 2, 3, 4}  # every instance shows somewhere
    classes = Image.open(tmp_path / "pre" / "masks" / "sub" / "a_classes.png")
    assert classes.mode == "P"
    assert np.array_equal(np.array(classes), np.array([0, 5, 9, 5, 9], np.uint8)[expected_ids])
    palette = classes.getpalette()
    assert [tuple(palette[3 * k:3 * k + 3]) for k in (0, 1, 2, 5, 9)] == \
        [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 0, 128), (192, 0, 0)]  # PASCAL VOC's colours
    for name in ("c.png", "c_classes.png"):  # no instance: all background
        empty = np.array(Image.open(tmp_path / "pre" / "masks" / name))
        assert empty.shape == (H, W) and not empty.any()

    index = json.loads((tmp_path / "pre" / "masks" / "index.json").read_text())
    assert list(index) == ["sub/a.png", "c.png"] and index["c.png"] == []
    assert index["sub/a.png"] == [
        {"id": i + 1, "category_id": [5, 9][int(lab) - 1], "category": CLASS_NAMES[int(lab)],
         "score": pytest.approx(float(s)), "bbox": pytest.approx([x0, y0, x1 - x0, y1 - y0])}
        for i, (lab, s, (x0, y0, x1, y1)) in enumerate(zip(labels, scores, boxes.tolist()))]

    cut_dir = tmp_path / "pre" / "cutouts" / "sub" / "a"
    # the 3-pixel speck is under --export-min-area 4; the class name made safe for a file name
    assert sorted(p.name for p in cut_dir.iterdir()) == ["001_cat.png", "002_dog_wolf.png", "003_cat.png"]
    assert not (tmp_path / "pre" / "cutouts" / "c").exists()
    photo = np.array(Image.open(a))
    for i, name in [(0, "001_cat.png"), (1, "002_dog_wolf.png"), (2, "003_cat.png")]:
        x0, y0, x1, y1 = boxes[i].tolist()
        x0, y0, x1, y1 = int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))
        cut = Image.open(cut_dir / name)
        assert cut.mode == "RGBA" and cut.size == (x1 - x0, y1 - y0)
        pixels = np.array(cut)
        assert np.array_equal(pixels[..., :3], photo[y0:y1, x0:x1])  # the photo's own pixels
        assert np.array_equal(pixels[..., 3], masks[i, y0:y1, x0:x1].astype(np.uint8) * 255)  # its own mask


def test_sixteen_bit_pngs_dense_and_box_only_detections_and_colliding_names(tmp_path, capsys):
    n = 300  # more instances than 8 bits hold: one pixel each (ids 1..300), dense masks
    masks = np.zeros((n, H, W), bool)
    masks[np.arange(n), np.arange(n) // W, np.arange(n) % W] = True
    det = {"boxes": torch.zeros(n, 4), "scores": torch.linspace(0.9, 0.1, n),
           "labels": torch.tensor([1, 2] * (n // 2)), "masks": torch.from_numpy(masks)}
    export = PreAnnotationExport(out_dir=tmp_path / "pre", formats=["masks", "cutouts"], root=tmp_path / "in",
                                 class_names=CLASS_NAMES, label_to_category_id={1: 5, 2: 1000})
    a, a_jpg = _photo(tmp_path, "a.png"), _photo(tmp_path, "a.jpg")
    export.add(1, a, H, W, det, read_image(a))
    box_only = {"boxes": torch.tensor([[2.4, 1.6, 6.5, 4.4]]), "scores": torch.tensor([0.8]),
                "labels": torch.tensor([1])}  # a model without masks: the pixels whose centres are in it
    export.add(2, a_jpg, H, W, box_only, read_image(a_jpg))  # same masks/a.png and cutouts/a/: left out
    b = _photo(tmp_path, "b.png")
    export.add(3, b, H, W, box_only, read_image(b))
    export.finish()
    err = capsys.readouterr().err
    assert "pre-annotations: masks: a.jpg left without masks: a.png has the same file masks/a.png" in err
    assert "cutouts: a.jpg left without cut-outs: a.png has the same folder cutouts/a/" in err

    ids = Image.open(tmp_path / "pre" / "masks" / "a.png")
    assert ids.mode.startswith("I;16")
    expected = np.zeros((H, W), np.uint16)
    expected.reshape(-1)[:n] = np.arange(1, n + 1)
    assert np.array_equal(np.array(ids), expected)
    classes = Image.open(tmp_path / "pre" / "masks" / "a_classes.png")  # a category id above 255
    assert classes.mode.startswith("I;16")
    assert np.array_equal(np.array(classes), np.where(expected == 0, 0, np.where(expected % 2 == 1, 5, 1000)))
    assert list(json.loads((tmp_path / "pre" / "masks" / "index.json").read_text())) == ["a.png", "b.png"]
    assert len(list((tmp_path / "pre" / "cutouts" / "a").iterdir())) == n  # a.png's, not a.jpg's

    box = np.zeros((H, W), bool)
    box[2:4, 2:6] = True  # centres x + 0.5 in [2.4, 6.5), y + 0.5 in [1.6, 4.4)
    assert np.array_equal(np.array(Image.open(tmp_path / "pre" / "masks" / "b.png")), box.astype(np.uint8))
    cut = np.array(Image.open(tmp_path / "pre" / "cutouts" / "b" / "001_cat.png"))  # the box rounded outwards
    assert cut.shape == (4, 5, 4) and np.array_equal(cut[..., 3] > 0, box[1:5, 2:7])
    assert np.array_equal(cut[..., :3], np.array(Image.open(b))[1:5, 2:7])


def test_safe_file_names_and_palette():
    assert [safe_file_name(s) for s in ["dog/wolf", "a b:c*?", "..", "Zürich", "x" * 300]] == \
        ["dog_wolf", "a_b_c", "class", "Zürich", "x" * 120]
    assert len(voc_palette()) == 768 and voc_palette()[3 * 255:] == [224, 224, 192]


def test_cutouts_left_out_by_min_area_are_counted_at_the_end(tmp_path, capsys):
    """--export-min-area dropped cut-outs without a word (all of them, with a large PX): the count is said
    once, at the end; the mask images keep every instance."""
    boxes, scores, labels, masks = _drawn()  # mask areas 216, 113, 100 and 3 pixels
    rles = masks_to_rles(torch.from_numpy(masks))
    det = {"boxes": boxes, "scores": scores, "labels": labels, "masks_rle": rles}
    export = _export(tmp_path, ["masks", "cutouts"], min_area=101)
    a = _photo(tmp_path, "a.png")
    export.add(1, a, H, W, det, read_image(a))
    capsys.readouterr()
    export.finish()
    err = capsys.readouterr().err
    assert "pre-annotations: cutouts: 2 instance(s) left out by --export-min-area 101" in err
    assert sorted(p.name for p in (tmp_path / "pre" / "cutouts" / "a").iterdir()) == ["001_cat.png",
                                                                                   "002_dog_wolf.png"]
    assert set(np.unique(np.array(Image.open(tmp_path / "pre" / "masks" / "a.png")))) == {0, 1, 2, 3, 4}


def test_images_sharing_a_name_get_mask_files_named_by_their_whole_file_name(tmp_path, capsys):
    """imgs/img.avif, img.bmp and img.webp all wanted masks/img.png: only the first got masks, the others
    were left without. Knowing the run's images up front, the clashing ones (only they) take their whole
    file name, each its own pixels."""
    boxes, scores, labels, masks = _drawn()
    names = ["x/img.jpg", "x/img.png", "x/b.png", "x/b_classes.png", "x/c.png"]
    paths = [_photo(tmp_path, n, seed=i) for i, n in enumerate(names)]
    export = _export(tmp_path, ["masks", "cutouts"], files=paths)
    for i, path in enumerate(paths):  # image i has the drawn instances i.. (img.jpg all four, img.png three)
        keep = slice(i % 4, 4)
        det = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep],
               "masks": torch.from_numpy(masks[keep])}
        export.add(i + 1, path, H, W, det, read_image(path))
    export.finish()
    assert "left without" not in capsys.readouterr().err
    out = tmp_path / "pre"
    assert sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png")) == [
        "x/b.png.png", "x/b.png_classes.png",  # b_classes.png's ids would have been b's classes
        "x/b_classes.png.png", "x/b_classes.png_classes.png", "x/c.png", "x/c_classes.png",  # c: no clash
        "x/img.jpg.png", "x/img.jpg_classes.png", "x/img.png.png", "x/img.png_classes.png"]
    assert np.unique(np.array(Image.open(out / "masks" / "x" / "img.jpg.png"))).tolist() == [0, 1, 2, 3, 4]
    assert np.unique(np.array(Image.open(out / "masks" / "x" / "img.png.png"))).tolist() == [0, 1, 2, 3]
    assert len(list((out / "cutouts" / "x" / "img.jpg").iterdir())) == 4
    assert len(list((out / "cutouts" / "x" / "img.png").iterdir())) == 3
    assert sorted(p.name for p in (out / "cutouts" / "x").iterdir()) == [
        "b.png", "b_classes.png", "c", "img.jpg", "img.png"]
    cut = np.array(Image.open(out / "cutouts" / "x" / "img.png" / "001_dog_wolf.png"))
    assert cut[..., 3].any()  # img.png's own first instance (the disc), not img.jpg's rectangle
    assert list(json.loads((out / "masks" / "index.json").read_text())) == names


def _det(n: int) -> dict:
    """The first ``n`` of the drawn instances, as predict has them."""
    boxes, scores, labels, masks = _drawn()
    return {"boxes": boxes[:n], "scores": scores[:n], "labels": labels[:n],
            "masks_rle": masks_to_rles(torch.from_numpy(masks[:n]))}


def _files(folder) -> list:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def test_a_rerun_removes_the_earlier_runs_mask_files_it_does_not_write_again(tmp_path, capsys):
    """A re-run into the same folder left the earlier run's masks of images it no longer predicts, and
    the cut-outs of instances it no longer finds: read as this run's. Now they go (counted), and only
    they: the user's files there stay."""
    a, c = _photo(tmp_path, "sub/a.png"), _photo(tmp_path, "c.png", seed=1)
    first = _export(tmp_path, ["masks", "cutouts"], files=[a, c])
    first.add(1, a, H, W, _det(4), read_image(a))
    first.add(2, c, H, W, _det(2), read_image(c))
    first.finish()
    pre = tmp_path / "pre"
    assert _files(pre / "cutouts") == ["c/001_cat.png", "c/002_dog_wolf.png", "sub/a/001_cat.png",
                                       "sub/a/002_dog_wolf.png", "sub/a/003_cat.png",
                                       "sub/a/004_dog_wolf.png", "written.json"]
    for mine in (pre / "masks" / "mine.png", pre / "cutouts" / "sub" / "a" / "notes.png"):
        mine.write_bytes(b"the user's")

    capsys.readouterr()
    second = _export(tmp_path, ["masks", "cutouts"], files=[a])  # c.png not predicted, a.png 2 instances
    second.add(1, a, H, W, _det(2), read_image(a))
    second.finish()
    err = capsys.readouterr().err
    assert _files(pre / "masks") == ["index.json", "mine.png", "sub/a.png", "sub/a_classes.png",
                                     "written.json"]
    assert _files(pre / "cutouts") == ["sub/a/001_cat.png", "sub/a/002_dog_wolf.png", "sub/a/notes.png",
                                       "written.json"]
    assert not (pre / "cutouts" / "c").exists()  # its folder, left empty, goes too
    assert "masks: removed 2 file(s) of the earlier run that this run did not write again" in err
    assert "cutouts: removed 4 file(s) of the earlier run" in err
    assert json.loads((pre / "masks" / "written.json").read_text())["files"] == [
        "index.json", "sub/a.png", "sub/a_classes.png"]  # index.json: ours too, listed
    assert list(json.loads((pre / "masks" / "index.json").read_text())) == ["sub/a.png"]

    third = _export(tmp_path, ["masks"], files=[c])  # stopped before its first image: nothing replaced
    third.finish(replace=False)
    assert _files(pre / "masks") == ["index.json", "mine.png", "sub/a.png", "sub/a_classes.png",
                                     "written.json"]
    assert list(json.loads((pre / "masks" / "index.json").read_text())) == ["sub/a.png"]
    assert len(_files(pre / "cutouts")) == 4  # a run without cutouts leaves the cut-outs as they are


def test_the_written_lists_remove_only_regular_png_files_inside_their_folder(tmp_path, capsys):
    """The lists are read from disk: one naming a file outside the folder, a link, a folder or another
    kind of file removes none of them; an unreadable list is said and removes nothing; a killed run's
    partial list counts (its line cut short dropped)."""
    from maskrcnn.data.pre_annotations.written_files import WrittenFiles

    folder, outside = tmp_path / "masks", tmp_path / "elsewhere"
    (folder / "dir.png").mkdir(parents=True)
    outside.mkdir()
    for path in (outside / "o.png", tmp_path / "up.png", folder / "notes.txt", folder / "old.png",
                 folder / "killed.png", folder / "kept.png"):
        path.write_bytes(b"x")
    (folder / "link.png").symlink_to(outside / "o.png")
    (folder / "linkdir").symlink_to(outside)
    listed = ["../up.png", str(tmp_path / "up.png"), "link.png", "linkdir/o.png", "dir.png", "notes.txt",
              "a/../../up.png", "old.png", "kept.png"]
    (folder / "written.json").write_text(json.dumps({"files": listed}))
    (folder / "written.partial.jsonl").write_text('["killed.png"]\n["kil')
    written = WrittenFiles(folder=folder, label="masks")
    written.add(["kept.png"])
    assert written.finish() == 2  # old.png and killed.png
    assert _files(tmp_path) == ["elsewhere/o.png", "masks/kept.png", "masks/link.png", "masks/notes.txt",
                                "masks/written.json", "up.png"]
    assert (folder / "dir.png").is_dir() and (folder / "linkdir").is_symlink()
    assert json.loads((folder / "written.json").read_text()) == {"files": ["kept.png"]}

    (folder / "written.json").write_text('{"files": "kept.png"}')
    assert WrittenFiles(folder=folder, label="masks").finish() == 0
    assert "masks: " + str(folder / "written.json") + ": field 'files' is not a list of paths" in \
        capsys.readouterr().err
    assert (folder / "kept.png").exists()


def test_an_unreadable_list_either_one_removes_nothing_and_is_named(tmp_path, capsys, monkeypatch):
    """An unreadable written.json said the files it lists were left, yet the partial list's went (and the
    reverse): now either list bad removes nothing, and the line names the bad file."""
    from maskrcnn.data.pre_annotations.written_files import WrittenFiles

    folder = tmp_path / "masks"
    folder.mkdir()
    for name in ("old.png", "killed.png"):
        (folder / name).write_bytes(b"x")
    (folder / "written.json").write_text("{not json")
    (folder / "written.partial.jsonl").write_text('["killed.png"]\n')
    assert WrittenFiles(folder=folder, label="masks").finish() == 0
    err = capsys.readouterr().err
    assert str(folder / "written.json") + ": not readable as JSON" in err and "no file" in err
    assert (folder / "killed.png").exists() and (folder / "old.png").exists()

    (folder / "written.json").write_text(json.dumps({"files": ["old.png"]}))
    (folder / "written.partial.jsonl").write_text('["killed.png"]\n')  # the other way round: partial bad
    from pathlib import Path

    read_text = Path.read_text

    def unreadable(self, *a, **kw):  # as without read permission (root would read it all the same)
        if self.name == "written.partial.jsonl":
            raise PermissionError(13, "Permission denied")
        return read_text(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert WrittenFiles(folder=folder, label="masks").finish() == 0
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert str(folder / "written.partial.jsonl") + ": not readable" in err
    assert (folder / "old.png").exists() and (folder / "killed.png").exists()


def test_a_name_differing_in_case_only_is_kept_only_when_it_is_this_runs_file(tmp_path):
    """On a case-sensitive disk an earlier 'A.png' beside this run's 'a.png' is another file: it was kept
    (case ignored) and then dropped from the list, never removed. Decided by file identity now."""
    import os

    from maskrcnn.data.pre_annotations.written_files import WrittenFiles

    folder = tmp_path / "masks"
    folder.mkdir()
    (folder / "A.png").write_bytes(b"earlier")
    (folder / "written.json").write_text(json.dumps({"files": ["A.png"]}))
    written = WrittenFiles(folder=folder, label="masks")
    written.add(["a.png"])
    (folder / "a.png").write_bytes(b"this run's")
    case_sensitive = not os.path.samefile(folder / "A.png", folder / "a.png") if (folder / "A.png").exists() \
        else True
    removed = written.finish()
    if case_sensitive:
        assert removed == 1 and _files(folder) == ["a.png", "written.json"]
    else:
        assert removed == 0 and (folder / "a.png").read_bytes() == b"this run's"


def test_the_removed_line_says_when_the_run_was_partial(tmp_path, capsys):
    from maskrcnn.data.pre_annotations.mask_files import MaskFiles

    folder = tmp_path / "masks"
    folder.mkdir()
    (folder / "old.png").write_bytes(b"x")
    (folder / "written.json").write_text(json.dumps({"files": ["old.png"]}))
    for partial in (True, False):
        (folder / "old.png").write_bytes(b"x")
        (folder / "written.json").write_text(json.dumps({"files": ["old.png"]}))
        MaskFiles(out_dir=tmp_path, formats=["masks"], categories=[]).finish("masks", partial=partial)
        err = capsys.readouterr().err
        assert "removed 1 file(s) of the earlier run" in err and not (folder / "old.png").exists()
        assert ("this partial run (stopped early)" in err) == partial


def test_mask_file_names_follow_the_overlays_rule():
    """The mask files of images whose names clash once made safe were numbered by their own rule
    (``new_line.png_2``), the other way round from the overlays: one rule now, the overlays'."""
    from maskrcnn.data.pre_annotations.mask_files import mask_file_stems
    from maskrcnn.overlay_paths import overlay_relpaths, safe_file_name

    names = ["new\nline.png", "new_line.png", "a/x.jpg", "b.png", "b_classes.png", "y.jpg"]
    stems = mask_file_stems(names, beside=["y.png"])
    overlays = dict(zip(sorted(names), overlay_relpaths([safe_file_name(n) for n in sorted(names)],
                                                        beside=["y.png"])))
    assert stems["new\nline.png"] == "new_line" and stems["new_line.png"] == "new_line.png"
    assert stems["a/x.jpg"] == "a/x" and stems["y.jpg"] == "y.jpg"  # y.png lies beside it
    for name in ("new\nline.png", "new_line.png", "a/x.jpg", "y.jpg"):
        assert f"{stems[name]}.png" == overlays[name], name
    # a clash only mask files have (b.png's b_classes.png): both by their whole names
    assert stems["b.png"] == "b.png" and stems["b_classes.png"] == "b_classes.png"
