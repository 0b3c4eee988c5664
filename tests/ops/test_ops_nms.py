"""NMS: golden keep lists from torchvision, a one-box-at-a-time loop, batched == per class."""

import importlib
from pathlib import Path

import pytest
import torch

from maskrcnn.ops import batched_nms, nms
from maskrcnn.ops._reference import nms_loop

pytestmark = pytest.mark.usefixtures("single_thread")

nms_module = importlib.import_module("maskrcnn.ops.nms")
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "ops.pt"


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def _random_boxes(n, seed, extent=200.0, max_size=60.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * max_size + 1
    return torch.cat((xy, xy + wh), 1), torch.rand(n, generator=g)


def test_nms_matches_golden(golden):
    for case in golden["nms"]:
        keep = nms(case["boxes"], case["scores"], case["iou_threshold"])
        assert keep.dtype == torch.int64
        assert torch.equal(keep, case["keep"])


def test_batched_nms_matches_golden(golden):
    for case in golden["nms"]:
        keep = batched_nms(case["boxes"], case["scores"], case["classes"], case["iou_threshold"])
        assert torch.equal(keep, case["keep_batched"])


def test_nms_matches_loop_reference_and_small_blocks(monkeypatch):
    boxes, scores = _random_boxes(3000, 1)
    expected = nms_loop(boxes, scores, 0.5)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    # tiny blocks exercise the block bookkeeping; the dense path (tiny pair budget, chunked) and
    # the sorted candidate search must agree
    boxes, scores = boxes[:600], scores[:600]
    expected = nms_loop(boxes, scores, 0.5)
    monkeypatch.setattr(nms_module, "_BLOCK", 16)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    monkeypatch.setattr(nms_module, "_SPARSE_FRACTION", -1.0)
    monkeypatch.setattr(nms_module, "_MAX_PAIRS", 1024)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    assert torch.equal(nms(boxes, scores, 0.0), nms_loop(boxes, scores, 0.0))  # no window at t = 0


def test_nms_chain_inside_one_block():
    # a chain where each box overlaps the next: greedy keeps 0, 2, 4 (1 and 3 are suppressed),
    # which a single non-iterated pass would get wrong (it would also drop 2 and 4)
    boxes = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10], [9, 0, 19, 10], [12, 0, 22, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    assert nms(boxes, scores, 0.4).tolist() == [0, 2, 4]


def test_nms_ties_threshold_and_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert nms(boxes, torch.ones(4), 0.5).tolist() == [0, 3]  # equal scores: first in input order
    # IoU exactly at the threshold is kept (strictly greater suppresses)
    pair = torch.tensor([[0.0, 0, 2, 1], [0, 0, 1, 1]])
    assert nms(pair, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert nms(pair, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)


def test_batched_nms_equals_per_class():
    boxes, scores = _random_boxes(2000, 2, extent=100.0)
    classes = torch.randint(0, 7, (2000,), generator=torch.Generator().manual_seed(3))
    keep = batched_nms(boxes, scores, classes, 0.6)
    per_class = []
    for c in range(7):
        members = torch.nonzero(classes == c).flatten()
        per_class.append(members[nms(boxes[members], scores[members], 0.6)])
    per_class = torch.cat(per_class)
    expected = per_class[torch.sort(scores[per_class], descending=True, stable=True).indices]
    assert torch.equal(keep, expected)


def test_nms_bad_shapes():
    with pytest.raises(ValueError, match="boxes"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="idxs"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2, dtype=torch.long), 0.5)


@pytest.mark.cuda
def test_nms_cuda_matches_cpu():
    boxes, scores = _random_boxes(5000, 4)
    classes = torch.randint(0, 5, (5000,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(nms(boxes.cuda(), scores.cuda(), 0.5).cpu(), nms(boxes, scores, 0.5))
    assert torch.equal(batched_nms(boxes.cuda(), scores.cuda(), classes.cuda(), 0.5).cpu(),
                       batched_nms(boxes, scores, classes, 0.5))
