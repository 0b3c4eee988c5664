"""Builders shared by the hostile-input corpus (tiny images, a tiny COCO dataset, file snapshots)."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def save_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def box_rle(height: int, width: int, box) -> dict:
    """Compressed RLE of the box [x, y, w, h] (integers) in a height x width mask."""
    from maskrcnn.data.mask_codec import mask_to_rle

    x, y, w, h = box
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y : y + h, x : x + w] = True
    return mask_to_rle(mask)


def coco_dataset(folder: Path, annotations=None) -> tuple:
    """Two 40x50 images, two categories and four good box-shaped instances (RLE masks); ``annotations``
    replaces or extends them. Returns (json path, image folder, the dict written)."""
    images = folder / "images"
    for i in (1, 2):
        save_image(images / f"im{i}.png", 40, 50, seed=i)
    boxes = [(1, 1, [2, 3, 10, 12]), (1, 2, [20, 5, 15, 20]), (2, 1, [5, 5, 30, 30]), (2, 2, [1, 1, 8, 8])]
    anns = [
        {"id": k + 1, "image_id": iid, "category_id": cat, "bbox": box, "area": box[2] * box[3],
         "segmentation": box_rle(40, 50, box), "iscrowd": 0}
        for k, (iid, cat, box) in enumerate(boxes)
    ]  # fmt: skip
    data = {
        "images": [{"id": i, "file_name": f"im{i}.png", "height": 40, "width": 50} for i in (1, 2)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": anns if annotations is None else annotations(anns),
    }
    path = folder / "gt.json"
    path.write_text(json.dumps(data))
    return path, images, data


def gt_as_results(data: dict) -> list:
    """The ground truth's annotations as detections (score 0.9): AP 100 when scored correctly."""
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
         "segmentation": a["segmentation"]}
        for a in data["annotations"]
    ]  # fmt: skip


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` -> its bytes (for 'earlier outputs are unchanged')."""
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
