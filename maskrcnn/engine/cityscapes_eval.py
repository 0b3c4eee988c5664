"""Cityscapes' instance-level AP and AP50, computed by the official script (``cityscapesscripts``, the
``cityscapes`` extra) on predictions written in its format.

Shapes: one image's detections in COCO results records (``data/coco_results.py``): a compressed RLE
``segmentation`` of H x W (the original image), ``category_id``, ``score``.

``write_predictions`` writes what the Cityscapes benchmark takes: per image ``{stem}.txt`` with one line
``masks/{stem}_{k}.png <label id> <score>`` per detection, each PNG a binary mask (0 / 255) at the size of
the image's ground truth (a resized copy's masks resized to it, nearest; another shape refused), label
ids those of cityscapesScripts' ``labels.py`` (person 24 .. bicycle 33), found from the category names.
``evaluate_cityscapes`` then runs ``evalInstanceLevelSemanticLabeling.evaluateImgLists`` on those files
against ``ROOT/gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png`` (drawn by the package's own
``json2instanceImg`` drawing, ``createInstanceImage``, from ``*_gtFine_polygons.json`` when the PNG is
absent). The official module reads
its paths from environment variables at import, keeps settings in a module global and writes files into
the working folder (``matches.json``) and beside itself (a ground-truth cache): it therefore runs in a
child process (``python -m maskrcnn.engine.cityscapes_eval SPEC``) whose working folder is a fresh
temporary one and whose settings are given explicitly, so the caller's process and the package's folder
are left as they were.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from maskrcnn.data.formats.common import same_shape  # convert-data's resize rule: one, shared

__all__ = ["check_root", "evaluate_cityscapes", "ground_truth_path", "ground_truth_size", "label_ids_for",
           "scored_categories", "write_predictions"]

_IMAGE_SUFFIX = "_leftImg8bit.png"
INSTALL_HINT = ("the Cityscapes evaluation needs the cityscapesscripts package: "
                "pip install 'maskrcnn[cityscapes]'")


# instance classes (hasInstances in labels.py) that the benchmark does not score (ignoreInEval): a JSON that
# kept them (convert-data leaves them out, a user's own conversion may not) is scored on the others
_UNSCORED = frozenset({"caravan", "trailer"})
_BACKGROUND = frozenset({"__background__", "background"})  # torchvision-style class 0: no objects


def scored_categories(categories: Iterable[dict]) -> tuple:
    """COCO categories -> ({category id: Cityscapes label id} of the 8 classes the benchmark scores, the
    names of those it does not score: caravan, trailer), by name (``convert-data --from cityscapes`` uses
    the label ids as category ids; any other numbering works as long as the names are Cityscapes').
    A background category is ignored; ValueError names any other."""
    from maskrcnn.data.formats.cityscapes import CATEGORIES

    by_name = {name: label_id for label_id, name in CATEGORIES}
    out, unscored, unknown = {}, [], []
    for cat in categories:
        name = str(cat.get("name", "")).strip().lower()
        if name in by_name:
            out[int(cat["id"])] = by_name[name]
        elif name in _UNSCORED:
            unscored.append(cat.get("name"))
        elif name not in _BACKGROUND:
            unknown.append(cat.get("name"))
    evaluated = ", ".join(n for _, n in CATEGORIES)
    if unknown:
        raise ValueError(f"categories {unknown} are not Cityscapes instance classes ({evaluated}, which the "
                         f"benchmark scores; caravan and trailer, which it does not); --cityscapes "
                         f"evaluates the Cityscapes classes only")
    if not out:
        raise ValueError(f"no category is one the Cityscapes benchmark scores ({evaluated})"
                         + (f"; {unscored} are not scored by it" if unscored else ""))
    return out, unscored


def label_ids_for(categories: Iterable[dict]) -> dict:
    """COCO categories -> {category id: Cityscapes label id} of the scored classes (``scored_categories``)."""
    return scored_categories(categories)[0]


def _unscored_note(unscored: list) -> str:
    return (f"categories {unscored} are Cityscapes instance classes the benchmark does not score "
            f"(ignoreInEval): left out of the Cityscapes AP (the COCO AP keeps them)")


def ground_truth_path(root: Path, file_name: str) -> tuple:
    """An image's ``file_name`` (``.../{split}/{city}/{stem}_leftImg8bit.png``) -> (stem, path of its
    ``_gtFine_instanceIds.png`` under ROOT, path of its ``_gtFine_polygons.json``)."""
    parts = Path(file_name).parts
    if len(parts) < 3 or not parts[-1].endswith(_IMAGE_SUFFIX):
        raise ValueError(f"image {file_name!r} is not named as Cityscapes names its images "
                         f"(leftImg8bit/<split>/<city>/<stem>{_IMAGE_SUFFIX})")
    split, city, stem = parts[-3], parts[-2], parts[-1][: -len(_IMAGE_SUFFIX)]
    folder = Path(root) / "gtFine" / split / city
    return stem, folder / f"{stem}_gtFine_instanceIds.png", folder / f"{stem}_gtFine_polygons.json"


def ground_truth_size(ids_png: Path, polygons: Path) -> Optional[tuple]:
    """(H, W) of an image's ground truth as the official scorer reads it: the instanceIds PNG's (its
    header), else the ``imgHeight`` x ``imgWidth`` of its polygons (``json2instanceImg`` draws at that
    size); None when neither file is there (the scoring names a missing file).

    ValueError naming the file (and the field) for one the scorer cannot use: a PNG over the pixel limit
    or not readable (``images.open_image``, the converters' one open: PIL's DecompressionBombError is no
    OSError and escaped as a traceback), a polygons file that is not JSON (RecursionError too: 100000
    nested objects), not an object, or whose ``imgHeight`` / ``imgWidth`` is not a positive whole number
    (a JSON number, 1024 or 1024.0, or text of decimal digits, " 1024": the scorer reads them with
    ``int``, which refuses "1e3" and "1024.0"; "+1024" and "1_024", which it takes and no tool writes,
    are refused too) or asks for more pixels than an image may
    have (a 119-byte file asked for a 7.6 GiB mask per detection); ``objects`` must be a list."""
    from maskrcnn.data.formats.common import given_size
    from maskrcnn.data.images import check_size, max_image_pixels, open_image
    from maskrcnn.data.json_values import read_json_file

    if ids_png.is_file():
        with open_image(ids_png, str(ids_png), decode=False) as img:  # ImageReadError: a ValueError
            return img.height, img.width
    if not polygons.is_file():
        return None
    try:
        data = read_json_file(polygons)
    except (OSError, ValueError, RecursionError) as e:
        detail = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ValueError(f"{polygons}: not readable JSON ({detail})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{polygons}: holds a JSON {type(data).__name__}, expected an object with "
                         f"imgHeight, imgWidth and objects")
    for field in ("imgHeight", "imgWidth"):
        value = data.get(field)
        # text: decimal digits only, the spaces int() strips around them allowed; float() took "1e3" and
        # "1024.0", which the scorer's int() refuses
        digits = not isinstance(value, str) or re.fullmatch(r"\s*[0-9]+\s*", value, re.ASCII)
        if not digits or given_size(value, 1) is None:
            raise ValueError(f"{polygons}: {field} {value!r} is not a positive whole number (the size, in "
                             f"pixels, the ground truth is drawn at)")
    height, width = given_size(data["imgHeight"], data["imgWidth"])
    try:
        check_size(width, height, "imgWidth x imgHeight", max_image_pixels())
    except ValueError as e:
        raise ValueError(f"{polygons}: {e}") from None
    if not isinstance(data.get("objects"), list):
        raise ValueError(f"{polygons}: objects {_short(data.get('objects'))} is not a list of objects")
    return height, width


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _size_text(size: tuple) -> str:
    return f"{size[1]}x{size[0]}"


def _other_sizes(root: Path, images: Iterable[dict], *, strict: bool = True) -> tuple:
    """(the images whose size (the records' ``height`` x ``width``) is not their ground truth's but has its
    shape, [(file_name, image size, ground-truth path, its size)] of those of another shape).
    ``ground_truth_size``'s ValueError for a ground truth the scorer cannot use, unless not ``strict``:
    such an image is then passed over here (it may not be evaluated; the scoring refuses it if it is)."""
    resized, other = [], []
    for img in images:
        shown = (img.get("height"), img.get("width"))
        if not all(isinstance(v, int) and v > 0 for v in shown):
            continue  # the COCO loader names a record without a size
        _, ids_png, polygons = ground_truth_path(root, str(img.get("file_name", "")))
        try:
            truth = ground_truth_size(ids_png, polygons)
        except ValueError:
            if strict:
                raise
            continue
        if truth is None or truth == shown:
            continue
        where = ids_png if ids_png.is_file() else polygons
        (resized if same_shape(shown, truth) else other).append((img["file_name"], shown, where, truth))
    return resized, other


def _missing_ground_truth(root: Path, images: list, *, given: str) -> None:
    """FileNotFoundError naming how many ``images`` have neither gtFine file, and the first ones (the
    scoring found the first of them only after the whole inference)."""
    missing = []
    for img in images:
        _, ids_png, polygons = ground_truth_path(root, str(img.get("file_name", "")))
        if not ids_png.is_file() and not polygons.is_file():
            missing.append(ids_png)
    if missing:
        shown = ", ".join(p.name for p in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise FileNotFoundError(
            f"{given}{len(missing)} of the {len(images)} image(s) have no gtFine ground truth (neither "
            f"*_gtFine_instanceIds.png nor *_gtFine_polygons.json), e.g. {shown} (the first in "
            f"{missing[0].parent}): --cityscapes needs the gtFine annotations of every evaluated image; "
            f"evaluate a --json of the images whose gtFine is there")


def check_root(root, ground_truth: dict, *, given: str = "", every_image: bool = True) -> None:
    """FileNotFoundError unless ``root/gtFine/<split>`` holds a folder for every split the Cityscapes-named
    images of ``ground_truth`` come from (before the inference: a ROOT given one level too deep, ``gtFine``
    itself, failed only after it, one missing file at a time). ValueError, as the scoring would raise it
    after the inference, for a category that is not a Cityscapes class or an image not named as Cityscapes
    names its images. FileNotFoundError naming the images without gtFine files (all the images of the
    JSON, unless ``every_image`` is False: ``--max-images`` evaluates only some). ``given``: the message's
    start."""
    from maskrcnn.data.formats.cityscapes import check_split_folder

    try:
        label_ids_for(ground_truth.get("categories", []))
        splits = {Path(str(img.get("file_name", ""))).parts[-3]
                  for img in ground_truth.get("images", [])
                  if ground_truth_path(root, str(img.get("file_name", "")))}
    except ValueError as e:
        raise ValueError(f"{given}{e}") from None
    for split in sorted(splits):
        check_split_folder(root, "gtFine", split, given=given)
    if every_image:  # a missing one failed in the scoring, after the whole inference
        _missing_ground_truth(Path(root), ground_truth.get("images", []), given=given)
    # The scorer compares each mask with the ground truth pixel for pixel: an image of another shape than
    # its gtFine failed in its assignGt2Preds after the whole inference (a resized copy has its masks
    # resized to the ground truth's size when they are written)
    # a ground truth the scorer cannot use (over the pixel limit, not JSON, a bogus size) is refused here
    # too, naming the file; with only some images evaluated, only if one of them is (in the scoring)
    try:
        _, other = _other_sizes(Path(root), ground_truth.get("images", []), strict=every_image)
    except ValueError as e:
        raise ValueError(f"{given}{e}") from None
    if other:
        name, shown, where, truth = other[0]
        raise ValueError(
            f"{given}{len(other)} image(s) not of the shape of their gtFine ground truth, e.g. {name}: "
            f"{_size_text(shown)} (WxH, as the --json file gives it), {where}: {_size_text(truth)}; the "
            f"official scorer compares masks at the ground truth's size, and only a resized copy (the same "
            f"shape) can be resized to it: evaluate the images gtFine was drawn on")


def write_predictions(results: list, images: dict, out_dir: Path, *, label_ids: dict,
                      sizes: Optional[dict] = None, left_out: Iterable = ()) -> dict:
    """Write the benchmark's prediction files for ``images`` ({image id: stem}) into ``out_dir``; return
    {image id: path of its txt} (an image without detections gets an empty one: the script needs it).
    ``sizes``: {image id: (H, W) of its ground truth}; a mask of another size (a resized copy of the
    image was evaluated) is resized to it (nearest), as the benchmark reads masks at the ground truth's
    size; ValueError for a mask of another shape. ``left_out``: category ids whose results are not
    written (classes the benchmark does not score)."""
    import pycocotools.mask as mask_utils
    from PIL import Image

    from maskrcnn.data.formats.cityscapes import resized_ids
    from maskrcnn.io_utils import atomic_write_text

    out_dir = Path(out_dir)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    lines: dict = {image_id: [] for image_id in images}
    left_out = set(left_out)
    for r in results:
        image_id = r["image_id"]
        if image_id not in images or r["category_id"] in left_out:
            continue
        if r["category_id"] not in label_ids:
            raise ValueError(f"result for image {image_id} has category_id {r['category_id']}, which is not "
                             f"a Cityscapes class of the ground truth")
        mask = mask_utils.decode(r["segmentation"])  # (H, W) uint8
        truth = (sizes or {}).get(image_id)
        if truth is not None and tuple(mask.shape) != tuple(truth):
            if not same_shape(mask.shape, truth):
                raise ValueError(f"result for image {image_id} ({images[image_id]}) has a "
                                 f"{_size_text(mask.shape)} mask (WxH), of another shape than its ground "
                                 f"truth's {_size_text(truth)}")
            mask = resized_ids(mask, *truth)
        stem = _safe(images[image_id])
        name = f"masks/{stem}_{len(lines[image_id]):04d}.png"
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(out_dir / name)
        lines[image_id].append(f"{name} {label_ids[r['category_id']]} {float(r['score']):.6f}")
    paths = {}
    for image_id, stem in images.items():
        paths[image_id] = out_dir / f"{_safe(stem)}.txt"
        atomic_write_text(paths[image_id], "".join(line + "\n" for line in lines[image_id]))
    return paths


def _safe(stem: str) -> str:
    """The script splits its lines on spaces: none in file names."""
    return re.sub(r"\s+", "_", stem)


def evaluate_cityscapes(results: list, ground_truth: dict, root, *, image_ids: Optional[Iterable] = None,
                        predictions_dir=None, timeout: float = 3600.0) -> dict:
    """Cityscapes AP of COCO ``results`` on the images of ``ground_truth`` (a COCO dict whose file_names
    are Cityscapes', relative to ``root``; only ``image_ids`` when given), by the official script.

    Returns {"AP": .., "AP50": .. (percent), "classes": {name: {"AP", "AP50"}}}; NaN for a class without
    ground truth, as the script reports it. ``predictions_dir``: where the prediction files are written
    (kept); default a temporary folder."""
    if importlib.util.find_spec("cityscapesscripts") is None:
        raise RuntimeError(INSTALL_HINT)
    # absolute: the scorer runs in a temporary working folder, where a relative ROOT (as the README
    # writes it) named nothing and every image failed after the whole inference
    root = Path(root).resolve()
    wanted = None if image_ids is None else set(image_ids)
    label_ids, unscored = scored_categories(ground_truth.get("categories", []))
    if unscored:
        warnings.warn(_unscored_note(unscored), stacklevel=2)
    left_out = {int(c["id"]) for c in ground_truth.get("categories", []) if int(c["id"]) not in label_ids}
    stems, gts, sizes, evaluated = {}, [], {}, []
    for img in ground_truth["images"]:
        if wanted is not None and img["id"] not in wanted:
            continue
        stem, ids_png, polygons = ground_truth_path(root, img["file_name"])
        if not ids_png.is_file() and not polygons.is_file():
            raise FileNotFoundError(f"{ids_png}: no such file (nor {polygons.name}): --cityscapes needs the "
                                    f"gtFine annotations of every evaluated image")
        stems[img["id"]] = stem
        sizes[img["id"]] = ground_truth_size(ids_png, polygons)
        evaluated.append(img)
        gts.append((img["id"], str(ids_png) if ids_png.is_file() else "", str(polygons)))
    if not gts:
        raise ValueError("no image to evaluate")
    resized, other = _other_sizes(root, evaluated)
    if other:  # check_root refuses them before the inference; here for a caller that did not check
        name, shown, where, truth = other[0]
        raise ValueError(f"{name}: {_size_text(shown)} (WxH), of another shape than its ground truth "
                         f"{where}: {_size_text(truth)} ({len(other)} image(s) so)")
    if resized:
        name, shown, where, truth = resized[0]
        warnings.warn(f"{len(resized)} image(s) not at their gtFine size, resized copies (e.g. {name}: "
                      f"{_size_text(shown)}, {where.name}: {_size_text(truth)}): their prediction masks are "
                      f"resized to the ground truth's size (nearest), at which the official scorer reads "
                      f"them", stacklevel=2)
    with tempfile.TemporaryDirectory(prefix="cityscapes_eval_") as work:
        work = Path(work)
        pred_dir = Path(predictions_dir).resolve() if predictions_dir else work / "predictions"
        txts = write_predictions(results, stems, pred_dir, label_ids=label_ids, sizes=sizes,
                                 left_out=left_out)
        spec = {"work": str(work), "predictions": str(pred_dir.resolve()),
                "pairs": [[str(txts[i].resolve()), ids, poly] for i, ids, poly in gts]}
        (work / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # so the child imports this maskrcnn
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "maskrcnn.engine.cityscapes_eval", str(work / "spec.json")]
        proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        result_path = work / "result.json"
        if proc.returncode != 0 or not result_path.is_file():
            failure = _failure(proc.stdout + proc.stderr)
            raise RuntimeError(f"the Cityscapes evaluation script failed{failure}")
        official = json.loads(result_path.read_text())
        for note in json.loads((work / "notes.json").read_text()):
            warnings.warn(note, stacklevel=2)
    averages = official["averages"]
    return {"AP": 100.0 * averages["allAp"], "AP50": 100.0 * averages["allAp50%"],
            "classes": {name: {"AP": 100.0 * v["ap"], "AP50": 100.0 * v["ap50%"]}
                        for name, v in averages["classes"].items()}}


def _failure(output: str) -> str:
    """The child's output -> " in FUNCTION: its last line" (the exception, or the script's own ERROR line),
    not the whole traceback (which the command's one-line message flattened into 1500 characters)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return " (no output)"
    frames = re.findall(r'File "[^"]*", line \d+, in (\S+)', output)
    return (f" in {frames[-1]}" if frames else "") + f": {lines[-1]}"


def _write_json(data, path) -> None:
    def plain(o):
        return o.item() if isinstance(o, np.generic) else o.__dict__

    with open(path, "w") as f:
        f.write(json.dumps(data, default=plain, sort_keys=True, indent=4))


def _run_official(spec_path: str) -> int:
    """The child process: the official evaluation with explicit settings, files only in ``spec.work``."""
    from maskrcnn.data.images import apply_max_pixels_env

    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    # the pixel limit the command checked the ground truth against (MASKRCNN_MAX_IMAGE_PIXELS, inherited):
    # this process is the scorer's own, and PIL's default would refuse a PNG the user allowed
    apply_max_pixels_env()
    if not hasattr(np, "in1d"):  # numpy 2.4 removed in1d, which the script calls; isin(...).ravel() is its
        np.in1d = lambda a, b, **kw: np.isin(a, b, **kw).ravel()  # documented replacement (this process only)
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from PIL import Image

    gt_list, pred_list, notes = [], [], []
    for k, (txt, ids_png, polygons) in enumerate(spec["pairs"]):
        if not ids_png:  # drawn as the benchmark's own tools draw it, under the same name
            name = Path(polygons).name.replace("_polygons.json", "_instanceIds.png")
            ids_png = str(work / "gt" / f"{k}" / name)
            Path(ids_png).parent.mkdir(parents=True)
            try:
                annotation = Annotation()
                annotation.fromJsonFile(polygons)
                drawn = np.asarray(createInstanceImage(annotation, "ids"), dtype=np.int64)  # (H, W)
            except (Exception, SystemExit) as e:  # SystemExit: its printError, e.g. on an unknown label
                # An object the package cannot read (no polygon, an unknown label) ended the whole
                # evaluation with its traceback; convert-data names and leaves out such objects, so the
                # image is drawn as convert-data drew its ground truth (same rules, without them).
                drawn, why = _draw_without_bad_objects(polygons), f"{type(e).__name__}: {e}"
                notes.append(f"{polygons}: cityscapesScripts cannot draw it ({why}); drawn without the "
                             f"objects convert-data leaves out")
            # json2instanceImg saves that 32-bit image, which recent Pillow cannot write as PNG; the ids
            # (at most 33999) fit the 16 bits the dataset's own PNGs use
            Image.fromarray(drawn.astype(np.uint16)).save(ids_png)
        gt_list.append(ids_png)
        pred_list.append(txt)
    # Its JSON writer serialises objects by their __dict__, which NumPy 2's scalars (pixel counts) lack;
    # the same writer, given a way to write them, in this process only. Nothing it computes changes.
    official.writeDict2JSON = _write_json
    official.evaluateMatches = _guarded_evaluate_matches(official.evaluateMatches, notes)
    args = official.args
    args.gtInstancesFile = str(work / "gtInstances.json")  # not beside the package: a stale cache there
    args.exportFile = str(work / "result.json")  # would score the next dataset against this one
    args.predictionPath = spec["predictions"]
    args.predictionWalk = None
    args.JSONOutput = True
    args.quiet = True
    args.colorized = False
    official.evaluateImgLists(pred_list, gt_list, args)
    (work / "notes.json").write_text(json.dumps(notes))
    return 0


def _empty_ranking(error: IndexError, evaluate_matches) -> bool:
    """Whether ``error`` is the official ``evaluateMatches``' known failure: a (class, overlap) with ground
    truth and predictions (``haveGt``, ``havePred``) whose ranking ``y_true`` is empty, read from the
    function's own frame where it raised. Any other IndexError (another bug, another version of the
    script) is not scored 0 but ends the evaluation as it would have."""
    tb, frame = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code is evaluate_matches.__code__:
            frame = tb.tb_frame
        tb = tb.tb_next
    if frame is None:
        return False
    found = frame.f_locals
    y_true = found.get("y_true")
    return bool(found.get("haveGt")) and bool(found.get("havePred")) and y_true is not None \
        and len(y_true) == 0


def _guarded_evaluate_matches(evaluate_matches, notes: list):
    """The official ``evaluateMatches`` (ap: (distances, classes, overlaps)), made to score the case it
    fails on: a class with ground truth and predictions where, at an overlap threshold, no ground truth is
    matched and every prediction is ignored (it lies on a ``*group`` or void region). Its ranking is then
    empty and the script indexes it (``yTrueSortedCumsum[-1]``: IndexError), ending the whole evaluation
    on a valid prediction set. That class's AP at that threshold is 0 by the script's own definition (it
    scores 0 a class with ground truth and no prediction): when the whole call fails so
    (``_empty_ranking``), each (class, overlap) is scored by the script alone and one failing so is 0,
    said in ``notes``; the others are the script's own numbers. Any other error is the script's."""

    def evaluate(matches, args):
        try:
            return evaluate_matches(matches, args)
        except IndexError as e:
            if not _empty_ranking(e, evaluate_matches):
                raise
        labels, overlaps = list(args.instLabels), args.overlaps
        ap, failed = None, {}
        try:
            for lI, label in enumerate(labels):
                for oI, overlap in enumerate(overlaps):
                    args.instLabels, args.overlaps = [label], np.asarray([overlap])
                    try:
                        cell = evaluate_matches(matches, args)  # (distances, 1, 1)
                    except IndexError as e:
                        if not _empty_ranking(e, evaluate_matches):
                            raise
                        cell = None
                        failed.setdefault(label, []).append(float(overlap))
                    if ap is None and cell is not None:
                        ap = np.zeros((cell.shape[0], len(labels), len(overlaps)), float)
                    if cell is not None:
                        ap[:, lI, oI] = cell[:, 0, 0]
        finally:
            args.instLabels, args.overlaps = labels, overlaps
        if ap is None:  # every cell failed: one distance setting unless the script has distances
            distances = len(args.distanceThs) if args.distanceAvailable else 1
            ap = np.zeros((distances, len(labels), len(overlaps)))
        for label, failing in failed.items():
            notes.append(f"Cityscapes AP: class {label}: no ground truth matched and every prediction lies "
                         f"on a group or void region at overlap {_span(failing)}: scored 0 there "
                         f"(cityscapesScripts fails on this case with an IndexError)")
        return ap

    return evaluate


def _span(overlaps: list) -> str:
    return f"{overlaps[0]:.2f}" if len(overlaps) == 1 else f"{min(overlaps):.2f}..{max(overlaps):.2f}"


def _draw_without_bad_objects(polygons: str) -> np.ndarray:
    """(H, W) int64 instance ids of a polygons file, drawn as ``convert-data`` draws it."""
    from maskrcnn.data.formats.cityscapes import _draw_polygons
    from maskrcnn.data.formats.common import Report, given_size, read_json

    data = read_json(Path(polygons))
    report = Report(stream=io.StringIO())
    height, width = given_size(data["imgHeight"], data["imgWidth"])  # checked by ground_truth_size
    return _draw_polygons(data["objects"], height, width, where=polygons, report=report)


if __name__ == "__main__":
    sys.exit(_run_official(sys.argv[1]))
