# Run with a python that has torchvision (see README, "Reference comparisons"):
#   python tools/reference/make_masks_fixture.py GOLDEN_DIR tests/data/masks_reference.pt
# Records torchvision references for tests/data/masks_reference.pt.
import sys, torch, numpy as np
import pycocotools.mask as mu
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import roi_align
torch.manual_seed(0)
out = {}
D, H, W = 16, 40, 56
probs = torch.rand(D, 1, 28, 28)
xy = torch.rand(D, 2) * torch.tensor([W*0.95, H*0.95]) - torch.tensor([W*0.1, H*0.1])
wh = torch.rand(D, 2) * torch.tensor([W*0.8, H*0.8]) + 0.3 + torch.tensor([W*0.1, H*0.1])
boxes = torch.cat([xy, xy + wh], 1)
boxes[0] = torch.tensor([-20., -10., 80., 60.]); boxes[1] = torch.tensor([5., 5., 5.2, 5.3]); boxes[2] = torch.tensor([10.5, 2.25, 38.5, 30.25])
out["paste_random"] = dict(probs=probs, boxes=boxes, size=[H, W], expected=paste_masks_in_image(probs, boxes, (H, W))[:, 0])
M = 4; masks = (torch.rand(M, 60, 70) > 0.5).to(torch.uint8); masks[:, 10:40, 20:50] = 1
R = 20; idx = torch.randint(0, M, (R,))
xy = torch.rand(R, 2) * torch.tensor([80., 70.]) - 10; wh = torch.rand(R, 2) * torch.tensor([60., 50.]) + 0.2
rb = torch.cat([xy, xy + wh], 1)
rb[0] = torch.tensor([-5., -5., 120., 100.]); rb[1] = torch.tensor([30., 30., 30., 30.]); rb[2] = torch.tensor([30., 30., 20., 20.])
rois = torch.cat([idx[:, None].float(), rb], 1)
out["crop_random"] = dict(masks=masks, boxes=rb, indices=idx, expected=roi_align(masks[:, None].float(), rois, (28, 28), 1.0)[:, 0])
# Golden detections of real models (shared/golden), 24 per model.
def golden(path, img, size, n, key):
    g = torch.load(path, weights_only=True)
    off = sum(d["boxes"].shape[0] for d in g["detections"][:img])
    d = g["detections"][img]
    logits = g["mask_logits"][off:off + n]
    probs = logits[torch.arange(n), d["labels"][:n]].sigmoid()
    if key == "tv":
        ref = mu.decode(d["masks_rle"])[:n]  # (D, H, W) from the recording's layout
    else:
        ref = np.stack([mu.decode(r) for r in d["masks_rle"][:n]])
    rles = mu.encode(np.asfortranarray(ref.transpose(1, 2, 0).astype(np.uint8)))
    res = dict(probs=probs, boxes=d["boxes"][:n], size=list(size), rles=[{"size": list(r["size"]), "counts": r["counts"].decode()} for r in rles])
    if "masks_prob_sum" in d:
        res["prob_sum"] = d["masks_prob_sum"][:n]
    return res
out["torchvision_golden"] = golden(sys.argv[1] + "/maskrcnn_r50fpn_320.pt", 2, (264, 379), 24, "tv")
out["detectron2_golden"] = golden(sys.argv[1] + "/detectron2/d2_mask_rcnn_R_50_FPN_320.pt", 1, (256, 256), 24, "d2")
torch.save(out, sys.argv[2])
