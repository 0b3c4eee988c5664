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


def distinct_class_names(class_names: Sequence[str]) -> list:
    """A model's class names (index = label, index 0 the background, kept as it is) with repeated or
    empty names told apart by their class index: ['__background__', '', '', 'dog'] ->
    ['__background__', '(id 1)', '(id 2)', 'dog']."""
    names = list(class_names)
    if len(names) < 2:
        return names
    return names[:1] + list(distinct_names(dict(enumerate(names[1:], 1))).values())


def renamed_note(class_names: Sequence[str], distinct: Sequence[str]) -> Optional[str]:
    """One line naming the classes ``distinct_class_names`` renamed (None when it renamed none)."""
    changed = [(i, old, new) for i, (old, new) in enumerate(zip(class_names, distinct)) if old != new]
    if not changed:
        return None
    listed = ", ".join(f"{i}: {old!r} -> {new!r}" for i, old, new in changed)
    return (f"the model's class names repeat or are empty; they stay distinct classes, named 'NAME (id "
            f"INDEX)' in every output ({listed})")
