"""show-data: the summary counts what CocoDataset keeps (classes, crowd, empty images, COCO size bins,
skipped records), and overlays draw instances tinted and crowd regions hatched."""

import json

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from maskrcnn.cli import main

H, W = 120, 110
GREY = 100


def _rect(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def _dataset(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.full((H, W, 3), GREY, np.uint8)).save(images / name)
    crowd = np.zeros((H, W), np.uint8)
    crowd[50:70, 50:90] = 1
    rle = mask_utils.encode(np.asfortranarray(crowd))
    rle["counts"] = rle["counts"].decode("ascii")
    anns = [
        # No area field: the mask's, 40 x 30 = 1200 (medium).
        {
            "id": 1,
            "image_id": 1,
            "category_id": 5,
            "bbox": [0, 0, 40, 30],
            "segmentation": _rect(0, 0, 40, 30),
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 9,
            "bbox": [60, 5, 10, 10],
            "segmentation": _rect(60, 5, 70, 15),
            "area": 100,
        },
        {
            "id": 3,
            "image_id": 1,
            "category_id": 5,
            "bbox": [50, 50, 40, 20],
            "segmentation": rle,
            "iscrowd": 1,
            "area": 800,
        },
        {"id": 4, "image_id": 1, "category_id": 5, "bbox": [5, 5, -3, 4], "segmentation": _rect(5, 5, 8, 9)},
        {
            "id": 5,
            "image_id": 2,
            "category_id": 9,
            "bbox": [0, 0, 100, 100],
            "segmentation": _rect(0, 0, 100, 100),
            "area": 10000,
        },
    ]
    coco = {
        "images": [
            {"id": i + 1, "file_name": n, "height": H, "width": W}
            for i, n in enumerate(("a.png", "b.png", "c.png", "gone.png"))
        ],
        "annotations": anns,
        "categories": [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}],
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(coco))
    return path, images


def test_show_data_summary_and_overlays(tmp_path, capsys):
    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"
    assert (
        main(
            [
                "show-data",
                "--json",
                str(json_path),
                "--images",
                str(images),
                "--output",
                str(out),
                "--overlay-min-size",  # at the image's own size: pixels compared below
                "0",
                "--max",
                "2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())

    assert {k: summary[k] for k in ("images", "images_without_instances", "instances", "crowd")} == {
        "images": 3,
        "images_without_instances": 1,
        "instances": 3,
        "crowd": 1,
    }
    assert summary["per_class"] == {"cat": {"instances": 1, "crowd": 1, "images": 1},
                                    "dog": {"instances": 2, "crowd": 0, "images": 2}}
    assert summary["sizes"] == {"small": 1, "medium": 1, "large": 1}
    assert [b["count"] for b in summary["size_histogram"]] == [
        0,
        1,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
    ]  # sqrt 10, 34.6, 100
    assert [(b["sqrt_area_from"], b["to"]) for b in summary["size_histogram"]][-1] == (512, None)
    assert summary["skipped"] == {"bad_bbox": 1, "missing_image_file": 1}
    assert any("annotation id 4" in p for p in summary["problems"])
    assert summary["overlays"] == ["a.png", "b.png"]
    assert "3 images (1 without instances), 3 instances, 1 crowd regions" in printed
    assert "skipped: 1 bad_bbox, 1 missing_image_file" in printed

    overlay = np.asarray(Image.open(out / "overlays" / "a.png"))
    assert overlay.shape == (H, W, 3)
    # The instance is tinted (no grey pixel left inside); the crowd region is hatched, light and dark.
    assert (overlay[10:20, 10:30] != GREY).any(axis=2).all()
    hatch = overlay[58:66, 60:80].reshape(-1, 3)
    assert (hatch > GREY + 50).all(axis=1).any() and (hatch < GREY - 30).all(axis=1).any()
    assert (overlay[100:110, 100:108] == GREY).all()  # untouched background
    assert not (out / "overlays" / "c.png").exists()  # --max 2


def test_the_class_table_counts_the_images_each_class_is_in(tmp_path, capsys):
    """Before: instances and crowd regions only, so a class of 3 objects in 1 image read as well spread as
    one of 3 objects in 3; now an images column (images holding an instance of the class, crowd regions
    aside), last, in the text and in summary.json's per_class."""
    json_path, images = _dataset(tmp_path)
    data = json.loads(json_path.read_text())
    data["annotations"].append({"id": 6, "image_id": 2, "category_id": 9, "bbox": [0, 0, 10, 10],
                                "segmentation": _rect(0, 0, 10, 10), "area": 100})  # dog's second in b.png
    json_path.write_text(json.dumps(data))
    out = tmp_path / "show"
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
                 "--max", "0"]) == 0
    rows = capsys.readouterr().out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    # cat: one instance and a crowd region, both in a.png; dog: one in a.png, two in b.png
    assert summary["per_class"] == {"cat": {"instances": 1, "crowd": 1, "images": 1},
                                    "dog": {"instances": 3, "crowd": 0, "images": 2}}
    header = rows.index("  class  instances  crowd  images")  # rows in label order: category 5, then 9
    assert rows[header + 1:header + 3] == ["  cat            1      1       1",
                                          "  dog            3      0       2"]


def test_class_names_empty_or_with_a_newline_keep_the_table_one_row_each(tmp_path, capsys):
    json_path, images = _dataset(tmp_path)
    data = json.loads(json_path.read_text())
    data["categories"][0]["name"], data["categories"][1]["name"] = "two\nlines", ""
    json_path.write_text(json.dumps(data))
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output",
                 str(tmp_path / "show"), "--max", "1"]) == 0
    rows = capsys.readouterr().out.splitlines()
    empty = f"  (id {data['categories'][1]['id']})  "  # an empty name is told apart, as predict does
    assert any(r.startswith("  'two\\nlines'  ") for r in rows) and any(r.startswith(empty) for r in rows)
    assert not any(r.startswith("lines") for r in rows)


def test_people_of_a_keypoint_file_without_segmentation_are_counted(tmp_path, capsys):
    """person_keypoints-style records without 'segmentation' (keypoint training takes them, the box
    standing in) were all skipped as 'lacks segmentation': 0 instances."""
    json_path, images = _dataset(tmp_path)
    data = json.loads(json_path.read_text())
    data["categories"][0]["keypoints"] = ["head", "tail"]
    for ann in data["annotations"]:
        ann.pop("segmentation")
        x, y, w, h = ann["bbox"]
        ann["keypoints"] = [x + 1, y + 1, 2, x + w - 1, y + h - 1, 2]
    json_path.write_text(json.dumps(data))
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output",
                 str(tmp_path / "show"), "--max", "1"]) == 0
    summary = json.loads((tmp_path / "show" / "summary.json").read_text())
    assert "missing_field" not in summary["skipped"] and summary["instances"] == 3 and summary["crowd"] == 1


def test_dataset_commands_share_the_skipped_line_and_the_class_name_display():
    from maskrcnn.commands import data_report, merge_data, show_data, split_data

    assert data_report.skipped_line({"z_reason": 2, "bad_bbox": 1}) == "skipped: 1 bad_bbox, 2 z_reason"
    assert data_report.skipped_line({}) == "skipped: none"
    shown = [data_report.shown_name(n) for n in ("cat", "", "a\nb", "t\t")]
    assert shown == ["cat", "''", "'a\\nb'", "'t\\t'"]
    assert split_data.skipped_line is merge_data.skipped_line is show_data.skipped_line
    assert split_data.shown_name is show_data.shown_name is data_report.shown_name


def test_an_image_undecodable_behind_a_good_header_is_counted_once_and_its_slot_refilled(tmp_path, capsys):
    """A truncated JPEG passes the header check and fails while drawing: it is named once in problems
    (the count was 1 higher than the names), its objects leave the totals, the next image takes its
    overlay slot (--max 2 wrote 1), and no "using another image" (training's wording) is printed."""
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "a_cut.jpg")
    whole = (images / "a_cut.jpg").read_bytes()
    (images / "a_cut.jpg").write_bytes(whole[: len(whole) // 2])
    for name in ("b.png", "new\nline.png"):
        Image.fromarray(pixels).save(images / name)
    records = [{"id": i, "file_name": n, "width": 64, "height": 64}
               for i, n in enumerate(["a_cut.jpg", "b.png", "new\nline.png"], 1)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10],
             "segmentation": _rect(0, 0, 10, 10)} for i in (1, 2, 3)]
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps({"images": records, "annotations": anns,
                                     "categories": [{"id": 1, "name": "cat"}]}))
    out = tmp_path / "show"
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
                 "--max", "2"]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == {"unreadable_image": 1, "annotation_of_skipped_image": 1}  # a_cut's object
    assert len(summary["problems"]) == 1 and "a_cut.jpg: cannot decode image" in summary["problems"][0]
    assert (summary["images"], summary["instances"]) == (2, 2)  # the undecodable image's object left out
    assert summary["overlay_images"] == {"b.png": "b.png", "new_line.png": "new\nline.png"}
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["b.png", "new_line.png", "written.json"]
    assert "using another image" not in captured.out + captured.err
    assert "2 images (0 without instances), 2 instances" in captured.out


def test_a_file_without_a_usable_image_ends_with_status_1(tmp_path, capsys):
    """Every image missing, or none listed: show-data ended 0, so `show-data && train` went on to a
    training that fails. The summary is still written; one error line names the file."""
    json_path, images = _dataset(tmp_path)
    data = json.loads(json_path.read_text())
    missing = dict(data, images=[dict(img, file_name="gone_" + img["file_name"]) for img in data["images"]])
    empty = dict(data, images=[], annotations=[])
    for name, coco in (("missing", missing), ("empty", empty)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(coco))
        out = tmp_path / f"show_{name}"
        assert main(["show-data", "--json", str(path), "--images", str(images), "--output", str(out)]) == 1
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error" in line]
        assert errors == [f"maskrcnn show-data: error: {path}: no image of it could be used (each one "
                          "skipped, see above, or none listed): nothing to show or train on"], err
        assert json.loads((out / "summary.json").read_text())["images"] == 0
    # some usable images beside a skipped one: status 0, the skip counted
    out = tmp_path / "show_some"
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["skipped"]["missing_image_file"] == 1


def test_files_in_the_overlays_folder_that_show_data_did_not_write_are_left_as_they_are(tmp_path, capsys):
    """show-data drew over any file of an overlay's name in DIR/overlays: predict's overlay of the same
    image, the user's own PNG, or through a link, a file elsewhere. Only its own earlier overlays (listed
    in DIR/summary.json) are written over now; another file keeps its place and the overlay a free name."""
    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"
    (out / "overlays").mkdir(parents=True)
    (out / "overlays" / "a.png").write_bytes(b"predict's overlay of a.png")
    (tmp_path / "elsewhere.png").write_bytes(b"the user's")
    (out / "overlays" / "b.png").symlink_to(tmp_path / "elsewhere.png")
    args = ["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
            "--overlay-min-size", "0", "--max", "2"]
    for _ in range(2):  # the second run writes over its own overlays, under the same names
        assert main(args) == 0
        err = capsys.readouterr().err
        assert (out / "overlays" / "a.png").read_bytes() == b"predict's overlay of a.png"
        assert (tmp_path / "elsewhere.png").read_bytes() == b"the user's"
        assert (out / "overlays" / "b.png").is_symlink()
        summary = json.loads((out / "summary.json").read_text())
        assert summary["overlay_images"] == {"a_2.png": "a.png", "b_2.png": "b.png"}
        assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "a_2.png", "b.png",
                                                                        "b_2.png", "written.json"]
        assert np.asarray(Image.open(out / "overlays" / "a_2.png")).shape == (H, W, 3)
        assert f"{out / 'overlays' / 'a.png'} is not an overlay this command wrote" in err
        assert f"a.png drawn to {out / 'overlays' / 'a_2.png'}" in err


def _show_max(json_path, images, out, n, capsys) -> str:
    """show-data of the first ``n`` images, every instance drawn; its stderr."""
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
                 "--overlay-min-size", "0", "--max", str(n)]) == 0
    return capsys.readouterr().err


def test_overlays_of_every_earlier_run_stay_show_datas_own(tmp_path, capsys):
    """Ownership was the last summary.json's list: --max 3, --max 1, --max 3 took b.png for another
    program's file and wrote b_2.png. overlays/written.json lists the overlays of the runs; a run
    killed before its summary.json leaves written.partial.jsonl, read by the next run."""
    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"

    def show(n):
        return _show_max(json_path, images, out, n, capsys)

    for n in (3, 1, 3):
        err = show(n)
        assert "is not an overlay this command wrote" not in err
        assert len(list((out / "overlays").glob("*.png"))) == n
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png", "c.png", "written.json"]
    assert json.loads((out / "overlays" / "written.json").read_text()) == {"files": ["a.png", "b.png",
                                                                                     "c.png"]}

    # a run killed before summary.json (and written.json): its partial list owns what it wrote
    (out / "overlays" / "written.json").unlink()
    (out / "summary.json").write_text(json.dumps({"overlays": ["a.png"]}))
    (out / "overlays" / "written.partial.jsonl").write_text('["b.png"]\n["c.png"]\n["c.p')
    err = show(3)
    assert "is not an overlay this command wrote" not in err
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png", "c.png", "written.json"]

    # killed while drawing: _draw lists each overlay before writing it
    import maskrcnn.commands.show_data as show_data

    out = tmp_path / "show2"  # a fresh folder: the killed run is its first
    assert not hasattr(show_data, "atomic_write_bytes")  # imported inside _draw: patched in io_utils
    import maskrcnn.io_utils as io_utils

    calls = []
    original = io_utils.atomic_write_bytes

    def killed(path, data, **options):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        original(path, data, **options)

    io_utils.atomic_write_bytes = killed
    try:
        try:
            main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
                  "--overlay-min-size", "0", "--max", "3"])
        except (KeyboardInterrupt, SystemExit):
            pass
    finally:
        io_utils.atomic_write_bytes = original
    capsys.readouterr()
    assert not (out / "summary.json").exists() and len(calls) >= 2
    assert json.loads((out / "overlays" / "written.json").read_text())["files"] == ["a.png", "b.png"]
    assert not (out / "overlays" / "written.partial.jsonl").exists()
    err = show(3)
    assert "is not an overlay this command wrote" not in err
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png", "c.png", "written.json"]


def test_a_rerun_that_draws_fewer_images_removes_the_earlier_overlays_it_does_not_draw(tmp_path, capsys):
    """A second run with a smaller --max left the first run's overlays of the images it no longer drew,
    read as this run's. Now they go: only regular .png files inside overlays/ that written.json names,
    never the user's own file, a link named there or a path leading out of the folder."""
    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"

    def show(n):
        return _show_max(json_path, images, out, n, capsys)

    show(3)
    folder = out / "overlays"
    assert sorted(p.name for p in folder.glob("*.png")) == ["a.png", "b.png", "c.png"]
    (folder / "mine.png").write_bytes(b"the user's own")  # not listed
    (tmp_path / "outside.png").write_bytes(b"elsewhere")
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    listed = json.loads((folder / "written.json").read_text())["files"]
    (folder / "written.json").write_text(json.dumps({"files": [*listed, "link.png", "../outside.png"]}))
    err = show(1)
    assert f"show-data: removed 2 overlay(s) of the earlier runs' images not drawn now from {folder}/" in err
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "link.png", "mine.png", "written.json"]
    assert (folder / "link.png").is_symlink() and (tmp_path / "outside.png").read_bytes() == b"elsewhere"
    assert (folder / "mine.png").read_bytes() == b"the user's own"
    assert json.loads((folder / "written.json").read_text())["files"] == ["a.png"]
    assert json.loads((out / "summary.json").read_text())["overlays"] == ["a.png"]
    assert "removed" not in show(1)  # nothing more to remove


def test_a_rerun_that_draws_none_keeps_the_earlier_overlays(tmp_path, capsys):
    """A run that drew none (--max 0, or one refused with a wrong --images: no image found, status 1) took
    this run's empty list as the whole and removed every earlier overlay. It removes none now, and keeps
    them listed for the next run."""
    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"
    folder = out / "overlays"
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
                 "--overlay-min-size", "0"]) == 0
    before = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    assert sorted(before) == ["a.png", "b.png", "c.png"]
    capsys.readouterr()
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    for extra in (["--images", str(images), "--max", "0"], ["--images", str(wrong)]):
        code = main(["show-data", "--json", str(json_path), "--output", str(out), "--overlay-min-size", "0",
                     *extra])
        assert code == (0 if "--max" in extra else 1)
        assert "removed" not in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in folder.glob("*.png")} == before
        assert json.loads((folder / "written.json").read_text())["files"] == ["a.png", "b.png", "c.png"]
    # still show-data's own: the next run that draws one writes over them and removes the others
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
                 "--overlay-min-size", "0", "--max", "1"]) == 0
    assert "is not an overlay this command wrote" not in capsys.readouterr().err
    assert sorted(p.name for p in folder.glob("*.png")) == ["a.png"]


def test_show_data_reads_one_file_under_two_ids_once_with_both_records_objects(tmp_path, capsys, recwarn):
    """rev_d1 5: a file named by image ids 1 and 2 was drawn twice, each overlay showing only its own
    record's objects (the other's as background). Now one picture with the union, said in one warning."""
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / "a.png")
    data = {"images": [{"id": i, "file_name": "a.png", "height": 40, "width": 60} for i in (1, 2)],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 5, 16, 10]},
                            {"id": 20, "image_id": 2, "category_id": 1, "bbox": [30, 20, 10, 10]}]}
    (tmp_path / "d.json").write_text(json.dumps(data))
    assert main(["show-data", "--json", str(tmp_path / "d.json"), "--images", str(tmp_path), "--output",
                 str(tmp_path / "look")]) == 0
    captured = capsys.readouterr()
    assert "d.json: 1 images (0 without instances), 2 instances" in captured.out + captured.err
    said = [str(w.message) for w in recwarn]
    assert any("a.png: image ids 1, 2): each file read once, as its first record" in m for m in said), said
    assert sorted(p.name for p in (tmp_path / "look" / "overlays").glob("*.png")) == ["a.png"]


def _interrupted_at_write(json_path, images, out, at, capsys, stop=None):
    """show-data --max 3 into ``out`` with ``stop(path)`` raised at its ``at``-th overlay write (Ctrl-C
    by default): (status, stderr)."""
    import maskrcnn.io_utils as io_utils

    calls, original = [], io_utils.atomic_write_bytes

    def interrupted(path, data, **options):
        calls.append(path)
        if len(calls) == at:
            raise KeyboardInterrupt if stop is None else stop(path)
        original(path, data, **options)

    io_utils.atomic_write_bytes = interrupted
    try:
        code = main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out),
                     "--overlay-min-size", "0", "--max", "3"])
    finally:
        io_utils.atomic_write_bytes = original
    return code, capsys.readouterr().err


def test_ctrl_c_says_what_was_written_and_leaves_no_earlier_summary(tmp_path, capsys):
    """Ctrl-C over an earlier run's --output left that run's summary.json (of another file, perhaps) beside
    this run's overlays, and said only "interrupted". Stopped after its first overlay: the stale summary is
    removed and the line says what is there; stopped before it: nothing changed, and said so."""
    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"
    _show_max(json_path, images, out, 3, capsys)
    summary = (out / "summary.json").read_bytes()

    code, err = _interrupted_at_write(json_path, images, out, 1, capsys)  # before the first overlay
    assert code == 130
    assert f"interrupted: after 0 of 3 images; nothing written ({out} as it was)" in err
    assert (out / "summary.json").read_bytes() == summary

    code, err = _interrupted_at_write(json_path, images, out, 2, capsys)  # after one overlay
    assert code == 130
    assert f"interrupted: after 1 of 3 images; overlays in {out / 'overlays'}/; no summary written" in err
    assert not (out / "summary.json").exists()
    # c.png, an earlier overlay not drawn now, removed; b.png (stopped while being redrawn) still listed
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["a.png", "b.png"]


def test_sigterm_stops_as_ctrl_c_does(tmp_path, capsys):
    """SIGTERM (timeout, kill) took Python's default action: the process died at once, rc -15, nothing said,
    the earlier run's summary.json left beside this run's overlays. Now it stops as Ctrl-C does: the stale
    summary removed, the earlier overlays not drawn now removed, the stop line, status 143."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"
    _show_max(json_path, images, out, 3, capsys)
    # a child that sends itself SIGTERM at its second overlay write (the first overlay done)
    script = (
        "import os, signal, sys\n"
        "import maskrcnn.io_utils as io_utils\n"
        "from maskrcnn.cli import main\n"
        "original, calls = io_utils.atomic_write_bytes, []\n"
        "def write(path, data, **options):\n"
        "    calls.append(path)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    original(path, data, **options)\n"
        "io_utils.atomic_write_bytes = write\n"
        "sys.exit(main(sys.argv[1:]))\n")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script, "show-data", "--json", str(json_path), "--images",
                           str(images), "--output", str(out), "--overlay-min-size", "0", "--max", "3"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, proc.stderr)
    assert (f"stopped by SIGTERM: after 1 of 3 images; overlays in {out / 'overlays'}/; no summary written"
            in proc.stderr)
    assert not (out / "summary.json").exists()
    assert sorted(p.name for p in (out / "overlays").glob("*.png")) == ["a.png", "b.png"]


def test_an_error_after_the_first_overlay_says_the_earlier_summary_was_removed(tmp_path, capsys):
    """A run ended by an error (a full disk) after its first overlay removed the earlier summary.json without
    a word; the removal is now said beside the error line."""
    import errno

    json_path, images = _dataset(tmp_path)
    out = tmp_path / "show"
    _show_max(json_path, images, out, 3, capsys)
    code, err = _interrupted_at_write(json_path, images, out, 2, capsys,
                                      stop=lambda path: OSError(errno.ENOSPC, "No space left on device",
                                                                str(path)))
    assert code == 1
    assert not (out / "summary.json").exists()
    assert f"show-data: removed the earlier {out / 'summary.json'}" in err
    assert "no space left on device" in err.lower()
