"""Training assembly: datasets, transforms, model, loader, evaluation and ``Trainer`` from one config.

``build_training(cfg, ...)`` is what ``maskrcnn train`` and ``maskrcnn demo`` run; it reads the config
(``model.num_classes`` and ``data.class_names`` come from the training set) and writes
``RUN_DIR/config.yaml``. It leaves the process's RNG state alone: the initial weights are drawn from
a generator seeded with ``cfg.seed`` inside ``torch.random.fork_rng``, the same on every rank.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_training(
    cfg,
    *,
    train_json,
    train_images,
    output,
    val_json=None,
    val_images=None,
    device="cpu",
    resume=False,
    log_stream=None,
    trainer_kwargs=None,
):
    """Datasets, model, loader and Trainer for ``cfg``; returns (trainer, cfg with dataset fields set)."""
    from maskrcnn.config import save_config
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.loader import build_train_loader
    from maskrcnn.data.transforms import build_train_transforms
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine.inference import make_evaluate_fn
    from maskrcnn.engine.trainer import LAST_CHECKPOINT, build_trainer
    from maskrcnn.modeling.mask_rcnn import build_model

    output = Path(output)
    if (val_json is None) != (val_images is None):
        raise ValueError("--val-json and --val-images go together")
    if not resume and (output / LAST_CHECKPOINT).is_file():
        raise ValueError(f"{output} already holds a training run; pass --resume or choose another --output")
    rank, world_size, device = du.init_distributed(str(device))
    if cfg.solver.batch_size % world_size:
        raise ValueError(
            f"solver.batch_size {cfg.solver.batch_size} is not divisible by {world_size} processes"
        )
    rh = cfg.model.roi_heads
    train_set = CocoDataset(
        json_path=train_json,
        image_dir=train_images,
        transforms=build_train_transforms(
            min_size=cfg.input.min_size,
            max_size=cfg.input.max_size,
            flip_prob=cfg.input.flip_prob,
            method=cfg.input.resize_method,
        ),
        keypoints=rh.keypoint_on,
        filter_empty=cfg.data.filter_empty,
    )
    if len(train_set) == 0:
        raise ValueError(f"{train_json}: no usable training image (skipped: {dict(train_set.skipped)})")
    cfg = cfg.copy()
    cfg.model.num_classes = int(train_set.num_classes)
    cfg.data.class_names = tuple(train_set.class_names)
    label_to_cat = {int(k): int(v) for k, v in train_set.label_to_category_id.items()}

    with torch.random.fork_rng(devices=[]):  # the same initial weights on every rank, global RNG untouched
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
    model = model.to(device)
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output / "config.yaml")

    def make_batches(start_iter: int):
        return iter(
            build_train_loader(
                train_set,
                batch_size=cfg.solver.batch_size // world_size,
                num_workers=cfg.data.num_workers,
                seed=cfg.seed,
                aspect_ratio_grouping=cfg.data.aspect_ratio_grouping,
                rank=rank,
                world_size=world_size,
                start_iter=start_iter,
            )
        )

    evaluate_fn = None
    if val_json is not None:
        val_set = CocoDataset(json_path=val_json, image_dir=val_images, keypoints=rh.keypoint_on)
        evaluate_fn = make_evaluate_fn(cfg, val_set, val_json, device=device)
    trainer = build_trainer(
        cfg,
        model,
        make_batches=make_batches,
        output_dir=output,
        class_names=cfg.data.class_names,
        device=device,
        evaluate_fn=evaluate_fn,
        checkpoint_extra={"label_to_category_id": label_to_cat},
        log_stream=log_stream,
        **(trainer_kwargs or {}),
    )
    if resume and not trainer.resume() and rank == 0:
        trainer.logger.print(f"--resume: no checkpoint in {output}, starting from scratch")
    return trainer, cfg


