"""Validation under torchrun is sharded: two gloo processes on CPU each predict half of the images
(interleaved by index), rank 0 scores all of them and gets the same metrics as one process, the other
rank gets None."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from detections_equal import boxes_near_detections  # tests/ is on the path
from PIL import Image
from tiny_model import TINY

SIZES = [(50, 70), (60, 40), (64, 80), (48, 48), (70, 52), (40, 64)]  # (H, W) of the 6 images
NAMES = ["__background__", "cat", "dog"]


def _model():
    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
        return build_model(cfg).eval(), cfg


def _evaluate(gt: str, images: str, *, own_buffers: bool = False):
    """(make_evaluate_fn's results on the tiny model, the number of images this process predicted)."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import make_evaluate_fn
    from maskrcnn.predictor import Predictor

    predicted = []
    predict_files = Predictor.predict_files

    def counting(self, files, **kw):
        predicted.extend(files)
        return predict_files(self, files, **kw)

    Predictor.predict_files = counting
    try:
        model, cfg = _model()
        if own_buffers:  # as trainable batch norm leaves a rank other than 0 (its own batches' statistics)
            with torch.no_grad():
                for name, buf in model.named_buffers():
                    if name.endswith("running_mean"):
                        buf.add_(0.3)
        dataset = CocoDataset(json_path=gt, image_dir=images)
        return make_evaluate_fn(cfg, dataset, gt, device="cpu")(model), len(predicted)
    finally:
        Predictor.predict_files = predict_files


def _rank(rank: int, world: int, store: str, gt: str, images: str, out: str = ""):
    """Join a gloo group of ``world`` processes through the file ``store``, evaluate, leave; the result is
    returned (and pickled to ``out`` when given: another process's)."""
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    # gloo otherwise picks an interface from the host name, which need not reach 127.0.0.1 in a sandbox
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))  # a hang guard only
    try:
        result = _evaluate(gt, images, own_buffers=rank == 1)
    finally:
        from maskrcnn.engine import distributed as du

        du.cleanup(wait_for_peers=False)
    if out:
        with open(out, "wb") as f:
            pickle.dump(result, f)
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 images and a ground truth made of some of the model's own boxes, moved a little: AP neither 0
    nor 100."""
    from maskrcnn.predictor import Predictor

    root = tmp_path_factory.mktemp("sharded")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    model, cfg = _model()
    predictor = Predictor(model, cfg, device="cpu")
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    for image_id, (h, w) in enumerate(SIZES, start=3):
        name = f"{image_id}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
        gt["images"].append({"id": image_id, "file_name": name, "height": h, "width": w})
        det = predictor([images / name])[0]
        gt["annotations"] += boxes_near_detections(det, image_id, first=4, next_id=len(gt["annotations"]) + 1)
    (root / "gt.json").write_text(json.dumps(gt))
    return root


def _plain(metrics: dict) -> dict:
    return json.loads(json.dumps(metrics), parse_constant=lambda c: None if c == "NaN" else c)


@pytest.mark.slow  # a second process
@pytest.mark.usefixtures("single_thread")
def test_two_process_validation_is_sharded_and_scores_as_one(data, tmp_path):
    gt, images = str(data / "gt.json"), str(data / "images")
    single, n_single = _evaluate(gt, images)
    assert n_single == len(SIZES)
    assert 0 < single["bbox"]["AP"] < 100  # (segm: random masks against rectangles score 0)
    # rank 1 in a spawned process, rank 0 here (one process start fewer)
    peer = mp.get_context("spawn").Process(
        target=_rank, args=(1, 2, str(tmp_path / "store"), gt, images, str(tmp_path / "rank1.pkl")))
    peer.start()
    try:
        metrics0, n0 = _rank(0, 2, str(tmp_path / "store"), gt, images)
    finally:
        peer.join(timeout=120)
        if peer.is_alive():
            peer.kill()
    assert peer.exitcode == 0
    metrics1, n1 = pickle.loads((tmp_path / "rank1.pkl").read_bytes())
    assert (n0, n1) == (3, 3)  # each its share, not all 6
    assert metrics1 is None  # only rank 0 scores
    # the same AP, although rank 1's buffers differed: it predicted with rank 0's (the checkpoint's)
    assert _plain(metrics0) == _plain(single)


def test_process_group_gets_an_explicit_generous_timeout(monkeypatch):
    # NCCL's default (10 minutes in CUDA builds) ended runs whose rank 0 saved or evaluated for longer
    from maskrcnn.engine import distributed as du

    seen = {}
    monkeypatch.setattr(du, "is_initialized", lambda: False)
    monkeypatch.setattr(du.dist, "init_process_group", lambda **kw: seen.update(kw))
    for k, v in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": "29500"}.items():  # as torchrun sets them
        monkeypatch.setenv(k, v)
    du.init_distributed("cpu")
    assert seen["backend"] == "gloo" and seen["timeout"] == du.COLLECTIVE_TIMEOUT
    assert du.COLLECTIVE_TIMEOUT.total_seconds() == 3600
