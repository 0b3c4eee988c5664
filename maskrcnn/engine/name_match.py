"""The one rule by which class names say a category's id: ``eval --weights`` matching a model's class
names to the dataset's categories (``inference.label_mapping``) and ``eval --results`` matching the
``category_name`` of each record to the ground truth's (``results_file.match_category_names``).

A mapping by name is used only when it is complete enough to trust: every one of the classes (a model's
classes, a results file's names) names exactly one category, or every category is named by one of them
(a validation split converted on its own lists only the classes it holds: the others are left out, not
mis-numbered). Otherwise (one class renamed in the ground truth, every name translated) the names say
nothing reliable and the callers keep the ids they had (the checkpoint's, the file's). Names are compared
exactly first; when that gives no mapping, as ``init_weights.normalise_name`` reads them ('Person' is
'person'), an exact name still taking precedence, a name so read that fits several categories, or that
several of the classes share, matching nothing.
"""

from __future__ import annotations

from typing import Callable, Optional


def name_index(categories) -> tuple:
    """({name: [ids]}, {normalised name: [ids]}) of ``categories``: (id, exact names, name to normalise)
    triples (a category may be known by several exact names, as "cat (id 1)" beside "cat")."""
    from maskrcnn.engine.init_weights import normalise_name

    exact: dict = {}
    normalised: dict = {}
    for cid, names, own in categories:
        for name in dict.fromkeys(names):
            exact.setdefault(name, []).append(cid)
        normalised.setdefault(normalise_name(own), []).append(cid)
    return exact, normalised


def match_names(names: dict, exact: dict, normalised: dict, *, loose: bool,
                on_ambiguous: Optional[Callable] = None) -> tuple:
    """(mapping or None, found) for ``names`` ({key: name}: a model's labels, a results file's ids) by
    the categories of ``name_index``: ``found`` {key: [ids its name names]}; ``mapping`` {key: id} of the
    keys found, or None when the names cannot be trusted (module docstring). ``on_ambiguous(name, ids)``
    is called for a name that, normalised, fits several categories (``loose`` only)."""
    from maskrcnn.engine.init_weights import normalise_name

    mine = [normalise_name(n) for n in names.values()]
    found = {}
    for key, name in names.items():
        if name in exact or not loose:
            found[key] = exact.get(name, [])
            continue
        read = normalise_name(name)
        if normalised.get(read) and mine.count(read) > 1:
            found[key] = []  # another of the classes reads alike: which is the category's is unknown
            continue
        if len(normalised.get(read, [])) > 1:  # 'PERSON' on a file's 'Person' and 'person'
            if on_ambiguous is not None:
                on_ambiguous(name, normalised[read])
            found[key] = []
            continue
        found[key] = normalised.get(read, [])
    every_id = {cid for ids in exact.values() for cid in ids}
    matched = {cid for ids in found.values() for cid in ids}
    everyone = all(found.values()) or every_id <= matched
    if not found or any(len(v) > 1 for v in found.values()) or not everyone:
        return None, found
    mapping = {key: ids[0] for key, ids in found.items() if ids}
    return mapping or None, found


def ids_by_name(names: dict, exact: dict, normalised: dict, *,
                on_ambiguous: Optional[Callable] = None) -> tuple:
    """``match_names`` by exact names, else loosely: (mapping or None, found of the last attempt)."""
    mapping, found = match_names(names, exact, normalised, loose=False)
    if mapping is not None:
        return mapping, found
    return match_names(names, exact, normalised, loose=True, on_ambiguous=on_ambiguous)


def ids_among_repeated_names(found: dict, same: Callable) -> Optional[dict]:
    """Where only the names cannot decide: ``found`` ({key: [ids its name names]}, as ``match_names``
    gives it) with a name that fits several categories (a ground truth that repeats 'car', two datasets
    merged), and every key's own id among the ids its name names (``same(key, id)``: the key is that id).
    Then the names and the ids agree and nothing is ambiguous: {key: the id it is} to keep, which the
    caller says in one note. None otherwise (no repeated name; a key whose name is absent, or names
    categories its id is not one of: the names cannot tell which is meant)."""
    if not found or not any(len(ids) > 1 for ids in found.values()):
        return None
    kept = {}
    for key, ids in found.items():
        own = [cid for cid in ids if same(key, cid)]
        if len(own) != 1:
            return None
        kept[key] = own[0]
    return kept


def ids_by_name_or_placed(names: dict, exact: dict, normalised: dict, *, has_id: Callable,
                          on_ambiguous: Optional[Callable] = None) -> tuple:
    """``ids_by_name``, after leaving out the keys that cannot be placed at all: a key whose name names
    no category and whose own id (``has_id(key)``) is none of them either (a model's 'square' id 2 on a
    file of 'circle' 7 and 'hexagon' 42). Such a key says nothing against the others' names: kept, it
    made a model that shares one class name with the file fall back to its own ids, none of them the
    file's, and fail after the whole inference. (mapping or None, found, the keys left out); nothing is
    left out when every key is so unplaceable (another dataset's classes: the callers refuse that)."""
    mapping, found = ids_by_name(names, exact, normalised, on_ambiguous=on_ambiguous)
    if mapping is not None:
        return mapping, found, []
    nowhere = [key for key, ids in found.items() if not ids and not has_id(key)]
    if not nowhere or len(nowhere) == len(found):
        return None, found, []
    rest = {key: name for key, name in names.items() if key not in nowhere}
    mapping, found = ids_by_name(rest, exact, normalised, on_ambiguous=on_ambiguous)
    return mapping, found, nowhere
