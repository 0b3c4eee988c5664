"""The written lists (data/pre_annotations/written_files.py) never cost the user a file: a file listed
without a hash (lists of the version before hashes) is ours only while not modified after the list; a
malformed list removes and writes over nothing; a mask pair with one of the user's is written neither,
its index.json entry kept; YOLO's classes.txt is listed as the label files are."""

import json
import os

import torch
from PIL import Image

from maskrcnn.data.images import read_image
from maskrcnn.data.mask_codec import masks_to_rles
from maskrcnn.data.pre_annotations.export import PreAnnotationExport
from maskrcnn.data.pre_annotations.written_files import WrittenFiles, content_hash

T = 1_700_000_000  # the list's time (s); the files around it


def _at(path, seconds):
    os.utime(path, (seconds, seconds))


def test_a_file_listed_without_a_hash_and_painted_after_the_list_is_the_users(tmp_path, capsys):
    """masks/written.json of the version before hashes held {"files": [...]}: a mask painted after that
    run was taken for ours, written over and removed. Now it is ours only when not modified after the list;
    one older than the list still goes (stale) or is written over."""
    folder = tmp_path / "masks"
    folder.mkdir()
    for name in ("painted.png", "ours.png", "stale.png", "painted_stale.png"):
        (folder / name).write_bytes(b"earlier " + name.encode())
    (folder / "written.json").write_text(json.dumps({"files": ["painted.png", "ours.png", "stale.png",
                                                               "painted_stale.png"]}))
    _at(folder / "written.json", T)
    for name, t in (("painted.png", T + 60), ("ours.png", T - 1), ("stale.png", T),
                    ("painted_stale.png", T + 5)):
        _at(folder / name, t)

    written = WrittenFiles(folder=folder, label="masks")
    assert not written.write("painted.png", b"new") and written.write("ours.png", b"new")
    assert written.finish() == 1  # stale.png; painted_stale.png is the user's too
    assert sorted(p.name for p in folder.iterdir()) == ["ours.png", "painted.png", "painted_stale.png",
                                                        "written.json"]
    assert (folder / "painted.png").read_bytes() == b"earlier painted.png"
    assert (folder / "ours.png").read_bytes() == b"new"
    (line,) = written.kept_lines()
    assert "kept 2 file(s)" in line and "changed since an earlier run wrote them" in line
    assert "(painted.png, painted_stale.png)" in line, line


def test_a_malformed_hash_entry_makes_the_list_unreadable_nothing_removed_or_written_over(tmp_path,
                                                                                            capsys):
    """{"sha256": {"a.json": 123}} made a.json count as unchecked: removed. Now the list cannot be read
    (said, naming it): nothing earlier is removed or written over, and the kept line says why."""
    folder = tmp_path / "labelme"
    folder.mkdir()
    (folder / "a.json").write_text("corrected")
    (folder / "b.json").write_text("corrected too")
    record = tmp_path / "labelme.written.json"
    record.write_text(json.dumps({"files": ["a.json", "b.json"], "sha256": {"a.json": 123}}))
    written = WrittenFiles(folder=folder, label="labelme", suffixes=(".json",), record=record)
    assert not written.write("b.json", b"this run's")
    assert written.finish() == 0
    assert (folder / "a.json").read_text() == "corrected"
    assert (folder / "b.json").read_text() == "corrected too"
    err = capsys.readouterr().err
    assert f"{record}: field 'sha256' is not {{path: [SHA-256 hex, ...]}}" in err, err
    assert "whose list could not be read (said above): neither written over nor removed (b.json)" in \
        written.kept_lines()[0]

    # a partial list's line of the wrong shape: the same
    record.write_text(json.dumps({"files": ["a.json"]}))
    (tmp_path / "labelme.written.partial.jsonl").write_text(json.dumps({"a.json": ["x"]}) + "\n")
    _at(folder / "a.json", T)
    written = WrittenFiles(folder=folder, label="labelme", suffixes=(".json",), record=record)
    assert not written.readable and written.finish() == 0 and (folder / "a.json").exists()
    assert "line 1 is neither a list of paths nor {path: SHA-256 hex}" in capsys.readouterr().err


H, W = 24, 32


def _det(seed):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(2, H, W, generator=g) > 0.5
    return {"boxes": torch.tensor([[0.0, 0.0, W, H], [1.0, 1.0, 20.0, 20.0]]),
            "scores": torch.tensor([0.9, 0.8 - seed / 100]), "labels": torch.tensor([1, 2]),
            "masks_rle": masks_to_rles(masks)}


def test_a_mask_pair_with_one_of_the_users_is_written_neither_and_keeps_its_index_entry(tmp_path, capsys):
    """The class PNG was kept (painted) while the id PNG was written again, and index.json took the new
    detections: the user's ids lost their classes. Now neither of the pair is written and the image keeps
    its earlier index entry; the other one (ours) stays listed, not removed as stale."""
    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    Image.new("RGB", (W, H)).save(path)

    def run(seed):
        export = PreAnnotationExport(out_dir=tmp_path / "pre", formats=["masks"], root=tmp_path / "in",
                                     class_names=["__background__", "cat", "dog"], files=[path])
        export.add(1, path, H, W, _det(seed), read_image(path))
        export.finish()

    masks = tmp_path / "pre" / "masks"
    run(0)
    ids, earlier_index = (masks / "a.png").read_bytes(), json.loads((masks / "index.json").read_text())
    (masks / "a_classes.png").write_bytes(b"painted classes")
    run(1)  # other detections
    assert (masks / "a.png").read_bytes() == ids
    assert (masks / "a_classes.png").read_bytes() == b"painted classes"
    assert json.loads((masks / "index.json").read_text()) == earlier_index
    listed = json.loads((masks / "written.json").read_text())
    index = content_hash((masks / "index.json").read_bytes())  # ours too, listed with its hash
    assert listed["files"] == ["a.png", "index.json"]
    assert listed["sha256"] == {"a.png": [content_hash(ids)], "index.json": [index]}
    assert "(a_classes.png)" in capsys.readouterr().err


def test_yolo_classes_txt_changed_by_the_user_is_kept_and_said(tmp_path, capsys):
    """classes.txt (and data.yaml) were rewritten every run: LabelImg's classes the user added were lost.
    Now they are listed with their hash: a changed one is kept, said in a line; an unchanged one is
    written again."""
    def run():
        export = PreAnnotationExport(out_dir=tmp_path / "pre", formats=["yolo"], root=tmp_path,
                                     class_names=["__background__", "cat", "dog"])
        export.finish()

    yolo = tmp_path / "pre" / "yolo"
    run()
    assert (yolo / "labels" / "classes.txt").read_text() == "cat\ndog\n"
    assert json.loads((yolo / "written.json").read_text())["files"] == ["data.yaml", "labels/classes.txt"]
    (yolo / "labels" / "classes.txt").write_text("cat\ndog\nbird\n")  # LabelImg, a class added
    yaml_before = (yolo / "data.yaml").read_text()
    capsys.readouterr()
    run()
    assert (yolo / "labels" / "classes.txt").read_text() == "cat\ndog\nbird\n"
    assert (yolo / "data.yaml").read_text() == yaml_before
    err = capsys.readouterr().err
    assert "yolo: kept 1 file(s)" in err and "changed since an earlier run wrote them" in err
    assert "(labels/classes.txt)" in err
