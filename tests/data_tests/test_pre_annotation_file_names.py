"""Pre-annotation exports of images whose names are awkward on disk: a name that is not valid UTF-8 (a
Latin-1 disk's ``caf\\xe9.png``), a name holding ':' (a drive on Windows), names equal but for case."""

import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.pre_annotations.export import PreAnnotationExport

H, W = 24, 32
CLASS_NAMES = ["__background__", "cat", "dog"]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="names with ':' or non-UTF-8 bytes: POSIX")


def _det(label: int) -> dict:
    mask = np.zeros((1, H, W), bool)
    mask[0, 4:12, 6:20] = True
    return {"boxes": torch.tensor([[6.0, 4.0, 20.0, 12.0]]), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([label]), "masks": torch.from_numpy(mask)}


def _export(tmp_path, names, formats, folder="photos"):
    root = tmp_path / folder
    root.mkdir(parents=True)
    files = []
    for name in names:
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / name, format="PNG")
        files.append(root / name)
    out = tmp_path / "pre"
    export = PreAnnotationExport(out_dir=out, formats=formats, root=root, class_names=CLASS_NAMES,
                                 files=files)
    for i, f in enumerate(files, start=1):
        export.add(i, f, H, W, _det(1 + i % 2))
    export.finish()
    return root, out


@posix_only
def test_labelstudio_export_quotes_a_non_utf8_name_by_its_bytes_and_reads_it_back(tmp_path, capsys):
    """Before: the run ended with "'utf-8' codec can't encode character '\\udce9' ... surrogates not
    allowed" and no tasks file; now the URL is the name's bytes %-quoted and convert-data finds the file."""
    from maskrcnn.cli import main

    name = os.fsdecode(b"caf\xe9.png")  # 'caf\udce9.png' where file names are UTF-8
    if name.encode("utf-8", "surrogateescape") != b"caf\xe9.png":
        pytest.skip("the file system encoding is not UTF-8")
    root, out = _export(tmp_path, [name, "plain.png"], ["labelstudio", "coco", "labelme"])
    tasks = json.loads((out / "labelstudio_tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == ["caf%E9.png", "plain.png"]
    rt = tmp_path / "rt.json"
    assert main(["convert-data", "--from", "labelstudio", str(out / "labelstudio_tasks.json"),
                 "--output", str(rt)]) == 0
    got = json.loads(rt.read_text())
    assert sorted(i["file_name"] for i in got["images"]) == sorted([name, "plain.png"])
    assert len(got["annotations"]) == 2
    # the other exports keep the name as Python holds it (COCO, LabelMe's imagePath) and read back too
    coco = json.loads((out / "coco_instances.json").read_text())
    assert coco["images"][0]["file_name"] == name
    assert main(["convert-data", "--from", "labelme", str(out / "labelme"), "--images", str(root),
                 "--output", str(rt)]) == 0
    assert sorted(i["file_name"] for i in json.loads(rt.read_text())["images"]) == sorted([name, "plain.png"])


@posix_only
def test_labelme_export_names_its_files_as_the_overlays_do_without_a_colon(tmp_path):
    """Before: labelme/a:b.json (no such file on Windows) beside overlays/a_b.png; now labelme/a_b.json,
    and an image a_b.png beside it gets a name of its own, each file's imagePath its image."""
    root, out = _export(tmp_path, ["a:b.png", "a_b.png"], ["labelme"])
    written = sorted(p.name for p in (out / "labelme").iterdir())
    assert written == ["a_b.json", "a_b.png.json"]
    paths = {json.loads((out / "labelme" / n).read_text())["imagePath"] for n in written}
    assert paths == {"../../photos/a:b.png", "../../photos/a_b.png"}


@posix_only
def test_yolo_label_files_keep_their_images_names_so_that_yolo_tools_pair_them(tmp_path, capsys):
    """Overlays, mask files and LabelMe files take a safe name (no ':', control character or byte that
    is not UTF-8); a YOLO label file cannot: Ultralytics pairs labels/x.txt with images/x.* and nothing
    else (a camera's 12:00:00 in a name is common). Before: labels/a:b.txt beside overlays/a_b.png with no
    word of why; now the same label files, a line naming them, and read back through data.yaml each image
    has its own labels (a:b.png's are not a_b.png's, though both are a_b after the safe rule)."""
    from maskrcnn.data.formats.common import Report
    from maskrcnn.data.formats.yolo import convert_yolo

    odd = os.fsdecode(b"x\xffy.png")
    if odd.encode("utf-8", "surrogateescape") != b"x\xffy.png":
        pytest.skip("the file system encoding is not UTF-8")
    names = ["a:b.png", "a_b.png", odd, "new\nline.png"]  # _det: dog, cat, dog, cat
    root, out = _export(tmp_path, names, ["yolo"], folder="data/images")
    labels = out / "yolo" / "labels"
    assert sorted(p.name for p in labels.iterdir()) == sorted(
        ["a:b.txt", "a_b.txt", "classes.txt", "new\nline.txt", os.fsdecode(b"x\xffy.txt")])
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("pre-annotations: yolo: 3 label file(s) keep"))
    assert "a:b.png -> labels/a:b.txt" in line and "'new\\nline.png'" in line and "a_b.png " not in line
    os.rename(labels, tmp_path / "data" / "labels")  # where Ultralytics looks: images/ -> labels/
    report = Report()
    builder = convert_yolo(out / "yolo" / "data.yaml", split="train", classes=None, boxes_as_masks=False,
                           report=report)
    coco = builder.to_dict()
    assert sum(report.skipped.values()) == 0
    category = {c["id"]: c["name"] for c in coco["categories"]}
    got = {i["file_name"]: [category[a["category_id"]] for a in coco["annotations"]
                            if a["image_id"] == i["id"]] for i in coco["images"]}
    assert got == {"a:b.png": ["dog"], "a_b.png": ["cat"], odd: ["dog"], "new\nline.png": ["cat"]}


def test_yolo_export_gives_one_label_file_to_one_of_two_images_whose_names_differ_in_case(tmp_path,
                                                                                           capsys):
    """Before: A.png and a.jpg got labels/A.txt and labels/a.txt, one file on a macOS or Windows disk:
    the second written over the first, and YOLO tools there gave both images a.jpg's labels; now case is
    ignored, as the overlays' names ignore it, and a.jpg is left without labels, said as a.png beside
    a.jpg is."""
    root, out = _export(tmp_path, ["A.png", "a.jpg"], ["yolo"])
    labels = out / "yolo" / "labels"
    assert sorted(p.name for p in labels.iterdir()) == ["A.txt", "classes.txt"]
    assert (labels / "A.txt").read_text().startswith("1 ")  # A.png's dog, not a.jpg's cat
    err = capsys.readouterr().err
    assert "yolo: a.jpg left without labels: A.png has the same label file labels/A.txt" in err


def test_yolo_names_that_only_case_folding_joins_keep_their_own_label_files(tmp_path, capsys):
    """straße and strasse are one name to str.casefold but two files on every disk: both keep labels."""
    _, out = _export(tmp_path, ["straße.png", "strasse.png"], ["yolo"])
    labels = out / "yolo" / "labels"
    assert sorted(p.name for p in labels.iterdir()) == ["classes.txt", "strasse.txt", "straße.txt"]
    assert "left without labels" not in capsys.readouterr().err
