"""Photos turned 180 degrees or mirrored (EXIF 2, 3, 4) keep their size, so their record cannot tell
whether the annotating tool showed them turned or as stored: the same file's quarter-turned photos are the
evidence (``CocoDataset(exif_frame=...)``, ``data.exif_frame``)."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.coco import CocoDataset


def _photo(path, orientation, size):
    """A grey photo of stored ``size`` (W, H) with a red square at x 2..12, y 2..12 of its stored pixels
    (a corner: any turn or mirror moves it), saved with EXIF ``orientation``."""
    rgb = np.full((size[1], size[0], 3), 128, np.uint8)
    rgb[2:12, 2:12] = (230, 40, 40)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif)


def _set(tmp_path, photos, **kwargs):
    """COCO file of ``photos`` [(name, orientation) or (name, orientation, (W, H))], each 40 wide x 30
    high as stored unless given, its record giving the stored size and its square annotated on the stored
    pixels (a tool that ignored EXIF)."""
    images, anns = [], []
    for i, (name, orientation, *size) in enumerate(photos, 1):
        width, height = size[0] if size else (40, 30)
        _photo(tmp_path / name, orientation, (width, height))
        images.append({"id": i, "file_name": name, "width": width, "height": height})
        anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 100.0,
                     "bbox": [2.0, 2.0, 10.0, 10.0], "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]})
    (tmp_path / "d.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                 "categories": [{"id": 1, "name": "square"}]}))
    return CocoDataset(json_path=tmp_path / "d.json", image_dir=tmp_path, **kwargs)


def _on_red(ds, index):
    image, target = ds[index]
    red = image[:, target["masks"][0].bool()].mean(dim=1) * 255
    return bool(red[0] > 200 and red[2] < 80)


def test_a_half_turned_photo_is_read_as_stored_when_the_files_quarter_turned_photos_say_so(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _set(tmp_path, [("q.png", 6), ("h3.png", 3), ("h2.png", 2), ("h4.png", 4)])
        assert all(_on_red(ds, i) for i in range(4))  # the 180-degree/mirrored ones too, not only q.png
    said = [str(w.message) for w in caught]
    assert any("3 photos turned 180 degrees or mirrored (EXIF orientation 2, 3 or 4), or square and turned "
               "by a quarter (5 to 8) read without their EXIF orientation too" in m
               and "1 quarter-turned photo(s) give their stored size" in m
               for m in said), said
    assert any("read without its EXIF rotation" in m and "and so are its photos turned 180" in m
               for m in said), said
    # the evaluation asks the same (no decoded orientation at hand: the header says it)
    assert ds.stored_orientation(1, (30, 40)) == 3


def test_without_evidence_a_half_turned_photo_is_read_turned_with_a_note_naming_the_setting(tmp_path):
    with pytest.warns(UserWarning, match=r"d.json: 1 photo turned 180 degrees or mirrored .* read turned.*"
                                         r"no quarter-turned photo.*data.exif_frame"):
        ds = _set(tmp_path, [("h3.png", 3)])
        assert not _on_red(ds, 0)  # read as browsers show it: the stored-pixel annotation is elsewhere
    forced = _set(tmp_path, [("h3.png", 3)], exif_frame="stored")
    assert _on_red(forced, 0)
    with pytest.raises(ValueError, match=r"exif_frame \(data.exif_frame\) must be one of auto, turned, "
                                         r"stored, got 'upright'"):
        _set(tmp_path, [("h3.png", 3)], exif_frame="upright")


def test_show_datas_header_pass_settles_the_frame_without_reading_headers_again(tmp_path, monkeypatch):
    ds = _set(tmp_path, [("q.png", 6), ("h3.png", 3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.check_image_files()
    import maskrcnn.data.coco as coco

    monkeypatch.setattr(coco, "image_header", lambda path: pytest.fail("header read again"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ds._half_turn_frame() == "stored"


def test_quarter_turned_photos_sized_turned_read_half_turned_ones_turned_without_a_note(tmp_path):
    _photo(tmp_path / "q.png", 6, (40, 30))  # stored 40x30, upright 30 wide x 40 high: the record's
    _photo(tmp_path / "h3.png", 3, (40, 30))
    data = {"images": [{"id": 1, "file_name": "q.png", "width": 30, "height": 40},
                       {"id": 2, "file_name": "h3.png", "width": 40, "height": 30}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 4.0,
                             "bbox": [1.0, 1.0, 2.0, 2.0]} for i in (1, 2)],
            "categories": [{"id": 1, "name": "square"}]}
    (tmp_path / "d.json").write_text(json.dumps(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(json_path=tmp_path / "d.json", image_dir=tmp_path)
        assert ds.stored_orientation(1, (30, 40)) is None  # read turned, as the evidence says
    assert not [str(w.message) for w in caught if "180 degrees" in str(w.message)]


def test_the_evaluation_predicts_a_half_turned_photo_on_the_pixels_training_reads(tmp_path):
    from maskrcnn.data.images import read_image
    from maskrcnn.engine.inference import _on_annotated_pixels

    class Stub:  # records the pixels it is asked to predict on
        def __init__(self):
            self.seen = []

        def predict_tensors(self, images):
            self.seen.extend(images)
            return [{"again": True}]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _set(tmp_path, [("q.png", 6), ("h3.png", 3)])
        turned = read_image(tmp_path / "h3.png")  # as predict reads it
        stub = Stub()
        assert _on_annotated_pixels(stub, ds, 1, turned, {"first": True}) == {"again": True}
        assert torch.equal(stub.seen[0], ds[1][0])  # the stored pixels, as training reads them
        assert ds.unturned_ids() == {2}  # those read so far
        ds[0]
        assert ds.unturned_ids() == {1, 2}  # eval --analysis draws both so


def test_square_quarter_turned_photos_follow_the_files_evidence_as_half_turned_ones_do(tmp_path):
    # a square photo's size is the same turned or not: only the file's evidence (or exif_frame) can tell
    photos = [("q.png", 6), ("sq6.png", 6, (32, 32)), ("sq8.png", 8, (32, 32)), ("h3.png", 3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _set(tmp_path, photos)  # q.png gives its stored size: the tool showed the stored pixels
        assert [_on_red(ds, i) for i in range(4)] == [True] * 4
    assert any("3 photos turned 180 degrees or mirrored" in str(w.message) for w in caught)
    assert ds.stored_orientation(1, (32, 32)) == 6  # the evaluation's question, from the header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forced = _set(tmp_path, photos[1:3], exif_frame="stored")  # squares alone: no evidence at all
        assert [_on_red(forced, i) for i in range(2)] == [True, True]
        turned = _set(tmp_path, photos[1:3], exif_frame="turned")
        assert [_on_red(turned, i) for i in range(2)] == [False, False]


def _no_header_reads(monkeypatch):
    import maskrcnn.data.coco as coco

    def fail(path):
        raise AssertionError(f"header of {path} read again")

    monkeypatch.setattr(coco, "image_header", fail)


def test_the_frame_settled_once_travels_to_dataloader_workers_and_the_evaluation(tmp_path, monkeypatch):
    ds = _set(tmp_path, [("q.png", 6), ("h3.png", 3), ("sq8.png", 8, (32, 32))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        note = ds.settle_exif_frame()  # in the main process: returned, for the caller to say once
    assert not caught and "2 photos turned 180 degrees" in note and "read without their EXIF" in note
    assert ds.settle_exif_frame() == note
    _no_header_reads(monkeypatch)  # forked workers inherit the patch: a header pass there fails the load
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=list)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(list(loader)) == 3
        # the evaluation asks without a decoded orientation: the settling pass's headers answer
        assert [ds.stored_orientation(i, s) for i, s in ((1, (30, 40)), (2, (32, 32)))] == [3, 8]
    assert not [w for w in caught if "EXIF" in str(w.message)]


def test_training_settles_the_frame_before_its_dataloader_starts(tmp_path, monkeypatch):
    from maskrcnn.config import load_config
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine import training

    _set(tmp_path, [("q.png", 6), ("h3.png", 3)])
    settled = []

    class _Stop(Exception):
        pass

    class Dataset(CocoDataset):
        def settle_exif_frame(self, **kwargs):
            settled.append(self._half_turn)  # not settled before: no worker has had the dataset yet
            raise _Stop

    monkeypatch.setattr("maskrcnn.data.coco.CocoDataset", Dataset)
    cfg = load_config("demo", {"model.backbone": "resnet18", "data.num_workers": 0})
    with pytest.raises(_Stop):
        training.build_training(cfg, train_json=tmp_path / "d.json", train_images=tmp_path,
                                output=tmp_path / "run")
    assert settled == [None]


def test_an_upright_photo_never_starts_the_files_header_pass(tmp_path, monkeypatch):
    # the file's evidence is asked only for a photo whose size cannot tell: reading an upright photo of an
    # unsettled "auto" file read every header of the file (600 for the demo's first training image)
    ds = _set(tmp_path, [("up.png", 1), ("q.png", 6), ("h3.png", 3)])
    _no_header_reads(monkeypatch)
    ds[0]  # decoded with its orientation: no header is read
    assert ds.stored_orientation(0, (30, 40), orientation=1) is None
    assert ds._half_turn is None  # not settled


def test_a_validation_file_whose_photos_do_not_tell_reads_them_as_the_training_files_show(tmp_path,
                                                                                         monkeypatch):
    """The training file's quarter-turned photos give their stored size (a tool that ignored EXIF); the
    validation file, of the same tool, has only a photo turned 180 degrees: it was read turned (the
    default without evidence), so evaluation scored the model against ground truth on other pixels."""
    import io

    from maskrcnn.config import load_config
    from maskrcnn.engine import training

    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    _set(tmp_path / "train", [("q.png", 6), ("h3.png", 3)])
    val = _set(tmp_path / "val", [("v3.png", 3)])
    with pytest.warns(UserWarning, match="no quarter-turned photo"):
        assert not _on_red(val, 0)  # alone: no evidence, read turned
    made = []

    class Dataset(CocoDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append(self)

    monkeypatch.setattr("maskrcnn.data.coco.CocoDataset", Dataset)
    log = io.StringIO()
    cfg = load_config("demo", {"data.num_workers": 0})
    training.build_training(cfg, train_json=tmp_path / "train" / "d.json", train_images=tmp_path / "train",
                            val_json=tmp_path / "val" / "d.json", val_images=tmp_path / "val",
                            output=tmp_path / "run", log_stream=log)
    val_set = next(ds for ds in made if ds.json_path.parent.name == "val")
    assert _on_red(val_set, 0)  # read as stored, as the training file's photos show
    assert val_set.stored_orientation(0, (30, 40)) == 3  # and the evaluation predicts on those pixels
    said = log.getvalue()
    assert "read without their EXIF orientation, as the quarter-turned photos of " in said
    assert "train/d.json show its tool did" in said
    assert cfg.data.exif_frame_seen == "stored"  # recorded: eval of the checkpoint reads val.json so too
    # a validation file with evidence of its own keeps it
    own = _set(tmp_path / "val", [("q2.png", 6, (40, 30)), ("v3.png", 3)])
    own.settle_exif_frame(borrowed=("turned", "elsewhere.json"))
    assert own.evidenced_exif_frame == "stored" and _on_red(own, 1)


@pytest.mark.parametrize("seen", ["stored", ""])
def test_eval_of_a_checkpoint_reads_a_file_that_does_not_tell_as_its_training_file_showed(tmp_path, capsys,
                                                                                          seen):
    """Training records what its file's photos showed (``data.exif_frame_seen``): a later ``eval`` of the
    same validation file reads its half-turned photos as training's validation did (it read them turned,
    the no-evidence default, and scored otherwise than during training)."""
    from tiny_model import TINY, build_tiny  # tests/ is on the path

    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.cli import main

    _set(tmp_path, [("v3.png", 3)])
    model, cfg = build_tiny(TINY, seed=0)
    cfg.data.exif_frame_seen = seen
    ckpt = tmp_path / "m.pth"
    save_checkpoint(ckpt, model_state=model.state_dict(), config=cfg,
                    class_names=["__background__", "square", "other"], label_to_category_id={1: 1, 2: 2})
    assert main(["eval", "--weights", str(ckpt), "--json", str(tmp_path / "d.json"),
                 "--images", str(tmp_path), "--output", str(tmp_path / "e"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    if seen:
        assert f"read without their EXIF orientation, as the quarter-turned photos of the training file of " \
               f"{ckpt} show its tool did" in err, err
    else:
        assert "read turned, as browsers and most annotation tools show them" in err, err
