"""Pre-annotations as "CVAT for images 1.1" XML: what CVAT's "Upload annotations" (format "CVAT 1.1")
loads into a task holding the same images.

Shapes: an instance's mask (h, w) bool over its tight box.

``<annotations><version>1.1</version><meta><task>...<labels><label><name>..</name>...</label></labels>
</task></meta><image id name width height><mask label source="auto" occluded="0" z_order="0" rle left top
width height/>...</image>...</annotations>``. CVAT matches each ``<image>`` to a frame of the task by
its ``name`` (the path relative to the images folder, as the images were uploaded; ``id`` is the
frame's number in name order, CVAT's fallback). Labels are matched by name: the task needs the model's
class names as labels (``<meta>`` lists them for the project's set-up).

Masks rather than polygons: a mask is the prediction exactly (holes and several parts in one shape,
which CVAT polygons cannot hold), CVAT edits it with its brush and eraser, and its RLE costs less than
the polygons of a ragged outline. CVAT's mask code (``encode_cvat_rle``, the inverse of
``data/formats/cvat.decode_cvat_rle``): runs of 0s and 1s alternately, starting with 0s (maybe an empty
run), row by row over the box ``left``, ``top``, ``width``, ``height`` (right = left + width - 1).
A box-only model's instances are ``<box xtl ytl xbr ybr>`` rectangles.

A class or image name holding a character XML 1.0 cannot hold (NUL, ESC, ...) is refused
(``xml_text``); a CR is written ``&#13;``: ElementTree writes it raw in an element's text (a label's
``<name>``), where every XML parser reads it back as a newline.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional, Sequence
from urllib.parse import quote

import numpy as np

from maskrcnn.data.formats.cvat import IMAGES_COMMENT
from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance, box_patch
from maskrcnn.data.pre_annotations.xml_text import check_xml_names, check_xml_text

__all__ = ["check_xml_image_names", "cvat_xml", "encode_cvat_rle"]


def encode_cvat_rle(patch: np.ndarray) -> str:
    """An (h, w) bool patch -> CVAT's "n0, n1, ..." runs (row-major, starting with a run of 0s)."""
    flat = np.asarray(patch, dtype=bool).reshape(-1)
    if flat.size == 0:
        raise ValueError("an empty (0-pixel) box has no CVAT mask")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs  # the code starts with 0s: an empty run when the first pixel is set
    return ", ".join(str(r) for r in runs)


def _sub(parent: ET.Element, tag: str, text=None, **attrs) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def cvat_xml(images: Sequence[ImageRecord], instances: Sequence[Sequence[Instance]],
             categories: Sequence[Category], *, task_name: str = "maskrcnn pre-annotations",
             images_folder: Optional[str] = None) -> str:
    """The XML text (UTF-8 declaration included) of ``images`` and their ``instances`` (one list each).
    ``images_folder``: the folder the image names are relative to, as a path relative to the XML file's
    folder, recorded in a comment (CVAT ignores comments) so that ``convert-data --from cvat`` finds the
    images where they are."""
    if len(images) != len(instances):
        raise ValueError(f"{len(images)} images and {len(instances)} lists of instances")
    check_xml_names(categories, "cvat")
    check_xml_image_names([image.file_name for image in images])
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    task = _sub(_sub(root, "meta"), "task")
    _sub(task, "name", task_name)
    _sub(task, "size", len(images))
    _sub(task, "mode", "annotation")
    labels = _sub(task, "labels")
    for c in categories:
        label = _sub(labels, "label")
        _sub(label, "name", c.name)
        _sub(label, "type", "any")
        _sub(label, "attributes")
    for frame, (image, found) in enumerate(zip(images, instances)):
        el = _sub(root, "image", id=frame, name=image.file_name, width=image.width, height=image.height)
        for inst in found:
            if inst.rle is None:  # a box-only model: CVAT's rectangle
                x0, y0, x1, y1 = inst.box
                _sub(el, "box", label=inst.category.name, source="auto", occluded=0, z_order=0,
                     xtl=x0, ytl=y0, xbr=x1, ybr=y1)
                continue
            left, top, patch = box_patch(inst)
            _sub(el, "mask", label=inst.category.name, source="auto", occluded=0, z_order=0,
                 rle=encode_cvat_rle(patch), left=left, top=top, width=patch.shape[1], height=patch.shape[0])
    ET.indent(root)
    comment = "" if images_folder is None else IMAGES_COMMENT.format(quote(images_folder, safe="/:")
                                                                      .replace("-", "%2D")) + "\n"
    # the only CRs in the text are the names' (attributes already have &#13;, ET.indent adds newlines)
    body = ET.tostring(root, encoding="unicode").replace("\r", "&#13;")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + comment + body + "\n"


def check_xml_image_names(file_names: Sequence[str]) -> None:
    """ValueError naming the first image file name (as ``<image name>`` holds it) that XML 1.0 cannot
    hold (``xml_text``)."""
    from maskrcnn.shown_text import display_name

    for name in file_names:
        check_xml_text(name, fmt="cvat", what=f"the image {display_name(name)}")
