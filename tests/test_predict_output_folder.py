"""``maskrcnn predict`` and its output folder: a run that reads no image leaves the earlier run's results
as they were and fails; a re-run into the images folder never predicts its own output; output folder
problems are said before the model loads."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from pixel_limit import small_pixel_limit
from tiny_model import save_cat_dog_checkpoint  # tests/ is on the path

from maskrcnn.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_cat_dog_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _image(path, side=40, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(path)
    return path


def _predict(checkpoint, out, *inputs, flags=()):
    return main(["predict", "--weights", str(checkpoint), *map(str, inputs), "--output", str(out),
                 "--device", "cpu", "--score-thresh", "0", *flags])


def test_a_run_that_reads_no_image_fails_and_leaves_the_earlier_results(checkpoint, tmp_path, capsys,
                                                                       monkeypatch):
    out = tmp_path / "out"
    assert _predict(checkpoint, out, _image(tmp_path / "good.png")) == 0
    before = (out / "predictions.json").read_bytes()
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    capsys.readouterr()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert _predict(checkpoint, out, broken) == 1
    err = capsys.readouterr().err
    assert "none of the 1 input image(s) could be predicted: 1 skipped (1 unreadable_image)" in err
    assert "done:" not in err and "removed" not in err
    assert (out / "predictions.json").read_bytes() == before  # not replaced by an empty list
    assert sorted(p.name for p in (out / "overlays").iterdir()) == overlays
    # one image over the pixel limit alone: the same
    small_pixel_limit(monkeypatch)
    assert _predict(checkpoint, out, _image(tmp_path / "big.png", side=80)) == 1
    err = capsys.readouterr().err
    assert "none of the 1 input image(s) could be predicted: 1 skipped (1 image_too_large)" in err
    assert (out / "predictions.json").read_bytes() == before


def test_a_run_that_reads_some_images_counts_the_skipped_ones_and_succeeds(checkpoint, tmp_path, capsys):
    broken = tmp_path / "in" / "broken.jpg"
    _image(tmp_path / "in" / "good.png")
    broken.write_bytes(b"not a jpeg")
    assert _predict(checkpoint, tmp_path / "out", tmp_path / "in") == 0
    err = capsys.readouterr().err
    assert "done: 1 of 2 image(s) predicted, " in err and "1 skipped (1 unreadable_image)" in err
    assert len({r["file_name"] for r in json.loads((tmp_path / "out" / "predictions.json").read_text())}) == 1


def test_the_done_line_says_how_many_of_the_images_were_predicted(checkpoint, tmp_path, capsys):
    """Before: "done: 2 image(s), ..., 2 skipped" counted only what was predicted, read at a glance as
    every image done; now "2 of 4 image(s) predicted". A run without a skip keeps its plain count."""
    _image(tmp_path / "in" / "a.png")
    _image(tmp_path / "in" / "b.png", value=30)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    assert _predict(checkpoint, tmp_path / "out", tmp_path / "in", flags=("--no-overlays",)) == 0
    done = [line for line in capsys.readouterr().err.splitlines() if line.startswith("done:")]
    assert len(done) == 1 and done[0].startswith("done: 2 of 4 image(s) predicted, ")
    assert ", 2 skipped (2 unreadable_image), " in done[0]
    assert _predict(checkpoint, tmp_path / "out2", tmp_path / "in" / "a.png", flags=("--no-overlays",)) == 0
    assert "done: 1 image(s), " in capsys.readouterr().err


def test_a_rerun_into_the_images_folder_predicts_none_of_the_first_runs_files(checkpoint, tmp_path, capsys):
    images = tmp_path / "in"
    _image(images / "a.png")
    _image(images / "b.png", value=30)
    flags = ("--export", "labelme,yolo,masks,cutouts")
    for _ in range(2):
        assert _predict(checkpoint, images, images, flags=flags) == 0
        names = {r["file_name"] for r in json.loads((images / "predictions.json").read_text())}
        assert {n.rsplit("/", 1)[-1] for n in names} == {"a.png", "b.png"}
    err = capsys.readouterr().err
    assert "2 image file(s)" in err.split("loaded", 2)[2]  # the second run's count: its own PNGs left out


def test_an_earlier_runs_folder_is_known_by_its_lists_without_predictions_json(tmp_path):
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    for rel in ("a.png", "old/overlays/a.png", "old/photo.png", "old2/masks/a.png", "mine/overlays/c.png",
                "mine/masks/d.png"):
        _image(images / rel)
    (images / "old" / "overlays" / "written.json").write_text('{"files": ["a.png"]}')  # predictions.json gone
    (images / "old2" / "masks" / "written.json").write_text('{"files": ["a.png"]}')  # a --no-overlays run's
    found = expand_inputs([images])
    # old/ was `predict old --output old`: its overlays/ goes, the user's own photo there is predicted
    assert [p.relative_to(images).as_posix() for p in found] == ["a.png", "mine/masks/d.png",
                                                                 "mine/overlays/c.png", "old/photo.png"]


def test_a_first_run_into_the_images_folder_predicts_the_users_images_in_export_named_folders(tmp_path):
    """Before: labelme/, yolo/, masks/ were left out whenever --output was the images folder, though
    LabelMe keeps its images beside its JSON files and no run had written there yet. Now such a folder is
    left out only when it holds a run's list of the files it wrote; overlays/ always (runs before the
    lists wrote none)."""
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    for rel in ("a.png", "labelme/b.png", "yolo/images/c.png", "masks/d.png", "cutouts/e.png",
                "overlays/f.png", "look/overlays/g.png", "look/h.png"):
        _image(images / rel)
    (images / "look" / "overlays" / "written.json").write_text('{"files": ["g.png"]}')  # show-data's output
    found = expand_inputs([images], output=images)
    assert [p.relative_to(images).as_posix() for p in found] == [
        "a.png", "cutouts/e.png", "labelme/b.png", "look/h.png", "masks/d.png", "yolo/images/c.png"]
    (images / "masks" / "written.json").write_text('{"files": ["d.png"]}')  # a run's masks now
    (images / "cutouts" / "written.partial.jsonl").write_text('["e.png"]\n')  # a killed run's cut-outs
    found = expand_inputs([images], output=images)
    assert [p.relative_to(images).as_posix() for p in found] == [
        "a.png", "labelme/b.png", "look/h.png", "yolo/images/c.png"]


def test_the_rerun_note_counts_the_images_with_detections_as_such(tmp_path):
    from maskrcnn.commands.earlier_run import earlier_run

    out = tmp_path / "out"
    out.mkdir()
    records = [{"image_id": i, "file_name": f"{i}.png", "score": 0.5} for i in (1, 1, 2)]
    (out / "predictions.json").write_text(json.dumps(records))  # images without detections have no record
    assert earlier_run(out)[0] == "2 image(s) with detections in its predictions"


def test_output_folder_problems_are_said_before_the_model_loads(checkpoint, tmp_path, capsys, monkeypatch):
    from maskrcnn import io_utils

    image = _image(tmp_path / "a.png")
    (tmp_path / "oc").mkdir()
    (tmp_path / "oc" / "overlays").write_text("x")  # a file where the overlays folder goes
    (tmp_path / "od" / "predictions.json").mkdir(parents=True)  # a folder where the results file goes
    assert _predict("missing.pth", tmp_path / "oc", image) == 1  # said before the weights are looked at
    err = capsys.readouterr().err
    assert f"{tmp_path / 'oc' / 'overlays'} is a file where predict writes its overlays folder" in err
    assert "missing.pth" not in err
    assert _predict(checkpoint, tmp_path / "oc", image, flags=("--no-overlays",)) == 0  # none drawn: fine
    assert _predict("missing.pth", tmp_path / "od", image) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'od' / 'predictions.json'} is a folder where predict writes its results file" in err
    assert not list((tmp_path / "od").glob("overlays"))
    # a parent that refuses new files (root writes in a read-only folder: the refusal is faked)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = io_utils.create_temp_file

    def refuse(folder, **kwargs):
        if str(folder) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real(folder, **kwargs)

    monkeypatch.setattr(io_utils, "create_temp_file", refuse)
    assert _predict("missing.pth", locked / "new" / "out", image) == 1
    err = capsys.readouterr().err
    assert f"--output {locked / 'new' / 'out'}: cannot be made: {locked}: cannot write there (Permission " \
           "denied)" in err


def test_images_too_small_for_the_model_are_warned_about_and_counted(checkpoint, tmp_path, capsys):
    images = tmp_path / "in"
    _image(images / "ok.png")
    _image(images / "dot.png", side=1)
    _image(images / "thin.png", side=8)
    assert _predict(checkpoint, tmp_path / "out", images, flags=("--no-overlays",)) == 0
    err = capsys.readouterr().err
    assert "warning: 2 image(s) under 16 px on their shorter side (dot.png 1x1, thin.png 8x8): enlarged " \
           "for the model" in err


@pytest.mark.parametrize("name", ["written.json", "written.partial.jsonl"])
def test_a_folder_where_the_overlay_list_goes_is_said_before_the_model_loads(checkpoint, tmp_path, capsys,
                                                                            name):
    """Before: overlays/written.json a folder let the run predict every image and then fail before its
    exports were written; written.partial.jsonl a folder failed after the model loaded, leaving
    predictions.partial.jsonl behind."""
    image = _image(tmp_path / "a.png")
    out = tmp_path / "out"
    (out / "overlays" / name).mkdir(parents=True)
    assert _predict("missing.pth", out, image) == 1  # said before the weights are looked at
    err = capsys.readouterr().err
    assert f"{out / 'overlays' / name} is a folder where predict writes its list of the overlays" in err
    assert "missing.pth" not in err and sorted(p.name for p in out.iterdir()) == ["overlays"]
    assert _predict(checkpoint, out, image, flags=("--no-overlays",)) == 0  # none drawn: none listed


def test_the_exports_are_written_when_the_overlay_list_fails(checkpoint, tmp_path, capsys, monkeypatch):
    from maskrcnn.data.pre_annotations.written_files import WrittenFiles

    real = WrittenFiles.finish

    def failing(self, **kwargs):
        if self.label == "overlays":
            raise OSError(28, "No space left on device")
        return real(self, **kwargs)

    monkeypatch.setattr(WrittenFiles, "finish", failing)
    out = tmp_path / "out"
    assert _predict(checkpoint, out, _image(tmp_path / "a.png"), flags=("--export", "coco")) == 1
    assert "no space left on device" in capsys.readouterr().err.lower()
    assert (out / "coco_instances.json").is_file() and (out / "predictions.json").is_file()


def test_a_video_only_run_is_not_refused_for_a_results_file_it_does_not_write(tmp_path):
    from maskrcnn.commands.predict import check_run_folder

    (tmp_path / "predictions.json").mkdir()
    check_run_folder(tmp_path, images=False, overlays=False)  # videos write <stem>.predictions.jsonl
    with pytest.raises(ValueError, match="is a folder where predict writes its results file"):
        check_run_folder(tmp_path, images=True, overlays=False)


def test_a_run_that_reads_no_image_leaves_no_empty_output_folder(checkpoint, tmp_path, capsys):
    """Before: every image skipped, a new --output was left as empty out/ and out/overlays/ while the
    run said it wrote no predictions.json."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "new" / "out"
    assert _predict(checkpoint, out, broken, flags=("--export", "labelme,masks")) == 1
    assert "no predictions.json written" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there stays, empty as it was
    assert _predict(checkpoint, tmp_path / "kept", broken) == 1
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


def test_a_run_folder_with_a_list_leaves_out_only_the_files_the_list_names(checkpoint, tmp_path, capsys):
    """Before: yolo/ holding a run's written.json had every image under it left out of a later predict of
    the parent folder, the user's yolo/images/c.png too (YOLO keeps its images beside its labels). Now
    only the files a run's list names are left out, and the line says what and why."""
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    _image(images / "a.png")
    _image(images / "yolo" / "images" / "c.png")
    assert _predict(checkpoint, images, images, flags=("--export", "yolo,masks", "--no-overlays")) == 0
    assert (images / "yolo" / "written.json").is_file() and (images / "masks" / "written.json").is_file()
    (images / "predictions.json").unlink()  # the parent is no output folder now: the lists decide
    capsys.readouterr()
    found = [p.relative_to(images).as_posix() for p in expand_inputs([images])]
    assert found == ["a.png", "yolo/images/c.png"]  # the masks the run wrote are not
    line = [x for x in capsys.readouterr().err.splitlines() if "inside predict output folders" in x]
    assert len(line) == 1 and line[0].startswith("maskrcnn predict: left out 4 image file(s) inside predict "
                                                 "output folders: 4 named by a run's list")
    assert f"{images / 'masks' / 'written.json'}" in line[0] and "yolo" not in line[0]
    assert "yours and predicted" not in line[0]  # yolo/ is named by no image left out: not "there"


def test_a_run_folder_whose_list_cannot_be_read_is_left_out_whole_and_said_so(tmp_path, capsys):
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    for rel in ("a.png", "masks/b.png", "masks/sub/c.png"):
        _image(images / rel)
    (images / "masks" / "written.json").write_text("{not json")
    assert [p.relative_to(images).as_posix() for p in expand_inputs([images])] == ["a.png"]
    err = capsys.readouterr().err
    assert "2 in run folders whose list of the files written cannot be read" in err
    assert f"{images / 'masks' / 'written.json'}" in err


def test_an_all_skipped_run_into_a_new_folder_does_not_promise_earlier_files(checkpoint, tmp_path, capsys):
    """Before: "pre-annotations: none written (no image was predicted): any earlier files in out stay as
    they were" while the run removed the out/ it had made; a folder that was there keeps the clause."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "new" / "out"
    assert _predict(checkpoint, out, broken, flags=("--export", "labelme")) == 1
    err = capsys.readouterr().err
    assert "pre-annotations: none written (no image was predicted)\n" in err
    assert "earlier files" not in err and not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    assert _predict(checkpoint, tmp_path / "kept", broken, flags=("--export", "labelme")) == 1
    assert f"none written (no image was predicted): any earlier files in {tmp_path / 'kept'} stay as they " \
           "were" in capsys.readouterr().err


def test_a_video_runs_results_are_not_counted_as_the_users_other_files(tmp_path):
    """Before: clip.predictions.jsonl, a video run's results, was counted in "N file(s) that are not
    images or videos" with the user's notes.txt. Now our own outputs are not: the video results (by their
    summary or frame lines, not the name alone) and the files a run folder's list names, with the list."""
    from maskrcnn.commands.predict import _OutputFolders, other_files

    images = tmp_path / "in"
    _image(images / "a.png")
    (images / "clip.predictions.jsonl").write_text('{"frame": 0, "time": 0.0, "detections": []}\n'
                                                   '{"summary": {"status": "complete"}}\n')
    (images / "cut.predictions.partial.jsonl").write_text('{"frame": 0, "time": 0.0, "detections": []}\n')
    (images / "mine.predictions.jsonl").write_text("my own notes, named so\n")
    (images / "notes.txt").write_text("x")
    yolo = images / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (yolo / "data.yaml").write_text("names: []\n")
    (yolo / "README.txt").write_text("mine")
    (yolo / "written.json").write_text('{"files": ["labels/a.txt", "data.yaml"]}')
    found = other_files([str(images)], _OutputFolders(set()))
    assert [f.relative_to(images).as_posix() for f in found] == ["mine.predictions.jsonl", "notes.txt",
                                                                 "yolo/README.txt"]


def test_a_parent_that_exists_but_takes_no_files_is_not_said_missing(tmp_path, monkeypatch):
    """Before: --output /proc/x/out said "/proc: cannot write there (No such file or directory)" of a
    folder that is there (procfs answers ENOENT to a new file)."""
    import errno

    from maskrcnn import io_utils

    locked = tmp_path / "locked"
    locked.mkdir()
    real = io_utils.create_temp_file

    def refuse(folder, **kwargs):
        if str(folder) == str(locked):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        return real(folder, **kwargs)

    monkeypatch.setattr(io_utils, "create_temp_file", refuse)
    with pytest.raises(ValueError) as e:
        io_utils.check_output_dir(locked / "x" / "out")
    assert str(e.value) == f"--output {locked / 'x' / 'out'}: cannot be made: {locked}: cannot write there " \
                           "(its file system refuses new files there)"
    with pytest.raises(ValueError, match="cannot write there \\(its file system refuses new files there\\)"):
        io_utils.check_output_dir(locked)


def test_the_masks_index_and_the_labelme_files_a_run_listed_are_not_counted_as_the_users(checkpoint, tmp_path,
                                                                                      capsys):
    """Before: masks/index.json, the LabelMe files listed in labelme.written.json and that list itself were
    counted in "N file(s) that are not images or videos" on a later predict of the folder (7, then 8 with
    index.json). Now the files a run's list names are ours, wherever the list lies; the single-file
    exports too (coco_instances.json, by exports.written.json: test_the_single_file_exports_...)."""
    from maskrcnn.commands.predict import _OutputFolders, expand_inputs, other_files

    images = tmp_path / "in"
    _image(images / "a.png")
    _image(images / "sub" / "b.png")
    flags = ("--export", "masks,labelme,coco", "--no-overlays")
    assert _predict(checkpoint, images, images, flags=flags) == 0
    assert (images / "masks" / "index.json").is_file() and (images / "labelme.written.json").is_file()
    (images / "predictions.json").unlink()
    capsys.readouterr()
    found = [f.relative_to(images).as_posix() for f in other_files([str(images)], _OutputFolders(set()))]
    assert found == []
    # the masks are named by the run's list; no image of the user's lies beside them: none said predicted
    assert [p.relative_to(images).as_posix() for p in expand_inputs([images])] == ["a.png", "sub/b.png"]
    line = [x for x in capsys.readouterr().err.splitlines() if "inside predict output folders" in x]
    assert len(line) == 1 and "named by a run's list" in line[0] and "yours and predicted" not in line[0]
    _image(images / "masks" / "mine.png")  # the user's, beside the listed masks: predicted, and said so
    assert "masks/mine.png" in [p.relative_to(images).as_posix() for p in expand_inputs([images])]
    assert "; the other images there are yours and predicted)" in capsys.readouterr().err
    (images / "labelme" / "mine.json").write_text("{}")  # the user's, beside the listed ones: counted
    found = [f.relative_to(images).as_posix() for f in other_files([str(images)], _OutputFolders(set()))]
    assert found == ["labelme/mine.json"]


def test_a_run_list_that_cannot_be_read_is_said_with_its_parse_error(tmp_path, capsys):
    """Before: "1 in run folders whose list of the files written cannot be read (in/yolo/written.json: all
    of the folder taken for the run's)": which part of the list is damaged was not said. Now the line
    gives the parse error (the file, its line and column), as written_files says it when it writes there."""
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    _image(images / "a.png")
    _image(images / "yolo" / "images" / "b.png")
    (images / "yolo" / "written.json").write_text('{"files": ["labels/b.txt"\n  "data.yaml"]}')
    _image(images / "labelme" / "c.png")
    (images / "labelme.written.json").write_text('{"files": ["c.json"]}')
    (images / "labelme.written.partial.jsonl").write_text('{"c.json": 12}\n')
    found = expand_inputs([images])
    assert [p.relative_to(images).as_posix() for p in found] == ["a.png"]
    line = [x for x in capsys.readouterr().err.splitlines() if "inside predict output folders" in x]
    assert len(line) == 1, line
    assert line[0].endswith(
        f"left out 2 image file(s) inside predict output folders: 2 in run folders whose list of the files "
        f"written cannot be read ({images / 'labelme.written.partial.jsonl'}: line 1 is neither a list of "
        f"paths nor {{path: SHA-256 hex}}; {images / 'yolo' / 'written.json'}: not readable as JSON "
        f"(Expecting ',' delimiter: line 2 column 3 (char 28)): all of the folder taken for the run's)"), \
        line[0]


def test_the_single_file_exports_a_run_wrote_are_not_counted_as_the_users(checkpoint, tmp_path, capsys):
    """Before: coco_instances.json, cvat_annotations.xml and labelstudio_tasks.json / _config.xml, which no
    list recorded, were counted in "left out 4 file(s) that are not images or videos" on a later predict
    of a folder holding the run's output (its predictions.json gone). Now the run lists them in
    exports.written.json (with their hashes), beside them: they and the list are the run's; a file of
    those names that no list names, or one changed since (the user's own:
    test_a_single_file_export_changed_since_the_run_is_the_users), is still counted."""
    from maskrcnn.commands.predict import _OutputFolders, other_files

    images = tmp_path / "in"
    _image(images / "a.png")
    flags = ("--export", "coco,cvat,labelstudio", "--no-overlays")
    assert _predict(checkpoint, images, images, flags=flags) == 0
    record = json.loads((images / "exports.written.json").read_text())
    names = ["coco_instances.json", "cvat_annotations.xml", "labelstudio_config.xml",
             "labelstudio_tasks.json"]
    assert record["files"] == names and sorted(record["sha256"]) == names
    (images / "predictions.json").unlink()
    (images / "notes.txt").write_text("mine")

    def counted():
        return [f.relative_to(images).as_posix() for f in other_files([str(images)], _OutputFolders(set()))]

    assert counted() == ["notes.txt"]
    # a later run exporting coco alone keeps the earlier cvat / labelstudio files listed: still the run's
    assert _predict(checkpoint, images, images, flags=("--export", "coco", "--no-overlays")) == 0
    (images / "predictions.json").unlink()
    assert json.loads((images / "exports.written.json").read_text())["files"] == names
    assert counted() == ["notes.txt"]
    # files of those names in a folder no run wrote to are the user's: counted
    mine = tmp_path / "mine"
    _image(mine / "b.png")
    (mine / "coco_instances.json").write_text("{}")
    (mine / "exports.written.json").write_text('{"files": ["b.png"]}')  # names no single-file export
    found = [f.relative_to(mine).as_posix() for f in other_files([str(mine)], _OutputFolders(set()))]
    assert found == ["coco_instances.json"]
    capsys.readouterr()


def test_a_hostile_exports_list_makes_no_image_a_runs_and_records_no_other_file(checkpoint, tmp_path, capsys):
    """Before (guard unpinned): an exports.written.json naming b.png was believed only because
    ``single_file_exports`` kept the names of the single-file exports alone, which no test held; and a run
    carried every earlier entry forward, so the list's ``../outside.json`` was read whole (hashed) and
    recorded again. Now b.png is predicted (no left-out line), only the single-file exports are taken or
    recorded, and the file outside is neither read into the list nor changed."""
    from maskrcnn.commands.predict import expand_inputs

    images = tmp_path / "in"
    _image(images / "a.png")
    _image(images / "b.png")
    (tmp_path / "outside.json").write_text("mine")
    (images / "exports.written.json").write_text(json.dumps({"files": ["b.png", "../outside.json"]}))
    found = [p.relative_to(images).as_posix() for p in expand_inputs([images])]
    assert found == ["a.png", "b.png"]
    assert "inside predict output folders" not in capsys.readouterr().err
    assert _predict(checkpoint, images, images, flags=("--export", "coco", "--no-overlays")) == 0
    err = capsys.readouterr().err
    assert "inside predict output folders" not in err, err
    predictions = json.loads((images / "predictions.json").read_text())
    predicted = {os.path.basename(p["file_name"]) for p in predictions}
    assert predicted == {"a.png", "b.png"}
    record = json.loads((images / "exports.written.json").read_text())
    assert record["files"] == ["coco_instances.json"] and list(record["sha256"]) == ["coco_instances.json"]
    assert (tmp_path / "outside.json").read_text() == "mine"


def test_a_single_file_export_changed_since_the_run_is_the_users(checkpoint, tmp_path):
    """Before: a coco_instances.json the exports list named was the run's by its name alone, though the
    list keeps its hash: the user's own file saved there later was left uncounted. Now it is the run's only
    while it holds what the run wrote (as the per-image files are told apart)."""
    from maskrcnn.commands.predict import _OutputFolders, other_files

    images = tmp_path / "in"
    _image(images / "a.png")
    assert _predict(checkpoint, images, images, flags=("--export", "coco,cvat", "--no-overlays")) == 0
    (images / "predictions.json").unlink()

    def counted():
        return [f.relative_to(images).as_posix() for f in other_files([str(images)], _OutputFolders(set()))]

    assert counted() == []
    (images / "coco_instances.json").write_text('{"my": "ground truth"}')
    assert counted() == ["coco_instances.json"]


def test_a_folder_where_an_exports_side_list_goes_is_refused_before_predicting(checkpoint, tmp_path, capsys):
    """Before: a folder named exports.written.partial.jsonl in --output failed `--export coco,yolo` only
    after every image was predicted ("Is a directory", exit 1, no exports written). Now it is refused up
    front, as a folder where a format's file goes is."""
    _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    (out / "exports.written.partial.jsonl").mkdir(parents=True)
    (out / "yolo" / "written.partial.jsonl").mkdir(parents=True)
    assert _predict(checkpoint, out, tmp_path / "in", flags=("--export", "coco,yolo", "--no-overlays")) == 1
    err = capsys.readouterr().err
    assert (f"{out / 'exports.written.partial.jsonl'} is a folder where --export coco writes a file; "
            f"{out / 'yolo' / 'written.partial.jsonl'} is a folder where --export yolo writes a file "
            "(move it away or choose another --output): nothing predicted") in err, err
    assert not (out / "predictions.json").exists()


def test_a_side_list_that_is_a_link_is_replaced_not_appended_through(checkpoint, tmp_path, capsys):
    """Before: out/exports.written.partial.jsonl, a link to another file, had the run's line appended to
    that file. Now the link is replaced by the run's own list (removed when the run finishes); the file it
    pointed at is unchanged."""
    from maskrcnn.data.pre_annotations.written_files import WrittenFiles

    _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "exports.written.partial.jsonl").symlink_to(victim)
    assert _predict(checkpoint, out, tmp_path / "in", flags=("--export", "coco", "--no-overlays")) == 0
    assert victim.read_text() == "precious\n"
    assert not os.path.lexists(out / "exports.written.partial.jsonl")
    assert json.loads((out / "exports.written.json").read_text())["files"] == ["coco_instances.json"]
    # the lists of any folder alike: a link is not followed while the run appends to it
    (out / "yolo").mkdir()
    (out / "yolo" / "written.partial.jsonl").symlink_to(victim)
    written = WrittenFiles(folder=out / "yolo", label="yolo")
    written.add({"labels/a.txt": "0" * 64})
    assert victim.read_text() == "precious\n"
    assert not (out / "yolo" / "written.partial.jsonl").is_symlink()
    written.finish()
    capsys.readouterr()
