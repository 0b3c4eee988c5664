"""eval --weights of a model that shares one class name with the ground truth under another id (the demo
model's circle 1, square 2, ... on a file of circle 7, hexagon 42, widget 99): the other classes are
found neither by name nor by id, so they say nothing against circle's name (name_match's one rule)."""

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.engine.inference import label_mapping, unscored_classes_warning

DEMO = ["circle", "square", "triangle", "star", "cross"]


def _dataset(tmp_path, categories, objects=()):
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}]
    anns = [{"id": i + 1, "image_id": 1, "category_id": cid, "bbox": [4, 4, 20, 20], "area": 400,
             "iscrowd": 0} for i, cid in enumerate(objects)]
    gt = {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in categories]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    return CocoDataset(json_path=tmp_path / "gt.json", image_dir=tmp_path)


def test_a_shared_name_under_another_id_is_matched_by_name(tmp_path, capsys):
    """Was: checkpoint ids 1..5 kept, 'circle and hexagon are not among the model's classes' (false for
    circle), then 'category ids 1, 2, 3, 4, 5 are not in the ground truth' after the whole inference."""
    model = SimpleNamespace(class_names=["__background__", *DEMO],
                            label_to_category_id={i: i for i in range(1, 6)})
    dataset = _dataset(tmp_path, [(7, "circle"), (42, "hexagon"), (99, "widget")], objects=(7, 42, 42))
    mapping = label_mapping(model, dataset)
    assert mapping == {1: 7}  # square..cross left out (build_evaluator ignores labels not in it)
    err = capsys.readouterr().err
    assert "matching them by name" in err and "square, triangle, star, cross" in err, err
    warning = unscored_classes_warning(mapping, dataset)
    assert "'hexagon' (2 objects)" in warning and "circle" not in warning, warning


def test_an_unscorable_id_clash_is_refused_before_inference(tmp_path):
    """circle kept at the weights' id 1, which the file lacks (its circle is 7), while square's id 2 is
    the file's (named otherwise): the names cannot be trusted, nor can circle be scored: refused now."""
    model = SimpleNamespace(class_names=["__background__", "circle", "square"],
                            label_to_category_id={1: 1, 2: 2})
    dataset = _dataset(tmp_path, [(7, "circle"), (2, "thing")])
    with pytest.raises(ValueError, match=r"'circle' \(id 1 in the weights, 7 in the file\) cannot be scored"):
        label_mapping(model, dataset)


def test_names_contradicting_the_kept_ids_are_said(tmp_path, capsys):
    """The weights' 'dog' id 2 on a file where id 2 is 'bird' and 'dog' is id 1 (and 'cat' absent): the
    names do not match as a whole, so the ids are kept, as before, but no longer without a word."""
    model = SimpleNamespace(class_names=["__background__", "cat", "dog"], label_to_category_id={1: 1, 2: 2})
    dataset = _dataset(tmp_path, [(1, "dog"), (2, "bird")], objects=(1, 2))
    assert label_mapping(model, dataset) == {1: 1, 2: 2}
    err = capsys.readouterr().err
    assert "'dog' is id 2 in the weights, 1 in the file (id 2 there is 'bird')" in err, err
    assert "ids are kept" in err, err


def test_ids_whose_names_agree_are_kept_without_a_warning(tmp_path, capsys):
    model = SimpleNamespace(class_names=["__background__", "cat", "dog"], label_to_category_id={1: 1, 2: 2})
    dataset = _dataset(tmp_path, [(1, "cat"), (2, "dog"), (3, "bird")], objects=(1, 2))
    assert label_mapping(model, dataset) == {1: 1, 2: 2}
    assert "other ids" not in capsys.readouterr().err


def test_a_name_the_file_gives_two_ids_is_not_said_to_contradict_its_own(tmp_path, capsys):
    """Reader r4_engine: 'dog' at the weights' 5 on a file with 'dog' 1 and 'dog' 5 was told "(id 5 there
    is 'dog')": the id's own name agrees, nothing contradicts it."""
    model = SimpleNamespace(class_names=["__background__", "cat", "dog"], label_to_category_id={1: 3, 2: 5})
    dataset = SimpleNamespace(label_to_category_id={1: 1, 2: 5, 3: 3},
                              class_names=["bg", "dog", "dog", "cat"],
                              json_path="val.json", num_classes=4)
    label_mapping(model, dataset)
    assert "other ids" not in capsys.readouterr().err
