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
    monkeypatch.setattr(nms_module, "_SPARSE_MAX_PAIRS", -1)  # the block algorithm from here on
    monkeypatch.setattr(nms_module, "_BLOCK", 16)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    monkeypatch.setattr(nms_module, "_SPARSE_FRACTION", -1.0)
    monkeypatch.setattr(nms_module, "_MAX_PAIRS", 1024)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    assert torch.equal(nms(boxes, scores, 0.0), nms_loop(boxes, scores, 0.0))  # no window at t = 0


def _clustered_with_degenerates(n, seed):
    """RPN-like boxes around a few objects, plus duplicates, equal scores and degenerate boxes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(8, 2, generator=g) * 300
    sizes = torch.exp(torch.rand(8, 2, generator=g) * 2 + 3)
    k = torch.randint(0, 8, (n,), generator=g)
    c = centres[k] + torch.randn(n, 2, generator=g) * sizes[k] * 0.2
    s = sizes[k] * torch.exp(torch.randn(n, 2, generator=g) * 0.2)
    boxes = torch.cat((c - s / 2, c + s / 2), 1)
    scores = torch.rand(n, generator=g)
    boxes[1::50] = boxes[0::50][: boxes[1::50].shape[0]]  # exact duplicates
    scores[2::40] = scores[3::40][: scores[2::40].shape[0]]  # equal scores
    boxes[5] = float("nan")
    boxes[6, 0] = float("inf")
    boxes[7] = boxes[8, [2, 3, 0, 1]]  # inverted
    boxes[9, 2] = boxes[9, 0]  # zero width
    boxes[10, 3] = boxes[10, 1]  # zero height
    boxes[11] = torch.tensor([-1e30, -1e30, 1e30, 1e30])  # area overflows to inf
    scores[5:12] = 2.0  # degenerate boxes first, so that they would suppress if mishandled
    return boxes, scores


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.95])
def test_sparse_graph_matches_blocks_and_loop(monkeypatch, threshold):
    boxes, scores = _clustered_with_degenerates(1200, 7)
    with monkeypatch.context() as m:
        m.setattr(nms_module, "_SPARSE_MAX_PAIRS", -1)
        expected = nms(boxes, scores, threshold)  # block algorithm, float32 as torchvision
    if threshold > 0:  # at 0 the float64 loop sees IoU 1e-57 > 0 with box 11, where float32 has 0
        assert torch.equal(expected, nms_loop(boxes, scores, threshold))
    assert torch.equal(nms(boxes, scores, threshold), expected)
    monkeypatch.setattr(nms_module, "_SPARSE_CHUNK", 997)  # many chunks of candidate pairs
    assert torch.equal(nms(boxes, scores, threshold), expected)
    monkeypatch.setattr(nms_module, "_SPARSE_MAX_EDGES", 0)  # too many overlaps: block algorithm
    assert torch.equal(nms(boxes, scores, threshold), expected)


def test_sparse_graph_batched_and_large_coordinates(monkeypatch):
    boxes, scores = _clustered_with_degenerates(1500, 8)
    classes = torch.randint(0, 4, (1500,), generator=torch.Generator().manual_seed(9))
    expected = batched_nms(boxes, scores, classes, 0.5)
    members = [torch.nonzero(classes == c).flatten() for c in range(4)]
    per_class = torch.cat([m[nms(boxes[m], scores[m], 0.5)] for m in members])
    per_class = per_class.sort().values  # equal scores: input order
    order = torch.sort(scores[per_class], descending=True, stable=True).indices
    assert torch.equal(expected, per_class[order])
    monkeypatch.setattr(nms_module, "_SPARSE_CHUNK", 501)
    assert torch.equal(batched_nms(boxes, scores, classes, 0.5), expected)
    monkeypatch.setattr(nms_module, "_SPARSE_MAX_PAIRS", -1)
    assert torch.equal(batched_nms(boxes, scores, classes, 0.5), expected)
    # far from the origin the x window must still hold every overlapping pair
    far = boxes[:300].clone()
    far[:, 0::2] += 3e5
    assert torch.equal(nms(far, scores[:300], 0.7), nms_loop(far, scores[:300], 0.7))


def test_nms_never_touches_the_thread_count(monkeypatch):
    def refuse(n):
        raise AssertionError("nms changed the process's thread count")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    boxes, scores = _random_boxes(500, 11)
    assert torch.equal(nms(boxes, scores, 0.5), nms_loop(boxes, scores, 0.5))


def test_serial_formulation_helpers():
    g = torch.Generator().manual_seed(3)
    counts = torch.randint(0, 4, (300,), generator=g, dtype=torch.int32)
    counts[:3] = 0  # empty rows first, in the middle and last
    counts[150] = 0
    counts[-2:] = 0
    total = int(counts.sum())
    expected = torch.repeat_interleave(torch.arange(300), counts.long())
    assert torch.equal(nms_module._rows_of_pairs(counts, total).long(), expected)
    key = torch.sort(torch.rand(1000, generator=g, dtype=torch.float64)).values
    values = torch.rand(700, generator=g, dtype=torch.float64)
    for side in ("left", "right"):
        ours = nms_module._searchsorted(key, values, side=side)
        assert torch.equal(ours, torch.searchsorted(key, values, side=side))
    chunks = [(torch.arange(n), torch.arange(n) + 1) for n in (5, 0, nms_module._SERIAL - 3, 7, 2)]
    grouped = nms_module._regroup(chunks)
    assert [len(s) for s, _ in grouped] == [5, nms_module._SERIAL - 3, 9]
    assert torch.equal(torch.cat([d for _, d in grouped]), torch.cat([d for _, d in chunks]))


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
