"""VGG Image Annotator (VIA 1, 2 and 3) annotation files -> COCO instances.

Accepted files: the "export annotations as JSON" format, ``{"<filename><size>": {"filename", "size",
"regions", "file_attributes"}, ...}``, with ``regions`` a list (VIA 2) or a dict keyed "0", "1", ... (VIA
1), and the VIA 2 project file, which holds the same under ``_via_img_metadata`` and the attribute
definitions under ``_via_attributes``. A region is ``{"shape_attributes": {"name": ..., geometry},
"region_attributes": {attribute: value}}``; each region is one instance.

- Shapes: ``polygon`` (``all_points_x``, ``all_points_y``), ``rect`` (``x``, ``y``, ``width``,
  ``height``), ``circle`` (``cx``, ``cy``, ``r``) and ``ellipse`` (``cx``, ``cy``, ``rx``, ``ry``,
  optional ``theta`` in radians) become COCO polygons clipped to the image; ``point`` and
  ``polyline`` have no area and are reported and skipped, as is a region with empty
  ``shape_attributes`` (no shape).
- Class: the value of the region attribute ``class_attribute``. By default, in a project file whose
  ``_via_attributes`` define region attributes: its one dropdown / radio / checkbox attribute (the
  class, not a text "name" or note beside it); of several, the one whose options match the most
  region values (a line says which); none: the first defined. Without definitions: the first
  attribute met in the regions, unless it looks like free text (no value of it repeats, and some
  labelled region lacks it or, over at least ``FREE_TEXT_MIN_REGIONS`` labelled regions, it has more
  distinct values than the other) while another attribute that every labelled region has repeats its
  values: that one, and a line says so. A few regions prove nothing: cat, dog beside occluded yes, yes
  keep the first attribute. A
  checkbox attribute (``{"option": true}``) gives its one ticked option. A VIA 2 choice attribute's
  option with a description (``"options": {"1": "cat"}``) names the class by it, not by the id the
  regions hold, as VIA's own COCO export does (a warning says so, with each id's description: the ids
  were the class names before); an option without one keeps its id. ``--classes`` takes an option's id
  as well as its description, the class then named by the description.
  When no region of a file has any attribute (matterport's balloon sample), every region is of the
  class ``class_name`` (default "object"). A region without a value for the class attribute gets
  ``class_name`` when one is given, else it is reported and skipped: a silent catch-all class would
  hide unlabelled regions. A ``class_attribute`` that no file defines nor any region has (a typo, a
  file attribute), with no ``class_name``, fails the conversion in one line listing the region
  attributes met. A class value's surrounding spaces and newlines are stripped (" cat" is "cat"),
  said once per value.
- An image listed twice (VIA 2 keys entries by file name and size: an image added again after its
  file changed) is converted once, from the entry whose ``size`` is the file's byte size when exactly
  one is; the other is skipped as ``duplicate_image``, with the count of its regions left out.
- The image is ``filename`` relative to ``--images`` when given, else to the JSON file's folder, else to a
  VIA 2 project's "Default Path"
  or "Search Path List" folders, else a file of its name beside the JSON file (VIA stores no size: it is
  read from the image file); none there: the one file of those folders whose name differs from it only
  in case (a name written on Windows or macOS), with a warning.
- A VIA 3 project (``{"project", "attribute", "file", "view", "metadata"}``) is translated into the
  entries above by ``via3`` (its shape ids, option ids, image files) and converted as they are.
- VIA's CSV export (a row per region, the shape and attributes as JSON in their cells; an image without
  regions has one row with ``{}``) is read as the JSON export it mirrors, when given as the file to
  convert (a folder is searched for ``.json`` files only).
"""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path
from typing import Optional, Sequence

from maskrcnn.data.formats.common import (
    CocoBuilder,
    Report,
    Skip,
    case_only_match,
    image_size,
    read_json,
    stripped_label,
)
from maskrcnn.data.formats.geometry import (
    as_points,
    circle_points,
    ellipse_points,
    numbers,
    rectangle_points,
    to_coco_polygon,
)
from maskrcnn.data.formats.via3 import ANY_ATTRIBUTE, ATTRIBUTE_PROBLEMS, is_via3_project, via3_entries
from maskrcnn.data.unicode_names import nfc
from maskrcnn.engine.init_weights import normalise_name

__all__ = ["DEFAULT_CLASS_NAME", "read_via"]

DEFAULT_CLASS_NAME = "object"
_CHOICE_TYPES = ("dropdown", "radio", "checkbox")  # VIA 2 attribute types with a fixed list of options


def _search_paths(settings) -> list:
    """A VIA 2 project's image folders: its "Default Path" and "Search Path List" (settings, core)."""
    core = settings.get("core") if isinstance(settings, dict) else None
    core = core if isinstance(core, dict) else {}
    listed = core.get("filepath") if isinstance(core.get("filepath"), dict) else {}
    paths = [core.get("default_filepath"), *listed]
    return [p.replace("\\", "/") for p in paths if isinstance(p, str) and p.strip()]


def _entries(data) -> tuple:
    """(entries [(key, entry)], the region attributes the file defines {name: definition}, image folders
    it names) of a VIA 1/2 file, or Skip."""
    if isinstance(data, dict) and {"images", "annotations", "categories"} <= set(data):
        raise Skip("not_via", "a COCO instance file (VIA 3's \"Export as COCO\" writes one), not a VIA "
                              "annotation file: train or evaluate on it as it is (--train-json, eval --json; "
                              "its -1 sizes are read from the images), or convert the VIA project file")
    if is_via3_project(data):
        entries, defined = via3_entries(data)
        return entries, defined, []
    defined, search = {}, []
    if isinstance(data, dict) and "_via_img_metadata" in data:  # a VIA 2 project file
        attributes = data.get("_via_attributes")
        region_attrs = attributes.get("region") if isinstance(attributes, dict) else None
        defined = dict(region_attrs) if isinstance(region_attrs, dict) else {}
        search = _search_paths(data.get("_via_settings"))
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise Skip("not_via", "not a VIA annotation file (a JSON object of images is expected)")
    entries = [(k, v) for k, v in data.items() if isinstance(v, dict) and "filename" in v]
    if data and not entries:
        raise Skip("not_via", "not a VIA annotation file (no entry with a 'filename')")
    return entries, defined, search


def _candidates(json_path: Path, filename: str, search: list, images: Optional[Path] = None) -> list:
    """Where the image ``filename`` may be, in order: under ``images`` (``--images``) when given, else
    beside the JSON file; then in one of the project's image folders (VIA prepends its "Default Path" to
    each filename; relative ones are taken from the JSON file's folder), else a file of its name under
    ``images`` or beside the JSON file (a project moved with its images)."""
    name = filename.replace("\\", "/")
    first = [images / name] if images is not None else []
    by_name = [images / Path(name).name] if images is not None else []
    return [*first, json_path.parent / name, *(json_path.parent / folder / name for folder in search),
            *by_name, json_path.parent / Path(name).name]


def _image_path(json_path: Path, filename: str, search: list, images: Optional[Path] = None, *,
                report: Report, where: str, listings: dict) -> Path:
    """The image ``filename`` names: the first of ``_candidates`` that is a file."""
    candidates = _candidates(json_path, filename, search, images)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:  # a name written on a file system that ignores case: the one file it means
        found = case_only_match(candidates, report=report, where=where, listings=listings)
    return found if found is not None else candidates[0]


def _entry_size(entry: dict) -> Optional[int]:
    """The byte size a VIA 2 entry records for its file (``size``: a number or its text; -1 unknown)."""
    try:
        size = int(str(entry.get("size")).strip())
    except ValueError:
        return None
    return size if size >= 0 else None


def _file_size(json_path: Path, filename, search: list, images: Optional[Path]) -> Optional[int]:
    if not isinstance(filename, str) or not filename.strip():
        return None
    found = next((c for c in _candidates(json_path, filename, search, images) if c.is_file()), None)
    return None if found is None else found.stat().st_size


def _current_first(entries: list, json_path: Path, search: list, images: Optional[Path]) -> list:
    """``entries`` with, among those of one filename, the one whose ``size`` is the file's byte size in
    the place of the first. VIA 2 keys an image by name and size: an image added again after its file
    changed is listed twice, the older entry's size stale; the entry of the file as it is now is the one
    kept, the other skipped as its duplicate. Left as they are when not exactly one entry matches."""
    slots: dict = collections.defaultdict(list)  # filename -> positions of its entries
    for i, (_, entry) in enumerate(entries):
        if isinstance(entry.get("filename"), str):
            slots[entry["filename"]].append(i)
    order = list(range(len(entries)))
    for filename, positions in slots.items():
        if len(positions) < 2:
            continue
        size = _file_size(json_path, filename, search, images)
        matching = [i for i in positions if size is not None and _entry_size(entries[i][1]) == size]
        if len(matching) == 1:
            for slot, i in zip(positions, [*matching, *(i for i in positions if i != matching[0])]):
                order[slot] = i
    return [entries[i] for i in order]


def _csv_cell(text):
    """A CSV cell holding JSON -> its value; None when it is not JSON (that region is then reported)."""
    try:
        return json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return None


def _read_csv(path: Path) -> dict:
    """VIA 1 / 2's CSV export -> the JSON export's ``{key: entry}`` (see the module docstring)."""
    columns = {"filename", "region_shape_attributes", "region_attributes"}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error) as e:  # ValueError: not UTF-8
        raise Skip("unreadable_csv", f"not a readable CSV file ({e})") from None
    entries: dict = {}
    for number, row in enumerate(rows, start=2):  # numbered as a spreadsheet shows them, the header 1
        row = {(k or "").lstrip("#"): v for k, v in row.items()}  # VIA 1 heads the first column "#filename"
        if not columns <= set(row):
            raise Skip("not_via", f"not a VIA CSV export (it needs the columns {', '.join(sorted(columns))})")
        filename = row["filename"] or ""
        key = filename + (row.get("file_size") or "")  # as the JSON export keys its entries
        regions = entries.setdefault(key, {"filename": filename, "regions": []})["regions"]
        shape, attributes = _csv_cell(row["region_shape_attributes"]), _csv_cell(row["region_attributes"])
        if shape != {}:  # {}: the one row of an image without regions
            region = {"shape_attributes": shape, "region_attributes": attributes}
            # said as it is: "no shape_attributes object" sent users looking for a column
            if shape is None:
                blank = not (row["region_shape_attributes"] or "").strip()
                region["problem"] = Skip("bad_shape", f"region_shape_attributes is "
                                         f"{'blank' if blank else 'not valid JSON'} (CSV row {number})")
            elif attributes is None and (row["region_attributes"] or "").strip():  # blank: no attributes
                region[ATTRIBUTE_PROBLEMS] = {ANY_ATTRIBUTE: Skip(
                    "bad_shape", f"region_attributes is not valid JSON (CSV row {number})")}
            regions.append(region)
    # messages name an entry by its key: the file name alone reads better than "c2.jpg123" (the CSV has
    # no key column); filename + size only where one name comes with two sizes
    names = collections.Counter(entry["filename"] for entry in entries.values())
    return {entry["filename"] if names[entry["filename"]] == 1 else key: entry
            for key, entry in entries.items()}


def _regions(entry: dict) -> list:
    """[(index shown in messages, region)]: VIA 2 lists regions, VIA 1 keys them "0", "1", ..."""
    regions = entry.get("regions") or []
    if isinstance(regions, dict):
        return [(repr(k), region) for k, region in regions.items()]  # VIA writes them in order
    if isinstance(regions, list):
        return list(enumerate(regions))
    raise Skip("bad_entry", f"'regions' must be a list or an object, not {type(regions).__name__}")


def _attributes(region) -> dict:
    attrs = region.get("region_attributes") if isinstance(region, dict) else None
    return attrs if isinstance(attrs, dict) else {}


def _class_values(value) -> tuple:
    """A region's value of one attribute as the class names it gives: a text or number, or a checkbox's
    ticked options; () when it gives none."""
    if isinstance(value, dict):  # a checkbox: {"option": true, ...}
        return tuple(str(k) for k, v in value.items() if v)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (str(value),)
    return (value.strip(),) if isinstance(value, str) and value.strip() else ()


def _region_attributes(entries: list) -> list:
    """The region_attributes of every region of the file, in order."""
    found = []
    for _, entry in entries:
        try:
            found.extend(_attributes(region) for _, region in _regions(entry))
        except Skip:
            continue
    return found


def _choice_attribute(defined: dict, regions: list) -> tuple:
    """(attribute, why or None) among a project's dropdown / radio / checkbox attributes; (None, None)
    when it defines none."""
    choices = [k for k, d in defined.items() if isinstance(d, dict) and d.get("type") in _CHOICE_TYPES]
    if len(choices) <= 1:
        return (choices[0] if choices else None), None

    def matching(key) -> int:  # regions whose value is one of the attribute's options
        options = defined[key].get("options")
        options = {str(o) for o in options} if isinstance(options, (dict, list)) else set()
        return sum(1 for attrs in regions if options.intersection(_class_values(attrs.get(key))))

    counts = {k: matching(k) for k in choices}
    best = max(choices, key=lambda k: counts[k])  # the first defined on a tie
    listing = ", ".join(f"{k!r} {counts[k]}" for k in choices)
    return best, (f"class from attribute {best!r}: of the {len(choices)} dropdown / radio / checkbox "
                  f"attributes, its options match the most region values ({listing} of {len(regions)} "
                  "regions); --class-attribute picks another")


# labelled regions from which on a first attribute whose values never repeat, beside one whose values do,
# is taken for free text (names) even when every region has it
FREE_TEXT_MIN_REGIONS = 8


def _repeating_attribute(first: str, met: list, regions: list) -> Optional[str]:
    """An attribute to take the class from instead of ``first`` when ``first`` looks like free text (no
    value of it repeats, and some labelled region lacks it or, over enough regions to judge, it has more
    distinct values than the other): one that every labelled region has and whose values repeat, as a
    class's do. None when there is none. In a small file a class's values need not repeat (cat, dog
    beside occluded: yes, yes), so the variety of values alone decides only over
    ``FREE_TEXT_MIN_REGIONS`` regions or more."""
    labelled = [attrs for attrs in regions if any(_class_values(v) for v in attrs.values())]

    def stats(key) -> tuple:  # (regions with a value, distinct values)
        given = [_class_values(attrs.get(key)) for attrs in labelled]
        given = [v for v in given if v]
        return len(given), len(set(given))

    count, distinct = stats(first)
    if count == 0 or distinct < count:  # no value, or its values repeat: a class attribute may look so
        return None
    judged = len(labelled) >= FREE_TEXT_MIN_REGIONS
    for key in met:
        other_count, other_distinct = stats(key)
        if key != first and other_count == len(labelled) and other_distinct < other_count and (
            count < len(labelled) or (judged and distinct > other_distinct)
        ):
            return key
    return None


def _class_attribute(entries: list, defined: dict) -> tuple:
    """(the region attribute that holds the class or None if there is none, a line saying why when it was
    chosen by guessing). A VIA 2 project: its one dropdown / radio / checkbox attribute (of several, the
    one whose options match the most region values), else the first it defines. Else the first attribute
    met in the regions, unless its values look like free text and another's repeat."""
    regions = _region_attributes(entries)
    if defined:
        choice, why = _choice_attribute(defined, regions)
        return (choice, why) if choice is not None else (next(iter(defined)), None)
    met = list(dict.fromkeys(key for attrs in regions for key in attrs))  # in the order first met
    if not met:
        return None, None
    other = _repeating_attribute(met[0], met, regions)
    if other is None:
        return met[0], None
    return other, (f"class from attribute {other!r}, whose values repeat, not from the first attribute "
                   f"{met[0]!r}, whose values look like free text (none repeats); --class-attribute "
                   f"{met[0]} takes it")


def _attributes_met(entries: list, defined: dict) -> tuple:
    """(the region attributes a file defines or its regions have, its file attributes), each in the
    order first met."""
    met = list(dict.fromkeys([*defined, *(key for attrs in _region_attributes(entries) for key in attrs)]))
    files = list(dict.fromkeys(key for _, entry in entries if isinstance(entry.get("file_attributes"), dict)
                               for key in entry["file_attributes"]))
    return met, files


def _check_attribute(attribute: str, files: Sequence[Path], builder: CocoBuilder) -> None:
    """ValueError, once for all ``files``, when none of them defines or has in a region the region
    attribute ``attribute`` (``--class-attribute``) though their regions have attributes: a misspelt
    name would else skip every region one by one, each told to take ``--class-name``, and leave no
    instance. A file without it beside files with it is converted: its regions are skipped one by one
    (a region without the class attribute, ``_region_class``). Stops at the first file that has it: the
    common case reads one file twice."""
    met, file_attributes = [], []
    for path in files:
        try:
            entries, defined, _ = _entries(_read(Path(path)))
        except Skip:
            continue  # said when converted
        regions, file_level = _attributes_met(entries, defined)
        if attribute in regions:
            return
        met.extend(k for k in regions if k not in met)
        file_attributes.extend(k for k in file_level if k not in file_attributes)
    if not met:
        return  # no attribute at all: each region is told it lacks one
    where = builder.relative(files[0]) if len(files) == 1 else \
        f"{len(files)} VIA files ({', '.join(builder.relative(f) for f in files[:3])}" \
        f"{', ...' if len(files) > 3 else ''})"
    file_note = f"; {attribute!r} is a file attribute (one per image, not per region)" \
        if attribute in file_attributes else ""
    listing = ", ".join(map(str, met[:10])) + (", ..." if len(met) > 10 else "")
    raise ValueError(f"{where}: no region has the class attribute {attribute!r} (--class-attribute; "
                     f"region attributes: {listing}){file_note}; nothing converted")


def _option_names(defined: dict, attribute: Optional[str]) -> dict:
    """{option id: description} of a VIA 2 dropdown / radio / checkbox ``attribute``: VIA 2 stores the
    option's id in the regions and shows the annotator its description, and its own COCO export names each
    category by the description; so does this, for the options whose description is a non-empty string
    other than the id (the others keep their id)."""
    definition = defined.get(attribute) if attribute is not None else None
    if not isinstance(definition, dict) or definition.get("type") not in _CHOICE_TYPES or \
            not isinstance(definition.get("options"), dict):
        return {}
    options = {str(k): v for k, v in definition["options"].items()}
    return {k: v.strip() for k, v in options.items() if isinstance(v, str) and v.strip() and v.strip() != k}


def _classes_by_id(builder: CocoBuilder, names: dict) -> dict:
    """{option id: description} of the options ``--classes`` names by their id, not their description:
    each such class renamed to the description in ``builder.fixed``, keeping its number. Before
    descriptions were read the ids were the class names, so command lines and scripts pass them; the
    description is the class now, with or without ``--classes``. An id whose description is listed too
    is left as it is (both are classes then)."""
    if builder.fixed is None:
        return {}
    renamed = {}
    for key, name in names.items():
        key, name = nfc(key), nfc(name)  # as check_label reads labels and the classes
        if key in builder.fixed and name not in builder.fixed:
            builder.fixed[name] = builder.fixed.pop(key)
            renamed[key] = name
    return renamed


def _described_line(attribute: str, options: list, names: dict, renamed: dict) -> str:
    """The warning that classes are named by descriptions: which, how the ids (the names conversions
    before this gave them, which a model trained then knows) map, and what fine-tuning such a model meets."""
    shown = ", ".join(f"{k} -> {v}" for k, v in list(names.items())[:6]) + (", ..." if len(names) > 6 else "")
    bare = [k for k in options if k not in names]
    rest = f"; options without a description keep their id: {', '.join(bare[:6])}" \
        f"{', ...' if len(bare) > 6 else ''}" if bare else ""
    by_id = f"; --classes {', '.join(renamed)} (option ids) read as {', '.join(renamed.values())}" \
        if renamed else ""
    # fine-tuning matches class names ignoring case, spaces, "_" and "-": these the old names do not reach
    lost = [names[k] for k in names if normalise_name(k) != normalise_name(names[k])]
    more = ", ..." if len(lost) > 6 else ""
    fresh = f"; a model trained on the ids as class names (earlier conversions) matches none of " \
        f"{', '.join(lost[:6])}{more} when fine-tuned: they start anew" if lost else ""
    return (f"class names from the descriptions of the options of attribute {attribute!r}, not their ids "
            f"(as VIA's COCO export names them): {shown}{rest}{by_id}{fresh}; --classes takes an option's id "
            f"or its description")


def _region_class(region, attribute: Optional[str], class_name: Optional[str],
                  option_names: Optional[dict] = None) -> str:
    if attribute is None:
        return class_name or DEFAULT_CLASS_NAME
    problems = region.get(ATTRIBUTE_PROBLEMS) or {}
    if attribute in problems or ANY_ATTRIBUTE in problems:
        raise problems.get(attribute) or problems[ANY_ATTRIBUTE]
    values = _class_values(_attributes(region).get(attribute))
    if len(values) > 1:
        raise Skip("ambiguous_class", f"attribute {attribute!r} has several options ticked: {list(values)}")
    if values:
        return (option_names or {}).get(values[0], values[0])
    if class_name:
        return class_name
    raise Skip("missing_class", f"no value for the class attribute {attribute!r} "
                                "(--class-name gives such regions a class)")


def _fields(shape: dict, *keys: str) -> list:
    return numbers(*(shape.get(k) for k in keys), what=f"{shape.get('name')} {', '.join(keys)}")


def _region_points(shape):
    """A region's shape_attributes -> (P, 2) points, or Skip."""
    if not isinstance(shape, dict):
        raise Skip("bad_shape", "the region has no 'shape_attributes' object")
    if not shape:  # {}: the shape was lost (hand-edited files, other tools' exports); not "shape None"
        raise Skip("missing_shape", "the region has no shape (empty shape_attributes)")
    kind = shape.get("name")
    if kind is None:
        keys = ", ".join(sorted(map(str, shape))[:8])
        raise Skip("bad_shape", f"shape_attributes has no 'name' (its keys: {keys})")
    if kind == "polygon":
        xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            raise Skip("bad_shape", "all_points_x and all_points_y must be lists of the same length")
        return as_points([[x, y] for x, y in zip(xs, ys)])
    if kind == "rect":
        x, y, w, h = _fields(shape, "x", "y", "width", "height")
        return rectangle_points(x, y, x + w, y + h)
    if kind == "circle":
        return circle_points(*_fields(shape, "cx", "cy", "r"))
    if kind == "ellipse":
        return ellipse_points(*_fields(shape, "cx", "cy", "rx", "ry"), shape.get("theta", 0))
    raise Skip("unsupported_shape", f"shape {kind!r} is not converted (polygon, rect, circle, ellipse)")


def _add_image(builder: CocoBuilder, image_path: Path, entry: dict, *, height: int, width: int, source: str,
               regions: int) -> int:
    """``builder.add_image``; its ``duplicate_image`` Skip says how many regions are left out with it, and
    when the entry's size is not the file's (an entry of an older version of the file)."""
    try:
        return builder.add_image(image_path, height=height, width=width, source=source)
    except Skip as e:
        if e.reason != "duplicate_image":
            raise
        size, actual = _entry_size(entry), image_path.stat().st_size
        stale = f"; its size {size} is not the file's {actual} bytes (an entry of an older version of the " \
                "file)" if size is not None and size != actual else ""
        raise Skip(e.reason, f"{e}; its {regions} region(s) left out{stale}") from None


def _add_polygon(builder: CocoBuilder, image_id: int, label: str, polygon: list, *, raw, option_names: dict,
                 attribute) -> None:
    """``builder.add_polygons``; its ``unknown_label`` Skip says when the label is an option's description
    read from the id the region holds (the id being the name the user may know it by)."""
    try:
        builder.add_polygons(image_id, label, [polygon])
    except Skip as e:
        key = raw.strip() if isinstance(raw, str) else None
        if e.reason != "unknown_label" or key is None or option_names.get(key) != label:
            raise
        raise Skip(e.reason, f"{e} (the description of option id {key!r} of attribute {attribute!r}, which "
                             f"the region holds; --classes takes the id or the description)") from None


def _read(path: Path):
    """A VIA file's parsed value: its CSV export read as the JSON export it mirrors, or its JSON."""
    return _read_csv(path) if path.suffix.lower() == ".csv" else read_json(path)


def _convert_file(path: Path, *, builder: CocoBuilder, report: Report, class_attribute, class_name,
                  images: Optional[Path] = None, listings: Optional[dict] = None,
                  option_ids: Optional[dict] = None) -> None:
    """``option_ids``: {option id: description} of the described options of the files converted before,
    added to with this file's: with ``--classes``, a region of a file that does not define them (an
    export beside its project) holding an id whose description is a class is of that class."""
    listings = {} if listings is None else listings  # folders read by common.case_only_match
    option_ids = {} if option_ids is None else option_ids
    name = builder.relative(path)
    entries, defined, search = _entries(_read(path))
    attribute, why = (class_attribute, None) if class_attribute else _class_attribute(entries, defined)
    if why:
        report.tell(name, why)
    option_names = _option_names(defined, attribute)
    by_id = _classes_by_id(builder, option_names)
    option_ids.update({nfc(k): nfc(v) for k, v in option_names.items()})
    if option_names:  # a warning: the names differ from those conversions before this gave
        options = [str(k) for k in defined[attribute]["options"]]
        line = _described_line(attribute, options, option_names, by_id)
        report.warn_once(("via_descriptions", line), name, line)  # the projects of a folder share theirs
    source = f"attribute {attribute!r}" if attribute else "no attribute"
    report.note(f"VIA files with the class from {source}")
    for key, entry in _current_first(entries, path, search, images):
        where = f"{name}: {key!r}"
        try:
            filename = entry.get("filename")
            if isinstance(entry.get("problem"), Skip):  # VIA 3: a video or audio file (a user key: no)
                raise entry["problem"]
            if not isinstance(filename, str) or not filename.strip():
                raise Skip("bad_entry", "the entry has no 'filename'")
            image_path = _image_path(path, filename, search, images, report=report, where=where,
                                     listings=listings)
            regions = _regions(entry)
            height, width = image_size(image_path)
            image_id = _add_image(builder, image_path, entry, height=height, width=width, source=name,
                                  regions=len(regions))
        except Skip as e:
            report.skip(where, e)
            continue
        for index, region in regions:
            try:
                if isinstance(region, dict) and isinstance(region.get("problem"), Skip):  # VIA 3, CSV
                    raise region["problem"]
                label = _region_class(region, attribute, class_name, option_names)
                raw = _attributes(region).get(attribute) if attribute else None
                # " cat" / "cat\n": said once per label
                if isinstance(raw, str) and label in (raw.strip(), option_names.get(raw.strip())):
                    stripped_label(raw, report=report, where=name)
                if builder.fixed is not None and nfc(label) not in builder.fixed and \
                        option_ids.get(nfc(label)) in builder.fixed:  # an option's id in a file without it
                    label = option_ids[nfc(label)]
                shape = region.get("shape_attributes") if isinstance(region, dict) else None
                polygon = to_coco_polygon(_region_points(shape), width, height)
                _add_polygon(builder, image_id, label, polygon, raw=raw, option_names=option_names,
                             attribute=attribute)
            except Skip as e:
                # a VIA 3 region is named by its metadata id, as the project file keys it
                in_file = f"metadata {region['id']!r}" if isinstance(region, dict) and "id" in region \
                    else f"regions[{index}]"
                report.skip(f"{where} {in_file}", e)


def read_via(
    files: Sequence[Path],
    *,
    builder: CocoBuilder,
    report: Report,
    class_attribute: Optional[str] = None,
    class_name: Optional[str] = None,
    images: Optional[Path] = None,
) -> None:
    """Add the images and regions of VIA ``files`` (under ``builder.root``) to ``builder``; ``images``:
    the folder the filenames are relative to when it is not the JSON file's (``--images``). ValueError
    when ``class_attribute`` is given without ``class_name`` and no file has it (``_check_attribute``);
    with ``class_name`` a region without it takes that class."""
    if class_attribute and not class_name:
        _check_attribute(class_attribute, list(files), builder)
    listings: dict = {}  # folders read for names that differ only in case (common.case_only_match)
    option_ids: dict = {}  # option id -> its description, over all files (_convert_file)
    for path in files:
        try:
            _convert_file(Path(path), builder=builder, report=report, class_attribute=class_attribute,
                          class_name=class_name, images=None if images is None else Path(images),
                          listings=listings, option_ids=option_ids)
        except Skip as e:
            report.skip(builder.relative(path), e)
