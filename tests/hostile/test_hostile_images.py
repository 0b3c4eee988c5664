"""Hostile images at ``maskrcnn predict`` and the image reader: extreme aspect ratios, files the model
fails on, memory, animations, multi-page TIFFs, corrupt and empty files, an interrupted run."""

import io
import json
import re
import warnings

import numpy as np
import pytest
import torch
from hostile_helpers import save_image
from PIL import Image

from maskrcnn.data.images import ImageReadError, MultiFrameWarning, decode_image_bytes, read_image
from maskrcnn.data.transforms import resize_image, resized_size
from maskrcnn.predictor import Predictor


def _predict(cli, checkpoint, inputs, out, *extra):
    return cli("predict", "--weights", checkpoint, *inputs, "--output", out, "--device", "cpu",
               "--no-overlays", "--no-optimise", *extra)  # fmt: skip


def _by_file(out):
    results = json.loads((out / "predictions.json").read_text())
    names = {}
    for r in results:
        names.setdefault(r["file_name"].replace("\\", "/").rsplit("/", 1)[-1], []).append(r)
    return names


def test_strip_3000x1_in_the_middle_of_a_folder_is_predicted(cli, tiny_checkpoint, tmp_path):
    folder = tmp_path / "in"
    save_image(folder / "a.png", 40, 50, seed=1)
    save_image(folder / "b_strip.png", 1, 3000, seed=2)  # 3000 wide, 1 high
    save_image(folder / "c.png", 30, 60, seed=3)
    rc, text = _predict(cli, tiny_checkpoint, [folder], tmp_path / "out", "--batch-size", "2")
    assert rc == 0, text
    by_file = _by_file(tmp_path / "out")
    assert set(by_file) == {"a.png", "b_strip.png", "c.png"}  # random weights at threshold 0 detect
    assert all(r["segmentation"]["size"] == [1, 3000] for r in by_file["b_strip.png"])


@pytest.mark.parametrize("hw", [(1, 3000), (2, 3000), (3000, 1)])
def test_extreme_aspect_ratio_resizes_to_at_least_one_pixel(hw):
    out = resize_image(torch.rand(3, *hw), min_size=800, max_size=1333)
    assert min(out.shape[-2:]) >= 1 and max(out.shape[-2:]) == 1333
    assert tuple(out.shape[-2:]) == resized_size(*hw, min_size=800, max_size=1333)
    assert min(resized_size(*hw, min_size=800, max_size=1333, method="pil")) >= 1


def _failing_on(width: int, error: BaseException):
    """A predict_tensors that raises ``error`` on any batch holding an image ``width`` wide."""
    original = Predictor.predict_tensors

    def predict_tensors(self, images):
        if any(im.shape[-1] == width for im in images):
            raise error
        return original(self, images)

    return predict_tensors


@pytest.mark.parametrize(
    "error, words",
    [(RuntimeError("Input and output sizes should be greater than 0"), "model failed"),
     (MemoryError(), "out of memory"),
     (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8100000000 bytes"),
      "out of memory")],
)  # fmt: skip
def test_image_the_model_fails_on_is_named_and_the_rest_kept(cli, tiny_checkpoint, tmp_path, monkeypatch,
                                                             error, words):  # fmt: skip
    folder = tmp_path / "in"
    for i, width in enumerate((50, 77, 60, 55)):
        save_image(folder / f"im{i}.png", 40, width, seed=i)
    monkeypatch.setattr(Predictor, "predict_tensors", _failing_on(77, error))
    rc, text = _predict(cli, tiny_checkpoint, [folder], tmp_path / "out", "--batch-size", "2")
    assert rc == 0, text
    assert f"skipped {folder / 'im1.png'}" in text and words in text and "1 skipped" in text
    assert set(_by_file(tmp_path / "out")) == {"im0.png", "im2.png", "im3.png"}  # its batch-mate too


def test_interrupted_run_keeps_the_results_so_far(cli, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "in"
    for i, width in enumerate((50, 77, 60)):
        save_image(folder / f"im{i}.png", 40, width, seed=i)
    monkeypatch.setattr(Predictor, "predict_tensors", _failing_on(77, KeyboardInterrupt()))
    rc = __import__("maskrcnn.cli", fromlist=["main"]).main(
        ["predict", "--weights", str(tiny_checkpoint), str(folder), "--output", str(tmp_path / "out"),
         "--device", "cpu", "--no-overlays", "--no-optimise"])  # fmt: skip
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert set(_by_file(tmp_path / "out")) == {"im0.png"}  # written although the run never finished
    assert not (tmp_path / "out" / "predictions.partial.jsonl").exists()


def test_results_are_on_disk_before_the_run_ends(tiny_checkpoint, tmp_path, monkeypatch, cli):
    folder = tmp_path / "in"
    for i in range(3):
        save_image(folder / f"im{i}.png", 40, 50 + i, seed=i)
    seen = []
    original = Predictor.predict_tensors

    def predict_tensors(self, images):  # look at the side file while the third image is predicted
        if images[0].shape[-1] == 52:
            partial = tmp_path / "out" / "predictions.partial.jsonl"
            seen.extend(json.loads(line)["file_name"] for line in partial.read_text().splitlines())
        return original(self, images)

    monkeypatch.setattr(Predictor, "predict_tensors", predict_tensors)
    rc, text = _predict(cli, tiny_checkpoint, [folder], tmp_path / "out")
    assert rc == 0, text
    assert {s.rsplit("/", 1)[-1] for s in seen} == {"im0.png", "im1.png"}


def _frames(n: int):
    return [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200, 90)[:n]]


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_multi_frame_file_is_its_first_frame_with_a_warning(tmp_path, suffix):
    path = tmp_path / f"anim{suffix}"
    first, *rest = _frames(3)
    first.save(path, save_all=True, append_images=rest)
    with pytest.warns(MultiFrameWarning, match=rf"anim\{suffix}: 3 frames .* first, 2 left out"):
        image = read_image(path)
    assert image.shape == (3, 20, 30)
    assert torch.allclose(image * 255, torch.full_like(image, 10.0), atol=1.5)  # the first frame's grey


def test_single_frame_file_gives_no_warning(tmp_path):
    path = tmp_path / "one.gif"
    _frames(1)[0].save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).shape == (3, 20, 30)


def test_phone_jpeg_with_a_depth_map_frame_is_the_photo_without_a_warning(tmp_path):
    """An MPO JPEG (the photo, then its preview or depth map) warned "2 frames ... 1 left out" on every
    photo of a phone's folder, for a frame that is no part of the picture."""
    path = tmp_path / "IMG_0001.jpg"
    photo, depth = _frames(2)
    exif = photo.getexif()
    exif[0x0112] = 6  # phones write portrait photos turned
    photo.save(path, format="MPO", save_all=True, append_images=[depth.resize((15, 10))], exif=exif)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    assert image.shape == (3, 30, 20)  # the photo, turned
    assert torch.allclose(image * 255, torch.full_like(image, 10.0), atol=3)


def test_animated_gif_in_predict_warns_and_predicts(cli, tiny_checkpoint, tmp_path):
    first, *rest = _frames(3)
    first.save(tmp_path / "anim.gif", save_all=True, append_images=rest)
    with pytest.warns(MultiFrameWarning, match="anim.gif"):
        rc, text = _predict(cli, tiny_checkpoint, [tmp_path / "anim.gif"], tmp_path / "out")
    assert rc == 0 and "1 image(s)" in text


BAD_FILES = {  # name -> (content, words of the reason); None: a PNG cut in its pixel data
    "empty.png": (b"", r"empty file \(0 bytes\)"),
    "text.jpg": (b"hello, not a jpeg", "not an image"),
    "truncated.png": (None, "cannot decode"),
}


def test_unreadable_files_are_named_and_skipped(cli, tiny_checkpoint, tmp_path):
    folder = tmp_path / "in"
    save_image(folder / "good.png", 40, 50)
    for name, (content, reason) in BAD_FILES.items():
        (folder / name).write_bytes((folder / "good.png").read_bytes()[:200] if content is None else content)
        with pytest.raises(ImageReadError, match=rf"{name}: {reason}"):
            read_image(folder / name)
    rc, text = _predict(cli, tiny_checkpoint, [folder], tmp_path / "out")
    assert rc == 0 and "3 skipped" in text
    assert all(f"skipped {folder / name}" in text for name in BAD_FILES)
    assert set(_by_file(tmp_path / "out")) == {"good.png"}


def test_phone_and_windows_photo_extensions_in_a_folder_are_read_or_named(cli, tiny_checkpoint, tmp_path):
    """A folder's .jfif (a JPEG, as Windows saves web images) and .HEIC (an iPhone's photos, which PIL
    cannot read without a plugin) files were left out of its listing without a word."""
    folder = tmp_path / "in"
    save_image(folder / "a.JPG", 40, 50)
    (folder / "b.jfif").write_bytes((folder / "a.JPG").read_bytes())
    (folder / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    (folder / "notes.txt").write_text("not an image")
    rc, text = _predict(cli, tiny_checkpoint, [folder], tmp_path / "out")
    assert rc == 0 and "1 skipped" in text
    assert f"skipped {folder / 'IMG_0001.HEIC'}: not an image file PIL can identify (HEIC needs" in text
    assert set(_by_file(tmp_path / "out")) == {"a.JPG", "b.jfif"}


def test_float_tiff_with_nan_and_inf_reads_finite(tmp_path):
    array = np.array([[np.nan, np.inf], [-np.inf, 0.5]], dtype=np.float32)
    Image.fromarray(array, mode="F").save(tmp_path / "f.tif")
    with pytest.warns(UserWarning, match=r"f.tif: 3 of 4 pixels are NaN or infinite .*; read as 0"):
        image = read_image(tmp_path / "f.tif")
    assert torch.isfinite(image).all() and image.min() >= 0
    # the scale is judged on the finite values: an infinity no longer sent 0.5 to 0.5 / 255
    assert abs(float(image.max()) - 0.5) < 1e-6


def test_strip_in_a_training_set_trains(tmp_path):
    """A 3000x1 strip used to stop `train` in torch's interpolate (a 0-pixel resize), naming no file."""
    import json as _json

    from tiny_model import TINY

    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.transforms import build_train_transforms
    from maskrcnn.modeling.mask_rcnn import build_model

    save_image(tmp_path / "strip.png", 1, 3000)
    (tmp_path / "gt.json").write_text(_json.dumps({
        "images": [{"id": 1, "file_name": "strip.png", "height": 1, "width": 3000}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 0, 400, 1],
                         "segmentation": [[100, 0, 500, 0, 500, 1, 100, 1]], "iscrowd": 0}],
    }))  # fmt: skip
    transforms = build_train_transforms(min_size=(64,), max_size=96, flip_prob=0.0)
    dataset = CocoDataset(json_path=tmp_path / "gt.json", image_dir=tmp_path, transforms=transforms)
    image, target = dataset[(0, 0)]
    assert image.shape == (3, 1, 96) and target["boxes"].shape == (1, 4)
    torch.manual_seed(0)
    model = build_model(apply_overrides(PRESETS["r18_fpn"](), {**TINY, "model.num_classes": 2})).train()
    losses = model([image], [target], generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in losses.values()), losses


def test_eval_leaves_out_an_image_the_model_fails_on_by_name(cli, tiny_checkpoint, tmp_path, monkeypatch):
    from hostile_helpers import coco_dataset

    path, images, _ = coco_dataset(tmp_path)
    save_image(images / "im2.png", 40, 50, seed=99)  # same size as the JSON says, other pixels
    bad = read_image(images / "im2.png")
    original = Predictor.predict_tensors

    def predict_tensors(self, batch):
        if any(torch.equal(im, bad) for im in batch):
            raise RuntimeError("a forward no image of this kind survives")
        return original(self, batch)

    monkeypatch.setattr(Predictor, "predict_tensors", predict_tensors)
    rc, text = cli("eval", "--weights", tiny_checkpoint, "--json", path, "--images", images,
                   "--output", tmp_path / "m", "--device", "cpu")  # fmt: skip
    assert rc == 0, text
    assert f"skipping image: {images / 'im2.png'}: the model failed on this image (RuntimeError" in text
    assert "1 images left out of the evaluation (1 prediction_failed)" in text
    assert "image_too_large" not in text  # no pixel-limit hint for a model failure
    assert (tmp_path / "m" / "metrics.json").is_file()


def test_eval_scores_a_photo_recorded_at_its_stored_size_on_its_stored_pixels(cli, tiny_checkpoint, tmp_path):
    """A photo turned by its EXIF orientation, recorded at its stored size by a tool that ignores the
    orientation: its annotations were drawn on the stored pixels, so eval predicts it there, as training
    reads it (``CocoDataset.stored_orientation``), instead of skipping it or dropping its detections as
    "RLE size does not match" while its annotations stay in the score as misses."""
    from hostile_helpers import coco_dataset

    path, images, _ = coco_dataset(tmp_path)
    turned = Image.open(images / "im2.png")
    exif = turned.getexif()
    exif[0x0112] = 6
    turned.save(images / "im2.png", exif=exif)  # read turned as 50x40 (HxW); the JSON says 40x50, as stored
    rc, text = cli("eval", "--weights", tiny_checkpoint, "--json", path, "--images", images,
                   "--output", tmp_path / "m", "--device", "cpu")  # fmt: skip
    assert rc == 0, text
    assert "skipping image" not in text and "RLE size" not in text
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["images_evaluated"] == 2 and not metrics.get("images_skipped")
    assert metrics["segm"]["per_category_counts"]["ground_truth"] == {"a": 2, "b": 2}
    records = json.loads((tmp_path / "m" / "predictions.json").read_text())
    boxes = [r["bbox"] for r in records if r["image_id"] == 2]
    assert all(x + w <= 50 + 1e-3 and y + h <= 40 + 1e-3 for x, y, w, h in boxes)  # in the stored frame


def test_eval_with_no_image_left_is_an_error_not_a_score(cli, tiny_checkpoint, tmp_path):
    from hostile_helpers import coco_dataset

    path, images, _ = coco_dataset(tmp_path)
    (images / "im1.png").write_bytes(b"")
    (images / "im2.png").write_bytes((images / "im2.png").read_bytes()[:60])  # truncated
    rc, text = cli("eval", "--weights", tiny_checkpoint, "--json", path, "--images", images,
                   "--output", tmp_path / "m", "--device", "cpu")  # fmt: skip
    assert rc == 1
    assert f"skipping image: {images / 'im1.png'}: empty file (0 bytes)" in text
    assert f"maskrcnn eval: error: {path}: none of its 2 images could be evaluated (each named above)" in text
    assert not (tmp_path / "m" / "metrics.json").exists()


@pytest.mark.parametrize("values, span", [(np.linspace(-0.5, 0.5, 48), "[-0.5, 0.5]"),  # mean-subtracted
                                          (np.linspace(0, 65535, 48), "[0, 6.554e+04]"),  # a 16-bit scale
                                          (np.linspace(0, 255, 48), "[0, 255]")])
def test_float_tiff_off_0_1_is_refused_as_the_same_pil_image_is(tmp_path, values, span):
    """A float TIFF off [0, 1] was clipped (or divided by 255) silently when read from its file (a white
    or black frame: 0 detections, no word), while the same image opened with PIL and handed to the
    Predictor was refused: the Predictor's rule and words for both now, naming the image and the span."""
    from maskrcnn.predictor import _as_float_image

    path = tmp_path / "f.tif"
    Image.fromarray(values.reshape(6, 8).astype(np.float32), mode="F").save(path)
    words = rf"float image values span {re.escape(span)}, expected RGB in \[0, 1\]"
    with pytest.raises(ImageReadError, match=rf"f.tif: {words}"):
        read_image(path)
    with pytest.raises(ValueError, match=rf"image 0: {words}"):  # the same words, the same rule
        _as_float_image(Image.open(path), "image 0")


def test_float_tiff_slightly_over_1_reads_as_the_same_pil_image():
    """A [0, 1] float image with a bicubic overshoot (1.05): the Predictor takes the PIL image as given;
    its file was divided by 255 (nearly black)."""
    from maskrcnn.predictor import _as_float_image

    values = np.linspace(0, 1.05, 48).reshape(6, 8).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(values, mode="F").save(buffer, "TIFF")
    from_file = decode_image_bytes(buffer.getvalue(), name="f.tif")
    in_memory = _as_float_image(Image.fromarray(values, mode="F"), "image 0")
    assert from_file.shape == (3, 6, 8) and torch.equal(from_file, in_memory)
    assert float(from_file.max()) == pytest.approx(1.05)
