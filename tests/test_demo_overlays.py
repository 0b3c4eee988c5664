"""``maskrcnn demo``'s overlays read the validation file as the model's training did: a keypoint model's
file draws no note that its keypoints go unread."""

import logging
from types import SimpleNamespace

import pytest

from maskrcnn.commands.demo import write_overlays
from maskrcnn.data.poses import generate_pose_dataset
from tests.tiny_model import TINY, build_tiny

NOTE = "which a model without a keypoint head ignores"


@pytest.fixture(scope="module")
def pose_data(tmp_path_factory):
    return generate_pose_dataset(tmp_path_factory.mktemp("poses"), num_train=0, num_val=2,
                                 image_size=((64, 64), (64, 64)), seed=3)


def _overlays(data, overrides, out, caplog):
    model, cfg = build_tiny(overrides)
    trainer = SimpleNamespace(model=model, device="cpu")
    with caplog.at_level(logging.WARNING):
        written = write_overlays(trainer, cfg, data["val_json"], data["val_images"], out, n=1)
    assert [p.name for p in written] == ["val_000.png"] and written[0].is_file()
    return caplog.text


def test_a_keypoint_model_draws_its_overlays_without_the_unread_keypoints_note(pose_data, tmp_path, caplog):
    overrides = {**TINY, "model.num_classes": 2, "model.roi_heads.mask_on": False,
                 "model.roi_heads.keypoint_on": True, "model.roi_heads.num_keypoints": 14,
                 "model.roi_heads.keypoint_head_convs": 2, "model.roi_heads.keypoint_head_dim": 16}
    assert NOTE not in _overlays(pose_data, overrides, tmp_path / "kp", caplog)


def test_a_mask_model_on_keypoint_data_still_hears_its_keypoints_go_unread(pose_data, tmp_path, caplog):
    assert NOTE in _overlays(pose_data, {**TINY, "model.num_classes": 2}, tmp_path / "mask", caplog)
