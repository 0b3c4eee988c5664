"""Eval's matching of the model's classes to a dataset's categories by name: exact names first, then
names as fine-tuning reads them ('Person' is 'person'), as check_class_overlap already lets them through."""

import json
from types import SimpleNamespace

import pytest

from maskrcnn.data.coco import CocoDataset
from maskrcnn.engine.inference import _ids_by_name, check_class_overlap, label_mapping


def _dataset(tmp_path, categories):
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in categories]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return CocoDataset(json_path=tmp_path / "gt.json", image_dir=tmp_path)


def _predictor(names, ids=None):
    return SimpleNamespace(class_names=["__background__", *names], label_to_category_id=ids)


def test_classes_named_in_another_case_are_matched_by_name(tmp_path, capsys):
    """'Person' and 'Car' on a file's 'car' (3), 'dog' (1), 'person' (7): the overlap check passed, then
    the checkpoint's ids {1: 1, 2: 2} scored every person as a dog; without them it raised."""
    dataset = _dataset(tmp_path, [(3, "car"), (1, "dog"), (7, "person")])
    check_class_overlap(["__background__", "Person", "Car"], dataset)  # passes, as before
    assert label_mapping(_predictor(["Person", "Car"], {1: 1, 2: 2}), dataset) == {1: 7, 2: 3}
    assert "matching them by name" in capsys.readouterr().err


def test_exact_names_win_and_ambiguous_names_match_nothing(tmp_path):
    # the file has both 'Person' and 'person': 'person' is exact, 'PERSON' names two of them
    both = _dataset(tmp_path, [(1, "Person"), (2, "person"), (3, "car")])
    assert _ids_by_name(["__background__", "person", "Car"], both) == {1: 2, 2: 3}
    assert _ids_by_name(["__background__", "PERSON", "Car"], both) is None
    # two of the model's classes read as 'person': which is the file's is unknown
    (tmp_path / "other").mkdir()
    one = _dataset(tmp_path / "other", [(4, "person"), (5, "car")])
    assert _ids_by_name(["__background__", "Person", "PERSON", "car"], one) is None
    # ... unless one of them is the file's name exactly: matched as before, the other left out
    assert _ids_by_name(["__background__", "person", "PERSON", "car"], one) == {1: 4, 3: 5}
    # ... also when another class matches only as normalised: the ambiguous one alone is left out
    assert _ids_by_name(["__background__", "person", "PERSON", "Car"], one) == {1: 4, 3: 5}


def test_a_name_that_fits_two_categories_is_named_in_a_note(tmp_path, capsys):
    both = _dataset(tmp_path, [(1, "Person"), (2, "person"), (3, "car")])
    notes = []
    assert _ids_by_name(["__background__", "PERSON", "Car"], both, notes) is None
    assert len(notes) == 1 and "'PERSON' fits several" in notes[0] and "'Person', 'person'" in notes[0]
    # no mapping by name: the checkpoint's ids
    assert label_mapping(_predictor(["PERSON", "Car"], {1: 1, 2: 3}), both) == {1: 1, 2: 3}
    assert "'PERSON' fits several" in capsys.readouterr().err


@pytest.mark.parametrize("names", [["cat", "dog"], ["Dog", "Cat"]])
def test_the_same_classes_match_exactly_or_in_another_case(tmp_path, names):
    dataset = _dataset(tmp_path, [(9, "dog"), (5, "cat")])
    got = _ids_by_name(["__background__", *names], dataset)
    assert got == ({1: 5, 2: 9} if names[0] == "cat" else {1: 9, 2: 5})


def test_a_class_missing_from_the_file_is_not_called_a_renumbering(tmp_path, capsys):
    """The model's hexagon 7, ellipse 42, arrow 99 on a file with only 7 and 42 (the same names): the note
    said the file "numbers the model's classes differently", yet only arrow is absent."""
    model = _predictor(["hexagon", "ellipse", "arrow"], {1: 7, 2: 42, 3: 99})
    subset = _dataset(tmp_path, [(7, "hexagon"), (42, "ellipse")])
    assert label_mapping(model, subset) == {1: 7, 2: 42}
    err = capsys.readouterr().err
    assert "differently" not in err, err
    assert f"note: {subset.json_path} does not have the model's class arrow: its detections left out" in err
    # renumbered as well as a class absent: both said
    (tmp_path / "renumbered").mkdir()
    other = _dataset(tmp_path / "renumbered", [(1, "ellipse"), (2, "hexagon")])
    assert label_mapping(model, other) == {1: 2, 2: 1}
    err = capsys.readouterr().err
    assert "numbers the model's classes differently" in err and "left out: arrow" in err, err


def test_a_model_without_stored_ids_whose_labels_are_the_ids_is_not_called_renumbered(tmp_path, capsys):
    """person 1, bicycle 2, car 3 without checkpoint ids (the labels are the ids) on a file with only
    person 1 and car 3: the note said the file "numbers the model's classes differently", yet the mapping
    it used is the identity, bicycle only absent."""
    model = _predictor(["person", "bicycle", "car"])
    subset = _dataset(tmp_path, [(1, "person"), (3, "car")])
    assert label_mapping(model, subset) == {1: 1, 3: 3}
    err = capsys.readouterr().err
    assert "differently" not in err, err
    assert f"note: {subset.json_path} does not have the model's class bicycle: its detections left out" in err
    # the file holding every class of the model and one more, the same ids: nothing to say
    (tmp_path / "more").mkdir()
    more = _dataset(tmp_path / "more", [(1, "person"), (2, "bicycle"), (3, "car"), (4, "dog")])
    assert label_mapping(model, more) == {1: 1, 2: 2, 3: 3}
    assert capsys.readouterr().err == ""
    # other ids for the same names: renumbered, said so
    (tmp_path / "other").mkdir()
    other = _dataset(tmp_path / "other", [(5, "person"), (6, "car")])
    assert label_mapping(model, other) == {1: 5, 3: 6}
    assert "numbers the model's classes differently" in capsys.readouterr().err
