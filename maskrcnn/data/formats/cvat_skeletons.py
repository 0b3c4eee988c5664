"""CVAT skeletons ("CVAT for images 1.1") -> COCO keypoint instances (``keypoint_instances``).

Shapes: a skeleton of K points gives {name: (x, y, v)}; (P, 2) points as ``geometry`` has them.

The file:
- ``<meta>`` lists a skeleton label (``<type>skeleton</type>``) and its points as labels whose
  ``<parent>`` names it (or nested inside it), in the order CVAT lists them: the category's
  ``keypoints``. Its ``<svg>`` (the skeleton editor's drawing, as escaped text) holds the edges,
  ``<line data-node-from="i" data-node-to="j">``, between nodes that ``<circle data-node-id="i"
  data-label-name="nose">`` names; without circles node i is the i-th point listed. The svg is read for
  those attributes only, by a pattern: it is never parsed as markup nor run.
- An image's ``<skeleton label="person" [group_id]>`` holds ``<points label="nose" outside="0|1"
  occluded="0|1" points="x,y">``: v = 0 outside (CVAT's "outside": not in view), 1 occluded, 2 visible;
  a point the skeleton lacks is v = 0.
- A skeleton with a non-zero ``group_id`` shared by one region (``<box>``, polygon, mask) is that region's
  instance, whatever the region's label: in CVAT a skeleton label draws only skeletons, so a person is a
  ``person`` box grouped with a ``person_pose`` skeleton. The instance is of the region's class, its box
  and mask the region's, and the class carries the skeleton label's keypoint set (the skeleton label stays
  the class ``<meta>`` makes it, without instances when every skeleton paired, so that splits converted
  apart number their classes alike; said in one line). A group holding several
  regions pairs the skeleton with the one of its own label when there is exactly one; else which region
  it belongs to is unknown, and it is written as an instance of its own, counted and said once. Two
  skeletons in one region's group: the second is skipped, which one is the region's being unknown; a
  class paired with two skeleton labels: the later pairings are skipped (a class has one keypoint set).
  Without a region it is an instance of its own, boxed by its labelled points (``keypoint_instances``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Optional

import numpy as np

from maskrcnn.data.formats.common import CocoBuilder, Report, Skip
from maskrcnn.data.formats.geometry import numbers, turn_points
from maskrcnn.data.formats.keypoint_instances import (
    add_keypoint_instance,
    attach_points,
    declare_keypoint_set,
)
from maskrcnn.data.unicode_names import nfc

__all__ = ["BESIDE_LOOSE", "BOXED_BY_POINTS", "SEVERAL_REGIONS", "add_skeleton", "declare_skeletons",
           "declared_skeletons", "layer", "skeleton_points", "paired_only_labels"]

BOXED_BY_POINTS = "CVAT skeletons boxed by their keypoints' extent (no region in their group)"
SEVERAL_REGIONS = ("CVAT skeletons in a group of several regions, none of its label (written apart, boxed by "
                   "points)")
BESIDE_LOOSE = "CVAT skeletons beside ungrouped regions (two instances of one object?)"
_TAG = re.compile(r"<\s*(line|circle)\b([^>]*)>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"([\w-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_TRUE = ("1", "true")


def _svg_elements(svg: str) -> list:
    """[(tag, {attribute: value})] of the ``<line>`` and ``<circle>`` elements of a skeleton's svg."""
    return [(m.group(1).lower(), {a: v if v else w for a, v, w in _ATTRIBUTE.findall(m.group(2))})
            for m in _TAG.finditer(svg or "")]


def _edges(svg: str, names: list) -> tuple:
    """(1-based pairs into ``names`` from the svg's lines (see the module docstring), how many lines were
    left out for naming a node that is not a listed point: a node whose circle has no data-label-name
    among circles that have one, or a number past the points)."""
    elements = _svg_elements(svg)
    node_names = {a.get("data-node-id"): a.get("data-label-name") for tag, a in elements
                  if tag == "circle" and a.get("data-label-name")}
    index = {name: i + 1 for i, name in enumerate(names)}

    def position(node: Optional[str]) -> Optional[int]:
        if node_names:
            return index.get(node_names.get(node))
        return int(node) if node and node.isdigit() and 1 <= int(node) <= len(names) else None

    pairs = []
    dropped = 0
    for tag, a in elements:
        if tag == "line":
            ends = (position(a.get("data-node-from")), position(a.get("data-node-to")))
            if None in ends:
                dropped += 1
            elif ends[0] != ends[1] and list(ends) not in pairs:
                pairs.append(list(ends))
    return pairs, dropped


def declared_skeletons(root: ET.Element, *, report: Optional[Report] = None, where: str = "") -> dict:
    """{skeleton label: (point names in the order ``<meta>`` lists them, 1-based edge pairs)}; edges left
    out (a line to a node naming no point) said in one line per label to ``report``."""
    meta = root.find("meta")
    if meta is None:
        return {}
    labels = list(meta.iter("label"))
    found = {}
    for label in labels:
        name = (label.findtext("name") or "").strip()
        if name and (label.findtext("type") or "").strip() == "skeleton":
            nested = [(sub.findtext("name") or "").strip() for sub in label.iter("label") if sub is not label]
            parts = [(sub.findtext("name") or "").strip() for sub in labels
                     if (sub.findtext("parent") or "").strip() == name]
            points = list(dict.fromkeys(n for n in nested + parts if n))
            edges, dropped = _edges(label.findtext("svg") or "", points)
            found[name] = (points, edges)
            if dropped and report is not None:
                report.tell(where, f"skeleton label {name!r}: {dropped} edge(s) of its <svg> left out, their "
                                   "node naming none of its points (a circle without data-label-name, or a "
                                   "number past them); its other edges kept")
    return found


def skeleton_points(el: ET.Element, *, to_image) -> dict:
    """A ``<skeleton>`` -> {point label: (x, y, v)} in the image's continuous coordinates; ``to_image``
    lays (P, 2) drawn points onto the image (a resized or EXIF-turned one). Skip when a point is bad."""
    points = {}
    for child in el:
        if child.tag != "points":
            continue
        name = (child.get("label") or "").strip()
        if not name:
            raise Skip("bad_shape", "a <points> of the skeleton has no label")
        if name in points:
            raise Skip("bad_shape", f"the skeleton has two points labelled {name!r}")
        if (child.get("outside") or "0").strip().lower() in _TRUE:
            points[name] = (0.0, 0.0, 0)
            continue
        raw = (child.get("points") or "").strip().strip(";")
        try:
            x, y = (float(v) for v in raw.split(","))
        except ValueError:  # not numbers, or not one pair
            raise Skip("bad_shape", f"point {name!r} has points={raw[:40]!r}, not one x,y pair") from None
        numbers(x, y, what=f"point {name!r}")  # NaN / inf -> Skip("bad_coordinates")
        (x, y), = to_image(np.array([[x, y]], dtype=np.float64))
        occluded = (child.get("occluded") or "0").strip().lower() in _TRUE
        points[name] = (float(x), float(y), 1 if occluded else 2)
    return points


def layer(*, scale: Optional[tuple], orientation: Optional[int], given: Optional[tuple]):
    """The function laying (P, 2) drawn points on the image: scaled to a resized copy, turned with an
    EXIF-turned photo drawn on its stored pixels, else as drawn."""
    if scale is not None:
        return lambda p: p * np.asarray(scale, dtype=np.float64)
    if orientation is not None:
        return lambda p: turn_points(p, orientation=orientation, stored=given)
    return lambda p: p


def _adopt(builder: CocoBuilder, region_label: str, skeleton_label: str, adopted: dict) -> None:
    """Give class ``region_label`` the keypoint set of ``skeleton_label`` (its names in ``<meta>``'s order
    and its edges), recorded in ``adopted`` ({region label: skeleton label}); Skip when the class has
    another skeleton label's set already."""
    if region_label == skeleton_label:
        return
    previous = adopted.setdefault(region_label, skeleton_label)
    if previous != skeleton_label:
        raise Skip("skeleton_group", f"class {region_label!r} carries the keypoints of skeleton label "
                                     f"{previous!r} already, and a class has one keypoint set")
    fields = builder.category_fields.get(skeleton_label, {})
    declare_keypoint_set(builder, region_label, fields.get("keypoints", []), fields.get("skeleton", []))


def _group_regions(grouped: dict, label: str, group: str) -> list:
    """The keys of ``grouped`` the skeleton of ``label`` in ``group`` may belong to: the group's regions,
    or of several the one of its own label when there is exactly one."""
    keys = [key for key in grouped if key[1] == group]
    own = [key for key in keys if key[0] == label]
    return own if len(keys) > 1 and len(own) == 1 else keys


def add_skeleton(builder: CocoBuilder, image_id: int, el: ET.Element, label: str, *, grouped: dict,
                 loose: set, report: Report, to_image, where: str, adopted: Optional[dict] = None) -> None:
    """One ``<skeleton>`` of ``label`` onto image ``image_id``: onto the region of its group when
    ``grouped`` ({(region label, group_id): annotation}) has one for it (taken from it: one skeleton per
    region; see the module docstring), its class then given the skeleton's keypoint set (``adopted``:
    {region label: skeleton label}, kept across the file's images); else as an instance of its own,
    warned about when the image has ungrouped regions (``loose``: their labels). Skip when it cannot be."""
    adopted = {} if adopted is None else adopted
    label = nfc(label) if isinstance(label, str) else label
    points = skeleton_points(el, to_image=to_image)
    group = (el.get("group_id") or "0").strip()
    if group not in ("", "0"):
        keys = _group_regions(grouped, label, group)
        if len(keys) == 1:
            key, = keys
            ann = grouped[key]
            if ann is None:
                raise Skip("skeleton_group", f"a second skeleton in group {group} of the {key[0]!r} region: "
                                             "which one belongs to the region is unknown")
            _adopt(builder, key[0], label, adopted)
            attach_points(builder, ann, points)
            grouped[key] = None  # taken
            return
        if keys:
            report.note(SEVERAL_REGIONS)
            report.tell_once("cvat_skeleton_regions", where,
                             f"a <skeleton> of label {label!r} in group {group}, which holds regions of "
                             f"labels {', '.join(sorted(k[0] for k in keys))}: which one it belongs to is "
                             "unknown, so it is written as an instance of its own boxed by its keypoints; "
                             "in CVAT group each skeleton with its object's one region (others alike are "
                             "counted in the notes)")
    label = builder.check_label(label)
    add_keypoint_instance(builder, image_id, label, points, report=report, note=BOXED_BY_POINTS)
    if loose:  # the box of that person is likely among them: two instances of one object
        report.note(BESIDE_LOOSE)
        report.tell_once("cvat_loose_skeleton", where,
                         f"a <skeleton> of label {label!r} and regions (labels {', '.join(sorted(loose))}) "
                         "without a shared group_id: each is written as an instance of its own (the "
                         "person's box without keypoints beside their keypoints boxed by their extent); in "
                         "CVAT select a box and its skeleton and group them (G) to make them one instance "
                         "(others alike are counted in the notes)")


def paired_only_labels(skeletons: dict, adopted: dict, builder: CocoBuilder) -> set:
    """The skeleton labels without an instance of their own: every skeleton of theirs paired with a region
    of another label (``adopted``'s values); said, as they stay classes."""
    met = {ann["_label"] for ann in builder.annotations}
    return {nfc(s) for s in skeletons if nfc(s) in adopted.values() and nfc(s) not in met}


def declare_skeletons(builder: CocoBuilder, skeletons: dict) -> None:
    """Each skeleton label's keypoint set, in ``<meta>``'s order (kept for a label outside a fixed
    --classes list too: a region's class paired with its skeletons takes it; the category is written only
    for a class)."""
    for label, (names, edges) in skeletons.items():
        declare_keypoint_set(builder, nfc(label), names, edges)
