"""Class names that can tell classes apart: one rule for a dataset's categories and a model's classes.

A name that several classes share, or an empty one (a checkpoint whose names were left blank), merges
classes wherever a name is the key: LabelMe's ``label``, Label Studio's ``<Label value=...>`` (which
refuses a repeated value), CVAT's ``<label>``, YOLO's ``names``, per-class counts and AP tables. Such a
name becomes ``'NAME (id ID)'`` (``'(id ID)'`` for an empty one), ID being the category id of a dataset or
the class index of a model (or the category id its checkpoint carries); a name equal to one so made
(``'a (id 1)'`` beside two ``'a'``) is told apart the same way; every other name is kept as it is, so
names that are fine never change and the rule is idempotent (its names are distinct and not empty).
"""

from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

# names of a category or class that stands for the background (labelme2coco's, torchvision's and other
# tools'), compared lowercased: a dataset's category, a converted file's stored names, --class-names
BACKGROUND_NAMES = ("_background_", "background", "__background__")


def _with_id(name, i) -> str:
    return f"{name} (id {i})".strip()


def distinct_names(names: dict) -> dict:
    """{id: name} -> the same with a repeated or empty (blank) name told apart as 'NAME (id ID)'. A kept
    name equal to one so made ('a (id 1)' beside two 'a', or '(id 1)' beside an empty name of id 1) is
    told apart too, until every name differs: the names made are distinct among themselves (each ends in
    its own id), so each round turns at least one kept name into a made one, at most len(names) rounds."""
    counts = Counter(names.values())
    out = {i: _with_id(n, i) if not str(n).strip() or counts[n] > 1 else n for i, n in names.items()}
    kept = {i for i, n in names.items() if str(n).strip() and counts[n] == 1}
    for _ in range(len(names)):
        counts = Counter(out.values())
        clashing = [i for i in kept if counts[out[i]] > 1]
        if not clashing:
            break
        for i in clashing:
            out[i] = _with_id(names[i], i)
            kept.discard(i)
    return out


def name_ids(class_names: Sequence[str], category_ids: Optional[dict] = None) -> list:
    """The ID each class (labels 1..K-1) is told apart by: the category id ``category_ids`` gives it when
    that mapping numbers every label with distinct ids, else its class index."""
    labels = list(range(1, len(class_names)))
    ids = {int(k): v for k, v in category_ids.items()} if category_ids else {}
    if all(label in ids for label in labels) and len({ids[label] for label in labels}) == len(labels):
        return [ids[label] for label in labels]
    return labels


def distinct_class_names(class_names: Sequence[str], category_ids: Optional[dict] = None) -> list:
    """A model's class names (index = label, index 0 the background, kept as it is) with repeated or
    empty names told apart by their class index: ['__background__', '', '', 'dog'] ->
    ['__background__', '(id 1)', '(id 2)', 'dog']; with ``category_ids`` ({label: category id}, the
    dataset's numbering a checkpoint carries) by the category id (``name_ids``), as ``CocoDataset``
    names the same classes: 'a (id 7)' next to ``category_id`` 7 in predictions.json, the name eval
    matches a dataset's classes by."""
    names = list(class_names)
    if len(names) < 2:
        return names
    return names[:1] + list(distinct_names(dict(zip(name_ids(names, category_ids), names[1:]))).values())


def renamed_note(class_names: Sequence[str], distinct: Sequence[str], by_category_id: bool = False
                 ) -> Optional[str]:
    """One line naming the classes ``distinct_class_names`` renamed (None when it renamed none);
    ``by_category_id``: told apart by category ids (``name_ids``), not class indices."""
    changed = [(i, old, new) for i, (old, new) in enumerate(zip(class_names, distinct)) if old != new]
    if not changed:
        return None
    listed = ", ".join(f"{i}: {old!r} -> {new!r}" for i, old, new in changed)
    named = "'NAME (id ID)', ID the category id" if by_category_id else "'NAME (id INDEX)'"
    return (f"the model's class names repeat or are empty; they stay distinct classes, named {named} in "
            f"every output ({listed})")
