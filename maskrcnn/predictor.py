"""Inference API: images at their original size (tensors or files) in, detections in original coordinates out.

Shapes: N images per forward (the batch size), D detections of one image, H x W an original image,
h x w the resized image the model sees, K keypoints.

``Predictor`` does what a user would otherwise have to get right by hand: read the file (any mode,
EXIF orientation), resize as the checkpoint's config says (``input.min_size_test`` /
``input.max_size_test``), batch several images into one forward, run the model in eval mode under
``torch.inference_mode`` (optionally with bfloat16 / float16 autocast), map boxes and keypoints back to
the original image and paste the masks at its size (``modeling.postprocess.detections_to_original``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import nn

from maskrcnn.engine.device import resolve_device, resolve_dtype

ImageLike = Union[torch.Tensor, str, os.PathLike]

__all__ = ["Predictor", "resolve_device", "resolve_dtype"]

def default_class_names(num_classes: int) -> list:
    return ["__background__"] + [f"class{i}" for i in range(1, num_classes)]


def _as_float_image(image: torch.Tensor, where: str) -> torch.Tensor:
    """(3, H, W) float in [0, 1]; uint8 tensors are scaled, (1, H, W) grey is repeated."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{where}: expected a (3, H, W) tensor or a file path, got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{where}: expected an image tensor of shape (3, H, W), got {tuple(image.shape)}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"{where}: empty image of shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif not image.is_floating_point():
        raise ValueError(f"{where}: image dtype {image.dtype} not supported (float in [0, 1] or uint8)")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.float()


class Predictor:
    """Run a Mask R-CNN on images at their original size.

    Args:
        model: a built ``MaskRCNN`` (put in eval mode here; moved to ``device``).
        cfg: its ``Config`` (input sizes, mask threshold and paste method are read from it).
        class_names: index = label, index 0 = "__background__".
        device: "cpu", "cuda", "cuda:N" or "auto".
        score_thresh: drop detections scoring below it (None: keep what the model returns; the
            model's own threshold is ``cfg.model.roi_heads.score_thresh``).
        batch_size: images per forward. Images of different sizes are padded to a common size in a
            batch, which changes features near their borders slightly, so 1 (the default) makes each
            image's detections independent of its batch-mates; larger batches pay off on a GPU.
        dtype: None / "float32", "bfloat16" (CPU or CUDA autocast) or "float16" (CUDA autocast).
        optimise: fold batch norm into convolutions, use channels_last and (on CPU) Winograd 3x3
            convolutions (``modeling.fuse``); changes ``model`` in place, so leave it off for a model
            that will be trained further.
        winograd: with ``optimise``, whether to use Winograd 3x3 convolutions (None: on CPU only).
        paste_masks: paste ``masks`` (D, H, W) bool at the original size (False: only ``mask_probs``).
        label_to_category_id: the dataset's category id per label, when known (used by writers).
    """

    def __init__(
        self,
        model: nn.Module,
        cfg,
        class_names: Optional[Sequence[str]] = None,
        *,
        device: Union[str, torch.device] = "cpu",
        score_thresh: Optional[float] = None,
        batch_size: int = 1,
        dtype=None,
        optimise: bool = False,
        winograd: Optional[bool] = None,
        paste_masks: bool = True,
        label_to_category_id: Optional[dict] = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.cfg = cfg
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        num_classes = int(cfg.model.num_classes)
        if not class_names:
            class_names = list(cfg.data.class_names) or default_class_names(num_classes)
        if len(class_names) != num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a model with num_classes={num_classes} "
                "(class names include '__background__' at index 0)"
            )
        self.class_names = list(class_names)
        self.label_to_category_id = (
            {int(k): int(v) for k, v in label_to_category_id.items()} if label_to_category_id else None
        )
        self.score_thresh = score_thresh
        self.batch_size = int(batch_size)
        self.paste_masks = paste_masks
        self.min_size = int(cfg.input.min_size_test)
        self.max_size = int(cfg.input.max_size_test)
        self.resize_method = getattr(cfg.input, "resize_method", "torchvision")
        self.mask_threshold = float(cfg.model.roi_heads.mask_threshold)
        self.paste_method = cfg.model.roi_heads.mask_paste
        self.model = model.to(self.device).eval()
        if optimise:
            from maskrcnn.modeling.fuse import optimise_for_inference

            optimise_for_inference(self.model, channels_last=True, winograd=winograd)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, os.PathLike],
        *,
        device: Union[str, torch.device] = "auto",
        overrides: Optional[dict] = None,
        optimise: bool = True,
        **kwargs,
    ) -> Predictor:
        """Build the model the checkpoint's config describes (``overrides``: dotted config keys, e.g.
        ``{"model.roi_heads.score_thresh": 0.3}``), load its weights strictly, and wrap it."""
        from maskrcnn.checkpoint import CheckpointError, config_from_checkpoint, load_checkpoint
        from maskrcnn.config import apply_overrides
        from maskrcnn.modeling.mask_rcnn import build_model

        ckpt = load_checkpoint(path, map_location="cpu")
        cfg = config_from_checkpoint(ckpt)
        if overrides:
            cfg = apply_overrides(cfg, overrides)
        model = build_model(cfg)
        state = ckpt.get("model")
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: checkpoint has no 'model' state dict")
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches raise even with strict=False
            lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
            raise CheckpointError(
                f"{path}: weights do not fit the model its config describes: "
                + ("; ".join(lines[:3]) + (" ..." if len(lines) > 3 else "") if lines else str(e))
            ) from None
        problems = []
        if result.missing_keys:
            problems.append(f"{len(result.missing_keys)} missing keys ({_some(result.missing_keys)})")
        if result.unexpected_keys:
            problems.append(
                f"{len(result.unexpected_keys)} unexpected keys ({_some(result.unexpected_keys)})"
            )
        if problems:
            raise CheckpointError(
                f"{path}: weights do not match the model its config describes "
                f"(backbone={cfg.model.backbone}, fpn={cfg.model.fpn}): " + "; ".join(problems)
            )
        class_names = ckpt.get("class_names") or list(cfg.data.class_names) or None
        l2c = ckpt.get("label_to_category_id")
        if l2c is None and isinstance(ckpt.get("metadata"), dict):
            l2c = ckpt["metadata"].get("label_to_category_id")
        kwargs.setdefault("label_to_category_id", l2c)
        return cls(model, cfg, class_names, device=device, optimise=optimise, **kwargs)

    # ----------------------------------------------------------------------------------------
    def load(self, item: ImageLike, index: int = 0) -> torch.Tensor:
        """A file path or tensor -> (3, H, W) float32 in [0, 1] at its original size (on the CPU)."""
        if isinstance(item, (str, os.PathLike)):
            from maskrcnn.data.images import read_image

            return read_image(Path(item))
        return _as_float_image(item, f"image {index}")

    def _run_model(self, images: list) -> list:
        """The model's forward, with ``dtype`` autocast on the feature extractor only.

        Low precision pays off in the backbone and FPN convolutions (most of the time); the RPN's box
        decoding, the RoI pooling and the heads stay float32 so that boxes keep sub-pixel precision
        (bfloat16 has an 8-bit mantissa: steps of 4 pixels at x = 1000)."""
        if self.dtype is None:
            return self.model(images)
        model = self.model
        features = getattr(model, "features", None)
        autocast = torch.autocast(device_type=self.device.type, dtype=self.dtype)
        if not callable(features):  # some other model: autocast everything
            with autocast:
                return model(images)

        def low_precision_features(batch):
            with autocast:
                out = features(batch)
            return {k: v.float() for k, v in out.items()}  # name -> (N, C, Hl, Wl) back in float32

        model.features = low_precision_features  # an instance attribute shadows the method for this call
        try:
            return model(images)
        finally:
            del model.features

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]]) -> list:
        """Detections per image (a list even for one image), on the CPU, in original coordinates:
        ``boxes`` (D, 4) xyxy float32, ``scores`` (D,), ``labels`` (D,) int64 (1..K-1), ``masks``
        (D, H, W) bool and ``mask_probs`` (D, 1, M, M) for mask models, ``keypoints`` (D, K, 3) and
        ``keypoint_scores`` (D, K) for keypoint models."""
        if isinstance(images, (str, os.PathLike)) or (isinstance(images, torch.Tensor) and images.dim() == 3):
            images = [images]
        images = list(images)
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = [self.load(im, start + i) for i, im in enumerate(images[start : start + self.batch_size])]
            out.extend(self.predict_tensors(batch))
        return out

    @torch.inference_mode()
    def predict_tensors(self, images: Sequence[torch.Tensor]) -> list:
        """One forward over already-loaded (3, H, W) float images at their original size."""
        from maskrcnn.data.transforms import resize_image
        from maskrcnn.modeling.postprocess import detections_to_original

        originals = [tuple(im.shape[-2:]) for im in images]
        resized = [
            resize_image(
                im.to(self.device, non_blocking=True),
                min_size=self.min_size,
                max_size=self.max_size,
                method=self.resize_method,
            )
            for im in images
        ]
        dets = self._run_model(resized)
        results = []
        for det, im, orig in zip(dets, resized, originals):
            det = {
                k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in det.items()
            }
            if self.score_thresh is not None and "scores" in det:
                keep = det["scores"] >= self.score_thresh  # before pasting: never paste what is dropped
                det = {
                    k: (v[keep] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == keep.shape[0] else v)
                    for k, v in det.items()
                }
            det = detections_to_original(
                det,
                tuple(im.shape[-2:]),
                orig,
                paste_masks=self.paste_masks and "mask_probs" in det,
                mask_threshold=self.mask_threshold,
                paste_method=self.paste_method,
            )
            results.append({k: (v.cpu() if torch.is_tensor(v) else v) for k, v in det.items()})
        return results


def _some(keys: Sequence[str], n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
