"""``maskrcnn predict`` end to end on a folder of awkward files, with a tiny random-weight checkpoint."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from maskrcnn.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    names = ["__background__", "cat", "dog"]
    state = model.state_dict()
    save_checkpoint(path, model_state=state, config=cfg, class_names=names, label_to_category_id={1: 5, 2: 9})
    return path


def _make_inputs(folder):
    rng = np.random.default_rng(0)
    sub = folder / "sub"
    sub.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (60, 40), dtype=np.uint8)).save(folder / "gray.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 45, 4), dtype=np.uint8), "RGBA").save(sub / "alpha.png")
    Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16)).save(sub / "deep.png")  # I;16
    exif = Image.Exif()
    exif[0x0112] = (
        6  # orientation: rotate 90 degrees clockwise on display -> 80 wide, 30 high becomes 30 x 80
    )
    Image.fromarray(rng.integers(0, 255, (30, 80, 3), dtype=np.uint8)).save(folder / "rotated.jpg", exif=exif)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.txt").write_text("not an image; ignored by extension")
    # expected original sizes (H, W) after EXIF orientation
    return {"rgb.png": (50, 70), "gray.jpg": (60, 40), "alpha.png": (30, 45), "deep.png": (40, 40),
            "rotated.jpg": (80, 30)}  # fmt: skip


def test_predict_folder_end_to_end(checkpoint, tmp_path, capsys):
    sizes = _make_inputs(tmp_path / "in")
    # found in the folder and not predicted: each named with its reason, and counted (were dropped silently)
    (tmp_path / "in" / "sub" / "same.png").symlink_to(tmp_path / "in" / "sub" / "alpha.png")
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "in"), "--output", str(out),
               "--device", "cpu", "--batch-size", "2", "--score-thresh", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "corrupt.jpg" in err and "skipped" in err
    # notes.txt, counted by extension, is left out too: 3, not 2
    assert "done: 5 of 6 image(s) predicted" in err  # corrupt.jpg skipped
    assert "1 skipped (1 unreadable_image), 3 left out (named or counted above)" in err
    assert (f"maskrcnn predict: left out {tmp_path / 'in' / 'gone.png'}: broken link (to "
            f"{tmp_path / 'nowhere.png'})\n") in err
    sub = tmp_path / "in" / "sub"
    assert f"maskrcnn predict: left out {sub / 'same.png'}: same file as {sub / 'alpha.png'}\n" in err
    results = json.loads((out / "predictions.json").read_text())
    assert results, "score_thresh 0 with random weights should give detections"
    by_file = {}
    for r in results:
        by_file.setdefault(r["file_name"].replace("\\", "/").rsplit("/", 1)[-1], []).append(r)
    assert set(by_file) == set(sizes)
    from maskrcnn.data.mask_codec import annotation_to_mask

    for name, entries in by_file.items():
        H, W = sizes[name]
        assert len({e["image_id"] for e in entries}) == 1
        for e in entries:
            assert e["category_id"] in (5, 9)  # the checkpoint's label -> category id map
            assert e["category_name"] == {5: "cat", 9: "dog"}[e["category_id"]]  # its class names
            x, y, w, h = e["bbox"]
            assert -0.01 <= x and x + w <= W + 0.01 and -0.01 <= y and y + h <= H + 0.01
            assert e["segmentation"]["size"] == [H, W] and isinstance(e["segmentation"]["counts"], str)
            assert annotation_to_mask(e["segmentation"], H, W).shape == (H, W)  # a valid compressed RLE
            assert 0.0 <= e["score"] <= 1.0
    pngs = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))
    assert pngs == ["gray.png", "rgb.png", "rotated.png", "sub/alpha.png", "sub/deep.png"]  # as the images
    with Image.open(out / "overlays" / "rotated.png") as im:
        assert im.size == (30 * 7, 80 * 7) and im.mode == "RGB"  # upright, enlarged to >= 512 px (7 x 80)


def test_overlays_draw_detections_above_the_overlay_threshold_enlarged(checkpoint, tmp_path, capsys):
    """Overlays drew every detection down to the model's own threshold (0.05 for published checkpoints),
    at the image's own size: now those scoring >= 0.5 (--overlay-score-thresh), enlarged to 512 px, while
    predictions.json keeps every detection."""
    from maskrcnn.visualize import draw_instances

    img = tmp_path / "in" / "a.png"
    img.parent.mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(img)
    def overlay(*flags):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        rc = main(["predict", "--weights", str(checkpoint), str(img), "--output", str(out), "--device", "cpu",
                   "--score-thresh", "0", *flags])  # fmt: skip
        assert rc == 0, capsys.readouterr().err
        return (np.asarray(Image.open(out / "overlays" / "a.png")).astype(int),
                json.loads((out / "predictions.json").read_text()))

    default, results = overlay()
    scores = sorted(r["score"] for r in results)
    assert len(scores) >= 4 and scores[-1] < 0.5  # random weights: none at 0.5, all kept in the JSON
    assert default.shape == (48 * 8, 64 * 8, 3)  # 64 px enlarged 8 times: >= 512 px
    enlarged = np.asarray(Image.open(img).resize((64 * 8, 48 * 8), Image.NEAREST)).astype(int)
    assert (default == enlarged).all()  # nothing scores 0.5: nothing drawn
    t = (scores[1] + scores[2]) / 2  # two detections below, the others above
    lowered, _ = overlay("--overlay-score-thresh", f"{t!r}")
    det = {"boxes": torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in results)]),
           "scores": torch.tensor([r["score"] for r in results]),
           "labels": torch.tensor([{5: 1, 9: 2}[r["category_id"]] for r in results]),
           "masks_rle": [r["segmentation"] for r in results]}
    names = ["__background__", "cat", "dog"]

    def drawn(thresh):
        return np.asarray(draw_instances(Image.open(img), det, names, min_size=512, score_thresh=thresh))

    assert (lowered == drawn(t)).all() and (lowered != drawn(0.0)).any()


def test_predict_threshold_and_errors(checkpoint, tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 60, 3), dtype=np.uint8)).save(img)
    rc = main(["predict", "--weights", str(checkpoint), str(img), "--output", str(tmp_path / "o"),
               "--device", "cpu", "--score-thresh", "1.01", "--no-overlays"])  # fmt: skip
    # scores are probabilities: above 1 every image would get [] without a word (p_serve2 F8)
    assert rc == 1
    assert "--score-thresh must be in [0, 1] (scores are probabilities), got 1.01" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    rc = main(
        [
            "predict",
            "--weights",
            str(checkpoint),
            str(tmp_path / "missing.png"),
            "--output",
            str(tmp_path / "p"),
        ]
    )
    assert rc == 1 and "missing.png" in capsys.readouterr().err
    rc = main(["predict", "--weights", str(tmp_path / "nope.pth"), str(img), "--output", str(tmp_path / "q")])
    assert rc == 1 and "nope.pth" in capsys.readouterr().err


@pytest.mark.parametrize("failing", ["commonpath", "relpath"])
def test_overlays_of_images_on_two_drives_are_named_by_the_image(checkpoint, tmp_path, capsys, monkeypatch,
                                                                   failing):
    """On Windows os.path.commonpath and os.path.relpath raise ValueError for paths on two drives
    (C:\\a.jpg D:\\b.jpg): a plain predict over them failed. Their overlays are now named by the images'
    names, made unique where they clash (as if two folders on two drives held x.png)."""
    import os

    for folder, seed in (("a", 4), ("b", 5)):
        (tmp_path / "in" / folder).mkdir(parents=True)
        pixels = np.random.default_rng(seed).integers(0, 255, (32, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / folder / "x.png")

    def other_drive(*args, **kwargs):
        raise ValueError("paths don't have the same drive")

    monkeypatch.setattr(os.path, failing, other_drive)
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "in" / "a" / "x.png"),
               str(tmp_path / "in" / "b" / "x.png"), "--output", str(out), "--device", "cpu",
               "--score-thresh", "0"])  # fmt: skip
    monkeypatch.undo()
    assert rc == 0, capsys.readouterr().err
    pngs = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))
    assert pngs == ["x.png", "x.png.png"]
    overlay_of = {r["file_name"]: r["overlay"] for r in json.loads((out / "predictions.json").read_text())}
    assert overlay_of == {str(tmp_path / "in" / "a" / "x.png"): "overlays/x.png",
                          str(tmp_path / "in" / "b" / "x.png"): "overlays/x.png.png"}  # fmt: skip


def test_overlays_of_images_sharing_a_name_do_not_depend_on_order_or_on_the_other_input(checkpoint, tmp_path,
                                                                                        capsys):
    """``predict y.jpg y.png`` wrote y.jpg's overlay to y.png and y.png's to y.png.png, the given order
    deciding; a re-run with y.jpg alone then put it in y.png. Each is named by its whole name, in any
    order and also alone (y.png lies beside it), as --export masks names the mask files."""
    pixels = np.random.default_rng(3).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(pixels).save(tmp_path / "in" / "y.jpg")
    Image.fromarray(pixels).save(tmp_path / "in" / "y.png")
    jpg, png = str(tmp_path / "in" / "y.jpg"), str(tmp_path / "in" / "y.png")

    def overlays(out, *inputs, export=()):
        rc = main(["predict", "--weights", str(checkpoint), *inputs, "--output", str(out), "--device", "cpu",
                   "--overlay-min-size", "0", *export])  # fmt: skip
        assert rc == 0, capsys.readouterr().err
        return {r["file_name"]: r["overlay"] for r in json.loads((out / "predictions.json").read_text())}

    expected = {jpg: "overlays/y.jpg.png", png: "overlays/y.png.png"}
    assert overlays(tmp_path / "a", jpg, png, export=["--export", "masks"]) == expected
    assert sorted(p.name for p in (tmp_path / "a" / "masks").glob("y.*_classes.png")) == \
        ["y.jpg_classes.png", "y.png_classes.png"]  # the mask export's whole names: the same rule
    assert overlays(tmp_path / "b", png, jpg) == expected
    assert overlays(tmp_path / "a", jpg) == {jpg: "overlays/y.jpg.png"}  # re-run with one: the same name
    assert [p.name for p in (tmp_path / "a" / "overlays").glob("*.png")] == ["y.jpg.png"]  # y.png's removed
    assert overlays(tmp_path / "c", jpg, export=["--export", "masks"]) == {jpg: "overlays/y.jpg.png"}
    assert sorted(p.name for p in (tmp_path / "c" / "masks").glob("*.png")) == \
        ["y.jpg.png", "y.jpg_classes.png"]


def test_results_writer_keeps_every_image_when_a_file_name_is_not_utf8(tmp_path):
    """One image named with bytes that are not UTF-8 (``os.fsdecode`` gives a lone surrogate) made the
    UTF-8 write fail and lost the whole predictions.json. Written as ASCII (for COCO readers, which open
    it with the locale's encoding), the escapes read back as the same strings."""
    import os

    from maskrcnn.commands.results_writer import ResultsWriter

    odd = str(tmp_path / os.fsdecode(b"caf\xe9.png"))
    records = [{"image_id": 1, "file_name": odd, "category_id": 5, "category_name": "Ölfleck", "score": 0.9},
               {"image_id": 2, "file_name": "b.png", "category_id": 9, "category_name": "dog", "score": 0.8}]
    writer = ResultsWriter(tmp_path)
    writer.add(records[:1])
    writer.add(records[1:])
    assert [json.loads(line) for line in writer.partial.read_text(encoding="utf-8").splitlines()] == records
    writer.finish()
    raw = (tmp_path / "predictions.json").read_bytes()
    assert raw.isascii() and b"\\udce9" in raw and b"\\u00d6lfleck" in raw
    assert json.loads(raw) == records and not writer.partial.exists()


def test_a_symlink_loop_or_an_imageless_folder_given_is_named_and_the_rest_predicted(checkpoint, tmp_path,
                                                                                       capsys):
    """``predict base.png a_loop.jpg`` (a link to a link back to it) died on "Symlink loop from ..." and
    predicted nothing; a folder named "dir.jpg" with no image in it was dropped without a word (alone:
    "no image or video files found" without its name)."""
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "base.png")
    (tmp_path / "a_loop.jpg").symlink_to("b_loop.jpg")
    (tmp_path / "b_loop.jpg").symlink_to("a_loop.jpg")
    (tmp_path / "dir.jpg").mkdir()
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "base.png"),
               str(tmp_path / "a_loop.jpg"), str(tmp_path / "dir.jpg"), "--output", str(out),
               "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"maskrcnn predict: left out {tmp_path / 'a_loop.jpg'}: a symlink loop\n" in err
    assert (f"maskrcnn predict: left out {tmp_path / 'dir.jpg'}: a folder with no image or video file in it "
            "(a folder given is searched for images, whatever its name)\n") in err
    assert "2 left out (named above)" in err
    assert (out / "overlays" / "base.png").is_file()  # the other input was predicted


def test_the_large_image_warning_comes_before_the_image_is_predicted(checkpoint, tmp_path, capsys,
                                                                      monkeypatch):
    import sys

    import maskrcnn.commands.predict as predict_command
    import maskrcnn.data.images as images

    monkeypatch.setattr(predict_command, "LARGE_IMAGE_MP", 0.004)  # 4000 px stands for 50 MP
    read = images.read_image

    def read_said(path, **kwargs):  # when the decode (the memory's cost) begins
        print(f"decoding {path.name}", file=sys.stderr)
        return read(path, **kwargs)

    monkeypatch.setattr(images, "read_image", read_said)
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "in" / "a_small.png")
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "in" / "b_large.png")  # 4800 px
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "in"), "--output", str(tmp_path / "o"),
               "--device", "cpu", "--batch-size", "1", "--no-overlays"])
    err = capsys.readouterr().err
    assert rc == 0, err
    warning = err.index("warning: ")
    assert err.count("b_large.png is 80x60 = 0 MP") == 1
    assert err.index("decoding a_small.png") < warning < err.index("decoding b_large.png")  # before its cost
