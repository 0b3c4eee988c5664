"""``predict --export masks,cutouts``: mask images and cut-outs (``to_masks``) written image by image as
the run goes (each file atomically), and ``masks/index.json`` at the end of the run.

    masks     OUT/masks/<image path, extension .png>           instance ids (0 background, i the i-th
              OUT/masks/<image path without extension>_classes.png    detection); category ids
              OUT/masks/index.json    {image path: [{"id", "category_id", "category", "score", "bbox"}]}
    cutouts   OUT/cutouts/<image path without extension>/<id>_<category>.png    RGBA, one per instance

Image paths are relative to the images folder, as the other formats write them. Written per image (a
photo's pixels are at hand only while it is predicted; memory stays one image's), so a run stopped early
keeps the images done; ``index.json`` is written at the end (also after an error or an interrupt) and
lists exactly the images with mask files. Images of the run whose files would share a name (``a.jpg``
and ``a.png``: the same ``masks/a.png`` and ``cutouts/a/``; ``a.png`` and ``a_classes.png``) are named
by their whole file name instead (``masks/a.jpg.png``, ``masks/a.jpg_classes.png``, ``cutouts/a.jpg/``;
``mask_file_stems``, the overlays' rule: ``overlay_paths``), all of them, and only they: without a clash
the names stay as above; ``mask_file`` gives an image's mask image, which predict records in
predictions.json (``mask``). The run's image paths are known before the first image is written, so the
choice never changes midway; a name one of whose files is still another image's is numbered (``_2``).
An image named to the exporter without being listed up front that would take another's files is left
without (a warning names both). An image without instances gets all-zero mask PNGs and no
cut-out; a cut-out whose mask has fewer than ``min_area`` pixels is not written (cut-outs only: the mask
PNGs keep it), and how many were left out is printed when the cut-outs are finished.

Each format's folder lists the files the run wrote (``written_files``: ``masks/written.json``,
``cutouts/written.json``, each with the hash of what was written); a run into the same folder removes
the earlier run's files that it does not write again, and only those (a line counts them), so the
folder holds this run's images and instances only, as ``predictions.json`` does. A file changed since
it was written (a mask painted over), or one no list names, is the user's: neither written over nor
removed, said in a line (``WrittenFiles.write``). ``{stem}.png`` and ``{stem}_classes.png`` are a pair
(instance ids and their classes): when either is the user's neither is written and ``index.json`` keeps
that image's earlier entry, so the user's ids keep their classes; the other images' entries are this
run's. A run stopped before its first image leaves them (``finish``'s
``replace``), and a format the run does not write keeps its folder as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Sequence

from maskrcnn.data.pre_annotations.export_args import PIXEL_FORMATS
from maskrcnn.data.pre_annotations.instances import Category, category_of
from maskrcnn.data.pre_annotations.to_masks import (
    class_image,
    class_png,
    cutout_box,
    cutout_png,
    detection_regions,
    id_png,
    index_records,
    instance_id_image,
    safe_file_name,
)
from maskrcnn.data.pre_annotations.written_files import WrittenFiles
from maskrcnn.io_utils import atomic_write_json

__all__ = ["CUTOUTS_DIR", "MASKS_DIR", "MASKS_INDEX", "MaskFiles", "mask_file_stems"]

MASKS_DIR, CUTOUTS_DIR, MASKS_INDEX = "masks", "cutouts", "index.json"


def _targets(stem: str) -> list:
    """What an image named ``stem`` (its path without extension) writes, by format."""
    return [(MASKS_DIR, f"{stem}.png"), (MASKS_DIR, f"{stem}_classes.png"), (CUTOUTS_DIR, f"{stem}/")]


def mask_file_stems(file_names: Sequence[str], beside: Sequence[str] = ()) -> dict:
    """{image path: the name its mask files and cut-out folder take}, by the overlays' rule
    (``overlay_paths.overlay_relpaths``, its ``.png`` left off), so that an image's mask files and its
    overlay are named alike: the path without its extension, or the whole path (``a.jpg``) for images
    whose files would share a name with another's among ``file_names`` or ``beside`` (image files of the
    same name lying beside them, not predicted), case ignored (``y.jpg`` and ``Y.PNG``: one file on a
    macOS or Windows disk); control characters are ``_`` (``overlay_paths.safe_file_name``), and a name
    that still clashes then is made unique as the overlay's is (``new_line.png`` beside ``new\nline.png``:
    ``new_line`` for the first in sorted order, ``new_line.png`` for the other). Mask files have a clash
    overlays lack (``b.png``'s ``b_classes.png`` is ``b_classes.png``'s own ``b_classes.png``): such
    images take their whole name, numbered (``_2``) while any of their files is another's."""
    from maskrcnn.overlay_paths import overlay_relpaths, safe_file_name

    names = sorted(set(file_names))
    overlays = overlay_relpaths([safe_file_name(f) for f in names],
                                beside=[safe_file_name(f) for f in beside])
    stems = {f: name[:-len(".png")] for f, name in zip(names, overlays)}
    users: dict = {}  # (format, target) -> the images that would write it
    for f in names:
        for target in _targets(stems[f]):
            users.setdefault((target[0], target[1].casefold()), []).append(f)
    clashing = {f for shared in users.values() if len(shared) > 1 for f in shared}
    taken = {(fmt, t.casefold()) for f in names if f not in clashing for fmt, t in _targets(stems[f])}
    chosen = {f: stems[f] for f in names if f not in clashing}
    for f in sorted(clashing):
        base = name = safe_file_name(f)
        n = 1
        while any((fmt, t.casefold()) in taken for fmt, t in _targets(name)):
            n += 1
            name = f"{base}_{n}"
        taken.update((fmt, t.casefold()) for fmt, t in _targets(name))
        chosen[f] = name
    return chosen


def _read_index(path: Path) -> dict:
    """An earlier ``index.json`` ({image path: records}), read as data; {} when there is none or it is not
    one (the images whose mask pair is kept are then left out of the new index, as without one)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, list)} \
        if isinstance(data, dict) else {}


class MaskFiles:
    """Writes each image's mask PNGs and cut-outs (``add``), then ``masks/index.json`` (``finish``)."""

    def __init__(self, *, out_dir: Path, formats: Sequence[str], categories: Sequence[Category],
                 min_area: int = 0, file_names: Sequence[str] = (), beside: Sequence[str] = ()):
        """``file_names``: every image path of the run, known up front, so that images whose mask files
        would share a name are told apart from the first one written (``mask_file_stems``); ``beside``:
        the images of the same name beside them that the run does not predict (``PreAnnotationExport``)."""
        self.out_dir, self.formats = Path(out_dir), tuple(f for f in formats if f in PIXEL_FORMATS)
        self.stems = mask_file_stems(file_names, beside)
        self.categories, self.min_area = list(categories), int(min_area)
        # one class PNG format for the whole run: palette while every category id fits in 8 bits
        self.sixteen_bit = max((c.id for c in self.categories), default=0) > 255
        self.by_label = {c.label: c for c in self.categories}
        self.names = {c.label: safe_file_name(c.name) for c in self.categories}
        self.index: dict = {}
        self._owner: dict = {}  # (format, file or folder it names) -> the image path that has it
        self.below_min_area = 0  # cut-outs left out by min_area: said at the end (else they vanish silently)
        # the earlier run's files are read here, before this run writes any
        self.written = {f: WrittenFiles(folder=self.out_dir / f, label=f) for f in self.formats}
        # the earlier index.json's entries: an image whose mask pair is the user's keeps its entry
        self.earlier_index = _read_index(self.out_dir / MASKS_DIR / MASKS_INDEX) \
            if MASKS_DIR in self.formats else {}

    def mask_file(self, file_name: str):
        """The instance-id PNG of the image ``file_name`` relative to the output folder
        (``masks/<name>.png``; its class PNG is ``<name>_classes.png`` beside it, its cut-outs
        ``cutouts/<name>/``), None without the masks format: recorded in predictions.json (``mask``), as
        the overlay is, so that images whose names clash are told apart there."""
        stem = self.stems.get(file_name)
        return f"{MASKS_DIR}/{stem}.png" if MASKS_DIR in self.formats and stem is not None else None

    def _claim(self, fmt: str, file_name: str, targets: Sequence[str]) -> bool:
        """Whether ``file_name`` may have ``targets`` (paths under the format's folder); a warning when
        another image has one of them already."""
        for target in targets:
            owner = self._owner.get((fmt, target.casefold()))  # one file on a disk that ignores case
            if owner is not None:
                what = "masks" if fmt == MASKS_DIR else "cut-outs"
                print(f"pre-annotations: {fmt}: {file_name} left without {what}: {owner} has the same "
                      f"{'file' if fmt == MASKS_DIR else 'folder'} {fmt}/{target}", file=sys.stderr)
                return False
        for target in targets:
            self._owner[(fmt, target.casefold())] = file_name
        return True

    def add(self, file_name: str, path: Path, height: int, width: int, det: dict, image=None) -> None:
        """One image's detections (original coordinates); ``image`` its (3, H, W) float pixels (read from
        ``path`` when None and a cut-out needs them)."""
        regions = detection_regions(det, height, width)
        boxes = det["boxes"].detach().float().cpu().reshape(-1, 4).tolist()  # (D, 4) xyxy
        scores = det["scores"].detach().float().cpu().tolist()
        labels = [int(v) for v in det["labels"].tolist()]
        categories = [category_of(self.by_label, label) for label in labels]
        stem = self.stems.get(file_name) or PurePosixPath(file_name).with_suffix("").as_posix()
        if MASKS_DIR in self.formats and self._claim(MASKS_DIR, file_name, [f"{stem}.png",
                                                                           f"{stem}_classes.png"]):
            ids = instance_id_image(regions, scores, height, width)
            classes = class_image(ids, [c.id for c in categories], sixteen_bit=self.sixteen_bit)
            pair = {f"{stem}.png": id_png(ids), f"{stem}_classes.png": class_png(classes)}
            written = self.written[MASKS_DIR]
            users = {rel: written.users(rel, data) for rel, data in pair.items()}
            if any(users.values()):
                # one of the pair is the user's (painted since, or put there): the instance ids and their
                # classes go together, so neither is written and the earlier index entry describes them
                for rel, why in users.items():
                    if why is None:
                        written.keep_unchanged(rel)
                    else:
                        written.kept[why].append(rel)
                if file_name in self.earlier_index:
                    self.index[file_name] = self.earlier_index[file_name]
            else:
                # listed with their hash before written (written_files)
                for rel, data in pair.items():
                    written.write(rel, data)
                self.index[file_name] = index_records(boxes, scores, categories)
        if CUTOUTS_DIR in self.formats:
            areas = [None if r is None else int(r.patch.sum()) for r in regions]
            wanted = [i for i, a in enumerate(areas) if a is not None and a >= self.min_area]
            self.below_min_area += sum(a is not None and a < self.min_area for a in areas)
            if not wanted or not self._claim(CUTOUTS_DIR, file_name, [f"{stem}/"]):
                return
            if image is None:
                from maskrcnn.data.images import read_image

                image = read_image(path)
            if tuple(image.shape[-2:]) != (height, width):
                raise ValueError(f"{file_name}: an image of {tuple(image.shape[-2:])} pixels for masks of "
                                 f"{height}x{width}")
            digits = max(3, len(str(len(regions))))  # zero-padded: file listings sort as predictions.json
            names = {i: f"{stem}/{i + 1:0{digits}d}_{self.names[labels[i]]}.png" for i in wanted}
            for i in wanted:
                crop = cutout_box(boxes[i], regions[i], height, width)
                self.written[CUTOUTS_DIR].write(names[i], cutout_png(image, crop, regions[i]))

    def finish(self, fmt: str, *, replace: bool = True, partial: bool = False) -> Path:
        """End format ``fmt`` ("masks": write ``masks/index.json``); returns its folder (made when no image
        gave it a file). ``replace``: the run got as far as its first image, so its files replace the
        earlier run's (those it did not write again are removed); False leaves the earlier files, and
        their ``index.json``, as they are. ``partial``: the run stopped early (Ctrl-C, an error), said in
        the line counting the earlier files removed."""
        folder = self.out_dir / fmt
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == MASKS_DIR and (replace or not (folder / MASKS_INDEX).exists()):
            atomic_write_json(folder / MASKS_INDEX, self.index)
            # listed with its hash: a later predict of the folder takes it for ours, not the user's file
            self.written[fmt].keep_unchanged(MASKS_INDEX)
        removed = self.written[fmt].finish(replace=replace)
        if removed:
            why = ("this partial run (stopped early) did not write: images not reached or not predicted now, "
                   "fewer instances") if partial else \
                "this run did not write again (images not predicted now, fewer instances)"
            print(f"pre-annotations: {fmt}: removed {removed} file(s) of the earlier run that {why} from "
                  f"{folder}/", file=sys.stderr)
        for line in self.written[fmt].kept_lines():  # the user's files (edited, or put there): left alone
            print(line, file=sys.stderr)
        if fmt == CUTOUTS_DIR and self.min_area > 0:
            print(f"pre-annotations: cutouts: {self.below_min_area} instance(s) left out by "
                  f"--export-min-area {self.min_area} (masks of fewer pixels; the mask images and other "
                  f"formats keep them)",
                  file=sys.stderr)
        return folder

