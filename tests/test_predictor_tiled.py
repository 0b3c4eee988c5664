"""``Predictor(tile=...)`` and ``maskrcnn predict --tile``: a stand-in detector that finds uniformly
coloured rectangles in whatever it is shown checks tiling end to end on a large synthetic image (a small
object found only with tiles, a large one spanning tiles found once); a tiny random-weight model checks
the one-tile case bit for bit and the command line."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detections_equal import assert_identical_detections  # tests/ is on the path
from PIL import Image
from tiny_model import build_tiny, save_tiny_checkpoint, write_one_image_set

from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.data.mask_codec import masks_to_rles
from maskrcnn.engine.tiling import TileCap, TileOptions
from maskrcnn.predictor import Predictor

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")

RED, BLUE, GREEN = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)


class RectangleDetector:
    """Stands in for the model with the interface the Predictor calls for an exported one (one resized
    image (3, h, w) -> detections in its pixels): each known colour's pixels, when at least
    ``min_pixels`` of them are in view, are one detection (box, 28 x 28 mask of the pixels in the box).
    Like a real detector, it misses objects that the resize leaves too small."""

    def __init__(self, colours: dict, min_pixels: int = 36):
        self.colours = colours  # (r, g, b) -> (label, score)
        self.min_pixels = min_pixels

    def __call__(self, image: torch.Tensor) -> dict:
        boxes, scores, labels, probs = [], [], [], []
        for colour, (label, score) in self.colours.items():
            on = (image - torch.tensor(colour)[:, None, None]).abs().amax(dim=0) < 0.2  # (h, w)
            if int(on.sum()) < self.min_pixels:
                continue
            ys, xs = torch.nonzero(on, as_tuple=True)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            boxes.append([x0, y0, x1, y1])
            scores.append(score)
            labels.append(label)
            crop = on[y0:y1, x0:x1].float()[None, None]  # (1, 1, bh, bw)
            probs.append(F.interpolate(crop, size=(28, 28), mode="bilinear", align_corners=False)[0])
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels).long(),
                "mask_probs": torch.stack(probs) if probs else torch.zeros(0, 1, 28, 28)}


def _scene():
    """A 960 x 1280 grey image: a 24-pixel red square alone in one tile, a blue one in the overlap of two
    tiles (class 1 both) and a 400 x 500 green rectangle across several tiles (class 2)."""
    image = torch.full((3, 960, 1280), 0.5)
    objects = {RED: (1100, 820, 1124, 844), BLUE: (270, 100, 294, 124), GREEN: (350, 300, 850, 700)}
    for colour, (x0, y0, x1, y1) in objects.items():
        image[:, y0:y1, x0:x1] = torch.tensor(colour)[:, None, None]
    return image, objects


def _stub_predictor(**kwargs):
    cfg = apply_overrides(PRESETS["r18_fpn"](), {"model.num_classes": 3, "input.min_size_test": 160,
                                                 "input.max_size_test": 214})  # the whole image at 1/6
    model = RectangleDetector({RED: (1, 0.9), BLUE: (1, 0.8), GREEN: (2, 0.7)})
    return Predictor(model, cfg, **kwargs)


def _iou(mask, box):
    x0, y0, x1, y1 = box
    drawn = torch.zeros_like(mask)
    drawn[y0:y1, x0:x1] = True
    return float((mask & drawn).sum()) / float((mask | drawn).sum())


def _by_box(det, objects):
    """The detection nearest to each drawn object: object -> index, asserting one detection each."""
    out = {}
    for colour, box in objects.items():
        dist = (det["boxes"] - torch.tensor(box, dtype=torch.float32)).abs().amax(dim=1)
        near = torch.nonzero(dist < 10).flatten().tolist()
        assert len(near) == 1, (colour, det["boxes"])
        out[colour] = near[0]
    return out


def test_without_tiles_the_small_objects_vanish():
    image, objects = _scene()
    det = _stub_predictor()(image)[0]
    assert det["labels"].tolist() == [2]  # only the big rectangle survives the resize to 1/6


@pytest.mark.parametrize("full_image", [True, False])
def test_tiles_find_the_small_objects_and_the_large_one_once(full_image):
    image, objects = _scene()
    tile = TileOptions(size=320, overlap=0.25, full_image=full_image)  # tiles run at 1/2
    det = _stub_predictor(tile=tile, batch_size=4)(image)[0]
    assert sorted(det["labels"].tolist()) == [1, 1, 2]  # each object once, across 20 tiles
    assert det["scores"].tolist() == sorted(det["scores"].tolist(), reverse=True)
    assert det["masks"].shape == (3, 960, 1280)
    index = _by_box(det, objects)
    for colour, box in objects.items():
        assert det["labels"][index[colour]] == (2 if colour == GREEN else 1)
        assert _iou(det["masks"][index[colour]], box) > 0.85
    # the big one: from the whole image (kept as it is, at 1/6) or joined from the tiles' pieces (1/2)
    tol = 7 if full_image else 3
    torch.testing.assert_close(det["boxes"][index[GREEN]], torch.tensor(objects[GREEN], dtype=torch.float32),
                               atol=tol, rtol=0)


def test_tiled_rle_masks_equal_the_dense_ones_and_scale_runs_tiles_at_their_own_pixels():
    image, objects = _scene()
    tile = TileOptions(size=320, overlap=0.25, scale=1.0)
    dense = _stub_predictor(tile=tile)(image)[0]
    rle = _stub_predictor(tile=tile, masks="rle")(image)[0]
    assert "masks" not in rle and rle["masks_rle"] == masks_to_rles(dense["masks"])
    torch.testing.assert_close(rle["boxes"], dense["boxes"], rtol=0, atol=0)
    index = _by_box(dense, objects)
    # at the image's own pixels the small squares' boxes are exact
    assert dense["boxes"][index[RED]].tolist() == list(map(float, objects[RED]))


def test_at_most_detections_per_image_after_merging():
    image, _ = _scene()
    predictor = _stub_predictor(tile=TileOptions(size=320, overlap=0.25))
    predictor.detections_per_image = 2
    assert predictor(image)[0]["scores"].tolist() == [pytest.approx(0.9), pytest.approx(0.8)]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


@pytest.mark.parametrize("masks", ["dense", "rle"])
def test_an_image_no_larger_than_a_tile_is_predicted_exactly_as_without_tiles(tiny, masks):
    model, cfg = tiny
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 90, 120, generator=g), torch.rand(3, 128, 70, generator=g)]
    plain = Predictor(model, cfg, masks=masks)(images)
    tiled = Predictor(model, cfg, masks=masks, tile=TileOptions(size=128))(images)
    assert_identical_detections(plain, tiled)


def test_tiling_a_real_model_gives_the_usual_outputs(tiny):
    model, cfg = tiny
    image = torch.rand(3, 150, 200, generator=torch.Generator().manual_seed(2))
    det = Predictor(model, cfg, tile=64, batch_size=3)(image)[0]
    n = det["boxes"].shape[0]
    assert 0 < n <= cfg.model.roi_heads.detections_per_image
    assert det["masks"].shape == (n, 150, 200) and det["masks"].dtype == torch.bool
    assert "mask_probs" not in det
    assert (det["boxes"][:, 2] <= 200).all() and (det["boxes"][:, 3] <= 150).all()


def test_tile_arguments_are_checked(tiny):
    model, cfg = tiny
    with pytest.raises(ValueError, match="tile size must be an integer >= 32"):
        Predictor(model, cfg, tile=8)
    with pytest.raises(ValueError, match="paste_masks=False does not apply"):
        Predictor(model, cfg, tile=64, paste_masks=False)


def test_from_checkpoint_checks_the_tile_before_reading_the_file(tmp_path):
    with pytest.raises(TypeError, match="tile must be None, a tile size in pixels or a TileOptions"):
        Predictor.from_checkpoint(tmp_path / "missing.pth", device="cpu", tile="1024")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", *tiny)


def test_predict_command_tiles_as_the_python_api_does(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (100, 130, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "big.png"), "--output", str(out),
               "--device", "cpu", "--no-overlays", "--no-optimise",
               "--tile", "64", "--tile-overlap", "0.25", "--no-full-image"])
    assert rc == 0, capsys.readouterr().err
    written = json.loads((out / "predictions.json").read_text())
    predictor = Predictor.from_weights(checkpoint, device="cpu", masks="rle", optimise=False,
                                       tile=TileOptions(size=64, overlap=0.25, full_image=False))
    det = predictor([tmp_path / "big.png"])[0]
    expected = detections_to_coco_results(det, image_id=1, extra={"file_name": str(tmp_path / "big.png")},
                                          class_names=predictor.class_names)
    assert len(written) == len(expected) > 0
    assert written == json.loads(json.dumps(expected))


def test_predict_command_refuses_tile_options_without_tile(checkpoint, tmp_path, capsys):
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "a.png"), "--output",
               str(tmp_path / "out"), "--tile-overlap", "0.3"])
    assert rc == 1
    assert "maskrcnn predict: error: --tile-overlap needs --tile SIZE" in capsys.readouterr().err
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "a.png"), "--output",
               str(tmp_path / "out"), "--tile", "512", "--tile-overlap", "1.5"])
    assert rc == 1
    assert "--tile-overlap: tile overlap must be a fraction in (0, 1), got 1.5" in capsys.readouterr().err


def test_eval_command_passes_the_tile_through(checkpoint, tmp_path, capsys):
    write_one_image_set(tmp_path, 100, 130)
    rc = main(["eval", "--weights", str(checkpoint), "--json", str(tmp_path / "gt.json"), "--images",
               str(tmp_path / "images"), "--output", str(tmp_path / "eval"), "--device", "cpu",
               "--tile", "64"])
    assert rc == 0, capsys.readouterr().err
    written = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    predictor = Predictor.from_weights(checkpoint, device="cpu", tile=64, optimise=False)  # (rounding only)
    det = predictor([tmp_path / "images" / "a.png"])[0]
    assert len(written) == det["boxes"].shape[0] > 0
    assert sorted(round(r["score"], 3) for r in written) == sorted(round(float(s), 3) for s in det["scores"])


def test_predict_command_refuses_an_image_of_too_many_tiles_in_one_line(checkpoint, tmp_path, capsys):
    Image.fromarray(np.zeros((100, 130, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "big.png"), "--output",
               str(tmp_path / "out"), "--device", "cpu", "--no-overlays", "--tile", "64", "--tile-overlap",
               "0.99", "--tile-max-tiles", "100"])
    err = capsys.readouterr().err
    assert rc == 1
    assert ("big.png: not predicted: a 130x100 image cut into 64-pixel tiles "
            "overlapping by 0.99 takes 2479 tiles (67 x 37), over the limit of 100") in err
    # a refusal of the user's own limit, counted as what it is (the model never failed on it)
    assert "1 skipped (1 too_many_tiles)" in err and "prediction_failed" not in err


def test_a_tiled_image_over_detections_per_image_says_how_many_were_dropped_once():
    image, objects = _scene()
    predictor = _stub_predictor(tile=TileOptions(size=320, overlap=0.25), batch_size=4)
    predictor.detections_per_image = 2  # as model.roi_heads.detections_per_image=2 sets it
    with pytest.warns(UserWarning) as caught:
        dets = predictor([image, image])
    assert [d["boxes"].shape[0] for d in dets] == [2, 2]
    notes = [str(w.message) for w in caught if "detections_per_image" in str(w.message)]
    assert len(notes) == 1  # said for the first image only
    assert "1280x960 image kept the best 2 of 3 detections (1 dropped at model.roi_heads." \
           "detections_per_image = 2); raise it with --set model.roi_heads.detections_per_image=4" in notes[0]


def test_tile_caps_tell_every_cut_image_of_the_last_call_though_the_warning_is_said_once():
    image, _ = _scene()
    small = torch.full((3, 200, 300), 0.5)  # one tile: predicted whole, no merge to cut
    predictor = _stub_predictor(tile=TileOptions(size=320, overlap=0.25), batch_size=4)
    assert predictor.tile_caps == ()
    predictor.detections_per_image = 2
    with pytest.warns(UserWarning, match="kept the best 2 of 3"):
        predictor([image, small, image])  # windows of one image each: the whole call is told
    cut = TileCap(kept=2, found=3, height=960, width=1280)
    assert predictor.tile_caps == (cut, None, cut)
    assert predictor.predict_tensors([small]) and predictor.tile_caps == (None,)  # the last call's only
    predictor.detections_per_image = 3
    predictor.predict_tensors([image])
    assert predictor.tile_caps == (None,)  # all 3 kept
    with pytest.raises(AttributeError):
        predictor.tile_caps = ()  # read-only: the predictor's record


def test_predict_command_refuses_int8_without_calibration_before_any_tile_warning(checkpoint, tmp_path,
                                                                                 capsys):
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "a.png"), "--output",
               str(tmp_path / "out"), "--tile", "64"] + ["--int8"])  # 64 x 0.2: a 13-pixel overlap, warned
    err = capsys.readouterr().err
    assert rc == 1
    assert "maskrcnn predict: error: --int8 needs --calib-images PATH" in err and "Traceback" not in err
    assert "warning" not in err  # the refusal alone: no warning about the tiles of a run that is off
    assert not (tmp_path / "out").exists()


def test_predict_command_still_warns_of_a_thin_overlap(checkpoint, tmp_path, capsys):
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "a.png"), "--output",
               str(tmp_path / "out"), "--device", "cpu", "--no-overlays", "--tile", "64"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert err.count("warning: --tile-overlap: tiles of 64 pixels overlapping by 0.2 share only 13") == 1


def test_a_tiled_image_of_many_tiles_is_warned_once_with_the_count(monkeypatch):
    from maskrcnn.engine import tiling

    monkeypatch.setattr(tiling, "MANY_TILES", 10)  # the 960 x 1280 scene takes 20 tiles of 320 at 0.25
    image, _ = _scene()
    predictor = _stub_predictor(tile=TileOptions(size=320, overlap=0.25), batch_size=4)
    with pytest.warns(UserWarning) as caught:
        predictor([image, image])
    notes = [str(w.message) for w in caught if "forwards of the model" in str(w.message)]
    assert notes == ["a 1280x960 image cut into 320-pixel tiles overlapping by 0.25 takes 20 tiles: 20 "
                     "forwards of the model, about 20 times one image's prediction time; larger tiles "
                     "take fewer"]  # once: the second image is not said again
