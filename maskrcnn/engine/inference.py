"""COCO AP of a model on a COCO-format dataset, through the one inference path (``Predictor``): used by
validation during training (``make_evaluate_fn``) and by ``maskrcnn eval``.

Shapes: D detections of one image, in its original coordinates.

Each image file of the dataset is read at its original size and given to ``Predictor.predict_files``
(resize, model, map back, paste masks); its detections go to a ``CocoEvaluator`` whose ground truth is
the dataset's validated records (``CocoDataset.to_coco_dict``); the result is
``CocoEvaluator.evaluate()``'s dict (AP in percent). A class of the dataset that the model does not have
scores AP 0 and counts in the mean, as COCOeval computes it; a warning names it
(``unscored_classes_warning``; once per run in training). Validation during training runs an optimised copy
of the model, so it reports what ``maskrcnn eval`` reports on the saved checkpoint, and the model being
trained is left as it was. Under torchrun that validation is sharded: each process predicts every P-th
image, rank 0 gathers the result records and scores them (the AP of one process).
"""

from __future__ import annotations

import copy
import sys
import warnings
from typing import Callable, Optional

from torch import nn

from maskrcnn.listing import short_listing


def iou_types(cfg) -> tuple:
    """The COCO evaluations a model of ``cfg`` supports: bbox, then segm and keypoints when it has them."""
    rh = cfg.model.roi_heads
    return ("bbox",) + (("segm",) if rh.mask_on else ()) + (("keypoints",) if rh.keypoint_on else ())


def _ids_by_name(class_names, dataset, notes: Optional[list] = None, ids: Optional[dict] = None,
                 left_out: Optional[list] = None) -> Optional[dict]:
    """Label -> the dataset's category id of the same name, for the model's classes the dataset has;
    None unless each of the model's classes names at most one category of the dataset, and either
    all of them are found or every category of the dataset is one of them (a validation split
    converted on its own lists only the classes it holds: the model's others are left out, not
    mis-numbered). Names are compared exactly; when that finds no such mapping, a class without an exact
    match is matched by its name as ``init_weights.normalise_name`` reads it ('Person' is 'person', as
    ``check_class_overlap`` lets it through); a class whose name so read is ambiguous (it names several
    categories of the dataset, or another of the model's classes reads alike) is
    left out (matches nothing), the others still matched. ``notes`` (a list): a line is appended for
    each class left out for naming several categories. ``ids`` (label -> the id the model would be
    scored by without names): a class the file has neither by name nor by that id is left out first
    (``name_match.ids_by_name_or_placed``), its label appended to ``left_out`` (a list)."""
    from maskrcnn.engine.name_match import ids_by_name_or_placed, name_index

    # the one rule eval --results follows for a results file's category_name (engine/name_match.py)
    exact, normalised = name_index((cid, [dataset.class_names[label]], dataset.class_names[label])
                                   for label, cid in dataset.label_to_category_id.items())
    shown = {cid: dataset.class_names[label] for label, cid in dataset.label_to_category_id.items()}

    said: set = set()  # a name found ambiguous again (the second, placed-only attempt) is said once

    def ambiguous(name, ids):  # 'PERSON' on a file's 'Person' and 'person': which is unknown
        if notes is not None and name not in said:
            said.add(name)
            fits = ", ".join(f"'{shown[c]}'" for c in ids)
            notes.append(f"note: {dataset.json_path}: the model's class '{name}' fits several of its "
                         f"categories ({fits}); not matched by name")

    file_ids = set(dataset.label_to_category_id.values())
    mapping, _, nowhere = ids_by_name_or_placed(
        dict(enumerate(class_names[1:], 1)), exact, normalised, on_ambiguous=ambiguous,
        has_id=lambda label: ids is None or ids.get(label) in file_ids)
    if left_out is not None:
        left_out.extend(nowhere)
    return mapping


def label_mapping(predictor, dataset) -> dict:
    """Label -> the dataset's category id: by class name when the dataset numbers the model's classes
    otherwise, else the predictor's own mapping (the checkpoint's), else the dataset's when the numbers
    of classes agree, else identity when labels already are the dataset's category ids (torchvision's
    COCO models)."""
    num_classes = len(predictor.class_names)
    mapping = predictor.label_to_category_id or (
        dataset.label_to_category_id if num_classes == dataset.num_classes else None)
    notes: list = []
    # without the checkpoint's ids (nor as many classes as the file) the labels stand for themselves
    ids = mapping if mapping is not None else {label: label for label in range(1, num_classes)}
    nowhere: list = []  # labels the file has neither by name nor by id: left out (ignore_labels)
    by_name = _ids_by_name(predictor.class_names, dataset, notes, ids, nowhere)
    for line in notes:
        print(line, file=sys.stderr)
    if by_name is not None and by_name != mapping:
        # Another export of the same classes numbers them differently (train and val files from
        # separate exports): by position or by the checkpoint's ids each 'dog' was scored as a 'cat'.
        absent = [predictor.class_names[label] for label in range(1, num_classes) if label not in by_name]
        listed = f"{', '.join(absent[:10])}{', ...' if len(absent) > 10 else ''}"
        if all(ids.get(label) == cid for label, cid in by_name.items()):
            # the same ids, only classes absent from the file (a subset of the categories): not renumbered
            one = len(absent) == 1
            if absent:
                print(f"note: {dataset.json_path} does not have the model's class{'' if one else 'es'} "
                      f"{listed}: {'its' if one else 'their'} detections left out (the other classes have "
                      "the same ids there)", file=sys.stderr)
        else:
            print(f"note: {dataset.json_path} numbers the model's classes differently; matching them by name"
                  + (f" (not in it, their detections left out: {listed})" if absent else ""),
                  file=sys.stderr)
        return by_name
    if predictor.label_to_category_id:
        kept = {label: cid for label, cid in predictor.label_to_category_id.items() if label not in nowhere}
        _refuse_id_clash(predictor.class_names, kept, dataset)
        contradicted = names_contradicting_ids(predictor.class_names, kept, dataset)
        if contradicted:
            print(contradicted, file=sys.stderr)
        if nowhere:
            print(f"note: {dataset.json_path} has the model's classes "
                  f"{short_listing([predictor.class_names[label] for label in nowhere], limit=10)} neither "
                  "by name nor by id: their detections left out", file=sys.stderr)
        return kept
    if num_classes == dataset.num_classes:
        mine, theirs = predictor.class_names[1:], dataset.class_names[1:]
        if any(not n.startswith("class_") for n in mine) and mine != theirs:
            print(
                f"warning: model classes {mine[:5]}... differ from the dataset's {theirs[:5]}...; "
                "matching them by position",
                file=sys.stderr,
            )
        return dict(dataset.label_to_category_id)
    cat_ids = list(dataset.category_id_to_label)
    if max(cat_ids) < num_classes:
        return {label: label for label in range(1, num_classes)}
    raise ValueError(
        f"the model predicts {num_classes - 1} classes, {dataset.json_path} has "
        f"{dataset.num_classes - 1} categories, and no label -> category id mapping is known"
    )


def _refuse_id_clash(class_names, mapping: dict, dataset) -> None:
    """ValueError, before any inference, when a class of the model is kept at an id ``dataset`` lacks
    while its name is one of the file's categories under another id (and the names as a whole cannot be
    trusted, ``name_match``): every detection of it would fail the scorer ("category ids 1 are not in the
    ground truth") once the whole inference is done."""
    theirs = {str(dataset.class_names[label]): cid for label, cid in dataset.label_to_category_id.items()}
    file_ids = set(dataset.label_to_category_id.values())
    clash = [(class_names[label], cid, theirs[class_names[label]]) for label, cid in sorted(mapping.items())
             if cid not in file_ids and class_names[label] in theirs]
    if not clash:
        return
    shown = ", ".join(f"'{name}' (id {cid} in the weights, {other} in the file)"
                      for name, cid, other in clash[:5])
    raise ValueError(
        f"{dataset.json_path}: the model's class{'es' if len(clash) > 1 else ''} {shown} cannot be scored: "
        "the file lacks the weights' id and its other categories do not match the model's classes by name, "
        "so the names cannot say which id each class is; evaluate on a file that numbers the classes as the "
        "model does, or names all of them")


def names_contradicting_ids(class_names, mapping: dict, dataset) -> Optional[str]:
    """A warning line when ids are kept (the names as a whole could not be trusted, ``name_match``) while
    some class's name is, in ``dataset``, the name of another of its ids: the weights' 'dog' id 2 scored
    as the file's 'bird' id 2 while the file's 'dog' is id 1. Kept (a renamed or translated set is
    legitimate), but said: it is the case the scores would otherwise hide. None when the names agree."""
    theirs: dict = {}
    for label, cid in dataset.label_to_category_id.items():
        theirs.setdefault(str(dataset.class_names[label]), cid)
    by_id = {cid: str(dataset.class_names[label]) for label, cid in dataset.label_to_category_id.items()}
    clash = [(class_names[label], cid, theirs[class_names[label]]) for label, cid in sorted(mapping.items())
             if cid in by_id and class_names[label] in theirs and theirs[class_names[label]] != cid
             and by_id[cid] != class_names[label]]  # a name the file gives two ids: its own id agrees
    if not clash:
        return None
    shown = "; ".join(f"'{name}' is id {cid} in the weights, {other} in the file (id {cid} there is "
                      f"'{by_id[cid]}')" for name, cid, other in clash[:5])
    more = f" (and {len(clash) - 5} more)" if len(clash) > 5 else ""
    return (f"warning: {dataset.json_path} names the model's classes under other ids: {shown}{more}; the "
            "weights' ids are kept, as the names do not match as a whole: if the file is the same classes "
            "numbered otherwise, evaluate on one that names every class the model has")


def unscored_classes_warning(mapping: dict, dataset) -> Optional[str]:
    """A line naming the dataset's classes that hold objects but that no class of the model maps to
    (``mapping``: label -> the dataset's category id, as ``label_mapping`` gives it), or None. COCOeval
    scores each such class at AP 0 (objects, no detection can be of it) and averages it into AP with the
    others: kept so, as COCO computes it, but said (once), since it lowers the mean silently."""
    mapped = {int(cid) for cid in mapping.values()}
    counts = dataset.instances_per_class()  # crowd regions aside: COCOeval ignores them
    missing = [(dataset.class_names[label], counts[label])
               for label, cid in sorted(dataset.label_to_category_id.items())
               if int(cid) not in mapped and counts[label] > 0]
    if not missing:
        return None
    named = ", ".join(f"'{name}' ({n} object{'s' if n != 1 else ''})" for name, n in missing[:10])
    named += ", ..." if len(missing) > 10 else ""
    if len(missing) == 1:
        return (f"{dataset.json_path}: class {named} is not one of the model's classes: its objects count "
                "as misses (AP 0) in the mean")
    return (f"{dataset.json_path}: classes {named} are not among the model's classes: their objects count as "
            "misses (AP 0) in the mean")


def check_keypoint_count(cfg, dataset) -> None:
    """ValueError when a keypoint model is to be scored on a dataset of another keypoint count: every
    detection would be left out as 'keypoints hold 5 points, the category has 17' (its box and mask too).
    Nothing to check on a dataset without keypoint ground truth (``keypoints_unscorable``): its boxes and
    masks are scored, no keypoint AP."""
    if keypoints_unscorable(cfg, dataset):
        return
    names, k = dataset.keypoint_names, cfg.model.roi_heads.num_keypoints
    if cfg.model.roi_heads.keypoint_on and names and len(names) != k:
        raise ValueError(f"the model predicts {k} keypoints, {dataset.json_path} has {len(names)} "
                         f"({short_listing(names, limit=5)})")
    # A file without keypoint names is read as COCO's 17 points (its annotations checked against 17): a
    # model of another count (a converted detectron2 / mmdet keypoint model) failed in COCOeval's OKS
    # with numpy's "operands could not be broadcast together".
    n_data = getattr(dataset, "num_keypoints", None)
    if cfg.model.roi_heads.keypoint_on and not names and n_data is not None and n_data != k:
        raise ValueError(f"the model predicts {k} keypoints, {dataset.json_path} names no keypoints in its "
                         f"categories, so its annotations are read as COCO's {n_data}; give the category a "
                         f"'keypoints' list of {k} names")


def keypoints_unscorable(cfg, dataset) -> Optional[str]:
    """For a keypoint model: a line saying that keypoint AP is left out when ``dataset`` has no keypoint
    ground truth (no category names a keypoint set, no annotation holds keypoints), else None. Boxes
    and masks are still scored: COCOeval's keypoint AP needs the category's keypoints and each person's
    ``num_keypoints``, and failed on such a file with a bare KeyError once the whole inference was done."""
    if not cfg.model.roi_heads.keypoint_on or dataset.defines_keypoints:
        return None  # (unnamed keypoints are read as COCO's 17: check_keypoint_count)
    kinds = " and ".join(t for t in iou_types(cfg) if t != "keypoints")
    return (f"note: {dataset.json_path} defines no keypoints (no category has a 'keypoints' list, no "
            f"annotation holds keypoints): {kinds} AP only, no keypoint AP")


def check_class_overlap(class_names, dataset, *, weights="the model") -> None:
    """ValueError, before any inference, when none of the model's classes (``class_names``, background
    first) is a category of ``dataset`` (names compared as ``init_weights.normalise_name`` reads them) and
    their numbers differ: every detection would be of a category the ground truth lacks (the evaluator's
    "category ids 2, 3 are not in the ground truth" after the whole inference) or, numbered by position,
    a 'circle' scored as a 'person'. Models whose classes are
    unnamed (``class_N``) and equal counts (matched by position with a warning, ``label_mapping``) pass."""
    from maskrcnn.engine.init_weights import normalise_name

    mine = [str(n) for n in class_names[1:]]
    theirs = [str(n) for n in dataset.class_names[1:]]
    # names equal as fine-tuning matches them ('Traffic_Light' is 'traffic light'): a 'Person' model
    # scores a file's 'person'
    shared = {normalise_name(n) for n in mine} & {normalise_name(n) for n in theirs}
    if not mine or not theirs or all(n.startswith("class_") for n in mine) or shared:
        return
    if len(mine) == len(theirs):
        return
    raise ValueError(
        f"{dataset.json_path}: none of its categories ({short_listing(theirs, limit=8)}) is among the "
        f"classes of {weights} ({short_listing(mine, limit=8)}): no detection could be scored; evaluate "
        "it on a file of the model's classes, or a model trained on this file's")


def ground_truth(dataset):
    """The pycocotools COCO the model's evaluation scores ``dataset`` against: its validated records,
    box-only objects as ignored regions of segm AP, read by the scorer (``load_ground_truth``), whose
    errors name the dataset's file. Training calls it once before its first iteration, so a value the
    scorer refuses and the dataset keeps (``"area": -3``) ends the run at its start, not at its first
    evaluation hours in."""
    from maskrcnn.engine.evaluator import load_ground_truth

    path = getattr(dataset, "json_path", None)  # a dataset of the user's may have no file
    return load_ground_truth(dataset.to_coco_dict(box_as_mask=False),
                             source=str(path) if path is not None else None, from_dataset=True)


def build_evaluator(predictor, dataset, *, quiet: bool = False):
    """A CocoEvaluator for ``predictor``'s model on ``dataset`` (its validated ground truth). Unless
    ``quiet``, says on stderr how keypoints are scored: the dataset's keypoint names against the model's
    (``keypoint_order``) and the keypoints whose OKS sigma is the default (``default_sigma_note``)."""
    from maskrcnn.data.keypoints import default_sigma_note, keypoint_sigmas
    from maskrcnn.engine.evaluator import CocoEvaluator

    cfg = predictor.cfg
    sigmas, order = None, None
    types = iou_types(cfg)
    no_keypoints = keypoints_unscorable(cfg, dataset)
    if no_keypoints:
        types = tuple(t for t in types if t != "keypoints")
        if not quiet:
            print(no_keypoints, file=sys.stderr)
    check_keypoint_count(cfg, dataset)  # nothing to check without keypoints or keypoint ground truth
    if cfg.model.roi_heads.keypoint_on and not no_keypoints:
        # the model's keypoint names (or the dataset's): COCO's sigma per COCO name, else the default
        names = list(cfg.data.keypoint_names) or dataset.keypoint_names
        sigmas = keypoint_sigmas(names, int(cfg.model.roi_heads.num_keypoints), cfg.data.keypoint_sigmas)
        order, order_line = keypoint_order(cfg, dataset)
        if order is not None:  # scored in the dataset's order: its names, the sigmas moved with them
            names, sigmas = list(dataset.keypoint_names), tuple(sigmas[i] for i in order)
        for line in (order_line, default_sigma_note(names, cfg.data.keypoint_sigmas)):
            if line and not quiet:
                print(line, file=sys.stderr)
    mapping = label_mapping(predictor, dataset)
    return CocoEvaluator(
        ground_truth(dataset),
        iou_types=types,
        label_to_category_id=mapping,
        class_names=predictor.class_names,  # each result's category_name (eval's predictions.json)
        keypoint_sigmas=sigmas,
        # the model's classes the dataset lacks (matched by name): nothing to score them against
        ignore_labels=[label for label in range(1, len(predictor.class_names)) if label not in mapping],
        keypoint_order=order,
        keypoint_labels=getattr(predictor, "keypoint_labels", None),  # as predict leaves keypoints out
    )


def keypoint_order(cfg, dataset) -> tuple:
    """(order, line): the model's keypoint names (``data.keypoint_names``) against the dataset's. The
    same names in another order: for each dataset keypoint the model's index of that name (scored by
    name: by position every point would be compared with another joint and the AP mean nothing), and a
    note; other names: None and a warning naming both lists (scored by position); else (None, None)."""
    ours, theirs = [str(n) for n in cfg.data.keypoint_names], [str(n) for n in dataset.keypoint_names or []]
    if not ours or not theirs or ours == theirs or len(ours) != len(theirs):
        return None, None
    if sorted(ours) == sorted(theirs) and len(set(ours)) == len(ours):
        where = {name: i for i, name in enumerate(ours)}
        return [where[name] for name in theirs], (
            f"note: {dataset.json_path} lists the model's keypoints in another order: the detections' "
            "keypoints are matched to its keypoints by name")
    return None, (f"warning: {dataset.json_path}: its keypoint names {theirs} are not the model's "
                  f"(data.keypoint_names {ours}): scored by position, the k-th point against the k-th")


class NothingEvaluated(ValueError):
    """Every image of an evaluation was left out (unreadable, of another size, the model failed)."""


def evaluate_dataset(
    predictor,
    dataset,
    evaluator,
    *,
    max_images: Optional[int] = None,
    on_error: Optional[Callable] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    sharded: bool = False,
) -> Optional[dict]:
    """Run ``predictor`` over the first ``max_images`` images of ``dataset`` (all by default), feed
    ``evaluator`` and return its ``evaluate()``. An image file that cannot be read, is not the size its
    record gives (except a quarter-turned photo whose record gives its stored size: predicted on its
    stored pixels, as training reads it), or that the model fails on, is left out of the score after
    ``on_error(index, path, error)`` (raised when None);
    ``progress(done, total)`` after each window (``total``: this process's images).
    ``NothingEvaluated`` when every image was left out.

    ``sharded`` (under torchrun; every process of the group must call it): each process predicts the
    images of its share, interleaved by index (rank r takes r, r + P, r + 2P, ...: balanced shares), the
    result records are gathered on rank 0, which scores them all, in the order one process
    gives them (the same AP as one process); the other ranks return None."""
    from maskrcnn.engine import distributed as du

    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    rank, world = (du.get_rank(), du.get_world_size()) if sharded else (0, 1)
    indices = list(range(rank, n, world))
    infos = [dataset.image_info(i) for i in indices]
    paths = [info["path"] for info in infos]
    windows = (
        predictor.predict_files(paths) if on_error is None
        else predict_files_skipping(predictor, paths,
                                    on_error=lambda i, path, e: on_error(indices[i], path, e))
    )  # fmt: skip
    for window in windows:
        for index, image, det in window:
            try:  # detections on other pixels than the annotations' would score as misses, silently
                det = _on_annotated_pixels(predictor, dataset, indices[index], image, det)
            except (ValueError, RuntimeError) as e:  # ImageReadError; the model failing on the stored pixels
                if on_error is None:
                    raise
                on_error(indices[index], paths[index], e)
                continue
            evaluator.process(infos[index]["id"], det)
        if progress is not None:
            progress(window[-1][0] + 1, len(indices))
    if world > 1:
        shares = du.gather_objects((evaluator.results(), evaluator.image_ids()))
        if shares is None:  # not rank 0
            return None
        # one process's order: images by dataset index, each image's detections as they came
        # (COCOeval's score sorts are stable: the order decides ties, so the AP matches exactly)
        position = {int(dataset.image_info(i)["id"]): i for i in range(n)}
        records = sorted((r for share, _ in shares for r in share),
                         key=lambda r: position[int(r["image_id"])])
        evaluator.reset()
        evaluator.add_results(records, [i for _, ids in shares for i in ids])
    if not evaluator.image_ids():  # every image skipped: an AP over none would count each object a miss
        source = getattr(dataset, "json_path", "the dataset")
        raise NothingEvaluated(f"{source}: none of its {n} images could be evaluated"
                               + (" (each named above)" if n else ""))
    return evaluator.evaluate()


def _on_annotated_pixels(predictor, dataset, index: int, image, det: dict) -> dict:
    """``det`` (predicted on ``image`` as read, EXIF orientation applied) when the image is the size its
    record gives; predicted again on the stored pixels when the record gives the stored size of a
    quarter-turned photo, or of a photo turned 180 degrees or mirrored in a file whose tool showed stored
    pixels (``dataset.stored_orientation``: training reads it so, its annotations lie on those pixels);
    ``ImageSizeError`` otherwise."""
    from maskrcnn.data.images import undo_orientation

    stored = getattr(dataset, "stored_orientation", None)
    # also for an image of its record's size: a photo turned 180 degrees or mirrored keeps its size, and is
    # read as stored when the file's quarter-turned photos show its tool did (``CocoDataset.exif_frame``)
    orientation = stored(index, image.shape[-2:]) if stored is not None else None
    if orientation is None:
        dataset.check_image_size(index, image)
        return det
    return predictor.predict_tensors([undo_orientation(image, orientation)])[0]


def predict_files_skipping(predictor, files: list, *, on_error: Callable,
                           before: Optional[Callable] = None):
    """``predictor.predict_files`` (windows of ``(index, image, detections)``) that survives bad images:
    a file that cannot be read, and an image the model fails on (no forward can take it, memory), is
    reported once by ``on_error(index, path, error)`` and skipped. A window that fails is retried image
    by image, so that only the image at fault is lost and every other image's results are kept.
    ``before(paths)``: called with each window's files before any of them is read (predict's memory
    warning for a large image: said after the image, it came too late for the one that runs out)."""
    reported = set()

    def skip_once(index, path, error):
        if index not in reported:
            reported.add(index)
            on_error(index, path, error)

    def predict(start: int, chunk: list):
        def report(i, path, error):
            skip_once(start + i, path, error)

        for window in predictor.predict_files(chunk, on_error=report):
            yield [(start + i, image, det) for i, image, det in window]

    step = predictor.window  # predict_files yields at most one window per chunk of this size
    for start in range(0, len(files), step):
        chunk = files[start : start + step]
        if before is not None:
            before(chunk)
        try:
            yield from predict(start, chunk)
            continue
        except (RuntimeError, ValueError, MemoryError) as e:
            if len(chunk) == 1:
                skip_once(start, chunk[0], _model_error(e))
                continue
        for i, path in enumerate(chunk):  # the window failed: find the image at fault
            try:
                yield from predict(start + i, [path])
            except (RuntimeError, ValueError, MemoryError) as e:
                skip_once(start + i, path, _model_error(e))


def _model_error(e: BaseException) -> str | ValueError:
    from maskrcnn.engine.tiling import TooManyTiles

    if isinstance(e, TooManyTiles):  # the image's tile settings were refused, the model never ran:
        return TooManyTiles(f"not predicted: {e}")  # its str the message, counted under its reason
    # torch's CPU allocator reports exhaustion as a RuntimeError, numpy's as a MemoryError
    if isinstance(e, MemoryError) or "can't allocate memory" in str(e) or "out of memory" in str(e):
        return "out of memory while predicting this image (too large: downscale it, or use more memory)"
    first_line = str(e).splitlines()[0] if str(e) else ""
    return f"the model failed on this image ({type(e).__name__}: {first_line})"


def make_evaluate_fn(cfg, dataset, json_path, *, device="cpu", optimise: bool = True):
    """``model -> results``, for ``Trainer(evaluate_fn=...)``: a fresh evaluator each call.

    ``dataset`` is the ``CocoDataset`` read from ``json_path``; its validated records are the ground
    truth. With ``optimise`` (the default) an optimised copy of the model is evaluated, exactly as
    ``maskrcnn eval`` evaluates the checkpoint; otherwise the model itself, as built. Either way the
    model is left unchanged, in the mode it was in. A validation image that cannot be read, is not the
    size its record gives or that the model fails on is left out of the score with a warning naming it
    (as ``maskrcnn eval`` does): one bad file must not end a run hours in. Under torchrun every process
    calls it: each predicts its share of the images, rank 0 gets the results (``evaluate_dataset``'s
    ``sharded``), the others None.
    """
    del json_path  # the dataset was read from it

    def skip(index, path, error):
        from maskrcnn.shown_text import display_name, with_shown

        # a file_name from the JSON: its control characters escaped, as the dataset's own lines show it
        warnings.warn(f"validation: {display_name(path)} left out of the score "
                      f"({with_shown(str(error), path)})", stacklevel=2)

    warned: list = []  # the unscored classes are said at the first evaluation only

    def evaluate(model: nn.Module) -> Optional[dict]:
        from maskrcnn.engine import distributed as du
        from maskrcnn.predictor import Predictor

        was_training = model.training
        # rank 0's running statistics (those saved) on every process: harmless to the training, whose
        # next forward copies rank 0's buffers to the others anyway (DDP's broadcast_buffers)
        du.broadcast_buffers(model)
        try:
            # a copy: optimise_for_inference folds norms and swaps modules in place
            subject = copy.deepcopy(model) if optimise else model
            predictor = Predictor(
                subject, cfg, device=device, optimise=optimise, masks="rle",
                label_to_category_id=getattr(dataset, "label_to_category_id", None),
            )  # fmt: skip
            # the dataset-wide notes once, from rank 0 (every process evaluates under torchrun)
            quiet = bool(warned) or du.get_rank() != 0
            evaluator = build_evaluator(predictor, dataset, quiet=quiet)
            line = None if quiet else unscored_classes_warning(evaluator.label_to_category_id, dataset)
            warned.append(True)
            if line:
                warnings.warn(f"validation: {line}", stacklevel=2)
            try:  # every process its share (under torchrun), rank 0 scores them all
                return evaluate_dataset(predictor, dataset, evaluator, on_error=skip, sharded=True)
            except NothingEvaluated as e:  # no number this time (the best checkpoint is not chosen on it)
                warnings.warn(f"validation: {e}: no AP at this evaluation", stacklevel=2)
                return None
        finally:
            model.train(was_training)

    return evaluate
