"""``predict --export cvat`` / ``labelstudio`` / ``labelme`` read back by ``convert-data`` number the
categories in the model's class order, a class without instances included: the CVAT XML's ``<meta>``
labels and the class names the tasks and LabelMe files record say that order (a file without them keeps
the sorted-name order)."""

import json

import numpy as np
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.pre_annotations.instances import ImageRecord, categories_of, instances_from_detections
from maskrcnn.data.pre_annotations.to_cvat import cvat_xml
from maskrcnn.data.pre_annotations.to_labelme import labelme_file
from maskrcnn.data.pre_annotations.to_labelstudio import labelstudio_tasks

H, W = 24, 32
# not in name order, and "ant" never predicted
CLASS_NAMES = ["__background__", "dog", "cat", "ant"]
CATEGORIES = categories_of(CLASS_NAMES)
MODEL_ORDER = [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "ant"}]


def _predicted(tmp_path):
    """(images root, ImageRecords, instances): a.png with a cat and a dog."""
    root = tmp_path / "photos"
    root.mkdir()
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "a.png")
    masks = np.zeros((2, H, W), bool)
    masks[0, 2:10, 2:12] = True
    masks[1, 12:20, 14:28] = True
    det = {"boxes": torch.zeros(2, 4), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([2, 1]),
           "masks": torch.from_numpy(masks)}
    return root, [ImageRecord(1, "a.png", H, W)], [instances_from_detections(det, CATEGORIES)]


def _names_of_annotations(coco: dict) -> list:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [names[a["category_id"]] for a in coco["annotations"]]


def test_cvat_export_reads_back_in_the_model_class_order_with_its_empty_class(tmp_path, capsys):
    """Before: categories ant 1, cat 2, dog 3 (sorted names), not the model's dog 1, cat 2, ant 3. The
    change of numbering (every CVAT file with <meta> labels out of name order) is said in one line."""
    root, images, instances = _predicted(tmp_path)
    xml = tmp_path / "cvat_annotations.xml"
    xml.write_text(cvat_xml(images, instances, CATEGORIES, images_folder="photos"), encoding="utf-8")
    out = tmp_path / "rt.json"
    assert main(["convert-data", "--from", "cvat", str(xml), "--output", str(out)]) == 0
    coco = json.loads(out.read_text())
    assert coco["categories"] == MODEL_ORDER
    assert _names_of_annotations(coco) == ["cat", "dog"]
    told = [line for line in capsys.readouterr().err.splitlines() if "not sorted by name" in line]
    assert len(told) == 1 and "cvat_annotations.xml" in told[0] and "(dog, cat, ant)" in told[0]
    in_order = xml.read_text(encoding="utf-8").replace("<name>dog</name>", "<name>ape</name>")
    xml.write_text(in_order, encoding="utf-8")  # ape, cat, ant: sorted would be ant, ape, cat
    assert main(["convert-data", "--from", "cvat", str(xml), "--output", str(out)]) == 0
    assert "(ape, cat, ant)" in capsys.readouterr().err
    ordered = in_order.replace("<name>ant</name>", "<name>bee</name>")  # ape, cat, bee: in name order
    xml.write_text(ordered.replace("<name>cat</name>", "<name>bat</name>"), encoding="utf-8")
    assert main(["convert-data", "--from", "cvat", str(xml), "--output", str(out)]) == 0
    assert "not sorted by name" not in capsys.readouterr().err
    xml.write_text(in_order, encoding="utf-8")
    # a file whose <meta> lists no labels (another tool's): the labels met, sorted by name
    bare = xml.read_text(encoding="utf-8")
    start, end = bare.index("<labels>"), bare.index("</labels>") + len("</labels>")
    xml.write_text(bare[:start] + bare[end:], encoding="utf-8")
    assert main(["convert-data", "--from", "cvat", str(xml), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def test_labelstudio_export_reads_back_in_the_model_class_order_with_its_empty_class(tmp_path):
    """Before: the tasks carried no class list: categories cat 1, dog 2 (sorted, ant dropped)."""
    root, images, instances = _predicted(tmp_path)
    path = tmp_path / "labelstudio_tasks.json"
    tasks = labelstudio_tasks(images, instances, images_folder="photos", categories=CATEGORIES)
    assert tasks[0]["data"]["maskrcnn_classes"] == ["dog", "cat", "ant"]
    path.write_text(json.dumps(tasks))
    out = tmp_path / "rt.json"
    assert main(["convert-data", "--from", "labelstudio", str(path), "--output", str(out)]) == 0
    coco = json.loads(out.read_text())
    assert coco["categories"] == MODEL_ORDER
    assert _names_of_annotations(coco) == ["cat", "dog"]
    # annotated in Label Studio and exported (JSON): the data field is kept, and so is the order
    exported = [{"id": 7, "data": t["data"], "annotations": [{"result": t["predictions"][0]["result"]}]}
                for t in tasks]
    path.write_text(json.dumps(exported))
    assert main(["convert-data", "--from", "labelstudio", str(path), "--images", str(root), "--output",
                 str(out)]) == 0
    assert json.loads(out.read_text())["categories"] == MODEL_ORDER


def test_labelme_export_reads_back_in_the_model_class_order_with_its_empty_class(tmp_path):
    """Before: categories cat 1, dog 2 (sorted, ant dropped); a file without the key keeps that."""
    root, images, instances = _predicted(tmp_path)
    folder = tmp_path / "labelme"
    folder.mkdir()
    data = labelme_file(images[0], instances[0], image_path="../photos/a.png", categories=CATEGORIES)
    assert data["maskrcnn_classes"] == ["dog", "cat", "ant"]
    (folder / "a.json").write_text(json.dumps(data))
    out = tmp_path / "rt.json"
    assert main(["convert-data", "--from", "labelme", str(folder), "--images", str(root), "--output",
                 str(out)]) == 0
    coco = json.loads(out.read_text())
    assert coco["categories"] == MODEL_ORDER
    assert _names_of_annotations(coco) == ["cat", "dog"]
    del data["maskrcnn_classes"]  # another tool's file: the labels met, sorted by name
    (folder / "a.json").write_text(json.dumps(data))
    assert main(["convert-data", "--from", "labelme", str(folder), "--images", str(root), "--output",
                 str(out)]) == 0
    assert json.loads(out.read_text())["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
