"""A Predictor leaves what belongs to the caller as it was: the model's train / eval mode, the global RNG,
the default dtype's effect on precision, an outer autocast; and a stream, a uint16 array of 8-bit values,
``class_names`` through ``from_weights`` and a tiling cap under ONNX are each handled or said in one line."""

import io
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.engine.tiling import cap_note
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ["__background__", "cat", "dog"]


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    return build_model(cfg).eval(), cfg


@pytest.fixture(scope="module")
def weights(built, tmp_path_factory):
    model, cfg = built
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    save_checkpoint(path, model_state=model.state_dict(), config=cfg, class_names=NAMES)
    return path


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.full((48, 64, 3), 30, np.uint8)
    img[10:30, 12:40] = rng.integers(100, 255, 3)
    return img


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_building_a_predictor_leaves_the_callers_model_training(built, image):
    model, cfg = built
    model.train()  # frozen parts (the stem) keep their own eval mode
    modes = [m.training for m in model.modules()]
    try:
        predictor = Predictor(model, cfg)
        assert model.training and [m.training for m in model.modules()] == modes
        predictor(image)  # the call predicts in eval and gives the mode back
        assert [m.training for m in model.modules()] == modes
    finally:
        model.eval()
    assert not Predictor(model, cfg).model.training  # an eval model stays in eval too


def test_from_weights_leaves_the_global_rng_alone(weights):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    Predictor.from_weights(weights)
    assert torch.equal(torch.rand(3), expected)


def test_from_weights_builds_float32_under_a_float64_default(weights, image):
    reference = Predictor.from_weights(weights)(image)[0]
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        predictor = Predictor.from_weights(weights)
    finally:
        torch.set_default_dtype(before)
    assert next(predictor.model.parameters()).dtype == torch.float32
    assert "precision=float32" in repr(predictor)
    _same(predictor(image)[0], reference)


def test_precision_says_a_callers_float64_model(built):
    model, cfg = built
    twin = build_model(cfg).double()
    assert Predictor(twin, cfg).precision == "float64"
    assert Predictor(model, cfg).precision == "float32"


def test_an_outer_autocast_does_not_change_a_float32_predictor(built, image):
    model, cfg = built
    predictor = Predictor(model, cfg)
    reference = predictor(image)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = predictor(image)[0]
    _same(inside, reference)


@pytest.mark.parametrize("opener", ["bytesio", "file", "zip member"])
def test_a_file_object_is_read_as_one_encoded_image(built, image, tmp_path, opener):
    model, cfg = built
    predictor = Predictor(model, cfg)
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    reference = predictor(str(path))
    if opener == "zip member":  # a binary stream whose mode is 'r' (it was refused as text mode)
        with zipfile.ZipFile(tmp_path / "x.zip", "w") as archive:
            archive.write(path, "x.png")
        with zipfile.ZipFile(tmp_path / "x.zip") as archive, archive.open("x.png") as member:
            out = predictor(member)
        _same(out[0], reference[0])
        return
    with open(path, "rb") as f:
        stream = io.BytesIO(f.read()) if opener == "bytesio" else f
        out = predictor(stream)
    assert len(out) == 1
    _same(out[0], reference[0])
    with open(path, "rb") as f:  # inside a list too
        _same(predictor([f])[0], reference[0])
    with open(path, encoding="latin-1") as f, pytest.raises(TypeError, match="text mode.*'rb'"):
        predictor(f)


def test_a_uint16_array_of_8bit_values_warns_as_pil_mode_i_does(built, image):
    model, cfg = built
    predictor = Predictor(model, cfg)
    with pytest.warns(UserWarning, match=r"image 0: uint16 numpy image with values 0\.\.\d+ .*looks dark"):
        predictor(image.astype(np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor(image.astype(np.uint16) * 257)  # the full 16-bit scale: no warning
    if hasattr(torch, "uint16"):
        tensor = torch.from_numpy(image.astype(np.int32)).permute(2, 0, 1).to(torch.uint16)
        with pytest.warns(UserWarning, match="uint16 tensor image .*looks dark"):
            predictor(tensor)


def test_a_uint16_array_of_12bit_values_is_said_dark_as_a_16_bit_file_is(built, image):
    # one rule for arrays and files (values up to 4095 said); arrays stopped at 255 before
    model, cfg = built
    predictor = Predictor(model, cfg)
    with pytest.warns(UserWarning, match=r"image 0: uint16 numpy image with values 0\.\.\d+ read as 16-bit "
                                         r".*looks dark.*multiply by 64 or 16"):
        predictor(image.astype(np.uint16) * 16)


def test_from_weights_takes_class_names_and_refuses_a_bad_path_in_one_line(weights):
    names = ["__background__", "a", "b"]
    assert Predictor.from_weights(weights, class_names=names).class_names == names
    for bad in (None, b"tiny.pth", 3):
        with pytest.raises(TypeError, match=r"^path: expected a weights file as str or pathlib\.Path"):
            Predictor.from_weights(bad)


def test_the_tiling_cap_note_tells_an_onnx_user_to_export_again():
    note = cap_note(150, 100, (800, 900), onnx=True)
    assert "export the checkpoint again" in note and "overrides=" not in note
    assert "overrides={'model.roi_heads.detections_per_image': N}" in cap_note(150, 100, (800, 900))
