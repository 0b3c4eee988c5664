"""A tiny R18-FPN configuration whose random-weight forwards take milliseconds (shared by CLI tests)."""

TINY = {
    "model.backbone": "resnet18",
    "model.num_classes": 3,
    "model.fpn_dim": 32,
    "model.rpn.pre_nms_topk_test": 100,
    "model.rpn.post_nms_topk_test": 30,
    "model.roi_heads.box_head_dim": 64,
    "model.roi_heads.mask_head_dim": 16,
    "model.roi_heads.score_thresh": 0.0,  # random weights: keep everything so something is detected
    "model.roi_heads.detections_per_image": 10,
    "input.min_size_test": 64,
    "input.max_size_test": 96,
}

# the Predictor tests' variant: frozen batch norm (something to fold), more proposals and detections
TINY_FROZEN_BN = {
    **TINY,
    "model.norm": "frozen_bn",
    "model.rpn.post_nms_topk_test": 40,
    "model.roi_heads.detections_per_image": 20,
}


def small_training(size: int) -> dict:
    """Overrides for short learning tests at ``size`` x ``size`` pixels: a narrow FPN and heads, few
    proposals and sampled RoIs, no flips, batches of 2 at LR 0.02 (the tests add their head widths,
    warm-up and schedule)."""
    return {
        "model.fpn_dim": 32,
        "model.rpn.pre_nms_topk_train": 200,
        "model.rpn.post_nms_topk_train": 100,
        "model.rpn.pre_nms_topk_test": 100,
        "model.rpn.post_nms_topk_test": 50,
        "model.rpn.batch_size_per_image": 64,
        "model.roi_heads.batch_size_per_image": 64,
        "model.roi_heads.box_head_dim": 128,
        "input.min_size": size,
        "input.max_size": size,
        "input.min_size_test": size,
        "input.max_size_test": size,
        "input.flip_prob": 0.0,
        "data.aspect_ratio_grouping": False,
        "solver.batch_size": 2,
        "solver.lr": 0.02,
        "solver.log_period": 10,
    }


def randomise_norms(model):
    """Random batch-norm statistics, norm scales and biases (in place; returns the model): a fresh model's
    are 0 / 1, which would let a converter or a folding rewrite get them wrong unseen."""
    import torch

    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith(("running_var", "norm.weight")):
                v.uniform_(0.5, 1.5)
            elif k.endswith(("running_mean", "bias")):
                v.normal_(0.0, 0.1)
    return model


def build_tiny(overrides: dict = TINY, seed: int = 0):
    """``(model in eval mode, cfg)``: the r18_fpn preset with ``overrides``, random weights from ``seed``."""
    import torch

    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    torch.manual_seed(seed)
    cfg = apply_overrides(PRESETS["r18_fpn"](), overrides)
    return build_model(cfg).eval(), cfg


def save_tiny_checkpoint(path, model, cfg, class_names=("__background__", "a", "b")):
    """``model`` and ``cfg`` saved as a checkpoint at ``path`` (for the CLI tests' --weights); ``path``."""
    from maskrcnn.checkpoint import save_checkpoint

    save_checkpoint(path, model_state=model.state_dict(), config=cfg, class_names=list(class_names))
    return path


def save_cat_dog_checkpoint(path):
    """A tiny r18_fpn model (TINY, seed 0) saved at ``path`` with the classes cat and dog as COCO
    category ids 5 and 9 (for the command-line tests' --weights); ``path``."""
    from maskrcnn.checkpoint import save_checkpoint

    model, cfg = build_tiny(TINY, seed=0)
    save_checkpoint(path, model_state=model.state_dict(), config=cfg,
                    class_names=["__background__", "cat", "dog"], label_to_category_id={1: 5, 2: 9})
    return path


def cat_dog_inputs(root, sizes: dict):
    """``save_cat_dog_checkpoint`` at ``root``/tiny.pth and random-pixel images ``root``/in/NAME of the
    ``sizes`` {name: (H, W)} (names may hold folders); returns (checkpoint, the images' folder)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(root)
    ckpt = save_cat_dog_checkpoint(root / "tiny.pth")
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        (root / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "in" / name)
    return ckpt, root / "in"


def write_box_coco(path, names):
    """A COCO file at ``path`` (folders made) of 24 x 24 images ``names``, each with one 10 x 10 square of
    the class "box"; returns ``path``."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "images": [{"id": i + 1, "file_name": n, "width": 24, "height": 24} for i, n in enumerate(names)],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 10, 10],
                         "area": 100.0, "iscrowd": 0, "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]]}
                        for i in range(len(names))]}))
    return path


def write_one_image_set(folder, height: int, width: int, seed: int = 1):
    """``folder``/images/a.png (random pixels, ``height`` x ``width``) and ``folder``/gt.json, a COCO file
    of it with one rectangle of class "a" (categories "a", "b"): a set ``maskrcnn eval`` runs on.
    Returns the JSON's path."""
    import json
    from pathlib import Path

    import numpy as np
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "images" / "a.png")
    gt = {"images": [{"id": 7, "file_name": "a.png", "height": height, "width": width}],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600,
                           "iscrowd": 0, "segmentation": [[10, 10, 40, 10, 40, 30, 10, 30]]}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (folder / "gt.json").write_text(json.dumps(gt))
    return folder / "gt.json"


def class_rows_model(k: int):
    """The smallest model whose box classifier (``roi_heads.box_predictor.cls_score``) has ``k`` rows,
    background included, named as ours names it: what fine-tuning's class-row copying reads and writes."""
    import torch

    model = torch.nn.Module()
    model.roi_heads = torch.nn.Module()
    model.roi_heads.box_predictor = torch.nn.Module()
    model.roi_heads.box_predictor.cls_score = torch.nn.Linear(3, k)
    return model


def one_cat_dataset(root, class_names=("__background__", "cat")):
    """``root``/tiny.pth (the TINY model, seed 0, with ``class_names``) beside a one-image training set:
    ``root``/images/1.png (24 x 24, black) and ``root``/train.json with one 10 x 10 'cat'; ``root``."""
    import json
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(root)
    save_tiny_checkpoint(root / "tiny.pth", *build_tiny(TINY, seed=0), class_names=class_names)
    (root / "images").mkdir()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(root / "images" / "1.png")
    (root / "train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "width": 24, "height": 24}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10], "area": 100.0,
                         "iscrowd": 0, "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]]}]}))
    return root
