"""``Predictor(tta=...)`` and ``maskrcnn predict/eval --tta`` on a tiny random-weight model: one
augmentation at the model's own size gives exactly the plain output (masks and keypoints); with flips, an
image and its mirror give mirrored detections (keypoints with left and right swapped); the command line
runs what the Python API runs; bad options are one line."""

import json

import numpy as np
import pytest
import torch
from detections_equal import assert_identical_detections  # tests/ is on the path
from PIL import Image
from tiny_model import TINY, build_tiny, save_tiny_checkpoint, write_one_image_set

from maskrcnn.cli import main
from maskrcnn.config import apply_overrides
from maskrcnn.engine.tta import TTAOptions
from maskrcnn.predictor import Predictor

# tiny forwards: extra intra-op threads only add synchronisation (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()  # min_size_test 64, max_size_test 96


@pytest.mark.parametrize("masks", ["dense", "rle"])
def test_one_augmentation_at_the_models_own_size_is_plain_prediction(tiny, masks):
    model, cfg = tiny
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 90, 120, generator=g), torch.rand(3, 128, 70, generator=g)]
    plain = Predictor(model, cfg, masks=masks)(images)
    tta = Predictor(model, cfg, masks=masks, tta=TTAOptions(min_sizes=(64,), max_size=96, flip=False))(images)
    assert_identical_detections(plain, tta)


def test_an_image_and_its_mirror_give_mirrored_detections(tiny):
    model, cfg = tiny
    # 32 x 48 resized exactly twice (64 x 96), so resizing commutes with the mirror
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(3))
    predictor = Predictor(model, cfg, tta=TTAOptions(min_sizes=(64,), max_size=96, flip=True))
    det, mirrored = predictor([image, image.flip(-1)])
    plain = Predictor(model, cfg)(image)[0]
    assert det["boxes"].shape[0] > 0
    assert not torch.equal(det["scores"], plain["scores"])  # the mirror's detections were pooled in
    assert torch.equal(det["labels"], mirrored["labels"])
    assert torch.allclose(det["scores"], mirrored["scores"])
    back = mirrored["boxes"].clone()
    back[:, 0], back[:, 2] = 48 - mirrored["boxes"][:, 2], 48 - mirrored["boxes"][:, 0]
    assert torch.allclose(det["boxes"], back, atol=1e-4)
    # (the pasted masks are not compared: a random model's probabilities sit at 0.5, where the paste's
    # integer box rounding, not mirror-symmetric, decides pixels)
    assert torch.allclose(det["mask_probs"], mirrored["mask_probs"].flip(-1), atol=1e-5)


def test_an_image_and_its_mirror_may_share_a_forward(tiny):
    model, cfg = tiny
    image = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(4))
    options = TTAOptions(min_sizes=(48, 64), max_size=96, flip=True)
    one = Predictor(model, cfg, tta=options)(image)[0]
    two = Predictor(model, cfg, tta=options, batch_size=2, score_thresh=0.0)(image)[0]
    assert one["boxes"].shape[0] > 0 and torch.equal(one["labels"], two["labels"])
    assert torch.allclose(one["boxes"], two["boxes"], atol=1e-3)
    assert torch.allclose(one["mask_probs"], two["mask_probs"], atol=1e-4)


KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
FLIP = [0, 2, 1, 4, 3]  # keypoint k of an image is keypoint FLIP[k] of its mirror image


@pytest.fixture(scope="module")
def tiny_keypoints():
    """A tiny model with masks and 5 named keypoints (a left and a right pair), random weights."""
    return build_tiny({**TINY, "model.roi_heads.keypoint_on": True, "model.roi_heads.num_keypoints": 5,
                       "model.roi_heads.keypoint_head_convs": 2, "model.roi_heads.keypoint_head_dim": 16,
                       "data.keypoint_names": KEYPOINT_NAMES}, seed=1)


def test_one_augmentation_gives_plain_keypoints_bit_for_bit(tiny_keypoints):
    model, cfg = tiny_keypoints
    g = torch.Generator().manual_seed(5)
    images = [torch.rand(3, 90, 120, generator=g), torch.rand(3, 128, 70, generator=g)]
    plain = Predictor(model, cfg)(images)
    tta = Predictor(model, cfg, tta=TTAOptions(min_sizes=(64,), max_size=96, flip=False))(images)
    assert plain[0]["keypoints"].shape[1:] == (5, 3)
    assert_identical_detections(plain, tta)  # keypoints and keypoint_scores among the keys


def test_a_mirrored_image_gives_mirrored_keypoints_with_left_and_right_swapped(tiny_keypoints):
    model, cfg = tiny_keypoints
    image = torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(6))  # resized exactly twice
    predictor = Predictor(model, cfg, tta=TTAOptions(min_sizes=(64,), max_size=96, flip=True))
    det, mirrored = predictor([image, image.flip(-1)])
    # (symmetric only when both passes count: one pass alone would not give the mirror's keypoints)
    assert det["keypoints"].shape[0] > 0 and torch.equal(det["labels"], mirrored["labels"])
    back = mirrored["keypoints"][:, FLIP].clone()  # the mirror's left eye is the image's right eye
    back[..., 0] = 47 - back[..., 0]  # keypoints are pixel indices: index x mirrors to W - 1 - x
    assert torch.allclose(det["keypoints"], back, atol=1e-3)
    assert torch.allclose(det["keypoint_scores"], mirrored["keypoint_scores"][:, FLIP], atol=1e-4)
    # without the swap the eyes and ears would not come back: the test sees the swap
    unswapped = mirrored["keypoints"].clone()
    unswapped[..., 0] = 47 - unswapped[..., 0]
    assert not torch.allclose(det["keypoints"], unswapped, atol=1e-3)


def test_keypoints_without_detections_and_a_set_without_mirror_names(tiny_keypoints):
    model, cfg = tiny_keypoints
    det = Predictor(model, cfg, score_thresh=1.0, tta=TTAOptions(min_sizes=(64,), max_size=96))(
        torch.rand(3, 32, 48))[0]
    assert det["keypoints"].shape == (0, 5, 3) and det["keypoint_scores"].shape == (0, 5)
    odd = apply_overrides(cfg, {"data.keypoint_names": ("nose", "left_eye", "eye", "ear", "tail")})
    with pytest.raises(ValueError) as e:
        Predictor(model, odd, tta=True)
    assert str(e.value).startswith("tta: keypoint names: keypoint 'left_eye' has no mirror keypoint "
                                   "'right_eye'")
    assert str(e.value).endswith("; or predict without mirrored passes (--tta-no-flip)")
    Predictor(model, odd, tta=TTAOptions(flip=False))  # no mirrored pass: no map needed


def test_tta_is_refused_with_tiles_and_onnx_models(tiny):
    model, cfg = tiny
    with pytest.raises(ValueError, match="^tta and tile do not combine: use one of them"):
        Predictor(model, cfg, tta=True, tile=64)
    with pytest.raises(ValueError, match="^tta needs the PyTorch model's stages"):
        Predictor(lambda image: {}, cfg, tta=True)
    with pytest.raises(TypeError, match="tta must be None, True or a TTAOptions, got 800"):
        Predictor(model, cfg, tta=800)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", *tiny)


def test_predict_command_runs_tta_as_the_python_api_does(checkpoint, tmp_path, capsys):
    from maskrcnn.data.coco_results import detections_to_coco_results

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "a.png"), "--output", str(out),
               "--device", "cpu", "--no-overlays", "--no-optimise", "--tta", "--tta-sizes", "48,64",
               "--tta-max-size", "96"])
    assert rc == 0, capsys.readouterr().err
    written = json.loads((out / "predictions.json").read_text())
    predictor = Predictor.from_weights(checkpoint, device="cpu", masks="rle", optimise=False,
                                       tta=TTAOptions(min_sizes=(48, 64), max_size=96, flip=True))
    det = predictor([tmp_path / "a.png"])[0]
    expected = detections_to_coco_results(det, image_id=1, extra={"file_name": str(tmp_path / "a.png")},
                                          class_names=predictor.class_names)
    assert len(written) == len(expected) > 0
    assert written == json.loads(json.dumps(expected))


@pytest.mark.parametrize("flags, message", [
    (["--tta", "--tta-sizes", ""], "--tta-sizes: tta min_sizes is empty: give at least one size"),
    (["--tta", "--tta-sizes", "400,-5"], "--tta-sizes: tta min_sizes must be integers >= 1, got -5"),
    (["--tta", "--tta-sizes", "400,big"], "--tta-sizes: expected comma-separated integers, got '400,big'"),
    (["--tta", "--tta-max-size", "0"], "--tta-max-size: tta max_size must be an integer >= 1, got 0"),
    (["--tta-no-flip"], "--tta-no-flip needs --tta"),
    (["--tta", "--tile", "64"], "--tile and --tta do not combine"),  # before any tile-overlap warning
])
def test_predict_command_refuses_bad_tta_options_in_one_line(checkpoint, tmp_path, capsys, flags, message):
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    rc = main(["predict", "--weights", str(checkpoint), str(tmp_path / "a.png"), "--output",
               str(tmp_path / "out"), "--device", "cpu"] + flags)
    assert rc == 1
    err = capsys.readouterr().err
    assert f"maskrcnn predict: error: {message}" in err and "Traceback" not in err
    assert "warning" not in err  # the refusal alone: no warning about options of a run that is off
    assert not (tmp_path / "out").exists()


def test_eval_command_passes_tta_through(checkpoint, tmp_path, capsys):
    write_one_image_set(tmp_path, 50, 70)
    rc = main(["eval", "--weights", str(checkpoint), "--json", str(tmp_path / "gt.json"), "--images",
               str(tmp_path / "images"), "--output", str(tmp_path / "eval"), "--device", "cpu",
               "--tta", "--tta-sizes", "48,64", "--tta-max-size", "96", "--tta-no-flip"])
    assert rc == 0, capsys.readouterr().err
    written = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    predictor = Predictor.from_weights(checkpoint, device="cpu", optimise=False,
                                       tta=TTAOptions(min_sizes=(48, 64), max_size=96, flip=False))
    det = predictor([tmp_path / "images" / "a.png"])[0]
    assert len(written) == det["boxes"].shape[0] > 0
    assert sorted(round(r["score"], 4) for r in written) == sorted(round(float(s), 4) for s in det["scores"])


def test_no_detections_skip_the_mask_pass_and_large_enlargements_are_warned_once(tiny, monkeypatch):
    model, cfg = tiny
    calls = []
    original = model.roi_heads.mask_probs
    monkeypatch.setattr(model.roi_heads, "mask_probs", lambda *a: calls.append(1) or original(*a))
    predictor = Predictor(model, cfg, score_thresh=1.0, tta=TTAOptions(min_sizes=(40, 64), max_size=400))
    with pytest.warns(UserWarning) as caught:
        dets = predictor([torch.rand(3, 10, 12), torch.rand(3, 10, 12)])
    assert calls == []  # nothing kept: the mask head never runs (the second pass was all of the time)
    assert [d["masks"].shape for d in dets] == [(0, 10, 12)] * 2
    assert dets[0]["mask_probs"].shape == (0, 1, 28, 28)
    notes = [str(w.message) for w in caught if "tta:" in str(w.message)]
    assert notes == ["tta: a 12x10 image runs enlarged 6 times at its largest scale (77x64, 0.0 MP per "
                     "forward; memory and time grow with the pixels): give --tta-sizes / min_sizes near the "
                     "images' own size"]


def test_a_max_size_leaving_the_model_nothing_to_see_is_warned_of_once(tiny):
    model, cfg = tiny
    images = [torch.rand(3, 150, 150), torch.rand(3, 150, 150)]
    predictor = Predictor(model, cfg, tta=TTAOptions(min_sizes=(64, 96), max_size=10, flip=False))
    with pytest.warns(UserWarning) as caught:
        predictor(images)
    notes = [str(w.message) for w in caught if "tta:" in str(w.message)]
    assert notes == ["tta: a 150x150 image runs at most at 10x10 (--tta-max-size / max_size 10, "
                     "--tta-sizes / min_sizes): under 32 pixels a side, the model's smallest objects, little "
                     "or nothing can be detected; raise --tta-max-size / max_size"]
