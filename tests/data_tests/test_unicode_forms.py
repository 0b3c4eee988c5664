"""Names that differ only in their Unicode form (composed NFC 'é', decomposed NFD 'e' + accent, as macOS
stores file names): an image file stored in the other form is found, labels and class names in either
form are one class, written composed. The file system here keeps a name's bytes as given, so an NFD name
written from a str is another file than the NFC one."""

import json
import os
import unicodedata
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.engine.init_weights import match_names, normalise_name
from maskrcnn.engine.name_match import ids_by_name, name_index

NFC, NFD = (unicodedata.normalize(form, "café.png") for form in ("NFC", "NFD"))
SQUARE = [[2, 2], [12, 2], [12, 9], [2, 9]]


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(path)


def _labelme(path, image_path, label="cat"):
    shape = {"label": label, "points": SQUARE, "group_id": None, "shape_type": "polygon", "flags": {}}
    path.write_text(json.dumps({"version": "5.5.0", "flags": {}, "shapes": [shape], "imagePath": image_path,
                                "imageData": None, "imageHeight": 30, "imageWidth": 40}), encoding="utf-8")


def _convert(src, out):
    return main(["convert-data", "--from", "labelme", str(src), "--output", str(out)])


@pytest.mark.parametrize("on_disk, written", [(NFD, NFC), (NFC, NFD)])
def test_labelme_image_stored_in_the_other_unicode_form_is_found(tmp_path, capsys, on_disk, written):
    """'café.png' unzipped from a macOS archive (NFD) for the name written NFC (and the reverse) was "not
    found" with the hint to pass --images, although it is there."""
    src, out = tmp_path / "src", tmp_path / "out.json"
    _png(src / on_disk)
    if (src / written).is_file():
        pytest.skip("this file system normalises names itself")
    _labelme(src / "a.json", written)
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert err.count("stored in another Unicode form") == 1 and "--images" not in err
    (image,) = json.loads(out.read_text())["images"]
    assert (src / image["file_name"]).is_file() and unicodedata.normalize("NFC", image["file_name"]) == NFC


def test_two_files_in_other_unicode_forms_are_named_never_guessed(tmp_path, capsys):
    """'crème brûlée' has four forms (each accent composed or not): written in one, two others on disk."""
    src, out = tmp_path / "src", tmp_path / "out.json"
    nfc = unicodedata.normalize("NFC", "crème brûlée.png")
    nfd = unicodedata.normalize("NFD", nfc)
    mixed = nfc.replace("è", unicodedata.normalize("NFD", "è"))
    _png(src / nfd)
    _png(src / mixed)
    if (src / nfc).is_file():
        pytest.skip("this file system normalises names itself")
    _labelme(src / "a.json", nfc)
    assert _convert(src, out) == 1
    err = capsys.readouterr().err
    assert "2 files differ from its name only in its Unicode form" in err and "--images" not in err
    assert not out.exists()


def test_labels_in_two_unicode_forms_are_one_class_written_composed(tmp_path, capsys):
    """'crème' typed (NFC) in one file and taken from a macOS folder name (NFD) in another were two
    classes that print alike, without a word."""
    src, out = tmp_path / "src", tmp_path / "out.json"
    for k, form in enumerate(("NFC", "NFD")):
        _png(src / f"{k}.png")
        _labelme(src / f"{k}.json", f"{k}.png", unicodedata.normalize(form, "crème"))
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": unicodedata.normalize("NFC", "crème")}]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 1]
    assert err.count("read composed (NFC)") == 1 and "'cre\\u0300me'" in err


@pytest.mark.parametrize("on_disk, written", [(NFD, NFC), (NFC, NFD)])
def test_coco_loader_finds_the_file_stored_in_the_other_unicode_form(tmp_path, on_disk, written):
    """The COCO loader (train, eval, show-data) skipped the image as missing_image_file."""
    _png(tmp_path / "img" / "sub" / on_disk)
    if (tmp_path / "img" / "sub" / written).is_file():
        pytest.skip("this file system normalises names itself")
    coco = {"images": [{"id": 1, "file_name": f"sub/{written}", "height": 30, "width": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 7], "area": 70,
                             "segmentation": [[2, 2, 12, 2, 12, 9, 2, 9]], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    ds = CocoDataset(json_path=tmp_path / "a.json", image_dir=tmp_path / "img")
    assert ds.skipped == {} and len(ds) == 1
    assert ds.image_info(0)["path"] == tmp_path / "img" / "sub" / on_disk
    assert any("found stored in the other Unicode form" in n for n in ds.notes)
    image, target = ds[0]
    assert tuple(image.shape[-2:]) == (30, 40) and len(target["labels"]) == 1


def test_merge_joins_class_names_in_two_unicode_forms_composed(tmp_path, capsys):
    names = {}
    for k, form in (("n1", "NFD"), ("n2", "NFC")):
        _png(tmp_path / k / "a.png")
        coco = {"images": [{"id": 1, "file_name": "a.png", "height": 30, "width": 40}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 7],
                                 "area": 70, "segmentation": [[2, 2, 12, 2, 12, 9, 2, 9]], "iscrowd": 0}],
                "categories": [{"id": 1, "name": unicodedata.normalize(form, "crème brûlée")}]}
        (tmp_path / f"{k}.json").write_text(json.dumps(coco))
        names[k] = f"{tmp_path / (k + '.json')}:{tmp_path / k}"
    out = tmp_path / "m.json"
    assert main(["merge-data", names["n1"], names["n2"], "--output", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["categories"] == [{"id": 1, "name": unicodedata.normalize("NFC", "crème brûlée")}]
    assert [a["category_id"] for a in merged["annotations"]] == [1, 1]


def test_fine_tune_and_eval_match_class_names_in_either_unicode_form():
    composed, decomposed = (unicodedata.normalize(form, "Crème") for form in ("NFC", "NFD"))
    assert normalise_name(decomposed) == normalise_name(composed) == unicodedata.normalize("NFC", "crème")
    # fine-tuning: the weights' decomposed 'crème' row starts our composed class
    assert match_names(["bg", composed, "dog"], ["bg", "dog", decomposed]) == [0, 2, 1]
    # eval --weights / --results: a model's decomposed name is the ground truth's composed category
    exact, normalised = name_index([(7, [composed], composed), (3, ["dog"], "dog")])
    mapping, _ = ids_by_name({1: decomposed, 2: "dog"}, exact, normalised)
    assert mapping == {1: 7, 2: 3}


def test_cvat_and_labelstudio_find_the_image_stored_in_the_other_unicode_form(tmp_path, capsys):
    """CVAT's <image name> and Label Studio's task image, written NFC, for the file unzipped NFD."""
    _png(tmp_path / "images" / NFD)
    if (tmp_path / "images" / NFC).is_file():
        pytest.skip("this file system normalises names itself")
    polygon = '<polygon label="cat" occluded="0" source="manual" points="2,2;12,2;12,9;2,9" z_order="0"/>'
    (tmp_path / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>'
        f'<image id="0" name="{NFC}" width="40" height="30">{polygon}</image></annotations>\n',
        encoding="utf-8")
    rect = {"id": "r1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": 40, "original_height": 30, "image_rotation": 0,
            "value": {"x": 5, "y": 10, "width": 25, "height": 20, "rotation": 0, "rectanglelabels": ["cat"]}}
    task = {"id": 1, "data": {"image": f"/data/local-files/?d=images/{NFC}"},
            "annotations": [{"id": 100, "result": [rect], "was_cancelled": False, "ground_truth": False}]}
    (tmp_path / "ls.json").write_text(json.dumps([task]))
    for fmt, src in (("cvat", tmp_path / "annotations.xml"), ("labelstudio", tmp_path / "ls.json")):
        out = tmp_path / f"{fmt}.json"
        assert main(["convert-data", "--from", fmt, str(src), "--output", str(out)]) == 0, fmt
        err = capsys.readouterr().err
        assert err.count("stored in another Unicode form") == 1, (fmt, err)
        (image,) = json.loads(out.read_text())["images"]
        assert (tmp_path / image["file_name"]).is_file(), fmt


def test_coco_loader_lists_the_image_folder_once_for_many_missing_images(tmp_path, monkeypatch):
    """Each record got a fresh listings cache, so every image not found listed (and NFC-folded) the whole
    folder again: 2,000 missing images in a folder of 20,000 files took 42 s to load instead of 0.1 s."""
    folder = tmp_path / "img"
    for k in range(20):
        _png(folder / f"present_{k}.png")
    coco = {"images": [{"id": k + 1, "file_name": f"gone_{k}.png", "height": 30, "width": 40}
                       for k in range(30)],
            "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    listed = []
    scandir = os.scandir

    def counting_scandir(path="."):
        listed.append(os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every image missing is warned about; the count is the point here
        ds = CocoDataset(json_path=tmp_path / "a.json", image_dir=folder)
    assert len(ds) == 0 and sum(ds.skipped.values()) == 30
    assert listed.count(os.fspath(folder)) == 1, listed


def _labelstudio_task(tmp_path, reference):
    rect = {"id": "r1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": 40, "original_height": 30, "image_rotation": 0,
            "value": {"x": 5, "y": 10, "width": 25, "height": 20, "rotation": 0, "rectanglelabels": ["cat"]}}
    task = {"id": 1, "data": {"image": reference},
            "annotations": [{"id": 100, "result": [rect], "was_cancelled": False, "ground_truth": False}]}
    (tmp_path / "ls.json").write_text(json.dumps([task]))
    return tmp_path / "ls.json"


def test_labelstudio_tells_files_in_the_other_unicode_form_apart_by_folder_or_names_them(tmp_path, capsys):
    """a/café.png and b/café.png (both NFD) for the task's b/café.png (NFC): its folder tells them apart,
    as for names stored alike, but the image was skipped as "not found"; a task naming no folder that
    tells them apart was "not found" too, without a word of the candidates."""
    root = tmp_path / "root"
    for folder in ("a", "b"):
        _png(root / folder / NFD)
    if (root / "a" / NFC).is_file():
        pytest.skip("this file system normalises names itself")
    out = tmp_path / "o.json"
    src = _labelstudio_task(tmp_path, f"/data/local-files/?d=b/{NFC}")
    assert main(["convert-data", "--from", "labelstudio", str(src), "--images", str(root),
                 "--output", str(out)]) == 0
    assert capsys.readouterr().err.count("stored in another Unicode form") == 1
    (image,) = json.loads(out.read_text())["images"]
    assert image["file_name"] == f"b/{NFD}"

    src = _labelstudio_task(tmp_path, f"/data/local-files/?d=c/{NFC}")  # no folder of that name
    assert main(["convert-data", "--from", "labelstudio", str(src), "--images", str(root),
                 "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "stored in another Unicode form (composed / decomposed accents) in several folders" in err
    assert f"{ascii('a/' + NFD)}, {ascii('b/' + NFD)}" in err and "not found" not in err


def test_name_differing_in_case_and_unicode_form_is_not_said_to_differ_only_in_case(tmp_path, capsys):
    """'Café.png' (NFC) written for the file 'café.png' (NFD): found by the case fold, and the warning said
    it "differs from it only in case"."""
    src, out = tmp_path / "src", tmp_path / "out.json"
    _png(src / NFD)
    written = NFC.capitalize()
    if (src / written).is_file() or (src / NFC).is_file():
        pytest.skip("this file system normalises names or ignores case itself")
    _labelme(src / "a.json", written)
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "only in case" not in err
    assert f"using {ascii(NFD)}, which differs from it in case and in its Unicode form" in err
    (image,) = json.loads(out.read_text())["images"]
    assert (src / image["file_name"]).is_file()
