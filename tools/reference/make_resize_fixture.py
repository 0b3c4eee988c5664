# Run with a python that has torchvision: records its resize of the golden images for
# tests/data/resize_reference.pt.
import os
import torch, sys
from PIL import Image
import numpy as np
from torchvision.models.detection.transform import GeneralizedRCNNTransform
tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data")
root = os.path.join(tests, "golden") + "/"
names = ["img_simple0.png", "img_simple1.png", "img_hard2.png"]
out = {}
for mn, mx in [(320, 512), (800, 1333), (192, 320)]:
    t = GeneralizedRCNNTransform(mn, mx, [0.,0.,0.], [1.,1.,1.])
    t.eval()
    for n in names:
        img = torch.from_numpy(np.asarray(Image.open(root + n).convert("RGB")).copy()).permute(2,0,1).float() / 255
        r = t.resize(img, None)[0]
        out[f"{n}_{mn}_{mx}"] = {"size": list(r.shape[-2:]), "sum": r.double().sum().item(), "sample": r[:, ::29, ::29].clone()}
        print(n, mn, mx, r.shape)
torch.save(out, os.path.join(tests, "resize_reference.pt"))
