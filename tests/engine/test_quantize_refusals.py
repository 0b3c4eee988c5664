"""What a hostile probe of ``maskrcnn quantize`` found: an --output naming the --weights file (a training
checkpoint would lose its optimizer state), --parts naming a part the model lacks (a keypoint model's
mask head), --calib-images naming one file, and a keypoint model's parts left out unsaid."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.checkpoint import load_checkpoint, save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model

pytestmark = pytest.mark.usefixtures("single_thread")

KEYPOINTS = {**TINY, "model.num_classes": 2, "model.roi_heads.mask_on": False,
             "model.roi_heads.keypoint_on": True, "model.roi_heads.num_keypoints": 5,
             "model.roi_heads.keypoint_head_dim": 8, "model.roi_heads.keypoint_head_convs": 1}


def _checkpoint(path, overrides, names, **extra):
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), overrides)
    save_checkpoint(path, model_state=build_model(cfg).state_dict(), config=cfg, class_names=names, **extra)
    return path


def _png(path, seed=0):
    path.parent.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def keypoint_model(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("kp") / "kp.pth", KEYPOINTS, ["__background__", "person"])


def _quantize(capsys, *args):
    rc = main(["quantize", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err.strip().splitlines()


def test_the_output_is_never_the_weights_file_by_any_name(tmp_path, capsys):
    # a training checkpoint: quantize leaves its optimizer out, written over it could not be resumed
    ckpt = _checkpoint(tmp_path / "ck.pth", TINY, ["__background__", "cat", "dog"],
                       optimizer={"state": {}, "param_groups": []})
    before = ckpt.read_bytes()
    (tmp_path / "link.pth").symlink_to("ck.pth")
    (tmp_path / "hard.pth").hardlink_to(ckpt)
    calib = _png(tmp_path / "calib" / "a.png").parent
    # the last: --weights is the link, --output the file it points to, which the write would replace
    for weights, output in [(ckpt, f"{tmp_path}/./ck.pth"), (ckpt, tmp_path / "link.pth"),
                            (tmp_path / "link.pth", tmp_path / "hard.pth"), (tmp_path / "link.pth", ckpt)]:
        rc, _, err = _quantize(capsys, "--weights", weights, "--calib-images", calib, "--output", output)
        assert rc == 1 and err == [f"maskrcnn quantize: error: --output {output}: names the same file as "
                                   "--weights; write the INT8 checkpoint under another name"]
    assert ckpt.read_bytes() == before and "optimizer" in load_checkpoint(ckpt)


def test_a_part_the_model_lacks_is_refused_naming_it_and_the_parts_it_has(keypoint_model, tmp_path, capsys):
    calib = _png(tmp_path / "calib" / "a.png").parent
    out = tmp_path / "q.pth"
    for parts in ("mask_head", "features,mask_head"):
        rc, _, err = _quantize(capsys, "--weights", keypoint_model, "--calib-images", calib, "--parts", parts,
                               "--output", out)
        assert rc == 1 and err == [f"maskrcnn quantize: error: --parts {parts}: this model has no mask head "
                                   "(parts it has: features, rpn, box_head)"]
    # refused before the calibration images are listed: a missing --calib-images does not hide it
    rc, _, err = _quantize(capsys, "--weights", keypoint_model, "--calib-images", tmp_path / "missing",
                           "--parts", "mask_head", "--output", out)
    assert rc == 1 and err == ["maskrcnn quantize: error: --parts mask_head: this model has no mask head "
                               "(parts it has: features, rpn, box_head)"]
    assert not out.exists()
    # a C4 model's box head is res5 + average pooling: no fully connected layer to quantize; an RPN
    # built without its 3x3 convolution has nothing either; both named, in one line
    from maskrcnn.modeling.quantize import missing_parts_problem, prepare_int8

    cfg = apply_overrides(PRESETS["r18_fpn"](), {**TINY, "model.fpn": False, "model.roi_features": "c4",
                                                  "model.rpn.head_convs": 0})
    model = build_model(cfg).eval()
    assert missing_parts_problem(model, ["rpn", "box_head", "mask_head"]) == (
        "this model's RPN head has no convolution (model.rpn.head_convs 0); this model's box head has no "
        "fully connected layer (C4: res5 + average pooling) (parts it has: features, mask_head)")
    with pytest.raises(ValueError, match=r"^int8: this model's box head has no fully connected layer"):
        prepare_int8(model, parts=["box_head"])
    assert not getattr(model, "int8_parts", None)  # refused before anything was swapped


def test_a_keypoint_model_says_which_parts_are_int8_and_a_single_image_calibrates(
        keypoint_model, tmp_path, capsys):
    image = _png(tmp_path / "one.png")
    out = tmp_path / "q.pth"
    rc, final, err = _quantize(capsys, "--weights", keypoint_model, "--calib-images", image, "--output", out)
    assert rc == 0 and final.startswith(f"wrote {out}")
    notes = [line for line in err if line.startswith("note:")]
    assert notes == ["note: INT8 for features, rpn, box_head; this model has no mask head; its keypoint head "
                     "always runs in float32"]
    assert any(line.startswith("int8: quantized features, rpn, box_head (") and "calibrated on 1 image(s)"
               in line for line in err)
    assert load_checkpoint(out)["int8"]["parts"] == ["features", "rpn", "box_head"]
    # named parts are all there: the note still says the keypoint head stays float32
    rc, _, err = _quantize(capsys, "--weights", keypoint_model, "--calib-images", image, "--parts", "rpn",
                           "--output", tmp_path / "r.pth")
    assert rc == 0 and [line for line in err if line.startswith("note:")] == [
        "note: INT8 for rpn; its keypoint head always runs in float32"]


def test_calib_images_naming_a_file_that_is_no_image_says_so(keypoint_model, tmp_path, capsys):
    # any file is taken as a one-image set (as predict takes one file); the reader says it is no image
    text = tmp_path / "list.txt"
    text.write_text("a.png\n")
    rc, _, err = _quantize(capsys, "--weights", keypoint_model, "--calib-images", text, "--output",
                           tmp_path / "q.pth")
    assert rc == 1 and err[-2:] == [
        f"warning: skipped calibration image {text}: not an image file PIL can identify",
        f"maskrcnn quantize: error: int8: none of the 1 calibration image(s) in {text} could be read "
        "(1 unreadable_image)"]
    assert not (tmp_path / "q.pth").exists()
    image = _png(tmp_path / "a.png")
    rc, _, err = _quantize(capsys, "--weights", keypoint_model, "--calib-images", image, "--calib-json",
                           tmp_path / "val.json", "--output", tmp_path / "q.pth")
    assert rc == 1 and err == [f"maskrcnn quantize: error: {image}: is a file; with a COCO JSON give the "
                               "folder its file_names are relative to"]
    assert not (tmp_path / "q.pth").exists()


def test_an_int8_file_listing_a_part_the_model_lacks_is_refused_naming_the_file(keypoint_model, tmp_path):
    from maskrcnn.checkpoint import CheckpointError
    from maskrcnn.engine.int8 import INT8_KEY
    from maskrcnn.predictor import Predictor

    ckpt = load_checkpoint(keypoint_model)
    ckpt[INT8_KEY] = {"format_version": 1, "parts": ["mask_head"], "observers": {}, "sites": {}}
    torch.save(ckpt, tmp_path / "edited.pth")
    with pytest.raises(CheckpointError, match=r"edited\.pth: 'int8\.parts' \['mask_head'\]: this model has "
                                              r"no mask head \(parts it has: features, rpn, box_head\)"):
        Predictor.from_checkpoint(tmp_path / "edited.pth", device="cpu")
