"""``maskrcnn predict``'s pass over the image files, once the model is loaded and the videos are done
(``commands/predict.py`` lists the inputs, checks the output folder and loads the model): the earlier
run's files said up front (``note_earlier_run``), each image predicted, its results appended and its
overlay drawn (``ImagePass.predict``), the results, overlays' list and exports written at the end, also
after an error, Ctrl-C or SIGTERM (``ImagePass.write_results``), and the closing lines (``summary``).
Its parts, each a module of its own with public names (``predict.py`` shares ``made_folders``): the
results file (``results_writer``), the earlier run's files (``earlier_run``), the overlays' names
(``overlay_names``) and the folders the run made (``made_folders``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from maskrcnn import stop_signals
from maskrcnn.commands import predict as command
from maskrcnn.commands.earlier_run import earlier_run, remove_earlier_overlays
from maskrcnn.commands.made_folders import folders_to_make, remove_empty_folders
from maskrcnn.commands.overlay_names import overlay_file_name, overlay_names, overlay_root
from maskrcnn.commands.results_writer import ResultsWriter
from maskrcnn.overlay_defaults import OVERLAY_DRAW_MAX, overlay_min_size
from maskrcnn.stop_signals import StoppedBySignal, signal_name


def note_earlier_run(out_dir: Path, overlay_list, *, no_overlays: bool) -> tuple:
    """``earlier_run.earlier_run`` of ``out_dir``, said in one line when there is one; returns its
    (results words, overlays, stems, paths)."""
    earlier = earlier_run(out_dir, listed=overlay_list.earlier)
    earlier_results, earlier_overlays = earlier[0], earlier[1]
    if earlier_results or earlier_overlays:
        what = ", ".join(([earlier_results] if earlier_results else []) + [f"{earlier_overlays} overlay(s)"])
        kept = "; --no-overlays: its overlays stay" if no_overlays and earlier_overlays else ""
        print(f"maskrcnn predict: note: {out_dir} holds an earlier run's results ({what}): this run's "
              f"replace them once its first image is done (stopped before that, they stay as they are){kept}",
              file=sys.stderr)
    return earlier


class ImagePass:
    """One run's pass over ``files``: predicted a window of ``--batch-size`` at a time, each image's
    results appended as it is done (``results_writer.ResultsWriter``) with its overlay and its export's
    part.
    ``made``: the folders this run made (removed again, empty, when no image is predicted);
    ``new_folder``: ``--output`` is one of them (no earlier file can be there to stay)."""

    def __init__(self, *, args, predictor, files: list, out_dir: Path, export_formats, made: list,
                 new_folder: bool):
        from maskrcnn.data.images import IMAGE_EXTENSIONS
        from maskrcnn.data.pre_annotations.export import PIXEL_FORMATS, export_for_run
        from maskrcnn.data.pre_annotations.written_files import WrittenFiles
        from maskrcnn.overlay_paths import same_name_beside

        self.args, self.predictor, self.files, self.out_dir = args, predictor, files, out_dir
        self.new_folder = new_folder
        self.overlay_dir = out_dir / "overlays"
        if not args.no_overlays:
            made = folders_to_make(self.overlay_dir) + made
            self.overlay_dir.mkdir(exist_ok=True)
        self.made = made
        # the overlays each run writes, listed in overlays/written.json (as show-data and the mask exports
        # do): an image without detections has no record in predictions.json to name its overlay, so the
        # earlier run's overlay of such an image was left behind, looking like this run's
        self.overlay_list = WrittenFiles(folder=self.overlay_dir, label="overlays", prefix="maskrcnn predict")
        self.earlier_results, self.earlier_overlays, self.earlier_stems, self.earlier_paths = \
            note_earlier_run(out_dir, self.overlay_list, no_overlays=args.no_overlays)
        self.writer = ResultsWriter(out_dir)
        # images of the same name beside the run's (x.png by x.jpg, not predicted): the overlays and the
        # mask files name theirs by the same rule; one listing of their folders serves both
        beside = [] if args.no_overlays and not any(f in PIXEL_FORMATS for f in export_formats) else \
            same_name_beside(files, IMAGE_EXTENSIONS)
        # None: no export
        self.export = export_for_run(args, export_formats, files, predictor, out_dir, beside=beside)
        self.skipped, self.n_done = [], 0
        self.used_names = set()  # overlay paths written, relative to overlays/
        # overlays/ mirrors the images' folders below the images folder, as the exports do
        self.root = self.export.root if self.export is not None else overlay_root(args.inputs, files)
        self.overlay_names = {} if args.no_overlays else overlay_names(files, self.root, beside)
        self.width = len(str(len(files)))
        self.reasons = Counter()  # skip_reason -> images: image_too_large apart, its limit can be raised
        self.tiny = []  # "name WxH" of the images predicted under TINY_IMAGE_PX on their shorter side
        self.large_said = False  # once an image's memory was warned about (large_image_note)
        self.stopped = None  # the exception that ended the loop, if any
        self.term = []  # the stop signal got (SIGTERM): the images in hand are finished, then the run stops
        self.writing = False  # once the results and exports are being written: a signal is only recorded

    def warn_large(self, paths) -> None:
        """Before the images are decoded: from their headers, once per run."""
        from maskrcnn.data.images import ImageReadError, image_size

        if self.large_said:
            return
        for path in paths:
            try:
                H, W = image_size(path)
            except (ImageReadError, OSError):
                continue  # said when it is read
            note = command.large_image_note(path, H, W, self.predictor.cfg.input.max_size_test)
            if note:  # once per run: the next such image costs the same
                self.large_said = True
                print(f"warning: {note}", file=sys.stderr)
                return

    def skip(self, index, path, error) -> None:
        from maskrcnn.data.images import skip_reason

        self.skipped.append(path)
        self.reasons[skip_reason(error)] += 1
        text = str(error)
        text = text if text.startswith(str(path)) else f"{path}: {text}"  # read errors name the file already
        text = text.replace(str(path), command.shown_path(path), 1)
        print(f"[{index + 1:>{self.width}}/{len(self.files)}] skipped {text}", file=sys.stderr)

    def on_term(self, signum, frame) -> None:
        if self.writing:  # raising now would cut the exports short that the first signal's line promised
            if not self.term:
                self.term.append(signum)
                os.write(2, f"\n{signal_name(signum)}: the results and exports are being written, then "
                            "predict stops\n".encode())
            return
        if self.term:  # a second one while predicting: at once, the images being predicted dropped
            raise StoppedBySignal("stopped at once by a second signal", signum)
        self.term.append(signum)
        # os.write, not print: a handler that prints while the loop prints can hit a reentrant write
        os.write(2, f"\n{signal_name(signum)}: the images being predicted are finished, the results and "
                    "exports of the images done are written, then predict stops\n".encode())

    def predict(self) -> None:
        """Every image, then the results written (``write_results``, also after an error or a stop).
        SIGTERM (timeout, docker stop, a scheduler) is handled as Ctrl-C, the way train handles it
        (stop_signals), until the results are written."""
        from maskrcnn.engine.inference import predict_files_skipping

        with stop_signals.handling((signal.SIGTERM,), self.on_term):
            try:
                t0 = time.perf_counter()
                for window in predict_files_skipping(self.predictor, self.files, on_error=self.skip,
                                                     before=self.warn_large):
                    per_image = (time.perf_counter() - t0) / len(window)
                    for idx, image, det in window:
                        self.add(idx, image, det, per_image)
                    if self.term:  # the whole window is done (none of its images lost): it stops, as Ctrl-C
                        raise StoppedBySignal("", self.term[0])
                    t0 = time.perf_counter()
            except KeyboardInterrupt as e:
                self.writing = True  # from here a signal is only recorded
                self.stopped = e
                raise self.stop_line(e) from None
            except BaseException as e:
                self.stopped = e
                raise
            finally:  # an interrupt or an error still leaves the results of the images done so far
                self.writing = True  # (set in the except above too: its stop line is not to be cut either)
                self.write_results()

    def add(self, idx: int, image, det: dict, per_image: float) -> None:
        """One image predicted: its records, its overlay, its export's part, its progress line."""
        from maskrcnn.data.coco_results import detections_to_coco_results

        args, predictor, path = self.args, self.predictor, self.files[idx]
        extra = {"file_name": str(path)}
        if not args.no_overlays:
            overlay_name = self.overlay_names[idx]
            self.used_names.add(overlay_name)
            extra["overlay"] = f"overlays/{overlay_name}"  # relative to --output
        mask_file = self.export.mask_file(path) if self.export is not None else None
        if mask_file is not None:  # which mask image is this image's, named as its overlay is
            extra["mask"] = mask_file
        self.writer.add(
            detections_to_coco_results(
                det,
                image_id=idx + 1,
                label_to_category_id=predictor.label_to_category_id,
                class_names=predictor.class_names,
                extra=extra,
                keypoint_labels=predictor.keypoint_labels,
            )
        )
        if not args.no_overlays:
            self.draw_overlay(image, det, overlay_name)
        self.n_done += 1
        H, W = image.shape[-2:]
        if min(H, W) < command.TINY_IMAGE_PX:
            self.tiny.append(f"{overlay_file_name(path, self.root)} {W}x{H}")
        if self.export is not None:
            self.export.add(idx + 1, path, H, W, det, image)  # the pixels: for cut-outs
        print(
            f"[{idx + 1:>{self.width}}/{len(self.files)}] {command.shown_path(path)} ({W}x{H}): "
            f"{det['boxes'].shape[0]} detections in {per_image:.2f} s",
            file=sys.stderr,
        )

    def draw_overlay(self, image, det: dict, overlay_name: str) -> None:
        import io

        from maskrcnn.io_utils import atomic_write_bytes
        from maskrcnn.visualize import draw_instances, skeleton_for

        overlay = draw_instances(
            image, det, self.predictor.class_names, min_size=overlay_min_size(self.args, video=False),
            score_thresh=self.args.overlay_score_thresh, skeleton=skeleton_for(self.predictor.cfg),
            max_size=OVERLAY_DRAW_MAX,
        )
        target = self.overlay_dir / overlay_name
        self.overlay_list.add([overlay_name])  # listed before it is written: a kill loses none
        target.parent.mkdir(parents=True, exist_ok=True)
        png = io.BytesIO()
        overlay.save(png, "PNG")
        atomic_write_bytes(target, png.getvalue())  # a link there is replaced, not followed

    def stop_line(self, e: KeyboardInterrupt) -> KeyboardInterrupt:
        """The stop to raise for Ctrl-C, or a stop signal (stop_signals.StoppedBySignal: the command exits
        128 + its number), saying what was written."""
        signum = getattr(e, "signum", None)

        def stop(message):
            return KeyboardInterrupt(message) if signum is None else StoppedBySignal(message, signum)

        out_dir, total = self.out_dir, len(self.files)
        if self.n_done == 0:
            kept = f"; the earlier run's results in {out_dir} are as they were" if self.earlier_results or \
                self.earlier_overlays else ""
            if self.export is not None:  # an empty file would replace an earlier run's good one
                kept += f"; no pre-annotation file written ({', '.join(self.export.formats)})" + (
                    "" if self.new_folder else ": any earlier ones stay as they were")
            return stop(f"after 0 of {total} images; nothing written{kept}")
        overlays = "" if self.args.no_overlays else f" and {self.n_done} overlay(s) in {self.overlay_dir}/"
        return stop(f"after {self.n_done} of {total} images; wrote their {len(self.writer.results)} "
                    f"detection(s) to {self.writer.final}{overlays}")

    def write_results(self) -> None:
        """This run's files replace the earlier run's (predictions.json and overlays/ of the same images)
        once an image was predicted; a run that read none of its images (all skipped) leaves them as they
        were: an empty predictions.json would replace good results with nothing. The exports are written
        also when the results or the overlay list were not."""
        try:
            if self.n_done > 0:
                self.writer.finish()
                # --no-overlays: the earlier ones stay
                removed = 0 if self.args.no_overlays else remove_earlier_overlays(
                    self.out_dir, self.earlier_stems, self.earlier_paths, self.used_names)
                # those of the earlier runs' list (with 0 detections too) not drawn now
                if not self.args.no_overlays:
                    removed += self.overlay_list.finish(replace=True)
                if removed:
                    print(f"removed {removed} overlay(s) of the earlier run's images not in this run "
                          f"from {self.overlay_dir}/", file=sys.stderr)
        finally:
            if self.export is not None:
                self.write_exports()
            if self.n_done == 0:  # nothing written: the folders this run made go again, empty
                remove_empty_folders(self.made)

    def write_exports(self) -> None:
        export = self.export
        note = export.left_out_note()
        if note:
            print(note, file=sys.stderr)
        # no image predicted (stopped before the first, or every one skipped): the earlier run's export
        # files stay, as its other files do (empty ones would replace good ones)
        wrote = export.finish(replace=self.n_done > 0, partial=self.stopped is not None)
        if wrote:
            print(f"pre-annotations: wrote {', '.join(str(p) for p in wrote)} (image paths "
                  f"relative to {export.root})", file=sys.stderr)
            for line in export.read_back_lines():
                print(line, file=sys.stderr)
        elif not isinstance(self.stopped, KeyboardInterrupt):  # Ctrl-C's stop line says it already
            why = "stopped before the first image" if self.stopped is not None else "no image was predicted"
            print(f"pre-annotations: none written ({why})" + (
                "" if self.new_folder else f": any earlier files in {self.out_dir} stay as they were"),
                file=sys.stderr)

    def end_of_run_signal(self) -> None:
        """A signal that came while the results were written (all of them were): the run did not end on
        its own, so it ends with that signal's status."""
        if self.term:
            raise StoppedBySignal(f"after {self.n_done} of {len(self.files)} images, while their results and "
                                  f"exports were written (all of them were, to {self.out_dir})", self.term[0])


def summary(images: ImagePass, *, seconds: float, left_out: int, counted: bool, video_rc: int) -> int:
    """The closing lines of the image pass (the pixel-limit line, tiny images, ``done:``) and the exit
    status. ``left_out``: the files of the folders said to be left out (named, or counted by extension:
    ``counted``)."""
    from maskrcnn.data.images import reason_counts, too_large_line

    files, n_done, skipped, out_dir = images.files, images.n_done, images.skipped, images.out_dir
    # good files over the pixel limit: the one skip a setting undoes
    too_large = too_large_line(images.reasons)
    if too_large:
        print(too_large, file=sys.stderr)
    listing = reason_counts(images.reasons)
    if n_done == 0:  # every image skipped: nothing is done, and the earlier run's files were not touched
        kept = f"; {out_dir} is as it was" if (images.earlier_results or images.earlier_overlays) else \
            "; no predictions.json written"
        print(f"maskrcnn predict: none of the {len(files)} input image(s) could be predicted: {len(skipped)} "
              f"skipped ({listing}){kept}",
              file=sys.stderr)
        return 1
    if images.tiny:
        from maskrcnn.listing import short_listing

        print("warning: " + tiny_images_note(len(images.tiny), short_listing(images.tiny, limit=3),
                                             images.predictor.cfg.input.min_size_test), file=sys.stderr)
    # with skips, "N of M": "2 image(s), ..., 2 skipped" read at a glance as every image done
    done = f"{n_done} of {len(files)} image(s) predicted" if skipped else f"{n_done} image(s)"
    print(
        f"done: {done}, {len(images.writer.results)} detections, {len(skipped)} skipped"
        + (f" ({listing}), " if listing else ", ")
        # every file said to be left out: the ones named and those counted by extension (notes.txt)
        + (f"{left_out} left out (named {'or counted ' if counted else ''}above), " if left_out else "")
        + f"{seconds:.1f} s "
        f"({seconds / max(n_done, 1):.2f} s/image); wrote {out_dir / 'predictions.json'}"
        + ("" if images.args.no_overlays else f" and {images.overlay_dir}/"),
        file=sys.stderr,
    )
    return max(video_rc, 0 if n_done > 0 or not skipped else 1)


def tiny_images_note(count: int, listing: str, min_size: int) -> str:
    """What to say of ``count`` images under ``TINY_IMAGE_PX`` on their shorter side (``listing``: which,
    "name WxH, ..."), predicted at ``min_size`` (``input.min_size_test``): the one wording of ``maskrcnn
    predict``'s closing warning and of the note ``maskrcnn serve`` answers such an upload with."""
    return (f"{count} image(s) under {command.TINY_IMAGE_PX} px on their shorter side ({listing}): "
            f"enlarged for the model (to {min_size} px), so their detections are unreliable (objects found "
            "in a few blown-up pixels)")
