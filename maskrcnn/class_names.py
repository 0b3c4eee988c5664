"""Class names that can tell classes apart: one rule for a dataset's categories and a model's classes.

A name that several classes share, or an empty one (a checkpoint whose names were left blank), merges
classes wherever a name is the key: LabelMe's ``label``, Label Studio's ``<Label value=...>`` (which
refuses a repeated value), CVAT's ``<label>``, YOLO's ``names``, per-class counts and AP tables. Such a
name becomes ``'NAME (id ID)'`` (``'(id ID)'`` for an empty one), ID being the category id of a dataset or
the class index of a model; every other name is kept as it is, so names that are fine never change and
the rule is idempotent (the renamed ones are distinct and not empty).
"""

from __future__ import annotations

from typing import Optional, Sequence


def _needs_id(name, values: list) -> bool:
    return not str(name).strip() or values.count(name) > 1


def distinct_names(names: dict) -> dict:
    """{id: name} -> the same with a repeated or empty (blank) name told apart as 'NAME (id ID)'."""
    values = list(names.values())
    return {i: f"{n} (id {i})".strip() if _needs_id(n, values) else n for i, n in names.items()}


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
