"""A tiny Mask R-CNN on CUDA computes what it computes on the CPU (skipped without CUDA).

Compared: the RPN and RoI-head losses on the same proposals and the gradients they give (the sampling
draws from the same CPU generator), and at inference the features and the heads' outputs on the same
boxes. The model's own proposals and detections are only checked for their form: with random weights,
near-equal scores make top-k and NMS choices float noise, which would make the comparison flaky."""

import copy

import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.modeling.mask_rcnn import build_model

pytestmark = pytest.mark.cuda

# fixed proposals: IoUs with the gt boxes well away from the 0.5 matching threshold
PROPOSALS = [torch.tensor([[10.0, 10, 40, 30], [12, 11, 41, 29], [45, 35, 75, 60], [0, 40, 20, 60]]),
             torch.tensor([[5.0, 5, 30, 40], [40, 5, 70, 30]])]
BOXES = [torch.tensor([[4.0, 6, 40, 30], [30, 20, 70, 60]])] * 2


def _model_and_data():
    cfg = load_config("demo", {
        "model.num_classes": 3, "model.fpn_dim": 32, "model.roi_heads.box_head_dim": 64,
        "model.roi_heads.mask_head_dim": 16, "model.rpn.pre_nms_topk_train": 200,
        "model.rpn.post_nms_topk_train": 100, "model.rpn.pre_nms_topk_test": 100,
        "model.rpn.post_nms_topk_test": 50, "model.roi_heads.batch_size_per_image": 32,
        "model.roi_heads.score_thresh": 0.0})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg)
        images = [torch.rand(3, 64, 80), torch.rand(3, 56, 72)]
    masks = torch.zeros(2, 64, 80, dtype=torch.uint8)
    masks[0, 10:30, 10:40] = 1
    masks[1, 35:60, 45:75] = 1
    mask2 = torch.zeros(1, 56, 72, dtype=torch.uint8)
    mask2[0, 5:40, 5:30] = 1
    targets = [
        {"boxes": torch.tensor([[10.0, 10, 40, 30], [45, 35, 75, 60]]), "labels": torch.tensor([1, 2]),
         "masks": masks},
        {"boxes": torch.tensor([[5.0, 5, 30, 40]]), "labels": torch.tensor([2]), "masks": mask2},
    ]
    return model, images, targets


def _run(model, images, targets, device):
    model = copy.deepcopy(model).to(device).train()  # training forwards update batch-norm statistics
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    model.zero_grad(set_to_none=True)
    losses = model(images, targets, generator=torch.Generator().manual_seed(3))  # the whole path runs
    assert all(torch.isfinite(v) for v in losses.values())
    model.zero_grad(set_to_none=True)
    batch, sizes = model.preprocess(images)
    feats = model.features(batch)
    _, losses = model.rpn([feats[n] for n in model.rpn_in_features], sizes, batch.shape[-2:], targets,
                          generator=torch.Generator().manual_seed(4))
    _, roi = model.roi_heads(feats, [p.to(device) for p in PROPOSALS], sizes, targets,
                             generator=torch.Generator().manual_seed(5))
    losses.update(roi)
    sum(losses.values()).backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    model.eval()
    boxes = [b.to(device) for b in BOXES]
    with torch.inference_mode():
        feats = model.features(batch)
        class_logits, box_deltas = model.roi_heads.box_logits(feats, boxes)
        outputs = {"p2": feats["p2"], "class_logits": class_logits, "box_deltas": box_deltas,
                   "mask_logits": model.roi_heads.mask_head(model.roi_heads.mask_pooler(feats, boxes))}
        dets = model(images)
    assert all(d["mask_probs"].shape == (len(d["boxes"]), 1, 28, 28) for d in dets)
    return ({k: v.detach().cpu() for k, v in losses.items()}, grads,
            {k: v.cpu() for k, v in outputs.items()})


@pytest.fixture
def no_tf32():
    """Full float32 on the GPU: cuDNN convolutions default to TF32 (10-bit mantissa) on Ampere+."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_losses_gradients_and_heads_match_cpu(no_tf32):
    model, images, targets = _model_and_data()
    cpu = _run(model, images, targets, "cpu")
    gpu = _run(model, images, targets, "cuda")
    assert set(cpu[0]) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask"}
    for k in cpu[0]:
        torch.testing.assert_close(gpu[0][k], cpu[0][k], rtol=1e-3, atol=1e-5, msg=k)
    assert set(gpu[1]) == set(cpu[1])
    for k in cpu[1]:
        torch.testing.assert_close(gpu[1][k], cpu[1][k], rtol=1e-2, atol=1e-5, msg=k)
    for k in cpu[2]:
        torch.testing.assert_close(gpu[2][k], cpu[2][k], rtol=1e-3, atol=1e-4, msg=k)


def test_keypoint_decoding_and_keypoint_model_run_on_cuda():
    """The keypoint path (heatmap decoding, the keypoint head's loss, inference) runs on the GPU and
    decodes the heatmaps as the CPU does."""
    from maskrcnn.modeling.keypoint_head import heatmaps_to_keypoints

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 4, 56, 56, generator=g)
    rois = torch.tensor([[10, 20, 73.4, 51.2], [0, 0, 0.5, 0.3], [5, 5, 200, 120], [3.3, 4.4, 40, 90],
                         [7, 1, 8.5, 300]])
    cpu_kps, cpu_scores = heatmaps_to_keypoints(maps, rois, max_elements=4 * 200 * 300)
    gpu_kps, gpu_scores = heatmaps_to_keypoints(maps.cuda(), rois.cuda(), max_elements=4 * 200 * 300)
    torch.testing.assert_close(gpu_kps.cpu(), cpu_kps, rtol=0, atol=1e-3)
    torch.testing.assert_close(gpu_scores.cpu(), cpu_scores, rtol=1e-3, atol=1e-3)

    cfg = load_config("demo_keypoints", {
        "model.fpn_dim": 32, "model.roi_heads.box_head_dim": 64, "model.roi_heads.keypoint_head_dim": 16,
        "model.rpn.post_nms_topk_test": 50, "model.roi_heads.score_thresh": 0.0})
    torch.manual_seed(0)
    model = build_model(cfg).cuda().train()
    j = cfg.model.roi_heads.num_keypoints
    keypoints = torch.zeros(1, j, 3)
    keypoints[0, :, 0] = torch.linspace(12, 38, j)
    keypoints[0, :, 1] = torch.linspace(8, 50, j)
    keypoints[0, :, 2] = 2
    target = {"boxes": torch.tensor([[10.0, 6, 40, 52]]), "labels": torch.tensor([1]),
              "keypoints": keypoints}
    losses = model([torch.rand(3, 64, 80).cuda()], [{k: v.cuda() for k, v in target.items()}],
                   generator=torch.Generator().manual_seed(1))
    assert "loss_keypoint" in losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.inference_mode():
        det = model([torch.rand(3, 64, 80).cuda()])[0]
    assert det["keypoints"].device.type == "cuda" and det["keypoints"].shape[1:] == (j, 3)
