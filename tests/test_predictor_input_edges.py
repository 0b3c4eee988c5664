"""Input forms a notebook user meets that used to fail without naming the image, or with a wrong hint: a
PIL image whose file was closed before its pixels were read, a grey + alpha numpy array (an "LA" PNG),
np.longdouble and PIL mode "La"; and detections_to_coco_results' image_id, which ``int()`` changed
silently."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY

from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.data.coco_results import detections_to_coco_results
from maskrcnn.data.images import ImageReadError
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor
from maskrcnn.visualize import draw_instances
from tests.blocks_image import three_blocks_image

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    return Predictor(build_model(cfg).eval(), cfg)


@pytest.fixture(scope="module")
def image():
    return three_blocks_image()


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels", "masks"))


def _no_detections():
    return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long),
            "masks": torch.zeros(0, 48, 64, dtype=torch.bool)}


# --- a closed PIL image: one line naming the image and the fix, not a bare AssertionError ------------------
def test_an_image_used_after_its_with_block_is_refused_naming_it(predictor, image, tmp_path):
    path = tmp_path / "street.png"
    Image.fromarray(image).save(path)
    with Image.open(path) as lazy:
        pass  # never loaded inside the block: its file is closed now
    with pytest.raises(ImageReadError, match=r"^image 0: PIL image's file is closed.*im\.load\(\)") as info:
        predictor([lazy])
    assert "\n" not in str(info.value)
    with pytest.raises(ImageReadError, match=r"^draw_instances: image: PIL image's file is closed"):
        draw_instances(lazy, _no_detections())
    closed = Image.open(path)
    closed.load()
    closed.close()
    with pytest.raises(ImageReadError, match=r"^image 0: PIL image is closed \(im\.close\(\)"):
        predictor([closed])
    never_read = Image.open(path)
    never_read.close()
    with pytest.raises(ImageReadError, match=r"^image 0: PIL image is closed \(im\.close\(\)"):
        predictor([never_read])
    with Image.open(path) as loaded:
        loaded.load()  # the fix the message gives: pixels read inside the block
    assert _same(predictor([loaded])[0], predictor(image)[0])


# --- (H, W, 2): grey + alpha, read as the PIL "LA" image is ----------------------------------------------
def test_a_grey_alpha_array_reads_as_its_grey(predictor, image):
    la = Image.fromarray(image).convert("LA")
    array = np.asarray(la)  # (H, W, 2): what np.asarray(Image.open(la_png)) gives
    assert array.shape == (48, 64, 2)
    ref = predictor([la])[0]
    assert _same(predictor(array)[0], ref) and _same(predictor(array[:, :, 0])[0], ref)
    drawn = draw_instances(array, _no_detections())
    assert drawn.size == (64, 48) and np.array_equal(np.asarray(drawn)[:, :, 1], array[:, :, 0])


def test_a_channel_count_that_is_no_image_is_still_refused(predictor, image):
    with pytest.raises(ValueError, match=r"\(H, W, 2\) grey with alpha, got \(48, 64, 5\)"):
        predictor(np.zeros((48, 64, 5), np.uint8))


# --- np.longdouble and PIL "La" ----------------------------------------------------------------------
def test_a_longdouble_image_reads_as_float64(predictor, image):
    wide = image.astype(np.longdouble) / 255
    assert _same(predictor(wide)[0], predictor(image.astype(np.float64) / 255)[0])


def test_a_premultiplied_grey_alpha_pil_image_reads_as_la(predictor, image):
    la = Image.fromarray(image).convert("LA")
    assert _same(predictor([la.convert("La")])[0], predictor([la])[0])


# --- detections_to_coco_results: image_id kept, or refused; never changed -------------------------------
def _one_detection():
    return {"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0]]), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1])}


@pytest.mark.parametrize("given, written", [(7, 7), (np.int64(7), 7), (torch.tensor(7), 7), (7.0, 7),
                                            ("000123", "000123"), ("img_01.jpg", "img_01.jpg")])
def test_an_image_id_is_written_as_given(given, written):
    out = detections_to_coco_results(_one_detection(), image_id=given)[0]["image_id"]
    assert out == written and type(out) is type(written)


@pytest.mark.parametrize("bad", [1.7, float("nan"), None, True, [1], b"7"])
def test_an_image_id_that_is_no_id_is_refused_naming_it(bad):
    with pytest.raises(TypeError, match=r"^detections_to_coco_results: image_id must be an integer or a "
                                        r"string"):
        detections_to_coco_results(_one_detection(), image_id=bad)
    with pytest.raises(TypeError, match="image_id"):  # refused without detections too
        detections_to_coco_results({"boxes": torch.zeros(0, 4)}, image_id=bad)
