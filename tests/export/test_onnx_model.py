"""The whole tiny model exported by ``maskrcnn export`` and run by onnxruntime through ``Predictor``,
against the checkpoint it came from: images of two sizes (one file), an empty-output model, the
metadata, ``predict --batch-size 4`` against ``--batch-size 1`` for both, and a file that is not ours.

One export takes ~10 s on a loaded 2-core machine (tracing plus the exporter's passes), two are made.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_matching import match  # tests/export is on the path
from PIL import Image
from tiny_model import TINY  # tests/ is on the path

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.cli import main
from maskrcnn.config import PRESETS, apply_overrides
from maskrcnn.modeling.mask_rcnn import build_model
from maskrcnn.predictor import Predictor

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

NAMES = ["__background__", "cat", "dog"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    save_checkpoint(root / "tiny.pth", model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=NAMES, label_to_category_id={1: 5, 2: 9})
    assert main(["export", "--weights", str(root / "tiny.pth"), "--output", str(root / "tiny.onnx")]) == 0
    assert main(["export", "--weights", str(root / "tiny.pth"), "--output", str(root / "empty.onnx"),
                 "--set", "model.roi_heads.score_thresh=1.0"]) == 0  # fmt: skip
    return root


def _images():
    g = torch.Generator().manual_seed(1)
    # two sizes: resized to 64 x 96 and 96 x 64 (input.min_size_test 64, max 96)
    return [torch.rand(3, 50, 75, generator=g), torch.rand(3, 90, 60, generator=g)]


def test_onnx_matches_the_checkpoint_on_two_sizes(files):
    ckpt = Predictor.from_checkpoint(files / "tiny.pth", device="cpu")
    onnx = Predictor.from_weights(files / "tiny.onnx", device="cpu")
    assert onnx.runtime and not ckpt.runtime
    for a, b in zip(ckpt(_images()), onnx(_images())):
        m = match(a, b)
        assert m["n_ref"] == m["n_other"] == 10  # detections_per_image of the tiny config
        assert m["matched"] >= 0.99 and m["score_diff"] < 1e-3 and m["mask_iou"] >= 0.98, m
        assert b["masks"].shape == a["masks"].shape and b["mask_probs"].shape == (10, 1, 28, 28)


def test_an_empty_output_model_returns_empty_outputs_from_both(files):
    ckpt = Predictor.from_checkpoint(files / "tiny.pth", device="cpu",
                                     overrides={"model.roi_heads.score_thresh": 1.0})
    onnx = Predictor.from_onnx(files / "empty.onnx")
    assert onnx.cfg.model.roi_heads.score_thresh == 1.0  # the override went into the metadata
    for det in ckpt(_images()) + onnx(_images()):
        assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["labels"].shape == (0,)
        assert det["mask_probs"].shape == (0, 1, 28, 28) and det["masks"].shape[0] == 0


def test_the_file_carries_config_class_names_and_category_ids(files):
    onnx = Predictor.from_onnx(files / "tiny.onnx")
    ckpt = Predictor.from_checkpoint(files / "tiny.pth", device="cpu")
    assert onnx.class_names == NAMES
    assert onnx.label_to_category_id == {1: 5, 2: 9}
    assert onnx.cfg.to_dict() == ckpt.cfg.to_dict()


def test_predict_batch_4_equals_batch_1_for_checkpoint_and_onnx(files, tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = tmp_path / "in"
    images.mkdir()
    for i in range(5):  # one size: 4 + 1 images per forward
        Image.fromarray(rng.integers(0, 255, (48, 72, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    for weights in ("tiny.pth", "tiny.onnx"):
        runs = {}
        for batch in (1, 4):
            out = tmp_path / f"{weights}-{batch}"
            rc = main(["predict", "--weights", str(files / weights), str(images), "--output", str(out),
                       "--device", "cpu", "--batch-size", str(batch), "--no-overlays"])  # fmt: skip
            assert rc == 0, capsys.readouterr().err
            runs[batch] = json.loads((out / "predictions.json").read_text())
        one, four = runs[1], runs[4]
        assert len(one) == len(four) == 50
        for a, b in zip(one, four):
            assert (a["file_name"], a["category_id"]) == (b["file_name"], b["category_id"])
            assert a["category_id"] in (5, 9)  # category ids from the checkpoint / the file's metadata
            assert abs(a["score"] - b["score"]) < 1e-5
            assert np.allclose(a["bbox"], b["bbox"], atol=1e-3)
            assert a["segmentation"]["size"] == b["segmentation"]["size"] == [48, 72]


def test_a_file_that_is_not_an_export_is_refused_by_name(files, tmp_path):
    from maskrcnn.export.onnx_runtime import OnnxModelError

    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(OnnxModelError, match="garbage.onnx"):
        Predictor.from_weights(bad)
    with pytest.raises(OnnxModelError, match="not found"):
        Predictor.from_weights(tmp_path / "missing.onnx")
    # a valid ONNX graph without our metadata
    import onnx

    proto = onnx.load(str(files / "tiny.onnx"))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(OnnxModelError, match="maskrcnn_format"):
        Predictor.from_onnx(plain)


@pytest.mark.parametrize("switch", [{"model.roi_heads.mask_class_agnostic": True},
                                    {"model.roi_heads.mask_loss": "softmax"}])
def test_ablation_heads_export_and_match(switch, tmp_path):
    """A class-agnostic head (one channel) and a softmax-trained head: the export reads them as the model."""
    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), {**TINY, **switch})
    save_checkpoint(tmp_path / "m.pth", model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=NAMES)
    assert main(["export", "--weights", str(tmp_path / "m.pth"), "--output", str(tmp_path / "m.onnx")]) == 0
    ckpt = Predictor.from_checkpoint(tmp_path / "m.pth", device="cpu")
    onnx = Predictor.from_weights(tmp_path / "m.onnx", device="cpu")
    for a, b in zip(ckpt(_images()), onnx(_images())):
        m = match(a, b)
        assert m["matched"] >= 0.99 and m["mask_iou"] >= 0.98, m
        torch.testing.assert_close(b["mask_probs"], a["mask_probs"], atol=1e-3, rtol=0)
