"""VGG Image Annotator 3 project files -> the VIA 2 entries ``via`` converts.

A VIA 3 project is ``{"project", "config", "attribute", "file", "view", "metadata"}``:

- ``attribute``: ``{id: {"aname", "anchor_id", "type", "options": {option id: name}}}``; type 1 text,
  2 checkbox, 3 radio, 4 select (dropdown), 5 image. Region attributes are those anchored to a spatial
  region (``anchor_id`` ``FILE1_Z0_XY1``, ``..._XY1``); file and temporal ones are not region attributes.
- ``file``: ``{fid: {"fname", "type" (2 image, 4 video, 8 audio), "loc", "src"}}``; ``view``:
  ``{vid: {"fid_list": [fid, ...]}}``.
- ``metadata``: ``{id: {"vid", "z", "xy": [shape id, coordinates...], "av": {attribute id: value}}}``;
  a choice attribute's value is its option id (a checkbox's: option ids joined by commas).

Translated here into what VIA 2 writes, so that ``via`` draws the shapes, picks the class attribute
and reports problems the same way: shape ids 1 point, 2 rectangle [x, y, w, h], 3 circle [cx, cy, r],
4 ellipse [cx, cy, rx, ry], 5 line, 6 polyline, 7 polygon [x1, y1, ...], 8 extreme rectangle (four
points on the object's border: their box) and 9 extreme circle (not converted). Points, lines and
polylines have no area and are reported as ``via`` reports them. Only image files are converted; a
video or audio file, and a region with a time (``z``), are reported and skipped. The image is the file's
``src`` (with ``config.file.loc_prefix`` of its ``loc``), else its ``fname`` (an inline file's ``src`` is
a data: URI, a remote one's a URL: neither names a file), as ``via`` looks it up. A region whose ``xy``
is no [shape id, coordinates...] list, or whose view is missing, names no file (its ``fid_list`` is not
a list of file ids) or a file not in ``file``, is reported and skipped too.
"""

from __future__ import annotations

from maskrcnn.data.formats.common import Skip

# a region's key (VIA 3 and VIA CSV regions) for what was wrong with its attributes: {attribute name: Skip},
# ANY_ATTRIBUTE for a whole broken cell. Raised only where the class is read from them: a stale option of
# another attribute ("occluded", "difficult") loses no region
ATTRIBUTE_PROBLEMS, ANY_ATTRIBUTE = "attribute_problems", "*"

__all__ = ["ANY_ATTRIBUTE", "ATTRIBUTE_PROBLEMS", "is_via3_project", "via3_entries"]

_CHOICE_TYPES = {2: "checkbox", 3: "radio", 4: "dropdown", 5: "image"}  # VIA 3 type -> VIA 2 type name
_IMAGE_FILE = 2
# shape id -> VIA 2 shape name (None: not converted, reported under this name)
_SHAPES = {1: "point", 2: "rect", 3: "circle", 4: "ellipse", 5: "line", 6: "polyline", 7: "polygon",
           8: "extreme_rectangle", 9: "extreme_circle"}


def is_via3_project(data) -> bool:
    return isinstance(data, dict) and {"project", "metadata", "file"} <= set(data)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _region_attribute_defs(data) -> dict:
    """{attribute id: definition} of the attributes of spatial regions."""
    defs = {}
    for aid, d in _dict(data.get("attribute")).items():
        anchor = d.get("anchor_id") if isinstance(d, dict) else None
        if isinstance(d, dict) and (not isinstance(anchor, str) or anchor.endswith("_XY1")):
            defs[str(aid)] = d
    return defs


def _value(definition: dict, value, name: str):
    """A region's value of attribute ``name`` as VIA 2 writes it: a choice's option name, a checkbox's
    ``{option: true}``, a text as it is. Skip when a choice's value is no option id of it: taken as it
    is, an id would become a class of its own ('7' beside 'cat' and 'dog'). Text attributes have no
    options: any value is theirs."""
    options = {str(k): v for k, v in _dict(definition.get("options")).items()}
    kind = definition.get("type")
    if kind not in _CHOICE_TYPES or value is None or value == "":  # text, or nothing chosen
        return value
    chosen = [o.strip() for o in value.split(",") if o.strip()] if kind == 2 and isinstance(value, str) \
        else [str(value)]
    unknown = [o for o in chosen if o not in options]
    if unknown:
        raise Skip("unknown_option", f"option id {unknown[0]!r} is not an option of attribute {name!r} "
                                     f"(its options: {_short(options)})")
    if kind == 2:
        return {options[o]: True for o in chosen}
    return options[chosen[0]]


def _shape(xy) -> dict:
    """``xy`` [shape id, coordinates...] -> VIA 2 ``shape_attributes``; Skip when it is no such list."""
    if not isinstance(xy, list) or not xy or not isinstance(xy[0], int) or isinstance(xy[0], bool):
        raise Skip("bad_shape", f"xy {_short(xy)} is not [shape id, coordinates...]")
    kind, coords = _SHAPES.get(xy[0], repr(xy[0])), xy[1:]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in coords):
        return {"name": kind, "coordinates": coords}  # via reports the missing fields
    if kind == "rect" and len(coords) == 4:
        return dict(zip(("name", "x", "y", "width", "height"), (kind, *coords)))
    if kind == "circle" and len(coords) == 3:
        return dict(zip(("name", "cx", "cy", "r"), (kind, *coords)))
    if kind == "ellipse" and len(coords) >= 4:
        return dict(zip(("name", "cx", "cy", "rx", "ry"), (kind, *coords[:4])))
    if kind in ("polygon", "polyline"):
        if len(coords) % 2:
            raise Skip("bad_shape", f"xy holds {len(coords)} coordinates after the shape id: a {kind} "
                                    "needs x, y pairs")
        return {"name": kind, "all_points_x": coords[0::2], "all_points_y": coords[1::2]}
    if kind == "extreme_rectangle" and len(coords) == 8:
        xs, ys = coords[0::2], coords[1::2]
        return {"name": "rect", "x": min(xs), "y": min(ys), "width": max(xs) - min(xs),
                "height": max(ys) - min(ys)}
    return {"name": kind, "coordinates": coords}


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _image_name(data, f: dict) -> str:
    """The file's ``src`` (a path, with its ``loc`` prefix), else its ``fname``: an inline file's ``src``
    is a data: URI (the image itself, no file name) and a remote one's a URL."""
    src, fname = f.get("src"), f.get("fname")
    if isinstance(src, str) and src.strip() and "://" not in src and not src.lstrip().startswith("data:"):
        prefix = _dict(_dict(_dict(data.get("config")).get("file")).get("loc_prefix")).get(str(f.get("loc")))
        return (prefix if isinstance(prefix, str) else "") + src
    return fname if isinstance(fname, str) else ""


def via3_entries(data) -> tuple:
    """(entries [(key, VIA 2 entry)], region attribute definitions {name: VIA 2 definition}) of a VIA 3
    project. An entry whose file is no image, or whose regions carry a time, has a ``regions`` value that
    ``via`` reports (a Skip is raised for it there)."""
    defs = _region_attribute_defs(data)
    names = {aid: str(d.get("aname", aid)) for aid, d in defs.items()}
    defined = {names[aid]: {"type": _CHOICE_TYPES.get(d.get("type"), "text"),
                            "options": {str(v): "" for v in _dict(d.get("options")).values()}}
               for aid, d in defs.items()}
    files = _dict(data.get("file"))
    view_files = {str(vid): _dict(v).get("fid_list") for vid, v in _dict(data.get("view")).items()}
    entries: dict = {}
    for fid, f in files.items():
        f = _dict(f)
        entry = {"filename": _image_name(data, f), "regions": []}
        if f.get("type", _IMAGE_FILE) != _IMAGE_FILE:
            entry["problem"] = Skip("not_image", f"file {f.get('fname')!r} is a video or audio file "
                                                 "(VIA 3 image projects only)")
        entries[str(fid)] = entry
    for mid, m in _dict(data.get("metadata")).items():
        m = _dict(m)
        xy = m.get("xy")
        if not xy:  # a file or temporal-segment annotation, no region
            continue
        fid = _region_file(view_files, m.get("vid"))
        if fid not in entries:  # no file to put it on: reported as an entry of its own
            problem = Skip("bad_view", f"region {mid!r} lies on view {m.get('vid')!r}, "
                                       + (f"whose file {fid!r} is not in 'file'" if fid is not None else
                                          _view_problem(view_files, m.get("vid"))))
            entries[f"metadata {mid}"] = {"filename": "", "regions": [], "problem": problem}
            continue
        region = {"region_attributes": {}, "id": str(mid)}  # id: messages name the metadata
        for a, v in _dict(m.get("av")).items():
            if str(a) in defs:
                name = names[str(a)]
                try:
                    region["region_attributes"][name] = _value(defs[str(a)], v, name)
                except Skip as e:  # refuses the region only where its class is read from this attribute
                    region.setdefault(ATTRIBUTE_PROBLEMS, {})[name] = e
        try:
            region["shape_attributes"] = _shape(xy)
        except Skip as e:
            region["problem"] = e
        if m.get("z"):
            region["problem"] = Skip("timed_region", f"region {mid!r} has a time z={m.get('z')} (a "
                                                     "video frame's): not converted")
        entries[fid]["regions"].append(region)
    return [(entries[fid].get("filename") or fid, entries[fid]) for fid in entries], defined


def _region_file(view_files: dict, vid):
    """The file a region of view ``vid`` lies on (the view's first), or None."""
    fids = view_files.get(str(vid))
    if isinstance(fids, list) and fids and isinstance(fids[0], (str, int)) and not isinstance(fids[0], bool):
        return str(fids[0])
    return None


def _view_problem(view_files: dict, vid) -> str:
    if str(vid) not in view_files:
        return f"which is not in 'view' (views: {sorted(view_files)[:8]})"
    return f"whose fid_list {_short(view_files[str(vid)])} is not a list of file ids"
