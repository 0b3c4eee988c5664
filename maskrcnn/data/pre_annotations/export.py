"""``maskrcnn predict --export``: the predictions of a run written as pre-annotations, the files an
annotation tool imports, beside ``predictions.json`` in the output folder.

    coco         OUT/coco_instances.json            (to_coco)
    labelme      OUT/labelme/<image path>.json      (to_labelme; one file per image)
    cvat         OUT/cvat_annotations.xml           (to_cvat)
    labelstudio  OUT/labelstudio_tasks.json, OUT/labelstudio_config.xml  (to_labelstudio)
    yolo         OUT/yolo/labels/<image path>.txt, OUT/yolo/labels/classes.txt, OUT/yolo/data.yaml  (to_yolo)
    masks        OUT/masks/<image path>.png, ..._classes.png, OUT/masks/index.json  (to_masks, mask_files)
    cutouts      OUT/cutouts/<image path without extension>/<id>_<category>.png     (to_masks, mask_files)

Image paths are relative to the images folder: the folder given, or the closest folder holding every
input (so ``--train-images`` that folder finds them; LabelMe's ``imagePath`` is relative to the JSON
file instead, as LabelMe wants it; the CVAT XML records the images folder in a comment, and predict
prints the ``convert-data`` lines that read the LabelMe, CVAT and Label Studio files back,
``read_back_lines``).
Only the images predicted (not those skipped) are listed, each with
its instances of a non-empty mask scoring at least ``--score-thresh`` (the predictor drops those below
it; those of an empty mask, as a tiny image's detections can be, are left out of every export and counted
in a line, ``left_out_note``: an annotation with an empty segmentation reads back in COCO tools as a
box-only instance, or fails to decode, and there is nothing to correct; a model without a mask head gives
rectangles, said once). A keypoint model's keypoints go into the COCO file (``to_coco``: each instance's
points, each category the set's names and skeleton, so ``train`` takes it as it is); the other formats
carry none, said in one line per run (``keypoints_note``). Files are written atomically at the end of
the run (also after an error or an interrupt, as ``predictions.json`` is, with the images done so far); a
run stopped before its first image writes none of them, so an earlier run's files in the folder stay as
they were (``finish``'s ``replace``). An image without instances is listed with none (YOLO: an empty label
file). YOLO names a label file by the image's path without its extension, as it is: YOLO tools pair labels
with an image by that name only, so where the other per-image files take a safe name (``a:b.png``'s
overlay, mask and LabelMe file ``a_b``: no ':', control character or byte that is not UTF-8,
``overlay_paths``), its label file stays ``a:b.txt`` (a line names such files: they pair on this disk,
and are renamed with their images for one that refuses the name). Of images ``a.jpg`` and ``a.png``
side by side (or ``A.jpg`` and ``a.png``: case ignored, as macOS and Windows disks ignore it) only the
first gets one (a warning names the other), as Ultralytics would give both the same labels;
``labels/classes.txt`` is reserved for the class names, so an image ``classes.jpg`` at the root gets no
label file either (the same warning).
The per-image files (LabelMe's, YOLO's label files and its ``classes.txt`` / ``data.yaml``, mask
images, cut-outs) are listed with the hash of
what was written (``written_files``: ``OUT/labelme.written.json``, beside the folder ``convert-data``
reads whole; ``OUT/yolo/written.json``): a re-run into the same folder writes nothing over a file
changed since (a LabelMe file corrected in LabelMe) or one no list names, and removes the earlier run's
files still as written that it does not write again, each said in a line, so that the folder reads back
as this run's images only. The single files (COCO's, CVAT's, Label Studio's two) are rewritten by every
run as before, and listed with their hashes in ``OUT/exports.written.json`` (the earlier runs' still as
written kept in it; no other name is believed or kept there), so that ``predict`` given a folder holding
them tells them from the user's files, by name and content: one changed since is the user's
(``single_file_exports``). A list's killed-run side file (``written.partial.jsonl`` beside it) is
appended to, never through a link (``written_files``). Where each format writes (its lists and their side
files too) is checked before predicting (``check_export_locations``), and ``--export yolo`` refuses class
names holding a line break (``to_yolo.check_yolo_names``) then too, and ``cvat`` / ``labelstudio`` refuse
class names (``cvat``: image names too) holding a character XML 1.0 cannot hold, NUL or ESC
(``xml_text``).
Mask images and cut-outs (``mask_files``) are written image by image as the run goes, from each image's
own detections and pixels (``--export-min-area`` leaves out small cut-outs); images whose mask files
would share a name (``a.jpg`` and ``a.png``, also when only one of them is predicted and the other lies
beside it) are named by their whole file name (``masks/a.jpg.png``), as their overlays are
(``overlay_paths``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from maskrcnn.data.pre_annotations.export_args import (
    DEFAULT_TOLERANCE,
    EXPORT_FORMATS,
    PIXEL_FORMATS,
    add_export_arguments,
    check_export_arguments,
    parse_export_formats,
)
from maskrcnn.data.pre_annotations.instances import ImageRecord, categories_of, instances_from_detections
from maskrcnn.data.pre_annotations.mask_files import MaskFiles
from maskrcnn.data.pre_annotations.to_coco import coco_instances
from maskrcnn.data.pre_annotations.to_cvat import check_xml_image_names, cvat_xml
from maskrcnn.data.pre_annotations.to_labelme import labelme_file
from maskrcnn.data.pre_annotations.to_labelstudio import labelstudio_config, labelstudio_tasks
from maskrcnn.data.pre_annotations.to_yolo import (
    check_yolo_names,
    has_safe_name,
    yolo_classes_txt,
    yolo_data_yaml,
    yolo_label_file,
    yolo_labels,
)
from maskrcnn.data.pre_annotations.written_files import (
    WRITTEN_FILE,
    WRITTEN_PARTIAL,
    WrittenFiles,
    content_hash,
    listed_as_written,
    partial_record,
)
from maskrcnn.data.pre_annotations.xml_text import check_xml_names
from maskrcnn.io_utils import atomic_write_bytes, json_bytes
from maskrcnn.shell import shell_word
from maskrcnn.shown_text import display_name

__all__ = ["EXPORT_FORMATS", "PIXEL_FORMATS", "PreAnnotationExport", "add_export_arguments",
           "check_export_arguments", "check_export_locations", "export_for_run", "export_locations",
           "images_root", "parse_export_formats",
           "relative_file_name"]

COCO_FILE, LABELME_DIR, CVAT_FILE = "coco_instances.json", "labelme", "cvat_annotations.xml"
LABELSTUDIO_FILE, LABELSTUDIO_CONFIG = "labelstudio_tasks.json", "labelstudio_config.xml"
YOLO_DIR, YOLO_YAML = "yolo", "data.yaml"
LABELME_RECORD = "labelme.written.json"  # the LabelMe files a run wrote (written_files), beside labelme/
# the single files a run wrote (the formats above but LabelMe's and YOLO's), beside them, with their hashes:
# so that predict, given a folder holding them, tells them from the user's files by name and content
# (``single_file_exports``)
EXPORTS_RECORD = "exports.written.json"
SINGLE_FILES = (COCO_FILE, CVAT_FILE, LABELSTUDIO_FILE, LABELSTUDIO_CONFIG)


def export_locations(out_dir: Path, formats: Sequence[str]) -> list:
    """(path, format, "file" or "folder") of what each of ``formats`` writes in ``out_dir`` (its
    folders, and its single files)."""
    out_dir = Path(out_dir)
    where = {
        "coco": [(COCO_FILE, "file")],
        "labelme": [(LABELME_DIR, "folder"), (LABELME_RECORD, "file")],
        "cvat": [(CVAT_FILE, "file")],
        "labelstudio": [(LABELSTUDIO_FILE, "file"), (LABELSTUDIO_CONFIG, "file")],
        "yolo": [(YOLO_DIR, "folder"), (f"{YOLO_DIR}/labels", "folder"), (f"{YOLO_DIR}/{YOLO_YAML}", "file"),
                 (f"{YOLO_DIR}/labels/classes.txt", "file"), (f"{YOLO_DIR}/{WRITTEN_FILE}", "file"),
                 (f"{YOLO_DIR}/{WRITTEN_PARTIAL}", "file")],
        "masks": [("masks", "folder"), (f"masks/{WRITTEN_FILE}", "file"),
                  (f"masks/{WRITTEN_PARTIAL}", "file")],
        "cutouts": [("cutouts", "folder"), (f"cutouts/{WRITTEN_FILE}", "file"),
                    (f"cutouts/{WRITTEN_PARTIAL}", "file")],
    }
    # the lists of what a run wrote, and the killed run's beside each (a folder there failed the run at its
    # end, after every image was predicted)
    where["labelme"].append((partial_record(Path(LABELME_RECORD)).as_posix(), "file"))
    for fmt in ("coco", "cvat", "labelstudio"):
        where[fmt] += [(EXPORTS_RECORD, "file"), (partial_record(Path(EXPORTS_RECORD)).as_posix(), "file")]
    found, seen = [], set()
    for fmt in formats:
        for rel, kind in where.get(fmt, ()):
            if rel not in seen:  # the records of the single files: said once, under the first format
                seen.add(rel)
                found.append((out_dir / rel, fmt, kind))
    return found


def single_file_exports(folder: Path) -> Optional[set]:
    """The names of the single-file exports (``SINGLE_FILES``) that a run recorded writing in ``folder``
    (``EXPORTS_RECORD``, or a killed run's list beside it) and that still hold what it wrote (the recorded
    hash: a coco_instances.json of the user's saved there since is theirs), with the record's own names
    when it can be read; None where there is no record or it cannot be read (nothing is then taken for a
    run's: the folder may be the user's images folder). A record naming other files is not believed for
    them (nor are they read)."""
    record = Path(folder) / EXPORTS_RECORD
    lists = (record, partial_record(record))
    if not any(p.is_file() for p in lists):
        return None
    ours = listed_as_written(Path(folder), record, SINGLE_FILES)
    if ours is None:
        return None
    return ours | {p.name for p in lists}


def check_export_locations(out_dir: Path, formats: Sequence[str]) -> None:
    """Refuse, before any image is predicted, an output folder where an export cannot be written: a file
    where a format needs a folder, a folder where it writes a file (else that format would fail at the
    end of a long run, and the formats after it be lost). ValueError naming every such path, one line."""
    problems = []
    for path, fmt, kind in export_locations(out_dir, formats):
        if kind == "folder" and (path.is_file() or (path.is_symlink() and not path.is_dir())):
            problems.append(f"{path} is a file where --export {fmt} writes a folder")
        elif kind == "file" and path.is_dir():
            problems.append(f"{path} is a folder where --export {fmt} writes a file")
    if problems:
        raise ValueError("; ".join(problems) + " (move it away or choose another --output): nothing "
                         "predicted")


def images_root(inputs: Sequence, files: Sequence) -> Path:
    """The folder image paths are written relative to: the deepest folder holding every given folder and
    every given or found file."""
    folders = [Path(p).absolute() for p in inputs if Path(p).is_dir()]
    folders += [Path(f).absolute().parent for f in files]
    return Path(os.path.commonpath([str(f) for f in folders])) if folders else Path.cwd()


def relative_file_name(path, root) -> str:
    """An image's path as the exports (and ``predict``'s overlays) write it: relative to the images folder
    ``root``, with '/'. Raises ValueError on Windows for a path on another drive than ``root``."""
    return Path(os.path.relpath(Path(path).absolute(), root)).as_posix()


class PreAnnotationExport:
    """Collects each predicted image's instances (``add``), writes the files of ``formats`` (``finish``)."""

    def __init__(self, *, out_dir: Path, formats: Sequence[str], root: Path, class_names: Sequence[str],
                 label_to_category_id: Optional[dict] = None, url_prefix: str = "",
                 model_version: str = "maskrcnn", tolerance: float = DEFAULT_TOLERANCE, masks: bool = True,
                 min_area: int = 0, files: Sequence = (), beside: Optional[Sequence] = None,
                 keypoint_names: Optional[Sequence[str]] = None, skeleton: Sequence = (),
                 keypoint_labels: Optional[frozenset] = None):
        """``keypoint_names``: a keypoint model's set (None: named by ``default_keypoint_names`` when the
        detections carry keypoints, as ``predict`` names an unnamed set), ``skeleton`` its 1-based pairs;
        ``files``: the image files of the run (mask files of images sharing a name are told apart);
        ``beside``: the image files of the same name beside them (``overlay_paths.same_name_beside``,
        listed here when None; ``predict`` lists them once for the overlays and the mask files);
        ``keypoint_labels``: the classes that own the keypoint set (``Predictor.keypoint_labels``, None:
        every class): only those categories and their instances get keypoints."""
        self.out_dir, self.formats, self.root = Path(out_dir), tuple(formats), Path(root)
        self.categories = categories_of(class_names, label_to_category_id)
        if "yolo" in self.formats:  # before any image is predicted: classes.txt could not hold the names
            check_yolo_names(self.categories)
        for fmt in ("cvat", "labelstudio"):  # nor an XML file a NUL or an ESC (xml_text)
            if fmt in self.formats:
                check_xml_names(self.categories, fmt)
        if "cvat" in self.formats:
            check_xml_image_names([relative_file_name(f, self.root) for f in files])
        self.url_prefix, self.model_version, self.tolerance = url_prefix, model_version, tolerance
        self.masks = bool(masks)  # False: a box-only model, rectangles everywhere
        self.keypoint_names = None if keypoint_names is None else [str(n) for n in keypoint_names]
        self.skeleton = [[int(a), int(b)] for a, b in skeleton]
        self.keypoint_labels = keypoint_labels
        # the images and their instances (RLEs) are kept for the formats written at the end only: mask
        # images and cut-outs are written image by image and need nothing kept
        self.keeps_instances = any(f not in PIXEL_FORMATS for f in self.formats)
        self.images: list = []
        self.paths: list = []
        self.instances: list = []
        self.left_out = [0, 0]  # detections with an empty mask (box), images they were on: left_out_note
        pixel_formats = [f for f in self.formats if f in PIXEL_FORMATS]
        self.mask_files = None
        if pixel_formats:
            # an image of the same name beside one of the run's (x.png by x.jpg) counts as a clash even when
            # not predicted: a re-run with one of them alone names its files as before (and as its overlay)
            if beside is None:
                from maskrcnn.data.images import IMAGE_EXTENSIONS
                from maskrcnn.overlay_paths import same_name_beside

                beside = same_name_beside(files, IMAGE_EXTENSIONS)
            self.mask_files = MaskFiles(
                out_dir=self.out_dir, formats=pixel_formats, categories=self.categories, min_area=min_area,
                file_names=[relative_file_name(f, self.root) for f in files],
                beside=[relative_file_name(f, self.root) for f in beside])

    def mask_file(self, path: Path) -> Optional[str]:
        """The mask image of the image file ``path`` relative to the output folder, None without
        ``--export masks`` (``MaskFiles.mask_file``)."""
        if self.mask_files is None:
            return None
        return self.mask_files.mask_file(relative_file_name(path, self.root))

    def add(self, image_id: int, path: Path, height: int, width: int, det: dict, image=None) -> None:
        """One image's detections (in its original coordinates, as the Predictor returns them); ``image``
        its (3, H, W) float pixels, for cut-outs (read from ``path`` when None)."""
        file_name = relative_file_name(path, self.root)
        if self.keypoint_names is None and det.get("keypoints") is not None:
            # a keypoint model's detections without the set's names (the Python API's default): COCO
            # categories without ``keypoints`` make every annotation's points unreadable to training
            self.keypoint_names = default_keypoint_names(int(det["keypoints"].shape[1]))
        if self.keeps_instances:
            # the instances first: an error there leaves the three lists as long as each other
            found = instances_from_detections(det, self.categories, keypoint_labels=self.keypoint_labels)
            self.images.append(ImageRecord(int(image_id), file_name, int(height), int(width)))
            self.paths.append(Path(path).absolute())
            self.instances.append(found)
            empty = int(det["scores"].shape[0]) - len(self.instances[-1])
            if empty:
                self.left_out[0] += empty
                self.left_out[1] += 1
        if self.mask_files is not None:
            self.mask_files.add(file_name, path, int(height), int(width), det, image)

    def _labelme(self, *, partial: bool) -> Path:
        from maskrcnn.overlay_paths import safe_file_name, safe_relpath

        folder = self.out_dir / LABELME_DIR
        # the list lies beside the folder: convert-data reads every .json in it as a LabelMe file
        written = WrittenFiles(folder=folder, label="labelme", suffixes=(".json",),
                               record=self.out_dir / LABELME_RECORD)
        used = set()
        for image, path, found in zip(self.images, self.paths, self.instances):
            # as the overlays name theirs: no newline (safe_file_name), no ':' (a drive on Windows) nor NUL
            # (safe_relpath), so that the folder copies to any disk; imagePath keeps the image's own name
            name = safe_relpath(safe_file_name(image.file_name)).as_posix()
            target = folder / Path(name).with_suffix(".json")
            n = 1
            # a.jpg and a.png side by side: LabelMe pairs a.json with one of them; A.jpg beside a.png is
            # one file on case-insensitive disks (macOS, Windows)
            while str(target).casefold() in used:
                n += 1
                target = folder / (name + (".json" if n == 2 else f"_{n}.json"))
            used.add(str(target).casefold())
            image_path = Path(os.path.relpath(path, (target.parent).absolute())).as_posix()
            data = labelme_file(image, found, image_path=image_path, tolerance=self.tolerance,
                                categories=self.categories)
            # indented, as LabelMe writes its files; a file corrected since the last run is kept (written)
            written.write(target.relative_to(folder).as_posix(), json_bytes(data, indent=2))
        self._end_listed(written, folder, partial=partial)
        return folder

    def _yolo(self, *, partial: bool) -> Path:
        folder = self.out_dir / YOLO_DIR
        written = WrittenFiles(folder=folder, label="yolo", suffixes=(".txt", ".yaml"))
        # label file (lower-cased: A.png and a.jpg share one on a macOS or Windows disk, and the overlays'
        # names ignore case for that reason; not casefolded, which makes straße and strasse one name while
        # those disks keep both) -> (image, label file). classes.txt is taken by the class
        # names, written last: an image classes.jpg at the root would lose its labels to them silently
        # (and the names would read back as boxes), so it gets the clash warning instead
        used: dict = {"labels/classes.txt": ("the class names file", "labels/classes.txt")}
        kept = []  # (image, label file) of names the safe rule of the other exports changes
        for image, found in zip(self.images, self.instances):
            # the image's own name, never the safe one: YOLO tools pair a label file with the image of its
            # stem and nothing else (yolo_label_file)
            rel = yolo_label_file(image.file_name)
            if rel.lower() in used:  # a.jpg and a.png: one label file for both, Ultralytics can't tell
                other, shared = used[rel.lower()]
                print(f"pre-annotations: yolo: {display_name(image.file_name)} left without labels: "
                      f"{display_name(other)} has the same label file {display_name(shared)}",
                      file=sys.stderr)
                continue
            used[rel.lower()] = (image.file_name, rel)
            if not has_safe_name(image.file_name):
                kept.append((image.file_name, rel))
            written.write(rel, yolo_labels(image, found, tolerance=self.tolerance).encode("utf-8"))
        if kept:
            from maskrcnn.listing import short_listing

            shown = short_listing(f"{display_name(f)} -> {display_name(r)}" for f, r in kept)
            print(f"pre-annotations: yolo: {len(kept)} label file(s) keep their image's name ({shown}) where "
                  "the overlays, mask files and LabelMe files replace ':', control characters and bytes "
                  "that are not UTF-8 by '_': YOLO tools pair a label file only with the image of its "
                  "name; to copy them to a disk that refuses such names, rename images and label files "
                  "alike", file=sys.stderr)
        # the names beside the labels too: the labels folder copied alone (README's round trip) keeps them.
        # Listed with their hash as the label files are: LabelImg rewrites classes.txt with the classes the
        # user added, and a classes.txt or data.yaml changed since is the user's (kept, said in a line)
        written.write("labels/classes.txt", yolo_classes_txt(self.categories).encode("utf-8"))
        written.write(YOLO_YAML, yolo_data_yaml(str(self.root.absolute()), self.categories).encode("utf-8"))
        self._end_listed(written, folder, partial=partial)
        return folder

    @staticmethod
    def _end_listed(written: WrittenFiles, folder: Path, *, partial: bool) -> None:
        """List the run's files of a per-image format and remove the earlier run's not written again
        (not the user's: ``WrittenFiles``), each said in a line, as the mask files are."""
        removed = written.finish(replace=True)
        if removed:
            why = ("this partial run (stopped early) did not write: images not reached or not predicted "
                   "now") if partial else ("this run did not write again (images not predicted now, or "
                                           "named from another images folder)")
            print(f"pre-annotations: {written.label}: removed {removed} file(s) of the earlier run that "
                  f"{why} from {folder}/", file=sys.stderr)
        for line in written.kept_lines():
            print(line, file=sys.stderr)

    def _folder_from_out(self) -> str:
        """The images folder relative to the output folder (absolute on another Windows drive)."""
        try:
            return Path(os.path.relpath(self.root.absolute(), self.out_dir.absolute())).as_posix()
        except ValueError:
            return self.root.absolute().as_posix()

    def read_back_lines(self) -> list:
        """The ``convert-data`` commands that read the exported files back (after correcting), one line
        each, for every format ``convert-data`` reads as written: LabelMe's folder with ``--images`` (its
        files name the images relative to themselves: without it the training file's names would be
        ``../../photos/a.jpg``, relative to ``labelme/``); the CVAT XML and the Label Studio tasks record
        the images folder (``to_cvat``, ``to_labelstudio``), ``--images`` given where the tasks cannot
        record it (another drive). None for COCO (``train`` takes it as it is) nor YOLO (read only once
        laid out as Ultralytics needs it: images/ and labels/ side by side; README)."""
        lines = []
        try:
            here = os.path.relpath(self.root.absolute())
            root = here if not here.startswith("..") else str(self.root.absolute())
        except ValueError:
            root = str(self.root.absolute())
        if "labelme" in self.formats:
            lines.append(f"pre-annotations: read back with: maskrcnn convert-data --from labelme "
                         f"{shell_word(str(self.out_dir / LABELME_DIR))} --images {shell_word(root)} "
                         "--output train.json")
        if "cvat" in self.formats:
            lines.append(f"pre-annotations: read back with: maskrcnn convert-data --from cvat "
                         f"{shell_word(str(self.out_dir / CVAT_FILE))} --output train.json")
        if "labelstudio" in self.formats:
            images = (f" --images {shell_word(root)}" if Path(self._folder_from_out()).is_absolute()
                      else "")
            lines.append(f"pre-annotations: read back with: maskrcnn convert-data --from labelstudio "
                         f"{shell_word(str(self.out_dir / LABELSTUDIO_FILE))}{images} --output train.json")
        return lines

    def left_out_note(self) -> Optional[str]:
        """One line counting the detections the exports left out, and why (None when none were)."""
        n, images = self.left_out
        if not n:
            return None
        what = "box" if not self.masks else "mask"
        return (f"pre-annotations: left out {n} detection(s) on {images} image(s) whose {what} covers no "
                "pixel (nothing to correct; an empty segmentation would read back as a box-only instance "
                "or fail to decode); predictions.json keeps them")

    def keypoints_note(self) -> Optional[str]:
        """One line naming the formats written without the keypoints of a keypoint model (None when none
        are: no keypoint model, or COCO alone)."""
        without = [f for f in self.formats if f != "coco"]
        if self.keypoint_names is None or not without:
            return None
        return (f"pre-annotations: keypoints are not exported to {', '.join(without)} (only coco carries "
                "them); predictions.json keeps them")

    def finish(self, *, replace: bool = True, partial: bool = False) -> list:
        """Write the files; returns the paths written (files, and LabelMe's folder). ``replace`` False:
        the run stopped before its first image, so nothing is written (``[]``) and an earlier run's files
        stay as they were (empty ones would replace them); ``partial``: the run stopped early, said by
        ``MaskFiles.finish``."""
        if not replace:
            return []
        self.out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        singles = None  # the record of the single files (EXPORTS_RECORD), made at the first
        for fmt in self.formats:
            if fmt in ("coco", "cvat", "labelstudio") and singles is None:
                singles = WrittenFiles(folder=self.out_dir, label="exports", suffixes=(".json", ".xml"),
                                       record=self.out_dir / EXPORTS_RECORD, names=SINGLE_FILES,
                                       unreadable_means=f"{EXPORTS_RECORD} is written anew, of this run's "
                                                        "files only")
            if fmt == "coco":
                written.append(self._single(singles, COCO_FILE, json_bytes(coco_instances(
                    self.images, self.instances, self.categories,
                    description=f"maskrcnn predict pre-annotations ({self.model_version})",
                    keypoint_names=self.keypoint_names, skeleton=self.skeleton,
                    keypoint_labels=self.keypoint_labels),
                    ensure_ascii=True)))  # for pycocotools & co: ASCII (io_utils)
            elif fmt == "labelme":
                written.append(self._labelme(partial=partial))
            elif fmt == "cvat":
                written.append(self._single(singles, CVAT_FILE, cvat_xml(
                    self.images, self.instances, self.categories,
                    images_folder=self._folder_from_out()).encode("utf-8")))
            elif fmt == "labelstudio":
                folder = self._folder_from_out()  # recorded only as a relative path (the reader's rule)
                tasks = labelstudio_tasks(self.images, self.instances, url_prefix=self.url_prefix,
                                          model_version=self.model_version,
                                          images_folder=None if Path(folder).is_absolute() else folder,
                                          categories=self.categories)
                # imported by another tool: ASCII
                written.append(self._single(singles, LABELSTUDIO_FILE, json_bytes(tasks, ensure_ascii=True)))
                written.append(self._single(singles, LABELSTUDIO_CONFIG, labelstudio_config(
                    self.categories, boxes=not self.masks).encode("utf-8")))
            elif fmt == "yolo":
                written.append(self._yolo(partial=partial))
            elif fmt in PIXEL_FORMATS:
                written.append(self.mask_files.finish(fmt, replace=replace, partial=partial))
        if singles is not None:
            # the earlier runs' single files still as written stay listed: a run exporting coco alone
            # leaves the cvat file of the run before, which is no more the user's than it was (only those
            # names: ``names`` above drops whatever else a stale or hostile list names)
            singles.finish(replace=False)
        return written

    def _single(self, singles: WrittenFiles, name: str, data: bytes) -> Path:
        """Write the single-file export ``name`` (atomically, whatever was there: every run rewrites its
        own), listed with its hash first (``singles``); its path."""
        singles.add({name: content_hash(data)})
        path = self.out_dir / name
        atomic_write_bytes(path, data)
        return path


def export_for_run(args: argparse.Namespace, formats: Sequence[str], files: Sequence, predictor,
                   out_dir: Path, *, beside: Optional[Sequence] = None) -> Optional[PreAnnotationExport]:
    """The ``PreAnnotationExport`` of a ``maskrcnn predict`` run (None without ``--export``); ``beside``:
    as ``PreAnnotationExport`` takes it."""
    if not formats:
        return None
    masks = bool(predictor.cfg.model.roi_heads.mask_on)
    if not masks:
        print("pre-annotations: the model has no mask head: instances are exported as rectangles (boxes), "
              "to correct or draw masks over", file=sys.stderr)
    names, skeleton = keypoint_set(predictor.cfg)
    export = PreAnnotationExport(
        out_dir=out_dir, formats=formats, root=images_root(args.inputs, files),
        class_names=predictor.class_names, label_to_category_id=predictor.label_to_category_id,
        url_prefix=args.export_url_prefix, model_version=Path(args.weights).name,
        tolerance=args.export_tolerance, masks=masks, min_area=args.export_min_area, files=files,
        beside=beside, keypoint_names=names, skeleton=skeleton,
        keypoint_labels=getattr(predictor, "keypoint_labels", None),
    )  # fmt: skip
    note = export.keypoints_note()
    if note:
        print(note, file=sys.stderr)
    return export


def keypoint_set(cfg) -> tuple:
    """(names, 1-based skeleton pairs) of a keypoint model's config, (None, []) of another: the training
    dataset's names (``data.keypoint_names``), else COCO's for 17 keypoints (a converted COCO model),
    else ``keypoint_1``.. (a COCO file needs names for the set)."""
    heads = cfg.model.roi_heads
    if not heads.keypoint_on:
        return None, []
    k = int(heads.num_keypoints)
    names = list(cfg.data.keypoint_names)
    if len(names) != k:
        names = default_keypoint_names(k)
    return names, [list(p) for p in cfg.data.keypoint_skeleton]


def default_keypoint_names(k: int) -> list:
    """Names for a set of ``k`` unnamed keypoints: COCO's for 17 (a converted COCO model), else
    ``keypoint_1``..: a COCO file needs names for the set (``train`` reads no points without them)."""
    from maskrcnn.interop.weights import COCO_KEYPOINT_NAMES

    if k == len(COCO_KEYPOINT_NAMES):
        return list(COCO_KEYPOINT_NAMES)
    return [f"keypoint_{i + 1}" for i in range(k)]
