"""Pre-annotations as Label Studio tasks: the JSON list its "Import" takes, each task's image with the
model's regions as a prediction, which the annotator accepts, corrects or rejects. A model without masks
gives ``rectanglelabels`` regions (``x``, ``y``, ``width``, ``height`` in percent of the image) and a
``<RectangleLabels>`` interface.

Shapes: an instance's mask (H, W) bool over the whole image.

``[{"data": {"image": URL}, "predictions": [{"model_version", "score", "result": [{"id", "type":
"brushlabels", "from_name": "tag", "to_name": "image", "original_width", "original_height",
"image_rotation": 0, "value": {"format": "rle", "rle": [bytes], "brushlabels": [name]}, "score"}]}]}]``.

Regions are brushes (Label Studio's RLE of the RGBA mask image: ``data/formats/labelstudio_rle.py``
encodes and decodes it): the mask exactly, holes and parts included, where polygon regions (in percent)
would approximate it and lose its holes. The labelling interface must name its controls as the results
do: ``labelstudio_config`` gives one (``<Image name="image">``, ``<BrushLabels name="tag">`` with the
model's classes) to paste into the project's settings. A prediction's ``score`` is the mean of its
regions' (Label Studio sorts tasks by it), 0 for an image without regions.

URL: ``url_prefix`` + the image's path relative to the images folder, %-quoted (``/`` kept): with
``/data/local-files/?d=`` and Label Studio's local storage rooted at that folder the tasks find their
images; the default (no prefix) leaves the relative path, for a script or a storage to resolve. The
path is quoted as the bytes the file system holds (``os.fsencode``): a name that is not valid UTF-8
(``caf\xe9.jpg`` from a Latin-1 disk, ``'caf\udce9.jpg'`` in Python) is ``caf%E9.jpg``, the URL a web
server serving that folder answers, where quoting the text raised at the end of the run and wrote no
task; ``convert-data`` reads it back to the same file. Each
task's data also records that folder relative to the tasks file's folder (``images_folder``, under
``IMAGES_FOLDER_KEY``; Label Studio keeps the field and shows nothing of it), so ``convert-data`` reads
the file back without ``--images``, and the model's class names in its order (``CLASSES_KEY``), so that
it reads back (also once annotated and exported by Label Studio) in the model's class order, numbered
1..K, a class without instances included: the model's own category ids only when they are 1..K without
gaps (a COCO model's 1..90 are not).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from maskrcnn.data.formats.labelstudio import CLASSES_KEY, IMAGES_FOLDER_KEY
from maskrcnn.data.formats.labelstudio_rle import encode_brush_mask
from maskrcnn.data.pre_annotations.instances import Category, ImageRecord, Instance, mask_of
from maskrcnn.data.pre_annotations.xml_text import check_xml_names

__all__ = ["FROM_NAME", "TO_NAME", "rectangle_result", "brush_result", "labelstudio_config",
           "labelstudio_tasks"]

FROM_NAME, TO_NAME = "tag", "image"  # the names Label Studio's "Semantic Segmentation with Masks" uses


def rectangle_result(image: ImageRecord, k: int, inst: Instance, *, from_name: str = FROM_NAME,
                     to_name: str = TO_NAME) -> dict:
    """The ``k``-th region of ``image``: a box instance (a model without masks) as a rectangle of the
    ``from_name`` control on the ``to_name`` image, in percent of the image (``maskrcnn serve``'s Label
    Studio backend passes the project's names)."""
    x0, y0, x1, y1 = inst.box
    w, h = float(image.width), float(image.height)
    return {
        "id": f"{image.id}_{k}", "type": "rectanglelabels", "from_name": from_name, "to_name": to_name,
        "original_width": int(image.width), "original_height": int(image.height), "image_rotation": 0,
        "value": {"x": 100 * x0 / w, "y": 100 * y0 / h, "width": 100 * (x1 - x0) / w,
                  "height": 100 * (y1 - y0) / h, "rotation": 0, "rectanglelabels": [inst.category.name]},
        "score": round(float(inst.score), 5),
    }  # fmt: skip


def brush_result(image: ImageRecord, k: int, inst: Instance, *, from_name: str = FROM_NAME,
                 to_name: str = TO_NAME) -> dict:
    """The ``k``-th region of ``image``: ``inst`` as a brush of the ``from_name`` control on the
    ``to_name`` image (``maskrcnn serve``'s Label Studio backend passes the project's names)."""
    return {
        "id": f"{image.id}_{k}", "type": "brushlabels", "from_name": from_name, "to_name": to_name,
        "original_width": int(image.width), "original_height": int(image.height), "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_brush_mask(mask_of(inst)),
                  "brushlabels": [inst.category.name]},
        "score": round(float(inst.score), 5),
    }  # fmt: skip


def labelstudio_tasks(images: Sequence[ImageRecord], instances: Sequence[Sequence[Instance]], *,
                      url_prefix: str = "", model_version: str = "maskrcnn",
                      images_folder: Optional[str] = None,
                      categories: Optional[Sequence[Category]] = None) -> list:
    """The task list of ``images`` and their ``instances`` (one list each); ``images_folder``: the folder
    the image paths are relative to, as a path relative to the tasks file's folder, recorded in each task
    (None: not recorded); ``categories``: the model's classes, their names recorded in each task in
    class order (``CLASSES_KEY``; None: not recorded)."""
    if len(images) != len(instances):
        raise ValueError(f"{len(images)} images and {len(instances)} lists of instances")
    tasks = []
    for image, found in zip(images, instances):
        results = [brush_result(image, k, inst) if inst.rle is not None else rectangle_result(image, k, inst)
                   for k, inst in enumerate(found, start=1)]
        score = sum(inst.score for inst in found) / len(found) if found else 0.0
        # the name's bytes, not its text: a name that is not UTF-8 holds lone surrogates, which quote's
        # UTF-8 encoding refuses (after the whole run had been predicted)
        data = {"image": url_prefix + quote(os.fsencode(image.file_name), safe="/")}
        if images_folder is not None:
            data[IMAGES_FOLDER_KEY] = images_folder
        if categories is not None:  # each task: Label Studio exports tasks, not the file's first one
            data[CLASSES_KEY] = [c.name for c in sorted(categories, key=lambda c: c.label)]
        tasks.append({"data": data,
                      "predictions": [{"model_version": model_version, "score": round(score, 5),
                                       "result": results}]})
    return tasks


def labelstudio_config(categories: Sequence[Category], *, boxes: bool = False) -> str:
    """A labelling interface (Label Studio's XML) whose control names match the tasks' results: brushes,
    or with ``boxes`` (a model without masks) rectangles."""
    check_xml_names(categories, "labelstudio")  # quoteattr writes &#10; / &#13;, but no escape for ESC
    control = "RectangleLabels" if boxes else "BrushLabels"
    labels = "".join(f"    <Label value={quoteattr(c.name)}/>\n" for c in categories)
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <{control} name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </{control}>\n</View>\n')
