"""Merge COCO instance datasets (each already validated, see ``validated.py``) into one.

- Categories are matched by name as fine-tuning matches classes (``engine.init_weights.normalise_name``:
  case, spaces, ``_`` and ``-`` ignored: 'Traffic_Light' is 'traffic light'; accents composed or
  decomposed alike, as macOS writes them: NFC); a name not seen before is
  appended. The output's ids are 1..K in the order first seen (file by file, each in its own category
  order), or exactly ``classes`` when given: then a source class outside it is left out with its
  annotations, told in one line per class and counted. A category keeps the fields of its first record
  (``supercategory``, ``keypoints``, ``skeleton``); the name is the first spelling met (or the one in
  ``classes``), composed (NFC). Within one file too, names that differ only in what matching ignores
  ('Cat' and 'cat') become one class, each source name folded into another spelling said in a warning
  ("class 'Circle' joined with 'circle'"); names written exactly alike were already told apart by the
  validation ('cat (id 1)', 'cat (id 2)': ``coco.distinct_category_names``, as training names them) and
  stay two classes, matched under those names (another file's plain 'cat' is a third class).
- Keypoints: the merged file holds one keypoint set (a model has one keypoint head), so every category
  with ``keypoints`` must list the same names in the same order; otherwise ValueError naming both files.
  A class whose category declares keypoints in one source but not in another is merged with them; the
  other source's annotations of it (none labelled) are counted in a warning naming both files, and
  written with ``keypoints`` all 0 and ``num_keypoints`` 0 (pycocotools' keypoint evaluation reads both
  on every annotation of such a class). A class no source gives keypoints gets no keypoint field, as in
  COCO's own files: a keypoint evaluation names the categories with keypoints (``eval`` does;
  pycocotools' COCOeval over every category stops on ``num_keypoints`` for such a source alone too).
- Image and annotation ids are renumbered 1..N and 1..M in source order; every other field is kept.
  ``file_name`` becomes the image's path relative to ``images_root`` (``/`` separators, ``..`` for an
  image outside it), so ``train --train-images ROOT`` finds every image.
- The same image file (same real path) listed twice, in one source or two, is merged once, with a
  warning: the first listing's annotations are kept, the later's left out (they label the same pixels;
  keeping both would train on duplicated instances), counted by class in the warning and in the source's
  ``SourceCounts.duplicate_annotations`` (a file of dogs over the images of a file of cats lost every dog
  without a number).
- LVIS's image-level class lists (``not_exhaustive_category_ids``, ``neg_category_ids``,
  ``pos_category_ids``) follow the renumbered category ids; an id of no category of the source (or of a
  class ``classes`` leaves out) is dropped from the list, counted per source in a warning (kept, it
  would name another class of the merged file).
- ``licenses``: every source's list, renumbered 1..L in source order (a license written alike in two
  sources, its id aside, is one), each image's ``license`` id mapped to its new one. Ids are matched as
  text (an image's ``"license": "1"`` names license ``1``: exporters write either). An image ``license``
  its source does not list, or lists twice (which one is meant is unknown), is dropped from the record,
  counted in a warning saying which (it would name another source's license).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import NamedTuple, Optional, Sequence

from maskrcnn.data.unicode_names import nfc
from maskrcnn.engine.init_weights import normalise_name
from maskrcnn.listing import short_listing
from maskrcnn.shown_text import display_name

__all__ = ["CLASS_LISTS", "MergeSource", "SourceCounts", "common_root", "merge_coco", "parse_classes"]

# an image's lists of category ids (LVIS): renumbered with the categories
CLASS_LISTS = ("not_exhaustive_category_ids", "neg_category_ids", "pos_category_ids")


def _class_list(values, cat_map: dict) -> tuple:
    """(``values`` mapped through ``cat_map`` {source id: new id or None}, how many were dropped: ids of
    no category, or of a class left out). Ids are matched as the loader reads them ("3" is 3)."""
    from maskrcnn.data.validated import as_id

    if not isinstance(values, list):  # not a list: nothing can be mapped, none of it kept
        return [], 1
    mapped = [cat_map.get(as_id(v)) if isinstance(v, (int, str)) and not isinstance(v, bool) else None
              for v in values]
    kept = [v for v in mapped if v is not None]
    return kept, len(mapped) - len(kept)


def _license_key(value) -> Optional[str]:
    """An id as matched: its text (``"1"`` and ``1`` are one id), None for no id (absent, null, a list
    or an object)."""
    return None if value is None or isinstance(value, (list, dict)) else str(value)


def _licenses(sources: Sequence) -> tuple:
    """(the merged ``licenses`` with ids 1..L, one {id text: new id} per source, one set of the id texts
    each source lists twice or more). A license written alike in two sources (its id aside) is one; a
    record without an id, or whose id repeats in its source, is left out (no image can name it
    unambiguously)."""
    merged, index, maps, repeated = [], {}, [], []
    for src in sources:
        listed = [lic for lic in src.licenses or () if isinstance(lic, dict)]
        ids = Counter(_license_key(lic.get("id")) for lic in listed)
        mapping = {}
        for lic in listed:
            key_id = _license_key(lic.get("id"))
            if key_id is None or ids[key_id] > 1:
                continue
            body = {k: v for k, v in lic.items() if k != "id"}
            key = repr(sorted(body.items(), key=lambda kv: kv[0]))
            if key not in index:
                index[key] = len(merged) + 1
                merged.append({"id": index[key], **body})
            mapping[key_id] = index[key]
        maps.append(mapping)
        repeated.append({i for i, n in ids.items() if i is not None and n > 1})
    return merged, maps, repeated


class MergeSource(NamedTuple):
    name: str  # how messages name the source (its JSON path as given)
    images: list  # image records (every field), valid
    annotations: list  # annotations of those images, valid
    categories: list  # {"id", "name", ...} one per class, names distinct
    image_paths: dict  # image id -> absolute path of its file
    image_keys: dict  # image id -> the file's identity (its real path): the same file listed twice
    # the file's ``licenses`` as written (records that are no object left out); None: none. Not a list
    # default: a NamedTuple's default is one object shared by every instance
    licenses: Optional[list] = None


class SourceCounts(NamedTuple):
    images: int  # images taken from the source
    instances: Counter  # output class name -> annotations taken (crowd regions included)
    duplicates: int  # images that were another listing of a file already taken
    left_out: Counter  # source class name -> annotations left out (not in ``classes``)
    # source class name -> annotations of the images that were another listing, left out with them;
    # merge_coco always fills it (None only when built elsewhere: no shared mutable default)
    duplicate_annotations: Optional[Counter] = None


def parse_classes(spec: Optional[str]) -> Optional[list]:
    """'a,b,c' -> ['a', 'b', 'c']; ValueError when empty or two names are one class."""
    if spec is None:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    keys = [normalise_name(n) for n in names]
    if not names or len(set(keys)) != len(keys):
        raise ValueError(f"--classes {spec!r}: give distinct, comma-separated class names")
    return names


def common_root(folders: Sequence[str]) -> str:
    """The deepest folder holding all ``folders`` (absolute paths); ValueError when there is none (two
    drives on Windows)."""
    try:
        return os.path.commonpath([os.path.abspath(f) for f in folders])
    except ValueError:
        raise ValueError(f"the image folders {', '.join(map(str, folders))} share no folder; "
                         f"give --images-root") from None


def _check_keypoints(sources: Sequence[MergeSource]) -> None:
    first = None  # (source name, category name, keypoint names)
    for src in sources:
        for cat in src.categories:
            names = cat.get("keypoints")
            if not names:
                continue
            if first is None:
                first = (src.name, cat["name"], list(names))
            elif list(names) != first[2]:
                raise ValueError(
                    f"{src.name}: category {cat['name']!r} has keypoints {list(names)}, but {first[0]}: "
                    f"category {first[1]!r} has {first[2]}; a merged file holds one keypoint set (rename "
                    f"or reorder the keypoints of one file first)")


def _categories(sources: Sequence[MergeSource], classes: Optional[Sequence[str]]) -> tuple:
    """(the output categories: [{"id": k, "name", other fields of the first record}] with ids 1..K,
    one line per source name folded into another spelling: matching ignores case, spaces, _ and -,
    which a typo also does, so each fold is said)."""
    records: dict = {}  # normalised name -> record (without id)
    folded = []
    if classes is not None:
        for name in classes:
            records[normalise_name(name)] = {"name": nfc(name)}
    for src in sources:
        for cat in src.categories:
            key = normalise_name(cat["name"])
            if classes is not None and key not in records:
                continue
            # composed (NFC): 'crème' with a combining accent (from a macOS folder name) is 'crème'
            record = records.setdefault(key, {"name": nfc(cat["name"])})
            if nfc(cat["name"]) != record["name"]:
                folded.append(f"{src.name}: class {cat['name']!r} joined with {record['name']!r} (names "
                              f"matched ignoring case, spaces, '_' and '-')")
            for field, value in cat.items():
                if field not in ("id", "name"):
                    record.setdefault(field, value)
    return [{"id": k + 1, **record} for k, record in enumerate(records.values())], folded


def merge_coco(sources: Sequence[MergeSource], *, images_root: str,
               classes: Optional[Sequence[str]] = None) -> tuple:
    """(merged COCO dict, [SourceCounts per source], warnings): see the module docstring.
    ``images_root`` is absolute; the warnings are lines naming the source and the image. ValueError when
    ``classes`` names no class of any source (a typo, another dataset's names: a file of no class)."""
    met = {normalise_name(c["name"]): c["name"] for src in sources for c in src.categories}
    if classes is not None and not any(normalise_name(name) in met for name in classes):
        listing = short_listing((display_name(n) for n in met.values()), what="more classes")
        raise ValueError(f"--classes {', '.join(map(display_name, classes))}: no source has any of these "
                         f"classes (theirs: {listing or 'none'}); nothing written")
    _check_keypoints(sources)
    categories, warnings = _categories(sources, classes)
    new_id = {normalise_name(c["name"]): c["id"] for c in categories}
    images, annotations, counts = [], [], []
    for name in classes or ():
        if normalise_name(name) not in met:
            warnings.append(f"--classes: no source has a class {name!r}; it stays a class without instances")
    # normalised name -> the first source whose category of that class declares keypoints
    declares = {}
    for src in sources:
        for cat in src.categories:
            if cat.get("keypoints"):
                declares.setdefault(normalise_name(cat["name"]), src.name)
    first_listing: dict = {}  # file identity -> (source name, image id)
    out_name = {c["id"]: c["name"] for c in categories}
    point_count = {c["id"]: len(c["keypoints"]) for c in categories if c.get("keypoints")}
    licenses, license_maps, repeated_licenses = _licenses(sources)
    for src, license_map, repeated in zip(sources, license_maps, repeated_licenses):
        cat_map = {c["id"]: new_id.get(normalise_name(c["name"])) for c in src.categories}
        src_name = {c["id"]: c["name"] for c in src.categories}
        image_map, duplicates = {}, 0
        # a later listing's annotations, by source class, to name them in its warning
        dropped: dict = {}  # image id -> Counter
        for ann in src.annotations:
            dropped.setdefault(ann["image_id"], Counter())[src_name[ann["category_id"]]] += 1
        duplicate_annotations = Counter()
        unlisted_licenses = Counter()  # image license ids the source does not list
        twice_licenses = Counter()  # image license ids the source lists twice or more
        class_lists_dropped = Counter()  # list name -> ids of no (kept) category dropped from it
        for img in src.images:
            key = src.image_keys[img["id"]]
            if key in first_listing:
                where, first_id = first_listing[key]
                lost = dropped.get(img["id"], Counter())
                duplicate_annotations.update(lost)
                left = (f"its {sum(lost.values())} annotation(s) left out ("
                        + ", ".join(f"{name} {n}" for name, n in lost.most_common()) + ")" if lost
                        else "it has no annotation")
                warnings.append(f"{src.name}: image id {img['id']} ({src.image_paths[img['id']]}) is the "
                                f"file of {where}: image id {first_id}; merged once with the first's "
                                f"annotations, {left}")
                duplicates += 1
                continue
            first_listing[key] = (src.name, img["id"])
            image_map[img["id"]] = len(images) + 1
            rel = os.path.relpath(src.image_paths[img["id"]], images_root).replace(os.sep, "/")
            record = {**img, "id": image_map[img["id"]], "file_name": rel}
            for field in CLASS_LISTS:
                if field in img:
                    record[field], dropped_ids = _class_list(img[field], cat_map)
                    class_lists_dropped[field] += dropped_ids
            if "license" in img:
                key_id = _license_key(img["license"])
                new_license = license_map.get(key_id)
                if new_license is None:
                    said = twice_licenses if key_id in repeated else unlisted_licenses
                    said[repr(img["license"])[:20]] += 1
                    del record["license"]
                else:
                    record["license"] = new_license
            images.append(record)
        if any(class_lists_dropped.values()):
            warnings.append(f"{src.name}: " + ", ".join(f"{n} id(s) of {field}" for field, n in
                                                       class_lists_dropped.items() if n)
                            + " name no category kept in the merged file; dropped from those lists (the "
                            "other ids renumbered with their categories)")
        if unlisted_licenses:
            warnings.append(f"{src.name}: {sum(unlisted_licenses.values())} image(s) name a license its "
                            f"'licenses' does not list (" + ", ".join(f"id {v}: {n}" for v, n in
                                                                      unlisted_licenses.most_common(5))
                            + "); their 'license' field is dropped")
        if twice_licenses:
            warnings.append(f"{src.name}: {sum(twice_licenses.values())} image(s) name a license id its "
                            f"'licenses' lists twice or more (" + ", ".join(f"id {v}: {n}" for v, n in
                                                                           twice_licenses.most_common(5))
                            + "), so which one is meant is unknown; their 'license' field is dropped")
        taken, left_out = Counter(), Counter()
        objects = Counter()  # source category id -> its non-crowd annotations taken or left out
        for ann in src.annotations:
            if ann["image_id"] not in image_map:
                continue  # a later listing of an image already taken: counted above
            objects[ann["category_id"]] += not ann.get("iscrowd")
            cid = cat_map[ann["category_id"]]
            if cid is None:
                left_out[src_name[ann["category_id"]]] += 1
                continue
            taken[out_name[cid]] += 1
            record = {**ann, "id": len(annotations) + 1, "image_id": image_map[ann["image_id"]],
                      "category_id": cid}
            if point_count.get(cid):  # a class with keypoints: none labelled where the source had none
                record.setdefault("keypoints", [0] * (3 * point_count[cid]))
                if isinstance(record["keypoints"], list):
                    record.setdefault("num_keypoints", sum(1 for v in record["keypoints"][2::3] if v))
            annotations.append(record)
        for cat in src.categories:  # a class given keypoints by another source: these have none
            key = normalise_name(cat["name"])
            if key in declares and not cat.get("keypoints") and new_id.get(key) is not None:
                warnings.append(f"{src.name}: class {cat['name']!r} declares no keypoints but does in "
                                f"{declares[key]}: its {objects[cat['id']]} annotation(s) of that class have "
                                f"none labelled")
        counts.append(SourceCounts(images=len(image_map), instances=taken, duplicates=duplicates,
                                   left_out=left_out, duplicate_annotations=duplicate_annotations))
    merged = {
        "info": {"description": "merged by maskrcnn merge-data from " + ", ".join(s.name for s in sources)},
        **({"licenses": licenses} if licenses else {}),
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    return merged, counts, warnings
