"""What a file held that ``convert-data`` does not import, said when nothing of it could be converted.

The readers count what they leave out in the report's notes ("450 Label Studio keypoints left out: ...",
"12 CVAT points shapes left out (no area)"); a file holding only such things used to be refused as holding
"no object", which sent the user looking for a broken file rather than at what is not imported. Some
kinds get a hint naming the way to a file that trains: the tool's own export of that kind. Only kinds
that are not imported are listed: a note of things of an imported kind left out for where they are or
what was chosen (shapes outside a video's view, cancelled annotations, repeated lines, classes not in
--classes) says nothing of what the file holds.
"""

from __future__ import annotations

from typing import Optional

from maskrcnn.data.formats.common import Report

__all__ = ["left_out_line"]

# (words of a note, how to import what it counts)
_HINTS = (
    ("CVAT points shapes", "to import points, draw each object's points as one skeleton (a label of type "
                           "skeleton): convert-data converts <skeleton> shapes with their keypoints, as "
                           "CVAT's own \"COCO Keypoints 1.0\" export does"),
    ("Label Studio keypoints in no region", "to import keypoints, draw a rectangle or polygon labelled with "
                                            "the object's class around each object in Label Studio: a "
                                            "keypoint is the region's that holds it, or the one its "
                                            "parentID names"),
    ("parentID names no region", "the regions the keypoints' parentID name were not converted: see the "
                                 "problems above"),
)


# words of notes counting things of an imported kind left out (not a kind that is not imported)
_NOT_KINDS = ("outside the view", "cancelled annotations", "repeated lines", "not in --classes",
              "deleted objects", "already holds", "__ignore__ shapes")


def _a_kind(what: str) -> bool:
    """Whether note ``what`` counts things of a kind that is not imported (see the module docstring)."""
    return "left out" in what and not any(words in what for words in _NOT_KINDS)


def left_out_line(report: Report) -> Optional[str]:
    """"the file holds only what is not imported: N what, ...; hint" from the report's notes of things left
    out; None when none were."""
    left = [(what, n) for what, n in sorted(report.notes.items()) if _a_kind(what)]
    if not left:
        return None
    hints = [hint for words, hint in _HINTS if any(words in what for what, _ in left)]
    listing = "; ".join(f"{n} {what}" for what, n in left)
    return f"what it holds is not imported: {listing}" + "".join(f"; {hint}" for hint in hints)
