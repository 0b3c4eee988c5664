"""``predict --export`` into an output folder an earlier run wrote: the user's edited files are kept, the
earlier run's stale ones removed; bad export locations and YOLO-unsafe class names refused before
predicting; SIGTERM handled as Ctrl-C."""

import json
import os
import signal

import pytest
from PIL import Image
from tiny_model import cat_dog_inputs  # tests/ is on the path

from maskrcnn.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")
SIZES = {"a.png": (50, 70), "sub/b.jpg": (40, 60)}  # (H, W)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return cat_dog_inputs(tmp_path_factory.mktemp("rerun"), SIZES)


def _predict(ckpt, images, out, formats="labelme,yolo,masks"):
    return main(["predict", "--weights", str(ckpt), str(images), "--output", str(out), "--device", "cpu",
                 "--no-overlays", "--export", formats])


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_rerun_keeps_the_users_edited_files_and_removes_the_earlier_runs_stale_ones(setup, tmp_path,
                                                                                       capsys):
    """A re-run wrote over LabelMe / YOLO files corrected since (human work lost) and left the earlier
    run's files of images not written again in labelme/ and yolo/labels/ (read back mixed in). Now a file
    changed since, or one no list names, is kept and said; the earlier run's unchanged ones not written
    again are removed."""
    ckpt, images = setup
    out = tmp_path / "out"
    assert _predict(ckpt, images, out) == 0
    assert _files(out / "labelme") == ["a.json", "sub/b.json"]
    edited = json.loads((out / "labelme" / "a.json").read_text())
    edited["shapes"].append({"label": "cat", "points": [[1, 1], [9, 1], [9, 9]], "group_id": None,
                             "description": "", "shape_type": "polygon", "flags": {}, "mask": None})
    (out / "labelme" / "a.json").write_text(json.dumps(edited))
    (out / "yolo" / "labels" / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    (out / "masks" / "a.png").write_bytes(b"painted over")
    user_file = b'{"version": "5.5.0", "shapes": []}'  # the user's own, at a path this run writes
    (out / "labelme" / "b.json").write_bytes(user_file)
    capsys.readouterr()

    assert _predict(ckpt, images / "sub", out) == 0  # the images folder is now in/sub: b.jpg at its root
    err = capsys.readouterr().err
    assert json.loads((out / "labelme" / "a.json").read_text()) == edited
    assert (out / "yolo" / "labels" / "a.txt").read_text() == "0 0.1 0.1 0.5 0.1 0.5 0.5\n"
    assert (out / "masks" / "a.png").read_bytes() == b"painted over"
    assert (out / "labelme" / "b.json").read_bytes() == user_file
    assert _files(out / "labelme") == ["a.json", "b.json"]  # sub/b.json: the earlier run's, unchanged: gone
    assert _files(out / "yolo" / "labels") == ["a.txt", "b.txt", "classes.txt"]
    assert (f"pre-annotations: labelme: kept 1 file(s) in {out / 'labelme'}/ changed since an earlier run "
            "wrote them: yours, neither written over nor removed (a.json)") in err, err
    assert (f"pre-annotations: labelme: kept 1 file(s) in {out / 'labelme'}/ not written by an earlier run "
            "(none lists them: yours, or written by a version before maskrcnn recorded its files; move them "
            "away to have them written again): neither written over nor removed (b.json)") in err, err
    assert "yolo: kept 1 file(s)" in err and "(labels/a.txt)" in err
    assert "masks: kept 1 file(s)" in err and "(a.png)" in err
    assert "pre-annotations: labelme: removed 1 file(s) of the earlier run" in err
    record = json.loads((out / "labelme.written.json").read_text())
    assert record["files"] == [] and "sha256" not in record  # b.json was the user's: nothing of ours left

    (out / "labelme" / "b.json").unlink()  # moved away by the user: written again by the next run
    assert _predict(ckpt, images / "sub", out) == 0
    assert json.loads((out / "labelme" / "b.json").read_text())["imagePath"].endswith("/in/sub/b.jpg")
    assert json.loads((out / "labelme.written.json").read_text())["files"] == ["b.json"]


def test_export_locations_are_checked_before_predicting(setup, tmp_path, capsys):
    """A file where an export writes a folder failed at the end of the whole run, losing the formats after
    it. Now it is refused up front, in one line, and nothing is predicted."""
    ckpt, images = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / "labelme").write_text("hi")
    (out / "cvat_annotations.xml").mkdir()
    assert _predict(ckpt, images, out, "coco,labelme,cvat,yolo") == 1
    err = capsys.readouterr().err
    assert (f"maskrcnn predict: error: {out / 'labelme'} is a file where --export labelme writes a folder; "
            f"{out / 'cvat_annotations.xml'} is a folder where --export cvat writes a file (move it away or "
            "choose another --output): nothing predicted") in err, err
    assert _files(out) == ["labelme"]


def test_yolo_export_refuses_a_class_name_with_a_line_break_and_classes_txt_splits_at_newlines_only(
        setup, tmp_path, capsys):
    """A name holding a line break took two lines of classes.txt: every class after it read back under the
    next one's name. Now the YOLO export refuses it before predicting (naming it); the reader splits
    classes.txt at \\n only, not at the other breaks str.splitlines knows (U+2028 here)."""
    from maskrcnn.data.pre_annotations.export import PreAnnotationExport

    for name in ("line\nbreak", "cr\rhere", "para\u2028sep", "fs\x1c"):
        with pytest.raises(ValueError, match="--export yolo: class 0 .* holds a line break"):
            PreAnnotationExport(out_dir=tmp_path / "pre", formats=["coco", "yolo"], root=tmp_path,
                                class_names=["__background__", name, "b"])
    # yolo alone refuses: the other formats keep the name as it is
    PreAnnotationExport(out_dir=tmp_path / "pre", formats=["coco"], root=tmp_path,
                        class_names=["__background__", "line\nbreak", "b"]).finish()
    coco = json.loads((tmp_path / "pre" / "coco_instances.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["line\nbreak", "b"]

    src = tmp_path / "ds"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    Image.new("RGB", (20, 10)).save(src / "images" / "a.png")
    (src / "labels" / "classes.txt").write_bytes("a\u2028b\r\nsq\n".encode())
    (src / "labels" / "a.txt").write_text("1 0.1 0.1 0.5 0.1 0.5 0.5\n")
    assert main(["convert-data", "--from", "yolo", str(src), "--output", str(tmp_path / "o.json")]) == 0
    coco = json.loads((tmp_path / "o.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["a\u2028b", "sq"]
    assert [a["category_id"] for a in coco["annotations"]] == [2]


def test_sigterm_stops_predict_as_ctrl_c_does_writing_the_exports(setup, tmp_path, monkeypatch, capsys):
    """SIGTERM (timeout, docker stop) ended predict at once: no export, a mixed folder, no line. Now the
    image being predicted is finished, the results and exports of the images done are written, a line
    says it, and the exit status is 143; the process's own SIGTERM handler is back afterwards."""
    ckpt, images = setup
    _terminate_at_first_window(monkeypatch)  # while the first image is in hand
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    assert _predict(ckpt, images, out, "coco,labelme") == 143
    err = capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before
    assert "stopped by SIGTERM: after 1 of 2 images; wrote their" in err, err
    assert len(json.loads((out / "coco_instances.json").read_text())["images"]) == 1
    assert _files(out / "labelme") == ["a.json"]
    assert (out / "predictions.json").exists() and not (out / "predictions.partial.jsonl").exists()


def test_flags_that_do_not_apply_are_noted_in_one_wording():
    from maskrcnn.commands.flag_options import not_applying

    assert not_applying([("--no-optimise", False), ("--no-winograd", False)], "an .onnx file", "x") is None
    assert not_applying([("--no-optimise", True)], "an INT8 file", "it always runs its INT8 kernels") == \
        "--no-optimise does not apply to an INT8 file: it always runs its INT8 kernels"
    assert not_applying([("--no-optimise", True), ("--no-winograd", True)], "an .onnx file", "why") == \
        "--no-optimise and --no-winograd do not apply to an .onnx file: why"


def _terminate_at_first_window(monkeypatch):
    from maskrcnn.predictor import Predictor

    real = Predictor.predict_files

    def terminated(self, paths, **kwargs):
        for i, item in enumerate(real(self, paths, **kwargs)):
            if i == 0:
                os.kill(os.getpid(), signal.SIGTERM)  # while the first image (or window) is in hand
            yield item

    monkeypatch.setattr(Predictor, "predict_files", terminated)


def _terminate_in_labelme_export(monkeypatch):
    from maskrcnn.data.pre_annotations.export import PreAnnotationExport

    real = PreAnnotationExport._labelme

    def labelme(self, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # while the exports are written
        return real(self, **kwargs)

    monkeypatch.setattr(PreAnnotationExport, "_labelme", labelme)


def test_a_signal_while_the_exports_are_written_never_cuts_them_short(setup, tmp_path, monkeypatch,
                                                                       capsys):
    """A second SIGTERM while the exports were written raised inside them: the LabelMe export the first
    signal's line promised was lost. A first one then said "then predict stops" yet the run said done and
    exited 0. Now a signal is only recorded once the writing starts: every export is written, and the run
    ends with 143 either way."""
    ckpt, images = setup
    _terminate_at_first_window(monkeypatch)
    _terminate_in_labelme_export(monkeypatch)
    out = tmp_path / "out"
    assert _predict(ckpt, images, out, "coco,labelme,yolo") == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM: after 1 of 2 images; wrote their" in err, err
    assert _files(out / "labelme") == ["a.json"]
    assert _files(out / "yolo" / "labels") == ["a.txt", "classes.txt"]

    monkeypatch.undo()
    _terminate_in_labelme_export(monkeypatch)  # the first signal, while the exports are written
    out = tmp_path / "out2"
    assert _predict(ckpt, images, out, "coco,labelme") == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM: after 2 of 2 images, while their results and exports were written" in err
    assert "done:" not in err
    assert _files(out / "labelme") == ["a.json", "sub/b.json"]


def test_sigterm_with_a_batch_keeps_the_whole_window_predicted(setup, tmp_path, monkeypatch, capsys):
    """With --batch-size 2 the stop was checked per image: the window's second image, already predicted,
    was thrown away. Now the check comes after each window."""
    ckpt, images = setup
    _terminate_at_first_window(monkeypatch)
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(ckpt), str(images), "--output", str(out), "--device", "cpu",
                 "--no-overlays", "--batch-size", "2", "--export", "labelme"]) == 143
    assert "stopped by SIGTERM: after 2 of 2 images" in capsys.readouterr().err
    assert _files(out / "labelme") == ["a.json", "sub/b.json"]


def test_yolo_class_names_are_checked_before_the_videos_are_predicted(setup, tmp_path, monkeypatch, capsys):
    """The YOLO names check ran after the videos were predicted (their time lost to a refusal). Now it
    runs before them."""
    from maskrcnn.checkpoint import load_checkpoint, save_checkpoint
    from maskrcnn.commands import predict_video

    ckpt, images = setup
    state = load_checkpoint(ckpt)
    bad = tmp_path / "bad.pth"
    save_checkpoint(bad, model_state=state["model"], config=state["config"],
                    class_names=["__background__", "line\nbreak", "dog"])
    predicted = []
    monkeypatch.setattr(predict_video, "split_video_inputs",
                        lambda inputs, found, **kw: ([f for f in found], [tmp_path / "v.mp4"]))
    monkeypatch.setattr(predict_video, "predict_videos", lambda *a, **kw: predicted.append(a) or 0)
    assert _predict(bad, images, tmp_path / "out", "yolo") == 1
    assert "--export yolo: class 0 " in capsys.readouterr().err
    assert predicted == []
