"""``maskrcnn serve`` as a Label Studio ML backend: the project's tasks in, our masks out as pre-annotations.

In Label Studio: the project's Settings > Model (``Machine Learning`` in older versions) > Add Model (
"Connect Model"), URL ``http://HOST:PORT`` of ``maskrcnn serve``. Label Studio then calls (the protocol of
label-studio-ml-backend 2.x, which Label Studio 1.8 and later speak; the 1.x SDK's answers had the same
``results`` list, plus a ``model_version`` beside it, which is sent too):

- ``GET /health``: 200 while the server is up (a ``POST`` is a 405: Label Studio GETs it).
- ``POST /setup`` ``{"project": "<id>.<timestamp>", "schema": <labelling config XML>, ...}``: the config is
  checked here (``parse_label_config``, ``match_labels``): it must have a ``BrushLabels``,
  ``PolygonLabels`` or ``RectangleLabels`` control on an ``Image``, and labels that are our class names
  (exactly, else ignoring case). Answer ``{"model_version", "control", "matched", "unmatched_classes",
  "unmatched_labels", "renamed", "hint"}``: ``renamed`` {label: [our names]} for an unmatched label
  that is a class name the checkpoint repeats (served as 'NAME (id INDEX)': ``renamed_labels``), and
  ``hint`` a sentence saying which labels to use ("" when none; the warnings say it too); a config
  without such a control, or with no label in common, is a 400 with
  ``{"detail": reason}`` (Label Studio shows it). The ``hostname`` and ``access_token`` Label Studio
  1.x sends are used to fetch ``/data/upload/...`` images when the server has no ``--ls-url`` (an
  explicit ``--ls-url`` wins, and ``--ls-token`` goes only to it, never to a ``/setup`` address:
  ``ImageFetcher.adopt``); the log says which is used.
- ``POST /predict`` ``{"tasks": [{"id", "data": {"image": URL, ...}}, ...], "label_config": XML,
  "project", "params": {"context": ...}}`` (JSON, which tells it from an image upload to ``/predict``):
  answers ``{"results": [one prediction per task, in order], "model_version"}``, a prediction being
  ``{"result": [region, ...], "score": mean of the regions' scores, "model_version"}``. The image is
  ``data[<the Image's value, "$image" -> "image">]``, fetched by ``labelstudio_fetch.ImageFetcher``. A
  task whose image cannot be had or decoded, or that the model fails on, gets an empty prediction and a
  warning in the log naming the task and the reason: one bad task never fails the others.
- ``POST /webhook``: answered 200 ``{"status": "ignored"}``: training from Label Studio is not part of
  this backend (train with ``maskrcnn train`` on an export). ``params.context`` (interactive prompts:
  clicks, boxes) is ignored too: every call predicts the whole image.

Regions (``task_prediction``), on the control ``/setup`` would pick (brush first, then polygon, then
rectangle; rectangle first for a model without masks):
- ``brushlabels``: each mask exactly, as Label Studio's RLE (``pre_annotations.to_labelstudio.brush_result``,
  the file pre-annotations' writer);
- ``polygonlabels``: each connected part of a mask traced as a polygon (holes joined by zero-width cuts:
  ``pre_annotations.contours``), points in percent of the image; parts whose traced area is under
  ``min_region_area`` pixels (``--min-region-area``, default 10) are left out, except a detection's
  largest part when all of its parts are that small (a detection is never lost);
- ``rectanglelabels``: the boxes clipped to the image, in percent (models without masks, or a config with
  rectangles only), as the file pre-annotations' ``rectangle_result`` writes them.
Detections of a class the project has no label for are left out (and counted in the log); ``/predict``
warns once per labelling config that misses some of our classes, naming the project, those classes and
the labels no class matches (a project whose labels were renamed would otherwise see only empty
results). Scores are the model's, thresholded by ``--score-thresh`` and then by the call's own
``score_thresh`` (a query parameter, or a key beside ``tasks``), if it gives one.

Shapes: D detections of one image; boxes (D, 4) xyxy pixels; an image H x W.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import xml.etree.ElementTree as ET
from collections import OrderedDict
from contextlib import nullcontext
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from maskrcnn.class_names import distinct_class_names
from maskrcnn.data.pre_annotations.contours import bridge_holes, mask_to_components
from maskrcnn.data.pre_annotations.instances import (
    Category,
    ImageRecord,
    box_patch,
    instances_from_detections,
)
from maskrcnn.data.pre_annotations.to_labelstudio import FROM_NAME, TO_NAME, brush_result, rectangle_result
from maskrcnn.ops.boxes import clip_boxes_to_image
from maskrcnn.serve import DEFAULT_MIN_REGION_AREA  # in the package: `serve --help` needs it alone

__all__ = ["DEFAULT_MIN_REGION_AREA", "LabelConfig", "LabelStudioBackend", "default_config",
           "empty_prediction", "has_masks", "ignored_controls", "match_labels", "parse_label_config",
           "predict_tasks", "renamed_hint", "renamed_labels", "setup_report", "task_image_reference",
           "task_prediction"]

log = logging.getLogger("maskrcnn.serve")

# control tag -> region type, in the order a model with masks prefers them
_CONTROLS = {"BrushLabels": "brushlabels", "PolygonLabels": "polygonlabels",
             "RectangleLabels": "rectanglelabels"}
_POLYGON_TOLERANCE = 1.0  # pixels: Douglas-Peucker, as the file pre-annotations' polygons


class LabelConfig(NamedTuple):
    """The control the results go to: ``kind`` (a region type, "brushlabels" ...), ``from_name`` (the
    control's name), ``to_name`` (the Image's), ``data_key`` (the task data field holding the image) and
    the control's ``labels``."""

    kind: str
    from_name: str
    to_name: str
    data_key: str
    labels: tuple


def has_masks(predictor) -> bool:
    """Whether ``predictor``'s model gives masks (its config's ``model.roi_heads.mask_on``)."""
    cfg = getattr(predictor, "cfg", None)
    return bool(getattr(getattr(getattr(cfg, "model", None), "roi_heads", None), "mask_on", True))


# What a project made from `labelstudio_config` (the file pre-annotations' config) holds; used when a
# /predict request carries no config.
def default_config(class_names: Sequence[str]) -> LabelConfig:
    return LabelConfig("brushlabels", FROM_NAME, TO_NAME, "image", tuple(class_names[1:]))


def parse_label_config(xml: str, *, has_masks: bool = True) -> LabelConfig:
    """The control of a labelling config (Label Studio's XML) that our results go to; ``ValueError``
    saying what is missing when there is none."""
    if not isinstance(xml, str) or not xml.strip():
        raise ValueError("no labelling config")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise ValueError(f"the labelling config is not valid XML: {e}") from None
    images = {}
    for el in root.iter("Image"):
        value = el.get("value", "")
        if el.get("name") and value.startswith("$"):
            images[el.get("name")] = value[1:]
    if not images:
        raise ValueError('the labelling config has no <Image name=".." value="$field"> tag')
    found = {}
    for tag in _CONTROLS:
        for el in root.iter(tag):
            targets = [t.strip() for t in el.get("toName", "").split(",")]
            image = next((t for t in targets if t in images), None)
            if el.get("name") and image is not None and tag not in found:
                labels = tuple(lab.get("value") for lab in el.iter("Label") if lab.get("value") is not None)
                found[tag] = LabelConfig(_CONTROLS[tag], el.get("name"), image, images[image], labels)
    order = list(_CONTROLS) if has_masks else ["RectangleLabels"]
    for tag in order:
        if tag in found:
            return found[tag]
    wanted = " or ".join(f"<{t}>" for t in order)
    raise ValueError(f"the labelling config has no {wanted} control on an <Image> (toName); this model gives "
                     + ("masks (brushes or polygons) and boxes" if has_masks else "boxes only"))


def ignored_controls(xml: str, used: LabelConfig) -> list:
    """The label controls on an image of ``xml`` other than ``used`` (the one our results go to), as
    ``[{"type", "from_name", "labels"}]``: the backend answers on one control, and a class whose label is
    only in another one would otherwise be reported "without a label" with no word of why."""
    root = ET.fromstring(xml)
    images = {el.get("name") for el in root.iter("Image") if el.get("name")}
    controls = []
    for tag in (*_CONTROLS, "KeyPointLabels", "EllipseLabels", "Labels"):
        for el in root.iter(tag):
            targets = {t.strip() for t in el.get("toName", "").split(",")}
            if el.get("name") == used.from_name and tag.lower() == used.kind or not targets & images:
                continue
            labels = [lab.get("value") for lab in el.iter("Label") if lab.get("value") is not None]
            controls.append({"type": tag.lower(), "from_name": el.get("name"), "labels": labels})
    return controls


def match_labels(class_names: Sequence[str], labels: Sequence[str]) -> tuple:
    """(our class name -> the project's label, our classes without a label, labels without a class):
    names equal, else equal ignoring case. ``class_names`` without the background."""
    exact = {lab: lab for lab in labels}
    folded: Dict[str, List[str]] = {}
    for lab in labels:
        folded.setdefault(lab.casefold(), []).append(lab)
    mapping = {}
    for name in class_names:
        if name in exact:
            mapping[name] = name
        elif len(folded.get(name.casefold(), [])) == 1:
            mapping[name] = folded[name.casefold()][0]
    unmatched_classes = [n for n in class_names if n not in mapping]
    used = set(mapping.values())
    return mapping, unmatched_classes, [lab for lab in labels if lab not in used]


def renamed_labels(labels: Sequence[str], source_names: Sequence[str], class_names: Sequence[str]) -> dict:
    """{label: [our class names]} for each of ``labels`` that is (exactly, else ignoring case) a name the
    checkpoint gives (``source_names``) but that we serve renamed (``class_names``, from
    ``class_names.distinct_class_names``: 'circle' twice -> 'circle (id 1)', 'circle (id 2)'): a project
    that kept the checkpoint's repeated name matches none of its classes, and this says which labels to
    use instead. Both lists index = label, the background at 0."""
    renamed: Dict[str, List[str]] = {}
    for raw, name in zip(source_names[1:], class_names[1:]):
        if raw != name and str(raw).strip():
            renamed.setdefault(raw, []).append(name)
    folded: Dict[str, List[str]] = {}
    for raw, names in renamed.items():
        folded.setdefault(raw.casefold(), []).extend(names)
    out = {}
    for lab in labels:
        names = renamed.get(lab) or folded.get(lab.casefold())
        if names:
            out[lab] = names
    return out


def renamed_hint(renamed: dict, source_names: Sequence[str]) -> str:
    """The sentences that tell a project what its labels in ``renamed`` (``renamed_labels``) are here:
    "'circle' is 'circle (id 1)', 'circle (id 2)' here: the checkpoint repeats it; use those labels"."""
    counts = {}
    for raw in source_names[1:]:
        counts[str(raw).casefold()] = counts.get(str(raw).casefold(), 0) + 1
    said = []
    for lab, names in renamed.items():
        repeated = counts.get(lab.casefold(), 0) > 1
        why = "repeats it" if repeated else "has it beside a name made for a repeated one"
        use = "those labels" if len(names) > 1 else "that label"
        said.append(f"{lab!r} is {', '.join(map(repr, names))} here: the checkpoint {why}; use {use}")
    return "; ".join(said)


def setup_report(xml: str, class_names: Sequence[str], *, has_masks: bool, model_version: str,
                 source_names: Optional[Sequence[str]] = None) -> dict:
    """``/setup``'s answer for a labelling config; ``ValueError`` for one the backend cannot serve (no
    control for our regions, or no label in common with our classes). ``source_names``: the class names
    as the checkpoint gives them, before ``distinct_class_names`` (None: ``class_names``); an unmatched
    label that is one of them, renamed, is in ``renamed`` ({label: [our names]}) and ``hint`` says so."""
    config = parse_label_config(xml, has_masks=has_masks)
    ours = list(class_names[1:])
    mapping, unmatched_classes, unmatched_labels = match_labels(ours, config.labels)
    renamed = renamed_labels(unmatched_labels, source_names or class_names, class_names)
    hint = renamed_hint(renamed, source_names or class_names)
    ignored = ignored_controls(xml, config)
    if ignored:
        # a class labelled only in another control is told so, not merely reported "without a label"
        elsewhere = {c: other for other in ignored for lab in other["labels"] for c in unmatched_classes
                     if c.lower() == lab.lower()}
        said = (f"the results go to the {config.kind} control {config.from_name!r} only; ignored: "
                + ", ".join(f"{c['type']} {c['from_name']!r}" for c in ignored))
        if elsewhere:
            said += " (" + ", ".join(f"{c!r} is labelled in {o['type']} {o['from_name']!r} only"
                                     for c, o in elsewhere.items()) + ")"
        hint = f"{hint}; {said}" if hint else said
    if not mapping:
        raise ValueError(f"none of the labels of the {config.kind} control {config.from_name!r} "
                         f"({', '.join(config.labels) or 'none'}) is one of the model's classes "
                         f"({', '.join(ours)})" + (f"; {hint}" if hint else ""))
    return {"model_version": model_version,
            "control": {"type": config.kind, "from_name": config.from_name, "to_name": config.to_name,
                        "data_key": config.data_key},
            "matched": mapping, "unmatched_classes": unmatched_classes, "unmatched_labels": unmatched_labels,
            "renamed": renamed, "ignored_controls": ignored, "hint": hint}


def task_image_reference(task, data_key: str) -> str:
    """The image URL of one task (``task["data"][data_key]``); ``ValueError`` saying what is wrong."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise ValueError("the task has no 'data' object")
    value = task["data"].get(data_key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the task's data has no image URL in {data_key!r} (the Image's value)")
    return value


def empty_prediction(model_version: str) -> dict:
    return {"result": [], "score": 0.0, "model_version": model_version}


def _pct(v: float, total: int) -> float:
    return round(100.0 * float(v) / total, 4)


def _polygon_results(image: ImageRecord, k: int, inst, config: LabelConfig, min_area: float) -> list:
    out = []
    left, top, patch = box_patch(inst)  # traced in the mask's own box, not the whole image
    # specks left out, but a detection made only of specks keeps its largest piece: never lost
    components = mask_to_components(patch, tolerance=_POLYGON_TOLERANCE, offset=(left, top),
                                    min_area=min_area)
    for j, component in enumerate(components):
        ring = bridge_holes(component)  # (P, 2) x, y pixels
        points = [[_pct(x, image.width), _pct(y, image.height)] for x, y in ring]
        out.append({"id": f"{image.id}_{k}_{j}", "type": "polygonlabels", "from_name": config.from_name,
                    "to_name": config.to_name, "original_width": image.width, "original_height": image.height,
                    "image_rotation": 0, "value": {"points": points, "closed": True,
                                                   "polygonlabels": [inst.category.name]},
                    "score": round(float(inst.score), 5)})
    return out


def task_prediction(det: dict, *, task_id, height: int, width: int, config: LabelConfig,
                    class_names: Sequence[str], model_version: str,
                    on_dropped: Optional[Callable[[int], None]] = None,
                    min_region_area: float = DEFAULT_MIN_REGION_AREA) -> dict:
    """One task's prediction from the model's detections of its image (see the module docstring).
    ``on_dropped(n)`` hears how many detections had a class the project has no label for;
    ``min_region_area``: polygon pieces of smaller area (pixels) are left out, but for a detection's
    largest."""
    mapping, _, _ = match_labels(list(class_names[1:]), config.labels)
    image = ImageRecord(task_id if task_id is not None else 0, "", int(height), int(width))
    has_masks = det.get("masks_rle") is not None or det.get("masks") is not None
    kind = "rectanglelabels" if not has_masks else config.kind
    if kind == "rectanglelabels":
        # The detections' boxes (of a model with masks too, when the project asks for rectangles), clipped
        # to the image: box instances, those left empty dropped.
        boxes = clip_boxes_to_image(det["boxes"].detach().float().cpu().reshape(-1, 4),
                                    (image.height, image.width))  # (D, 4) xyxy
        det = {"boxes": boxes, "scores": det["scores"], "labels": det["labels"]}
    categories = [Category(i, i, str(class_names[i])) for i in range(1, len(class_names))]
    found = instances_from_detections(det, categories)
    kept = [inst._replace(category=inst.category._replace(name=mapping[inst.category.name]))
            for inst in found if inst.category.name in mapping]
    dropped = len(found) - len(kept)
    results = []
    for k, inst in enumerate(kept, start=1):
        if kind == "polygonlabels":
            results += _polygon_results(image, k, inst, config, min_region_area)
        else:
            region = rectangle_result if kind == "rectanglelabels" else brush_result
            results.append(region(image, k, inst, from_name=config.from_name, to_name=config.to_name))
    if dropped and on_dropped is not None:
        on_dropped(dropped)
    score = float(np.mean([r["score"] for r in results])) if results else 0.0
    return {"result": results, "score": round(score, 5), "model_version": model_version}


async def predict_tasks(tasks: list, *, config: LabelConfig, class_names: Sequence[str], model_version: str,
                        load: Callable, detect: Callable, in_thread: Callable, concurrency: int,
                        min_region_area: float = DEFAULT_MIN_REGION_AREA,
                        load_timeout_s: Optional[float] = None) -> list:
    """``/predict``'s ``results``: one prediction per task, in order. ``load(reference)`` -> the decoded
    (3, H, W) image (blocking: run through ``in_thread(fn, *args)``), ``await detect(image)`` -> its
    detections (the server's batch queue). At most ``concurrency`` tasks hold an image at once (memory).
    A load that takes more than ``load_timeout_s`` seconds (None: no limit) is given up: its thread may
    stay blocked (a file on a hung mount), but the task is answered and the request ends.
    A task that fails in any step gets an empty prediction and a warning naming it."""
    gate = asyncio.Semaphore(max(1, concurrency))
    dropped = []

    async def one(index: int, task) -> dict:
        task_id = task.get("id") if isinstance(task, dict) else None
        where = f"task {task_id}" if task_id is not None else f"tasks[{index}]"
        try:
            async with gate:
                reference = task_image_reference(task, config.data_key)
                try:
                    image = await asyncio.wait_for(in_thread(load, reference), load_timeout_s)
                except asyncio.TimeoutError:
                    raise TimeoutError(f"its image was not read within {load_timeout_s:g} s") from None
                det = await detect(image)
                H, W = image.shape[-2:]
                return await in_thread(lambda: task_prediction(
                    det, task_id=task_id, height=H, width=W, config=config, class_names=class_names,
                    model_version=model_version, on_dropped=dropped.append, min_region_area=min_region_area))
        except Exception as e:  # this task only: the others are answered
            log.warning("Label Studio %s: empty prediction: %s", where, e)
            return empty_prediction(model_version)

    results = await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks)))
    if dropped:
        log.info("Label Studio: %d detections left out: their classes have no label in the project's "
                 "%r control", sum(dropped), config.from_name)
    return list(results)


class LabelStudioBackend:
    """What the Label Studio routes do, around the server's ``BatchQueue`` (``batches``): ``setup(payload)``
    and ``await predict(payload)`` answer ``/setup`` and a JSON ``/predict``; ``ValueError`` for a request
    to refuse (a 400). ``stats``: the server's /health counters (a task past ``request_timeout_s`` adds to
    ``request_timeouts``)."""

    def __init__(self, predictor, batches, stats, *, max_pixels, request_timeout_s, model_version, fetcher,
                 min_region_area: float = DEFAULT_MIN_REGION_AREA, decode_slots=None):
        self.batches, self.stats, self.fetcher = batches, stats, fetcher
        self.decode_slots = decode_slots  # the server's bound on decodes at once (app.decode_slots)
        self.names = distinct_class_names(predictor.class_names)  # Label Studio refuses repeated labels
        # as the checkpoint names them (a Predictor's class_names are told apart already): a project's
        # label equal to a renamed one is told what it is called here
        source = getattr(predictor, "source_class_names", None)
        self.source_names = list(source) if source and len(source) == len(self.names) else list(
            predictor.class_names)
        self.has_masks = has_masks(predictor)
        self.max_pixels, self.request_timeout_s = max_pixels, request_timeout_s
        self.model_version = model_version
        self.min_region_area = float(min_region_area)
        # sha256 digests of the labelling configs /predict has checked against our classes (digests, not
        # the XML: a config can be as large as an upload)
        self._configs_seen: set = set()
        self._address_said = ""  # the last line logged about where /data/... images are fetched from
        # project id -> the LabelConfig /setup accepted for it (parsed: small, where the XML can be as
        # large as an upload): a /predict without a label_config (older SDKs, other clients) uses it, not
        # our class names (labels the project lacks). The least recently used goes past the bound.
        self._setup_configs: OrderedDict[str, LabelConfig] = OrderedDict()

    def setup(self, payload: dict) -> dict:
        xml = payload.get("schema") or payload.get("label_config")
        project = payload.get("project")
        # no project id: nothing to key it by (stored under "None" it was every such client's config)
        key = None if project is None else str(project)
        try:
            report = setup_report(xml, self.names, has_masks=self.has_masks, model_version=self.model_version,
                                  source_names=self.source_names)
        except ValueError:  # refused: the project's earlier config is no longer what it labels with
            if key is not None:
                self._setup_configs.pop(key, None)
            raise
        if key is not None:
            self._setup_configs[key] = parse_label_config(xml, has_masks=self.has_masks)
            self._setup_configs.move_to_end(key)
            if len(self._setup_configs) > 256:  # a bound on memory: the least recently used goes
                self._setup_configs.popitem(last=False)
        hostname, token = payload.get("hostname"), payload.get("access_token")
        if isinstance(hostname, str) and hostname.strip():
            said = self.fetcher.adopt(hostname.strip(), token if isinstance(token, str) else None)
            if said != self._address_said:  # said when it changes, not at every /setup of a project
                self._address_said = said
                log.warning("Label Studio project %s: %s", payload.get("project"), said)
        if report["unmatched_classes"] or report["unmatched_labels"]:
            log.warning("Label Studio project %s: classes without a label: %s; labels without a class: %s%s",
                        payload.get("project"), report["unmatched_classes"] or "none",
                        report["unmatched_labels"] or "none",
                        f" ({report['hint']})" if report["hint"] else "")
        return report

    def _warn_unmatched(self, xml: str, config: LabelConfig, project) -> None:
        """A warning, once per distinct labelling config, when some of our classes have no label in it:
        their detections are left out of every task's prediction (all of them when no label matches),
        which a project whose labels were renamed would otherwise see only as empty results."""
        digest = hashlib.sha256(xml.encode("utf-8", "surrogatepass")).digest()
        if digest in self._configs_seen:
            return
        if len(self._configs_seen) >= 256:  # a bound on memory; a config seen again may warn again
            self._configs_seen.clear()
        self._configs_seen.add(digest)
        _, unmatched_classes, unmatched_labels = match_labels(self.names[1:], config.labels)
        if not unmatched_classes:
            return
        renamed = renamed_labels(unmatched_labels, self.source_names, self.names)
        hint = renamed_hint(renamed, self.source_names)
        everything = " (all of them: every prediction is empty)" if len(unmatched_classes) == len(
            self.names) - 1 else ""
        log.warning("Label Studio project %s: the model's classes %s have no label in the %s control %r%s, "
                    "their detections are left out; labels no class matches: %s (labels must be the class "
                    "names, case aside)%s", project, ", ".join(unmatched_classes), config.kind,
                    config.from_name, everything, ", ".join(unmatched_labels) or "none",
                    f"; {hint}" if hint else "")

    def _load(self, reference: str):
        from maskrcnn.data.images import decode_image_bytes

        data, name = self.fetcher.fetch(reference)
        # uint8 while it waits for the model, as an upload (app._decode_upload); the worker makes it float
        with self.decode_slots if self.decode_slots is not None else nullcontext():
            return decode_image_bytes(data, name=name, max_pixels=self.max_pixels, keep_uint8=True)

    async def _detect(self, image, *, score_thresh: Optional[float] = None):
        from maskrcnn.serve.app import NOTES_KEY, filter_by_score  # (app imports this module)

        future = self.batches.submit(image)  # QueueFullError: this task's prediction is empty
        try:
            det = await asyncio.wait_for(asyncio.wrap_future(future), self.request_timeout_s)
        except asyncio.TimeoutError:
            future.cancel()
            self.stats["request_timeouts"] += 1
            raise TimeoutError(f"no answer within {self.request_timeout_s:g} s (--request-timeout)") from None
        det = {k: v for k, v in det.items() if k != NOTES_KEY}  # notes for an upload's answer: none here
        return filter_by_score(det, score_thresh)

    async def predict(self, payload: dict, *, score_thresh: Optional[float] = None) -> dict:
        """``score_thresh``: the request's own (None: none), which keeps detections scoring at least it,
        after the server's ``--score-thresh``."""
        tasks = payload.get("tasks")
        if not isinstance(tasks, list):
            raise ValueError("a JSON body to /predict is an image, {\"image\": \"<base64>\"}, or Label "
                             "Studio's tasks: it needs 'image' or a 'tasks' list")
        import anyio.to_thread

        # abandoned when the request ends first (its deadline, the client gone): a load blocked in the
        # file system cannot be stopped, but it no longer holds the request or a thread-pool slot
        in_thread = functools.partial(anyio.to_thread.run_sync, abandon_on_cancel=True)

        xml, project = payload.get("label_config"), payload.get("project")
        if xml:
            config = parse_label_config(xml, has_masks=self.has_masks)
            self._warn_unmatched(xml, config, project)
        elif project is not None and str(project) in self._setup_configs:
            config = self._setup_configs[str(project)]  # /setup warned of its unmatched classes
            self._setup_configs.move_to_end(str(project))
        else:
            config = default_config(self.names)
        results = await predict_tasks(
            tasks, config=config, class_names=self.names, model_version=self.model_version, load=self._load,
            detect=functools.partial(self._detect, score_thresh=score_thresh), in_thread=in_thread,
            concurrency=2 * self.batches.batch_size, min_region_area=self.min_region_area,
            load_timeout_s=self.request_timeout_s,  # the fetch is under the request's deadline too
        )
        return {"results": results, "model_version": self.model_version}
