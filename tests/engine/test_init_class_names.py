"""``train --init``'s class matching at its edges (``engine/init_weights``): classes of the training set
whose names read alike ('star', 'STAR') do not start tied from one row of the weights, and say so in a
warning; classes named "N/A" or "__background__" a run of ours trained keep their rows when that run's
checkpoint starts another (a placeholder of another library's file still matches nothing, with a note);
the README says what the matcher compares."""

import re
from pathlib import Path

import pytest
import torch

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine.init_weights import (
    InitError,
    initialise_model,
    match_names,
    normalise_name,
    shared_rows_warning,
    summary_lines,
)
from maskrcnn.interop.weights import SourceWeights, read_weights
from tests.tiny_model import class_rows_model

README = Path(__file__).resolve().parents[2] / "README.md"


def _rows_state(k):
    """cls_score rows 0..k-1 filled with their index: a copied row tells which one it is."""
    weight = torch.arange(k, dtype=torch.float32)[:, None].repeat(1, 3)
    return {"roi_heads.box_predictor.cls_score.weight": weight,
            "roi_heads.box_predictor.cls_score.bias": torch.arange(k, dtype=torch.float32)}


# ------------------------------------------------------------------- F1: names that read alike


def test_classes_that_read_alike_do_not_share_one_row():
    ours = ["__background__", "star", "circle", "STAR", "Star "]
    theirs = ["__background__", "circle", "square", "star"]
    rows = match_names(ours, theirs)
    assert rows == [0, 3, 1, None, None]  # the first spelling takes 'star', the others start fresh
    said = shared_rows_warning(ours, rows, theirs)
    assert said.startswith("classes 'star', 'STAR', 'Star ' of the training set read as one name ('star'): "
                           "'star' takes the weights' row 3 ('star'), 'STAR' starts fresh, 'Star ' starts "
                           "fresh")
    assert "model.init_class_map={NAME: THEIRS, OTHER: ''}" in said
    # names of ours the weights do not know: nothing is copied, nothing to warn of here
    assert shared_rows_warning(["__background__", "hexagon", "Hexagon"],
                               match_names(["__background__", "hexagon", "Hexagon"], theirs), theirs) is None


def test_the_map_names_each_spelling_exactly_and_refuses_an_ambiguous_one():
    ours = ["__background__", "star", "STAR"]
    theirs = ["__background__", "circle", "star"]
    assert match_names(ours, theirs, {"STAR": "star", "star": ""}) == [0, None, 2]
    assert match_names(ours, theirs, {"star": "circle", "STAR": "star"}) == [0, 1, 2]
    with pytest.raises(InitError, match=r"'Star' is not a class of the training set as spelt: did you mean "
                                        r"'star' or 'STAR'\?"):
        match_names(ours, theirs, {"Star": "circle"})
    # a row given to two classes by hand is the user's choice, still said: they start tied
    rows = match_names(["__background__", "ring", "circle"], theirs, {"ring": "circle"})
    assert rows == [0, 1, 1]
    assert shared_rows_warning(["__background__", "ring", "circle"], rows, theirs).startswith(
        "'ring', 'circle' all take the weights' row 1 ('circle') and start tied")


def test_the_start_warns_once_of_classes_that_read_alike():
    ours = ["__background__", "star", "STAR"]
    source = SourceWeights(state_dict=_rows_state(4), kind="maskrcnn", layout="maskrcnn-checkpoint",
                           implied={}, class_names=["__background__", "circle", "square", "star"],
                           provenance={"spec": "demo.pth"})
    model = class_rows_model(3)
    report = initialise_model(model, load_config("r50_fpn", {"data.class_names": ours}), source)
    assert report["copied_classes"] == {"star": "star"} and report["fresh_classes"] == ["STAR"]
    got = model.roi_heads.box_predictor.cls_score.weight
    assert torch.equal(got[1], torch.full((3,), 3.0)) and not torch.equal(got[2], got[1])
    warned = [line for line in summary_lines(report, {}) if line.startswith("  warning:")]
    assert warned == ["  warning: " + report["warnings"][0]] and len(report["warnings"]) == 1
    assert "'star' takes the weights' row 3 ('star'), 'STAR' starts fresh" in warned[0]


# ------------------------------------------------------------------- F3: classes named N/A, __background__


def _checkpoint(path, names, **extra):
    cfg = load_config("r50_fpn", {"data.class_names": names, "model.num_classes": len(names)})
    save_checkpoint(path, model_state=_rows_state(len(names)), config=cfg, class_names=names, **extra)
    return read_weights(str(path))


NAMES = ["__background__", "__background__", "N/A", "ring"]


def test_a_trained_class_named_as_a_placeholder_keeps_its_row(tmp_path):
    # a run of ours trained classes named so (its data's categories 7, 9, 11): their rows are classes
    source = _checkpoint(tmp_path / "model_final.pth", NAMES, iteration=80,
                         label_to_category_id={1: 7, 2: 9, 3: 11})
    model = class_rows_model(4)
    report = initialise_model(model, load_config("r50_fpn", {"data.class_names": NAMES}), source)
    assert report["copied_classes"] == {"__background__": "__background__", "N/A": "N/A", "ring": "ring"}
    assert report["fresh_classes"] == [] and report["weights_classes"]["placeholders"] == 0
    assert torch.equal(model.roi_heads.box_predictor.cls_score.bias, torch.arange(4.0))
    assert "  weights: 3 classes + background -> this run: 3 + background" in summary_lines(report, {})
    assert not any("placeholder" in n for n in report["notes"])


def test_placeholder_rows_of_a_file_without_trained_classes_start_fresh_with_a_note(tmp_path):
    # a file that does not record its classes as a dataset's (convert's output of torchvision's COCO
    # model): its N/A rows are placeholders, matched by no class; a class of ours so named hears why
    source = _checkpoint(tmp_path / "converted.pth", NAMES)
    model = class_rows_model(4)
    report = initialise_model(model, load_config("r50_fpn", {"data.class_names": NAMES}), source)
    assert report["copied_classes"] == {"ring": "ring"}
    assert report["fresh_classes"] == ["__background__", "N/A"]
    assert report["weights_classes"]["placeholders"] == 2
    assert report["notes"] == ["classes '__background__', 'N/A' start fresh: the weights' rows of that name "
                               "are placeholders (as torchvision's unused COCO ids are), not classes the "
                               "file says a run trained (model.init_class_map can give them another "
                               "class's row)"]


# ------------------------------------------------------------------- F2: what the README says is compared


def test_the_readme_says_what_the_class_matcher_compares():
    text = README.read_text(encoding="utf-8")
    bullet = text[text.index("- **Your classes.**"):]
    bullet = bullet[:bullet.index("\n- **")]
    assert "ignored)" not in bullet  # '_' and '-' are word breaks, not ignored: 'tri_angle' is no 'triangle'
    same = re.findall(r"`([^`]+)`\s+is\s+`([^`]+)`", bullet)
    other = re.findall(r"`([^`]+)`\s+is\s+not\s+`([^`]+)`", bullet)
    assert len(same) >= 2 and len(other) >= 2, bullet
    assert all(normalise_name(a) == normalise_name(b) for a, b in same), same
    assert all(normalise_name(a) != normalise_name(b) for a, b in other), other


def test_names_discarded_as_not_describing_the_rows_name_no_row_in_the_warnings():
    """The file's 4 names for its 3 rows were set aside (rows taken by position), yet the warnings still
    named row 1 by them ("takes the weights' row 1 ('circle')"): a row called a class it is not."""
    ours = ["__background__", "star", "STAR"]
    source = SourceWeights(state_dict=_rows_state(3), kind="maskrcnn", layout="maskrcnn-checkpoint",
                           implied={}, class_names=["__background__", "circle", "square", "star"],
                           provenance={"spec": "demo.pth"})
    report = initialise_model(class_rows_model(3), load_config("r50_fpn", {"data.class_names": ours}), source)
    said = " ".join(report["warnings"] + report["notes"])
    assert "circle" not in said and "square" not in said, said
