"""Fixtures for the server tests: a tiny checkpoint that detects something, and servers on free ports.

The tiny R18-FPN has random weights except in the box classifier (scaled, biased towards class 1) and the
mask predictor's bias (positive), so every image gets detections with well-separated scores and filled
masks (something a browser test can see drawn) while forwards stay in milliseconds.
"""

import pytest
import torch
from serve_helpers import CLASS_NAMES, LABEL_TO_CATEGORY, RunningServer, png_bytes
from tiny_model import TINY  # tests/ is on the path


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory):
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    model = build_model(cfg)
    with torch.no_grad():
        # Random classifier logits barely differ between boxes: scaled up, scores spread over 0.3-0.9 and
        # no two are within 1e-4 (batched and single forwards differ by ~1e-6, and tests compare
        # detections in score order); the bias (background, cat, dog) favours cat.
        model.roi_heads.box_predictor.cls_score.weight.mul_(100.0)
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 4.0, 2.0]))
        model.roi_heads.mask_head.predictor.bias.fill_(3.0)  # mask probabilities > 0.5: filled masks
    path = tmp_path_factory.mktemp("serve") / "tiny.pth"
    save_checkpoint(
        path,
        model_state=model.state_dict(),
        config=cfg,
        class_names=CLASS_NAMES,
        label_to_category_id=LABEL_TO_CATEGORY,
    )
    return path


@pytest.fixture(scope="session")
def serve_predictor(serve_checkpoint):
    from maskrcnn.predictor import Predictor

    # optimise=False: the speed-ups cost seconds to set up and are tested with the predictor
    return Predictor.from_weights(serve_checkpoint, device="cpu", batch_size=4, optimise=False)


@pytest.fixture(scope="session")
def serve_predictor_rle(serve_checkpoint):
    """The predictor as ``maskrcnn serve`` builds it: masks come as ``masks_rle``, a list, not a tensor."""
    from maskrcnn.predictor import Predictor

    return Predictor.from_weights(serve_checkpoint, device="cpu", batch_size=4, optimise=False, masks="rle")


@pytest.fixture
def start_server():
    """start_server(app, **server_options) -> a RunningServer, stopped after the test."""
    servers = []

    def start(app, **server_options):
        servers.append(RunningServer(app, **server_options))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def make_png():
    return png_bytes
