"""Inference API, and the one path from original images to results in original coordinates: ``predict``,
``eval``, validation during training (``engine.inference``), ``benchmark`` and Python users all run
``Predictor.predict_tensors``.

Shapes: N images per forward (the batch size), D detections of one image, H x W an original image,
h x w the resized image the model sees, K keypoints.

``Predictor`` does what a user would otherwise have to get right by hand: read the file (any mode,
EXIF orientation), resize as the checkpoint's config says (``input.min_size_test`` /
``input.max_size_test``), group images of similar size into forwards of ``batch_size``, run the model's
stages in eval mode (for each call: a model put back into training is predicted in eval mode and left
as it was) under ``torch.inference_mode`` (optionally with bfloat16 / float16 autocast on the
convolutions and fully connected layers), map boxes and keypoints back to the original image and paste
the masks at its size
(``modeling.postprocess.detections_to_original``). It resolves the device and dtype
(``engine.device``) and, with ``optimise``, rewrites the model for inference (``modeling.fuse``).

The model behind it is swappable: a checkpoint's ``MaskRCNN`` (``from_checkpoint``) or an exported
ONNX file run by onnxruntime (``from_onnx``, ``export/onnx_runtime.OnnxModel``, one image per run);
``from_weights`` picks by the file. Everything around the forward is shared.

Large images with small objects: ``tile=TileOptions(size=1024, overlap=0.2, full_image=True)`` (or
``tile=1024``) runs the model on overlapping tiles, each at the usual resize (or ``scale``), plus the
whole image, and merges their detections class by class (``engine/tiling.py`` says how: cut pieces,
duplicates, masks kept box-local while merging); an image no larger than a tile is predicted exactly
as without tiling.

Test-time augmentation: ``tta=TTAOptions(min_sizes=(400, 600, 800, 1000), max_size=4000, flip=True)``
(or ``tta=True`` for detectron2's defaults) runs the model on each image at several scales and their
mirror images, merges the boxes class by class (NMS) and averages the mask probabilities and keypoint
heatmaps (left and right keypoints swapped in mirrored passes) of the merged boxes over all of them
(``engine/tta.py`` says how); slower by about twice the number of augmentations (the backbone runs once
for the boxes and once for the masks and keypoints of each), for better boxes, masks and keypoints.
Not with ``tile`` or an ONNX model.

Images given to the Python API (``__call__``), one or an iterable of them (not a mapping, whose keys
iteration would give): file paths (str or Path;
EXIF orientation applied), a file's encoded bytes, (3, H, W) or (H, W) tensors, numpy arrays (H, W, 3),
(H, W, 4) (alpha dropped) or (H, W), and PIL images of any mode (converted to RGB; EXIF orientation
applied as for files, by ``data.images.exif_oriented``, so that ``Image.open(f)`` and ``f`` give the same
detections; an image turned already keeps its pixels). Arrays and tensors are used as given (numpy
subclasses by their values, ``plain_array``: a masked array only when nothing is masked; big-endian
arrays in native byte order). Colour
order is RGB (PIL, imageio, torchvision); ``channels="BGR"`` reads 3-channel arrays and tensors in
OpenCV's order (what ``cv2.imread`` gives, detectron2's default). Values: uint8 0..255, uint16
0..65535 (arrays and tensors), or float in [0, 1]; a float image outside [0, 1] by more than
``FLOAT_RANGE_SLACK`` (0..255 floats, mean/std-normalised images) or holding NaN / infinity is refused
naming it, since the model would misread it silently.

Results are ordinary CPU tensors (the model runs under ``torch.inference_mode``, the results are made
outside it, a caller's own ``inference_mode`` included), the same for the same input at a fixed
``torch.get_num_threads()``; one Predictor may be called from several threads at once (it keeps no
per-call state).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import os
import threading
import warnings
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from maskrcnn.class_names import distinct_class_names, name_ids, renamed_note
from maskrcnn.data.images import check_float_range, say_if_dark_16bit
from maskrcnn.engine.device import named_dtype, resolve_device, resolve_dtype

# also numpy arrays and PIL images (see the module docstring); neither is imported here
ImageLike = Union[torch.Tensor, str, os.PathLike, object]

# With batching, how many batches' worth of images are resized together and grouped by size: more
# choice gives batch-mates of closer sizes, at the memory of that many original images.
WINDOW_BATCHES = 4

__all__ = ["FixedThresholdWarning", "Predictor", "resolve_device", "resolve_dtype"]


def _caller_level() -> int:
    """The ``stacklevel`` of a warning issued by this module's caller-facing method that called this
    one: the first frame outside this file (from_weights -> from_onnx, or from_onnx called directly)."""
    level, frame = 1, inspect.currentframe().f_back
    while frame is not None and frame.f_code.co_filename == __file__:
        level, frame = level + 1, frame.f_back
    return level


class FixedThresholdWarning(UserWarning):
    """``from_onnx`` asked for a ``score_thresh`` below the graph's own, fixed at export: fewer detections
    than asked (``fixed_threshold_note`` says it; commands that print that note filter this warning out)."""


def default_class_names(num_classes: int) -> list:
    return ["__background__"] + [f"class{i}" for i in range(1, num_classes)]


CHANNELS = ("RGB", "BGR")


def plain_array(image, where: str):
    """A numpy array of any kind as a plain ``np.ndarray`` in native byte order (a copy only where one is
    needed): a subclass (``np.matrix``, ``np.memmap``, ...) by its values, a masked array by its data when
    nothing is masked (masked pixels have no value to detect on: refused), a big-endian array (FITS,
    astropy, ``'>u2'``) byte-swapped, since torch and the dtype checks take native numbers only."""
    import numpy as np

    if isinstance(image, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(image))
        if masked:
            raise ValueError(f"{where}: numpy masked array with {masked} masked values: fill them first "
                             "(image.filled(0)), or pass image.data to use the values under the mask")
    image = np.asarray(image)  # the base class: iterating a subclass could yield its rows as images
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))
    return image


def _from_numpy_or_pil(image, where: str, channels: str = "RGB"):
    """A numpy array (H, W, C) / (H, W) or a PIL image (EXIF orientation applied) -> (C, H, W) tensor
    (uint8 or float, RGB); else unchanged."""
    import numpy as np

    if type(image).__module__.startswith("PIL.") and hasattr(image, "mode"):
        from maskrcnn.data.images import ImageReadError, _to_rgb_array, check_pil_open, exif_oriented

        try:
            check_pil_open(image, where)  # before the EXIF read: a closed file fails there without a word
            # upright as read_image turns the file it came from: detections in the file's coordinates;
            # mode "F" floats as given (H, W, 3), for the numpy rules checked below
            array = _to_rgb_array(exif_oriented(image, where, stacklevel=4), where, in_memory=True)
        except ImageReadError:
            raise  # values that are no image (mode "I" off the 16-bit scale), named already
        except (ValueError, OSError) as e:  # a mode PIL cannot convert
            raise ValueError(f"{where}: PIL image of mode {image.mode!r} cannot be read as RGB ({e})"
                             ) from None
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if isinstance(image, np.ndarray):
        image = plain_array(image, where)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim == 3 and image.shape[2] == 2:
            # grey + alpha (np.asarray of an "LA" PNG): the grey, alpha dropped as for (H, W, 4) and as
            # the PIL "LA" image is read
            image = image[:, :, :1]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            hint = (": numpy images are channels last, pass image.transpose(1, 2, 0)"  # tensor.numpy()
                    if image.ndim == 3 and image.shape[0] in (1, 3) else
                    _grey_stack_hint(image.shape, "(N, H, W, 1) array") if image.ndim == 3 else "")
            raise ValueError(f"{where}: expected a numpy image of shape (H, W, 3) {channels}, (H, W, 4) with "
                             f"alpha, (H, W) grey or (H, W, 2) grey with alpha, got {image.shape}{hint}")
        image = image[:, :, :3]  # alpha dropped, as PIL's convert("RGB") and read_image do
        if channels == "BGR" and image.shape[2] == 3:
            image = image[:, :, ::-1]  # (H, W, BGR) -> (H, W, RGB), a view
        if image.dtype == np.uint16:  # 16-bit PNG / TIFF as cv2.IMREAD_UNCHANGED gives it
            say_if_dark_16bit(int(image.max()) if image.size else 0, where, what="uint16 numpy image",
                              fix_8bit="pass it as uint8", stacklevel=5)
            image = image.astype(np.float32) / 65535.0
        if image.dtype.kind == "f" and image.dtype not in (np.float16, np.float32, np.float64):
            image = image.astype(np.float64)  # np.longdouble (float128): a dtype torch has not
        if image.dtype == np.uint8 or image.dtype.kind == "f":
            image = np.ascontiguousarray(image)  # a copy only of a strided view
            if not image.flags.writeable:  # np.asarray(PIL image): torch warns on a read-only array
                # uint8 is converted to float32 later anyway (a copy): made here, it is still the one
                # copy, scaled by the same torch division as a writable array's (float32: the one copy
                # that a read-only array needs).
                out = torch.from_numpy(image.astype(np.float32))
                return (out.div_(255.0) if image.dtype == np.uint8 else out).permute(2, 0, 1)
            return torch.from_numpy(image).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        raise ValueError(f"{where}: numpy image dtype {image.dtype} not supported (uint8 0..255, uint16 "
                         "0..65535 or float in [0, 1])")
    if isinstance(image, torch.Tensor) and channels == "BGR" and image.dim() == 3 and image.shape[0] == 3:
        image = image.flip(0)  # (BGR, H, W) -> (RGB, H, W)
    return image


def _grey_stack_hint(shape: tuple, stacked: str) -> str:
    """The fix for (N, H, W): N grey images stacked read as one image of N channels."""
    return (f": if these are {shape[0]} grey (H, W) images, pass them as a list (list(images)) or as an "
            f"{stacked}")


def _as_float_image(image, where: str, channels: str = "RGB") -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]: uint8 is scaled, grey is repeated, numpy / PIL images converted,
    BGR reordered; a float image on another scale, or holding NaN or infinity, is refused."""
    if channels not in CHANNELS:
        raise ValueError(f"channels must be 'RGB' or 'BGR', got {channels!r}")
    if isinstance(image, torch.Tensor) and image.dim() == 2:
        image = image[None]  # (H, W) grey -> (1, H, W), as for numpy arrays
    image = _from_numpy_or_pil(image, where, channels)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{where}: expected a (3, H, W) tensor, a numpy (H, W, 3) array, a PIL image, a "
                        f"file path or an encoded image's bytes, got {type(image).__name__}")
    if image.is_meta:  # shapes only: every read of its values fails deep inside PyTorch
        raise ValueError(f"{where}: tensor on the meta device holds no data")
    if image.dim() == 3 and image.shape[0] not in (1, 3) and image.shape[2] in (1, 3, 4):
        raise ValueError(f"{where}: image tensor of shape {tuple(image.shape)} looks like (H, W, C); tensors "
                         "are channels first (3, H, W): pass image.permute(2, 0, 1), or the numpy array")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        hint = _grey_stack_hint(tuple(image.shape), "(N, 1, H, W) tensor") if image.dim() == 3 else ""
        raise ValueError(f"{where}: expected an image tensor of shape (3, H, W), got {tuple(image.shape)}"
                         f"{hint}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"{where}: empty image of shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif image.is_floating_point():
        pass
    # a 16-bit PNG / TIFF read into torch; torch.uint16 exists from torch 2.3 only (pyproject allows 2.1)
    elif image.dtype == getattr(torch, "uint16", None):
        image = image.float()
        say_if_dark_16bit(int(image.max()) if image.numel() else 0, where, what="uint16 tensor image",
                          fix_8bit="pass it as uint8", stacklevel=5)
        image = image / 65535.0
    else:
        raise ValueError(f"{where}: image dtype {image.dtype} not supported (float in [0, 1], uint8 or "
                         "uint16)")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    image = image.detach().float()
    check_float_range(image, where)
    return image


@contextlib.contextmanager
def _outside_inference():
    """Out of inference mode (a caller's ``torch.inference_mode()`` too: tensors made here are ordinary
    ones, editable in place afterwards), gradients still off. ``inference_mode(False)`` alone turns
    gradients back on."""
    with torch.inference_mode(False), torch.no_grad():
        yield


def _check_arguments(*, batch_size=1, score_thresh=None, masks="dense", dtype=None, tile=None,
                     paste_masks=True, tta=None, **_others) -> None:
    """The Predictor's plain arguments, checked before anything is loaded or built."""
    from maskrcnn.engine.tiling import as_tile_options
    from maskrcnn.engine.tta import as_tta_options

    if as_tta_options(tta) is not None and as_tile_options(tile) is not None:
        # each tile would need its own augmentations and two merges stacked: slow, and untested
        raise ValueError("tta and tile do not combine: use one of them (test-time augmentation, or tiles "
                         "for small objects in large images)")
    if as_tile_options(tile) is not None and not paste_masks:
        raise ValueError("tile: tiled prediction merges pasted masks; paste_masks=False does not apply")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    # As `predict --score-thresh`: NaN would silently drop everything, a string fail mid-run; above 1
    # keeps nothing, openly (scores are in [0, 1]).
    if score_thresh is not None and (
        isinstance(score_thresh, bool) or not isinstance(score_thresh, numbers.Real)
        or not (math.isfinite(score_thresh) and score_thresh >= 0.0)
    ):
        raise ValueError(f"score_thresh must be a finite number >= 0 or None, got {score_thresh!r}")
    if masks not in ("dense", "rle"):
        raise ValueError(f"masks must be 'dense' or 'rle', got {masks!r}")
    # the name only (a CUDA device object allows every dtype and warns of none; no CUDA is needed for it)
    resolve_dtype(dtype, torch.device("cuda"))


def _checked_config(cfg):
    """``cfg`` checked as ``build_model`` checks it (the ``model.*`` / ``input.*`` keys, each value's kind),
    so that a value changed by assignment after the model was built (``cfg.input.min_size_test = 0``: the
    model then ran on a 1-pixel image and still returned detections) is a one-line ValueError naming the
    key; anything but a ``Config`` is a TypeError. Returns the checked Config (``cfg`` itself when its
    values are plain Python ones)."""
    from maskrcnn.config import MODEL_KEYS, Config, validate_config

    if not isinstance(cfg, Config):
        raise TypeError(f"Predictor expects a maskrcnn.config.Config, got {type(cfg).__name__} (the Config "
                        "the model was built from; load_config(PRESET_OR_YAML) gives one)")
    return validate_config(cfg, stored=True, keys=MODEL_KEYS)


def _check_class_count(model, num_classes: int) -> None:
    """ValueError when the model's box predictor scores another number of classes than ``num_classes``
    (the cfg's): its labels would index past the class names, or name the wrong classes. An ONNX model
    checks its own metadata; a model without the usual head is left alone."""
    head = getattr(getattr(getattr(model, "roi_heads", None), "box_predictor", None), "cls_score", None)
    count = getattr(head, "out_features", None)
    if isinstance(count, int) and count != num_classes:
        raise ValueError(f"cfg has model.num_classes={num_classes} but the model scores {count} classes "
                         f"(roi_heads.box_predictor.cls_score has {count} outputs, '__background__' "
                         "included): pass the Config the model was built from")


# A model's modes while predictors run it in eval mode: id(model) -> [calls running, modules to set
# training again when the last one ends]. Kept by model, not by predictor, so that calls from several
# threads, or from two predictors of one model, give the modes back once, after the last call. A plain
# dict: the entry goes in ``finally`` when the count reaches 0 (a ``with`` in a plain function cannot be
# abandoned), and the model stays alive while a call holds it.
_MODE_LOCK = threading.Lock()
_MODE_STATE: dict = {}


@contextlib.contextmanager
def _eval_mode(model):
    """``model`` in eval mode for the block, its modules' own modes given back after (a model a notebook
    has put back into training, or partly: a frozen backbone stays in eval, one unfrozen stage trains).
    Without this a predictor built before ``model.train()`` silently predicted in train mode (batch
    statistics that also rewrote BatchNorm's running statistics, the training proposal counts). Every
    module is looked at on every call, a stage deep down included (about 0.3 ms for an R50, nothing next
    to a forward pass), also by a call that starts while another is running (a ``model.train()`` between
    the two is caught, for the later call). An ONNX model has no modes."""
    if not isinstance(model, nn.Module):
        yield
        return
    with _MODE_LOCK:
        training = [m for m in model.modules() if m.training]
        if training:
            model.eval()  # through each module's own train(False)
        state = _MODE_STATE.setdefault(id(model), [0, []])
        state[0] += 1
        state[1].extend(training)
    try:
        yield
    finally:
        with _MODE_LOCK:
            state[0] -= 1
            if state[0] == 0:
                del _MODE_STATE[id(model)]
                for m in state[1]:
                    m.training = True  # the flag as it was, not train(): no module's own train() reruns


def _check_float16_device(dtype, device: torch.device) -> None:
    """float16 on a device without it (a CPU, also "auto" resolved on a machine without CUDA): refused by
    ``resolve_dtype``'s message, before a checkpoint or ONNX file is read. Other dtypes are left to the
    Predictor (bfloat16's emulation warning would come twice)."""
    if resolve_dtype(dtype, torch.device("cuda")) is torch.float16:  # a CUDA device: the name only
        resolve_dtype(dtype, device)


def _refuse_int8_options(device, dtype, int8_source) -> None:
    """An INT8 model given a device other than the CPU or an autocast dtype: refused, naming only what
    was asked and cannot be. Read from the arguments, so that it comes before ``resolve_dtype``'s
    warnings without touching the process's warning filters (a server's other threads share them). The
    dtype is judged by ``named_dtype``'s rules (the spellings of float32 pass; one not supported is
    refused as such, not as an autocast)."""
    autocast = named_dtype(dtype) is not None
    wrong = ([f"device {device}"] if device.type != "cpu" else []) + ([f"dtype {dtype}"] if autocast else [])
    if wrong:
        flags = "/".join(f for f, w in (("--device", "device"), ("--dtype", "dtype"))
                         if any(x.startswith(w) for x in wrong))
        raise ValueError(f"{int8_source}: an INT8 model runs on the CPU without autocast (got "
                         f"{', '.join(wrong)}); for its float weights load it with int8=False in "
                         f"Python; on the command line drop {flags} (INT8 runs on the CPU) or use "
                         "the float checkpoint it was made from.")


class Predictor:
    """Run a Mask R-CNN on images at their original size.

    Args:
        model: a built ``MaskRCNN`` (put in eval mode here, and run in eval mode by every call whatever
            mode it is in by then, its modes given back after; moved to ``device``), or an
            ``export.onnx_runtime.OnnxModel`` (then ``dtype`` and ``optimise`` do not apply).
        cfg: its ``Config`` (input sizes, mask threshold and paste method are read from it), checked as
            ``build_model`` checks it (a value edited after loading: a ValueError naming the key) and
            against the model (``model.num_classes`` must be the number of classes it scores).
        class_names: index = label, index 0 = "__background__". Repeated or empty names are told apart
            (``class_names.distinct_class_names``, with a warning naming them) in ``class_names``, which
            every output uses, by ``label_to_category_id``'s ids when it numbers every class (the names
            a ``CocoDataset`` of those categories gives), else by class index; ``source_class_names``
            keeps them as given.
        device: "cpu", "cuda", "cuda:N" or "auto".
        score_thresh: drop detections scoring below it, a number >= 0 (scores are in [0, 1], so above 1
            keeps nothing; None: keep what the model returns, whose own threshold is
            ``cfg.model.roi_heads.score_thresh``: a lower ``score_thresh`` finds nothing more here, but
            ``from_checkpoint`` lowers the model's own threshold to it).
        batch_size: images per forward. Images of different sizes are padded to a common size in a
            batch, which changes features near their borders slightly, so 1 (the default) makes each
            image's detections independent of its batch-mates; larger batches pay off on a GPU. Images
            given together (up to ``window`` = ``batch_size * WINDOW_BATCHES``) are grouped by size.
            With ``tile``: tiles per forward, images read one at a time (``window`` 1).
        dtype: None / "float32", "bfloat16" (CPU or CUDA autocast) or "float16" (CUDA autocast).
        optimise: fold batch norm into convolutions, use channels_last and (on CPU) Winograd 3x3
            convolutions (or, where ``torch.mm`` lags oneDNN, oneDNN's linear layers) and fused residual
            additions (``modeling.fuse``); changes ``model`` in place, so leave it off, or give a copy,
            for a model that will be trained further.
        winograd: with ``optimise``, whether to use Winograd 3x3 convolutions (None: on CPU; where
            ``torch.mm`` is clearly slower than oneDNN, ``ops.gemm_rates``, with their products on
            oneDNN and from 256 channels).
        fused_add: with ``optimise``, whether to fuse residual additions into oneDNN's convolution
            (None: on CPU, where its self-test passes; False for a graph to export).
        onednn_linear: with ``optimise``, whether to run the linear layers through oneDNN (None: on CPU
            where ``torch.mm`` is clearly slower than oneDNN, ``ops.gemm_rates``).
        paste_masks: paste ``masks`` (D, H, W) bool at the original size (False: only ``mask_probs``).
        masks: "dense" (default) returns ``masks`` (D, H, W) bool; "rle" returns ``masks_rle``, D COCO
            RLE dicts ({"size": [H, W], "counts": str}, ``pycocotools.mask.decode`` gives the mask back)
            equal to the RLE of the dense masks, encoded band by band so that memory does not grow
            with the image: 100 dense masks of a 48 MP photo take 4.8 GB, their RLE kilobytes.
        label_to_category_id: the dataset's category id per label, when known (used by writers).
        tile: tiled prediction for large images with small objects: a tile size in pixels or an
            ``engine.tiling.TileOptions`` (size, overlap, full_image, scale, match_thresh, edge_margin);
            ``batch_size`` tiles per forward. Results have the same keys, except ``mask_probs`` (they
            belong to one tile's box; an image no larger than a tile runs untiled and keeps them); at
            most ``cfg.model.roi_heads.detections_per_image`` per image.
            None (default): the whole image at the usual resize.
        tta: test-time augmentation: True (detectron2's scales 400..1200, max 4000, flipped too) or an
            ``engine.tta.TTAOptions`` (min_sizes, max_size, flip); each image runs at every scale and its
            mirror image, boxes merged by NMS, mask probabilities and keypoint heatmaps averaged
            (``engine/tta.py``; mirrored passes swap left and right keypoints by the flip map training
            uses). ``batch_size`` augmentations of one size per forward (an image and its mirror share
            one). Not with ``tile`` or an ONNX model. None (default): no augmentation.
        int8: a checkpoint's "int8" section (``engine.int8``): the model is rebuilt as the calibrated INT8
            model (CPU, float32 autocast off; norms folded, no Winograd / fused additions, whatever
            ``optimise`` says). ``from_checkpoint`` passes it for files written by ``maskrcnn quantize``.
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
        fused_add: Optional[bool] = None,
        onednn_linear: Optional[bool] = None,
        paste_masks: bool = True,
        masks: str = "dense",
        label_to_category_id: Optional[dict] = None,
        int8: Optional[dict] = None,
        int8_source: str = "int8 section",
        tile=None,
        tta=None,
    ):
        from maskrcnn.engine.tiling import as_tile_options
        from maskrcnn.engine.tta import as_tta_options

        _check_arguments(batch_size=batch_size, score_thresh=score_thresh, masks=masks, dtype=dtype,
                         tile=tile, paste_masks=paste_masks, tta=tta)
        cfg = _checked_config(cfg)  # a value edited after loading: refused here, as build_model refuses it
        self.tile = as_tile_options(tile)
        self.tta = as_tta_options(tta)
        self._tta_noted = set()  # the TTA size notes said ("enlarged", "shrunk"), each once per predictor
        self._tile_cap_warned = False  # tiling.cap_note said (once per predictor)
        self._tile_caps = ()  # tile_caps: the last call's, per image
        self._tile_count_warned = False  # tiling.tile_count_note said (once per predictor)
        self._tta_flip_map = None  # the keypoint set's left <-> right map for mirrored passes
        if self.tta is not None and self.tta.flip and cfg.model.roi_heads.keypoint_on:
            from maskrcnn.data.keypoints import keypoint_flip_map

            try:  # the map training's flips use; a bad set fails here, not after the first image's passes
                self._tta_flip_map = keypoint_flip_map(
                    cfg.data.keypoint_names, int(cfg.model.roi_heads.num_keypoints),
                    configured=getattr(cfg.data, "keypoint_flip_map", ()),
                    warn_unpaired=False)  # the checkpoint's stored pairs: training warned when it chose them
            except ValueError as e:
                raise ValueError(f"tta: {e}; or predict without mirrored passes (--tta-no-flip)") from None
        if self.tta is not None and not isinstance(model, nn.Module):
            heads = " and ".join(h for h, on in (("mask", cfg.model.roi_heads.mask_on),
                                                 ("keypoint", cfg.model.roi_heads.keypoint_on)) if on)
            runs = f"the {heads} head{'s run' if ' and ' in heads else ' runs'} on merged boxes" if heads \
                else "its boxes are merged between the stages"
            raise ValueError(f"tta needs the PyTorch model's stages ({runs}); an exported ONNX model runs "
                             "as one graph: use the checkpoint")
        self.detections_per_image = int(cfg.model.roi_heads.detections_per_image)
        self.cfg = cfg
        self.device = resolve_device(device)
        if int8 is not None and int8 is not False and isinstance(model, nn.Module):
            # before the dtype is resolved: its "bf16 emulated" warning would precede this refusal (noise)
            _refuse_int8_options(self.device, dtype, int8_source)
        self.dtype = resolve_dtype(dtype, self.device)
        num_classes = int(cfg.model.num_classes)
        _check_class_count(model, num_classes)
        if not class_names:
            class_names = list(cfg.data.class_names) or default_class_names(num_classes)
        if len(class_names) != num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a model with num_classes={num_classes} "
                "(class names include '__background__' at index 0)"
            )
        self.label_to_category_id = (
            {int(k): int(v) for k, v in label_to_category_id.items()} if label_to_category_id else None
        )
        # repeated or empty names would merge classes in every export keyed by name: told apart, said once;
        # by the dataset's category ids when known, as CocoDataset names them (eval matches by name)
        self.source_class_names = list(class_names)  # as the checkpoint has them (export writes these)
        # the labels whose class owns the keypoint set (None: every class); the others' keypoint rows are
        # zeroed (data/keypoint_classes.py), by the checkpoint's own class names (its labels' order)
        from maskrcnn.data.keypoint_classes import keypoint_labels

        self.keypoint_labels = keypoint_labels(
            getattr(cfg.data, "keypoint_classes", ()), list(cfg.data.class_names) or self.source_class_names
        ) if cfg.model.roi_heads.keypoint_on else None
        self.class_names = distinct_class_names(class_names, self.label_to_category_id)
        by_id = name_ids(class_names, self.label_to_category_id) != list(range(1, len(class_names)))
        note = renamed_note(self.source_class_names, self.class_names, by_category_id=by_id)
        if note:
            warnings.warn(note, stacklevel=2)
        self.score_thresh = None if score_thresh is None else float(score_thresh)
        self.batch_size = int(batch_size)
        self.window = self.batch_size if self.batch_size == 1 else self.batch_size * WINDOW_BATCHES
        if self.tile is not None or self.tta is not None:
            self.window = 1  # tiles / augmentations are batched, not images: a window of photos would be GBs
        self.paste_masks = paste_masks
        self.mask_format = masks
        self.min_size = int(cfg.input.min_size_test)
        self.max_size = int(cfg.input.max_size_test)
        self.resize_method = cfg.input.resize_method
        self.mask_threshold = float(cfg.model.roi_heads.mask_threshold)
        self.paste_method = cfg.model.roi_heads.mask_paste
        self.runtime = not isinstance(model, nn.Module)  # an ONNX file run by onnxruntime
        self.int8_parts = []  # the parts running in INT8 (engine.int8), none by default
        self.weights_notes = []  # what from_checkpoint took from the file, said by the commands (notes)
        if self.runtime:
            if self.dtype is not None:
                raise ValueError(f"dtype {dtype!r}: an ONNX model runs in the precision it was exported in")
            self.model = model
            return
        # Moved to ``device`` (in place: a module's .to() is; the caller's model lives there after), but
        # its train / eval mode is left as the caller has it: each call switches to eval and back
        # (_eval_mode), so a notebook that goes on training it after building a Predictor still trains.
        self.model = model.to(self.device)
        if int8 is not None and int8 is not False:  # a section (validated there); False: float
            self.model.eval()  # folding norms uses their running statistics: the model is rewritten anyway
            from maskrcnn.engine.int8 import apply_int8_section
            from maskrcnn.modeling.fuse import optimise_for_inference

            optimise_for_inference(self.model, channels_last=True, winograd=False, fused_add=False,
                                   onednn_linear=False)
            apply_int8_section(self.model, int8, where=int8_source)
            self.int8_parts = list(self.model.int8_parts)
        elif optimise:
            from maskrcnn.modeling.fuse import optimise_for_inference

            self.model.eval()  # folded norms: the model is an inference model from here on
            optimise_for_inference(self.model, channels_last=True, winograd=winograd, fused_add=fused_add,
                                   onednn_linear=onednn_linear)

    @property
    def precision(self) -> str:
        """What the model computes in: "int8" (a calibrated INT8 model, ``engine.int8``), else the autocast
        dtype ("bfloat16", "float16") or "float32"."""
        if self.int8_parts:
            return "int8"
        if self.dtype is None and not self.runtime:  # a caller's own model may be float64 / bfloat16
            weight = next((p for p in self.model.parameters() if p.is_floating_point()), None)
            if weight is not None:
                return str(weight.dtype).replace("torch.", "")
        return "float32" if self.dtype is None else str(self.dtype).replace("torch.", "")

    def __repr__(self) -> str:
        """What a notebook needs to tell predictors apart: where and in what it runs, its classes and the
        threshold applied (None: the model's own, said beside it)."""
        own = self.cfg.model.roi_heads.score_thresh
        thresh = f"{self.score_thresh:g}" if self.score_thresh is not None else f"None (model's {own:g})"
        parts = [f"device={self.device}", f"precision={self.precision}", f"classes={len(self.class_names)}",
                 f"score_thresh={thresh}", f"batch_size={self.batch_size}"]
        if self.runtime:
            parts.append("model=onnx")
        if self.tile is not None:
            parts.append(f"tile={self.tile.size}")
        if self.tta is not None:
            parts.append("tta=True")
        return f"Predictor({', '.join(parts)})"

    def fixed_threshold_note(self, asked: Optional[float]) -> Optional[str]:
        """A note when ``asked`` (a score threshold) is below what an ONNX graph keeps, else None: its box
        stage drops what scores below ``model.roi_heads.score_thresh``, fixed at export (a checkpoint's is
        lowered to ``score_thresh`` as it loads: ``from_checkpoint``)."""
        own = float(self.cfg.model.roi_heads.score_thresh)
        if not self.runtime or asked is None or asked >= own:
            return None
        return (f"note: a score threshold of {asked:g} keeps nothing more than the exported model's own "
                f"{own:g} (model.roi_heads.score_thresh, fixed at export); to see lower scores export again "
                f"with --set model.roi_heads.score_thresh={asked:g} (and "
                f"model.roi_heads.detections_per_image=N for more than "
                f"{self.cfg.model.roi_heads.detections_per_image} per image)")

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, os.PathLike],
        *,
        device: Union[str, torch.device] = "auto",
        overrides: Optional[dict] = None,
        optimise: bool = True,
        int8: Optional[bool] = None,
        config: Optional[str] = None,
        config_how: Optional[str] = None,
        overrides_word: str = "overrides=",
        keep_checkpoint: bool = False,
        **kwargs,
    ) -> Predictor:
        """Build the model the checkpoint's config describes (``overrides``: dotted config keys, e.g.
        ``{"model.roi_heads.score_thresh": 0.3}``), load its weights strictly, and wrap it. A
        ``score_thresh`` below the config's ``model.roi_heads.score_thresh`` lowers that one too (the box
        head would drop those detections first); ``detections_per_image`` still caps them.

        ``path``: "FILE#ema" takes the "model_ema" copy the checkpoint keeps. ``config`` (a preset name or
        a YAML file): the model of a bare state dict of ours (``torch.save(model.state_dict())``), which
        holds no config (``checkpoint_read.inference_weights``). What was taken (an EMA copy left, a
        wrapper's prefix dropped, default class names) is in the predictor's ``weights_notes``.
        ``config_how``: what the refusal of a bare state dict without ``config`` tells its reader to do (a
        command names its own option; ``checkpoint_read.inference_weights``); ``overrides_word``: how the
        refusal of an override the weights cannot take names ``overrides`` (a command's "--set").

        ``int8``: None runs a file written by ``maskrcnn quantize`` as INT8 and any other in float;
        False runs the float weights of either; True requires the file's "int8" section.
        ``keep_checkpoint``: the checkpoint as read (the EMA copy as "model" for "FILE#ema") kept as the
        predictor's ``checkpoint``, for a caller that writes it out again (``maskrcnn quantize``): not
        read a second time. Off by default: it holds a second copy of the weights."""
        from maskrcnn.checkpoint import CheckpointError, config_from_checkpoint, label_to_category_id
        from maskrcnn.checkpoint_read import inference_weights
        from maskrcnn.config import apply_overrides, check_overrides, trained_with_changes
        from maskrcnn.modeling.mask_rcnn import build_model

        # Bad arguments (a device this machine lacks, a misspelt keyword): one line now, not after a long
        # load and build.
        inspect.signature(cls).bind(None, None, **kwargs)  # TypeError naming an unknown keyword
        if overrides is not None:
            check_overrides(overrides)
        _check_arguments(**kwargs)
        _check_float16_device(kwargs.get("dtype"), resolve_device(device))  # "auto": as cls resolves it
        ckpt, notes = inference_weights(path, config=config, overrides=overrides, config_how=config_how,
                                        overrides_word=overrides_word)
        cfg = config_from_checkpoint(ckpt)
        if overrides:
            trained = cfg
            cfg = apply_overrides(cfg, overrides)
            for line in trained_with_changes(trained, cfg):  # not an error: an ablation may mean it
                warnings.warn(line, stacklevel=2)
        asked = kwargs.get("score_thresh")
        if asked is not None and asked < cfg.model.roi_heads.score_thresh:
            # the box head drops what scores below its own threshold before score_thresh is applied: asked
            # for less, the model built here keeps less too (not asked: the model as its config says)
            cfg = apply_overrides(cfg, {"model.roi_heads.score_thresh": float(asked)})
        # The random initialisation the weights overwrite: under a forked RNG, so that a seeded notebook
        # draws the same numbers whether or not it loaded a model; float32 whatever
        # torch.get_default_dtype() says (a float64 default built a float64 model, slow, its precision
        # misreported).
        with torch.random.fork_rng(devices=[]):
            model = build_model(cfg).float()
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
        class_names = kwargs.pop("class_names", None) or ckpt.get("class_names") or list(
            cfg.data.class_names) or None
        kwargs.setdefault("label_to_category_id", label_to_category_id(ckpt))
        from maskrcnn.engine.int8 import INT8_KEY

        section = ckpt.get(INT8_KEY) if int8 is not False else None
        if int8 and section is None:
            raise CheckpointError(f"{path}: has no '{INT8_KEY}' section (write one with `maskrcnn quantize`, "
                                  "or calibrate on the fly with --int8 --calib-images PATH)")
        if section is not None:
            if str(device) == "auto":  # INT8 kernels are CPU kernels
                device = "cpu"
            kwargs.update(int8=section, int8_source=str(path))
        model.eval()  # a model built here is only predicted with (a caller's own keeps its mode)
        predictor = cls(model, cfg, class_names, device=device, optimise=optimise, **kwargs)
        predictor.weights_notes = notes
        if keep_checkpoint:
            predictor.checkpoint = ckpt
        return predictor

    @classmethod
    def from_onnx(
        cls,
        path: Union[str, os.PathLike],
        *,
        device: Union[str, torch.device] = "cpu",
        threads: Optional[int] = None,
        **kwargs,
    ) -> Predictor:
        """An ONNX file written by ``maskrcnn export``, run by onnxruntime (its config, class names and
        category ids come from the file's metadata). ``threads``: onnxruntime's intra-op threads
        (None: its default, all cores). A ``score_thresh`` below the graph's own
        ``model.roi_heads.score_thresh`` keeps nothing more (fixed at export, unlike ``from_checkpoint``):
        a ``FixedThresholdWarning`` says so."""
        from maskrcnn.export.onnx_runtime import OnnxModel

        if kwargs.get("int8"):  # True, or a checkpoint's section: neither applies to a graph
            raise ValueError(f"{path}: int8: an ONNX model is quantized by onnxruntime's own tools, not here")
        if str(device) == "auto":  # CUDA only where this onnxruntime has the provider for it
            from maskrcnn.export.onnx_runtime import cuda_provider_available

            device = "cuda" if torch.cuda.is_available() and cuda_provider_available() else "cpu"
        device = resolve_device(device)
        _check_float16_device(kwargs.get("dtype"), device)  # before the file is read, as from_checkpoint
        model = OnnxModel(path, device=device, threads=threads)
        kwargs.setdefault("label_to_category_id", model.label_to_category_id)
        for key in ("optimise", "winograd", "fused_add", "onednn_linear"):
            kwargs.pop(key, None)  # CPU speed-ups of the PyTorch model: onnxruntime has its own
        class_names = kwargs.pop("class_names", None) or model.class_names
        predictor = cls(model, model.cfg, class_names, device=device, **kwargs)
        note = predictor.fixed_threshold_note(predictor.score_thresh)
        if note:  # a library caller gets fewer detections than asked for: said, as predict prints it
            warnings.warn(f"{path}: {note}", FixedThresholdWarning, stacklevel=_caller_level())
        return predictor

    @classmethod
    def from_weights(
        cls, path: Union[str, os.PathLike], *, overrides: Optional[dict] = None, **kwargs
    ) -> Predictor:
        """``from_onnx`` for an ONNX file (a ``.onnx`` name, or an ONNX model's first bytes under another
        name), else ``from_checkpoint``."""
        from maskrcnn.config import check_overrides
        from maskrcnn.export.onnx_runtime import is_onnx_file

        _check_path(path)
        if overrides is not None:
            check_overrides(overrides)
        if is_onnx_file(path):
            from maskrcnn.engine.caller_words import word_beside

            kwargs.pop("config_how", None)
            # named as the caller named them: a command passes "--set", the library's are keywords
            word = kwargs.pop("overrides_word", None) or "overrides="
            if kwargs.pop("config", None) is not None:
                raise ValueError(f"{path}: {word_beside(word, '--config')} is for a bare state dict; an "
                                 "exported ONNX file holds its config")
            if overrides:
                raise ValueError(f"{path}: config overrides ({word}) do not apply to an exported ONNX file; "
                                 "override them when exporting the checkpoint")
            for key in ("dtype", "threads", "int8"):
                if kwargs.get(key) is None:
                    kwargs.pop(key, None)
            return cls.from_onnx(path, **kwargs)
        kwargs.pop("threads", None)
        return cls.from_checkpoint(path, overrides=overrides, **kwargs)

    # ----------------------------------------------------------------------------------------
    def load(self, item: ImageLike, index: int = 0, *, channels: str = "RGB") -> torch.Tensor:
        """A file path, encoded image bytes, tensor, numpy array or PIL image -> (3, H, W) float32 in
        [0, 1] at its original size (on the tensor's device, else the CPU); see the module docstring for
        the conventions. ``channels="BGR"``: a 3-channel array or tensor is in OpenCV's order."""
        return load_image(item, f"image {index}", channels=channels)

    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]], *, channels: str = "RGB") -> list:
        """Detections per image (a list even for one image), on the CPU, in original coordinates:
        ``boxes`` (D, 4) xyxy float32, ``scores`` (D,) float32 in decreasing order, ``labels`` (D,)
        int64 (1..K-1), ``masks`` (D, H, W) bool and ``mask_probs`` (D, 1, M, M) float32 for mask
        models, ``keypoints`` (D, K, 3) and ``keypoint_scores`` (D, K) for keypoint models (a detection
        of a class whose training category had no keypoints, ``data.keypoint_classes``, has its rows all
        0: v = 0, no point; ``keypoint_labels`` holds the labels with keypoints, None: every one);
        ``masks_rle`` (a list of D dicts) instead of ``masks`` with ``masks="rle"``. D may be 0.

        ``images``: one image or an iterable of them (a list, a generator, an (N, 3, H, W) tensor or
        an (N, H, W, 3) array); each a path, encoded image bytes, a tensor, a numpy array or a PIL
        image (the module docstring). ``channels``: "RGB", or "BGR" for arrays and tensors in OpenCV's
        order (files and PIL images know their own)."""
        if channels not in CHANNELS:
            raise ValueError(f"channels must be 'RGB' or 'BGR', got {channels!r}")
        if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or _is_one_image(images) \
                or _is_file_object(images):  # a stream iterates as lines: one image, read whole
            images = [images]
        elif isinstance(images, Mapping):  # iterating it would read its keys (names) as the images
            raise TypeError("images: a mapping is not a list of images; pass list(d.values()) (and keep "
                            "list(d) for their names: the results come back in that order)")
        elif not hasattr(images, "__iter__"):
            raise TypeError(
                f"images: expected an image or an iterable of images, got {type(images).__name__}")
        images = list(images)
        out, caps = [], []
        for start in range(0, len(images), self.window):
            chunk = images[start : start + self.window]
            loaded = [self.load(im, start + i, channels=channels) for i, im in enumerate(chunk)]
            out.extend(self._predict_loaded(loaded))  # load() checked each image
            caps.extend(self._tile_caps)
        self._tile_caps = tuple(caps)  # the whole call's, not its last window's
        return out

    @property
    def tile_caps(self) -> tuple:
        """Per image of the last call (``__call__``, ``predict_tensors``; ``predict_files``: of the last
        list it yielded), in input order: a ``tiling.TileCap`` for an image whose tiled merge found more
        detections than ``detections_per_image`` (the best of them were kept), else None. The warning
        of it is said for the first such image only; this tells every one (the server tells each
        client its own). One record per predictor: read it in the thread that called."""
        return self._tile_caps

    def predict_files(self, paths: Sequence[Union[str, os.PathLike]], *, on_error=None) -> Iterator[list]:
        """Read image files and predict, ``window`` files at a time: yields per window a list of
        ``(index in paths, image (3, H, W), detections)`` in input order. A file that cannot be read
        is skipped after ``on_error(index, path, error)`` (raised when ``on_error`` is None). One path
        alone is one file."""
        from maskrcnn.data.images import read_image

        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)  # not its characters
        for start in range(0, len(paths), self.window):
            loaded = []  # (index, image)
            for index in range(start, min(start + self.window, len(paths))):
                try:
                    loaded.append((index, read_image(paths[index])))
                except (ValueError, OSError) as e:  # ImageReadError is a ValueError
                    if on_error is None:
                        raise
                    on_error(index, paths[index], e)
            if loaded:
                dets = self.predict_tensors([image for _, image in loaded])
                yield [(index, image, det) for (index, image), det in zip(loaded, dets)]

    def predict_tensors(self, images: Sequence[torch.Tensor]) -> list:
        """Already-loaded (3, H, W) float images in [0, 1] at their original size (a list of them) ->
        detections per image, in input order. Images are resized, grouped by resized size (so that
        batch-mates pad little) into forwards of ``batch_size``, and mapped back to their original size.

        The model runs under ``torch.inference_mode``; the results are made outside it, so they are
        ordinary tensors (edited in place, or used in autograd, like any other)."""

        if isinstance(images, torch.Tensor) and images.dim() != 4:
            raise TypeError("predict_tensors takes a list of (3, H, W) tensors; for one image pass [image] "
                            "(or call the predictor itself, which takes any image form)")
        images = list(images)
        for i, im in enumerate(images):
            tensor = isinstance(im, torch.Tensor)
            if not (tensor and im.dim() == 3 and im.shape[0] == 3 and im.is_floating_point()):
                desc = f"{im.dtype} tensor of shape {tuple(im.shape)}" if tensor else type(im).__name__
                raise ValueError(f"image {i}: predict_tensors takes (3, H, W) float RGB tensors in [0, 1], "
                                 f"got a {desc} (the predictor itself converts other forms)")
            if im.is_meta:
                raise ValueError(f"image {i}: tensor on the meta device holds no data")
            check_float_range(im.detach().float(), f"image {i}")
        return self._predict_loaded(images)

    def _predict_loaded(self, images: list) -> list:
        """``predict_tensors`` on images ``load`` has checked already (checked once, on load; the model's
        ``preprocess`` is told so, per forward, tile and TTA view): with
        ``tile``, images larger than a tile tiled, the others (one tile each) as without tiling. The model
        runs in eval mode whatever mode it was left in (``_eval_mode``)."""
        # A caller's own torch.autocast block is switched off for the whole call (the model's layers, the
        # mask pasting, on the CPU and the model's device): ``dtype`` alone chooses the precision
        # (``_low_precision`` switches its own back on inside).
        caps = [None] * len(images)
        with _eval_mode(self.model), torch.autocast("cpu", enabled=False), \
                torch.autocast(self.device.type, enabled=False):
            if self.tta is not None:
                out = [self._predict_tta(image) for image in images]
            elif self.tile is None:
                out = self._predict_whole(images)
            else:
                tile = self.tile
                whole = [i for i, im in enumerate(images)
                         if tile.scale is None and max(im.shape[-2:]) <= tile.size]  # one tile: usual path
                out = [None] * len(images)
                for i, det in zip(whole, self._predict_whole([images[i] for i in whole])):
                    out[i] = det
                for i, det in enumerate(out):
                    if det is None:
                        out[i], caps[i] = self._predict_tiled(images[i])
        self._tile_caps = tuple(caps)
        # a class without keypoints (a ball beside the critters) gets none: its rows zeroed, shapes kept
        from maskrcnn.data.keypoint_classes import without_foreign_keypoints

        return [without_foreign_keypoints(det, self.keypoint_labels) for det in out]

    def _predict_whole(self, images: list) -> list:
        """Each image whole, at the usual resize."""
        from maskrcnn.data.transforms import resize_image

        with torch.inference_mode():
            resized = [
                resize_image(
                    im.to(self.device, non_blocking=True),
                    min_size=self.min_size,
                    max_size=self.max_size,
                    method=self.resize_method,
                )
                for im in images
            ]
            order = list(range(len(resized)))
            if self.batch_size > 1:  # stable: equal sizes keep their input order
                order.sort(key=lambda i: tuple(resized[i].shape[-2:]))
            raw = [None] * len(resized)  # the model's detections, resized coordinates
            for start in range(0, len(order), self.batch_size):
                ids = order[start : start + self.batch_size]
                for i, det in zip(ids, self._forward([resized[i] for i in ids])):
                    raw[i] = det
        # Outside inference mode: inference tensors refuse in-place edits (boxes[:, 2:] -= boxes[:, :2])
        # and autograd ever after, a trap for users; the model's outputs are small (the pasted masks,
        # made from them here, are the large part), so cloning them costs little. Left explicitly
        # (_outside_inference): a caller's own inference_mode would otherwise hold here too.
        with _outside_inference():
            return [
                self._to_original(
                    {k: (v.clone() if torch.is_tensor(v) else v) for k, v in det.items()},
                    tuple(resized[i].shape[-2:]),
                    tuple(images[i].shape[-2:]),
                )
                for i, det in enumerate(raw)
            ]

    def _forward(self, images: list) -> list:
        """The model's stages on resized images -> its detections (resized coordinates), with ``dtype``
        autocast on the network (``_low_precision``)."""
        if self.runtime:  # the exported graph takes one image
            return [self.model(im) for im in images]
        feats, sizes, proposals = self._features(images)
        with self._low_precision():
            dets, _ = self.model.roi_heads(feats, proposals, sizes)
        return dets

    def _low_precision(self):
        """``dtype``'s autocast (a no-op for float32) around the network's layers: the backbone, FPN, RPN
        head, RoI heads (and the C4 design's res5).

        The convolutions and fully connected layers are the time; what decides boxes stays float32 under
        it (bfloat16 has an 8-bit mantissa: steps of 4 pixels at x = 1000): the features the RoIs are
        pooled from (``_features``), the box predictor's scores and deltas (``BoxPredictor``), the
        RPN's and box stage's decoding, ranking and NMS, mask probabilities and keypoint decoding."""
        if self.dtype is None:  # a caller's own autocast is off already (_predict_loaded)
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _features(self, images: list) -> tuple:
        """The feature extractor and the RPN (``dtype`` autocast) on resized images: (features name ->
        (N, C, Hl, Wl) float32, [(h, w)] per image, proposals [(P, 4)] per image)."""
        model = self.model
        # (N, 3, Hp, Wp), [(h, w)] per image; load() checked the values (no second min/max, no sync)
        batch, sizes = model.preprocess(images, checked=True)
        with self._low_precision():
            feats = model.features(batch)
            proposals, _ = model.rpn([feats[n] for n in model.rpn_in_features], sizes, batch.shape[-2:])
        if self.dtype is not None:  # RoIs are pooled from float32 features: sub-pixel sampling kept
            feats = {k: v.float() for k, v in feats.items()}  # name -> (N, C, Hl, Wl)
        return feats, sizes, proposals

    def _predict_tta(self, image: torch.Tensor) -> dict:
        """One image with test-time augmentation (``engine/tta.py``): the box stage on every augmentation,
        boxes mapped back and merged, then the mask and keypoint heads on the merged boxes in every
        augmentation (the features computed again: keeping all of them would take GBs at 1200 pixels),
        probabilities and heatmaps averaged, masks pasted as usual."""
        from maskrcnn.engine import tta

        height, width = image.shape[-2:]
        augs = tta.augmentations(self.tta)
        heads = self.model.roi_heads
        for kind, note in (("enlarged", tta.enlargement_note(self.tta, (height, width))),
                           ("shrunk", tta.shrink_note(self.tta, (height, width)))):
            if note and kind not in self._tta_noted:  # each once: a folder of thumbnails would repeat it
                self._tta_noted.add(kind)
                warnings.warn(note, stacklevel=3)
        with torch.inference_mode():
            image_on = image.to(self.device, non_blocking=True)
            pooled = []  # per augmentation, in order: (boxes (Di, 4) original, its own boxes, scores, labels)
            for ids, inputs in self._tta_forwards(image_on, augs):
                feats, sizes, proposals = self._features(inputs)
                with self._low_precision():
                    found = heads.detect_boxes(feats, proposals, sizes)
                for a, r, det in zip(ids, inputs, found):
                    hw = tuple(r.shape[-2:])
                    pooled.append((tta.boxes_to_original(det["boxes"], hw, (height, width), augs[a].flip),
                                   det["boxes"], det["scores"], det["labels"]))
            boxes = torch.cat([p[0] for p in pooled])  # (P, 4) original
            own = torch.cat([p[1] for p in pooled])  # (P, 4) in its augmentation's input
            scores = torch.cat([p[2] for p in pooled])  # (P,)
            labels = torch.cat([p[3] for p in pooled])  # (P,)
            source = torch.cat([torch.full((len(p[2]),), a, device=scores.device)
                                for a, p in enumerate(pooled)])  # (P,) the augmentation of each
            keep = tta.merge_detections(boxes, scores, labels, nms_thresh=heads.detections.nms_thresh,
                                        detections_per_image=self.detections_per_image)
            if self.score_thresh is not None:  # before the mask passes: never compute what is dropped
                keep = keep[scores[keep] >= self.score_thresh]
            det = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
            own, source = own[keep], source[keep]  # (D, 4), (D,)
            if len(keep) == 0:  # nothing to mask or locate: no second pass
                self._tta_empty(det, boxes)
            elif heads.mask_head is not None or heads.keypoint_head is not None:
                self._tta_second_pass(det, image_on, augs, own, source)
        with _outside_inference():  # as in _predict_whole
            det = {k: v.clone() for k, v in det.items()}
            return self._to_original(det, (height, width), (height, width))

    def _tta_empty(self, det: dict, like: torch.Tensor) -> None:
        """An image without merged detections: the heads' outputs, empty, of the shapes they would have."""
        rh = self.cfg.model.roi_heads
        if self.model.roi_heads.mask_head is not None:
            side = 2 * int(rh.mask_pool_size)  # M, as the mask head gives it
            det["mask_probs"] = like.new_zeros(0, 1, side, side)
        if self.model.roi_heads.keypoint_head is not None:
            det["keypoints"] = like.new_zeros(0, int(rh.num_keypoints), 3)
            det["keypoint_scores"] = like.new_zeros(0, int(rh.num_keypoints))

    def _tta_second_pass(self, det: dict, image: torch.Tensor, augs: list, own: torch.Tensor,
                         source: torch.Tensor) -> None:
        """The mask and keypoint heads on the D merged boxes ``det["boxes"]`` (original pixels) in every
        augmentation (``own`` (D, 4): each box as drawn in its ``source`` augmentation): mask
        probabilities averaged into ``det["mask_probs"]``, keypoint heatmaps averaged and decoded once
        into ``det["keypoints"]`` / ``det["keypoint_scores"]`` (original pixels)."""
        from maskrcnn.engine import tta
        from maskrcnn.modeling.keypoint_head import heatmaps_to_keypoints
        from maskrcnn.modeling.postprocess import scale_keypoints

        heads = self.model.roi_heads
        original_hw = tuple(image.shape[-2:])
        count = det["boxes"].shape[0]
        frame = tta.keypoint_frame(augs)  # the augmentation keypoints are decoded in
        mirrored = any(aug.flip for aug in augs)  # keypoint boxes on the pixel-index grid (keypoint_boxes)
        probs = []  # per augmentation, in order: (D, 1, M, M)
        heat_sum, frame_boxes, frame_hw = None, None, None  # (D, J, Hk, Hk) running sum; (D, 4); (h, w)
        for ids, inputs in self._tta_forwards(image, augs):
            feats, _, _ = self._features(inputs)
            in_aug = []  # per input (D, 4) the merged boxes in its coordinates
            kp_boxes = []  # per input (D, 4) those the keypoint head reads (pixel-index mirror)
            for a, r in zip(ids, inputs):
                hw = tuple(r.shape[-2:])
                mapped = tta.boxes_to_augmentation(det["boxes"], original_hw, hw, augs[a].flip)
                # a box the model drew in this augmentation is used as drawn (no round trip)
                in_aug.append(torch.where((source == a)[:, None], own, mapped))
                kp_boxes.append(tta.keypoint_boxes(in_aug[-1], original_hw, hw, mirrored))
                if a == frame:
                    frame_boxes, frame_hw = kp_boxes[-1], hw
            if heads.mask_head is not None:
                with self._low_precision():
                    group_probs = heads.mask_probs(feats, in_aug, det["labels"].repeat(len(ids)))
                probs.extend(group_probs.split(count))  # (len(ids) * D, ...) -> per input
            if heads.keypoint_head is not None:
                with self._low_precision():
                    maps = heads.keypoint_heatmaps(feats, kp_boxes).float()  # (len(ids) * D, J, Hk, Hk)
                for a, m in zip(ids, maps.split(count)):  # mirrored ones flipped back, left <-> right swapped
                    m = tta.flip_keypoint_heatmaps(m, self._tta_flip_map) if augs[a].flip else m
                    heat_sum = m if heat_sum is None else heat_sum + m
        if heads.mask_head is not None:
            det["mask_probs"] = tta.average_mask_probs(probs, [aug.flip for aug in augs])
        if heads.keypoint_head is not None:
            kps, kp_scores = heatmaps_to_keypoints(heat_sum / len(augs), frame_boxes,
                                                   score=heads.detections.keypoint_score)
            det["keypoints"] = scale_keypoints(kps, frame_hw, original_hw)
            det["keypoint_scores"] = kp_scores

    def _tta_forwards(self, image: torch.Tensor, augs: list) -> Iterator[tuple]:
        """The augmented inputs of one image, a forward's worth at a time, in augmentation order: (their
        indices in ``augs``, their (3, h, w) inputs). One scale's inputs exist at a time (made again for
        the mask pass: resizing is cheap next to the backbone); an image and its mirror, of one size,
        share a forward when ``batch_size`` allows (no padding between them)."""
        from maskrcnn.data.transforms import resize_image

        scale = []  # the current scale's (index, input)
        for a, aug in enumerate(augs + [None]):
            if scale and (aug is None or not aug.flip):  # augmentations(): a scale, then its mirror
                for start in range(0, len(scale), self.batch_size):
                    chunk = scale[start : start + self.batch_size]
                    yield [i for i, _ in chunk], [r for _, r in chunk]
                scale = []
            if aug is None:
                break
            if aug.flip:
                scale.append((a, scale[-1][1].flip(-1)))  # the resized image mirrored, as detectron2 orders
            else:
                scale.append((a, resize_image(image, min_size=aug.min_size, max_size=aug.max_size,
                                              method=self.resize_method)))

    def _predict_tiled(self, image: torch.Tensor) -> tuple:
        """One image larger than a tile: its tiles (``batch_size`` per forward) and, with
        ``full_image``, the whole image (a forward of its own: a batch-mate of another size would pad
        it), merged (``engine.tiling``). Masks stay box-local until the output is made. Returns the
        detections and the merge's ``tiling.TileCap`` (None: all kept)."""
        from maskrcnn.data.transforms import resize_image
        from maskrcnn.engine import tiling

        tile = self.tile
        height, width = image.shape[-2:]
        tiling.check_tile_count(height, width, tile)  # before the grid is listed (millions at stride 1)
        many = tiling.tile_count_note(height, width, tile)
        if many and not self._tile_count_warned:  # once, before the long run: a folder repeats it per image
            self._tile_count_warned = True
            warnings.warn(many, stacklevel=3)
        windows = tiling.tile_grid(height, width, tile.size, tile.overlap).tolist()  # T x [x0, y0, x1, y1]
        batches = [windows[s : s + self.batch_size] for s in range(0, len(windows), self.batch_size)]
        whole = [0, 0, width, height]
        if tile.full_image and len(windows) > 1:  # (one tile is the whole image already)
            batches.append([whole])
        pools = []
        with torch.inference_mode():
            image_on = image.to(self.device, non_blocking=True)  # once: tiles are views of it
        for batch in batches:
            with torch.inference_mode():
                resized = []
                for x0, y0, x1, y1 in batch:
                    crop = image_on[:, y0:y1, x0:x1]  # (3, th, tw) a view
                    if batch[0] is whole:  # the whole image: the usual resize
                        resized.append(resize_image(crop, min_size=self.min_size, max_size=self.max_size,
                                                    method=self.resize_method))
                    else:
                        resized.append(self._resize_tile(crop))
                raw = self._forward(resized)
            with _outside_inference():  # as in _predict_whole
                for window, r, det in zip(batch, resized, raw):
                    det = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in det.items()}
                    pools.append(self._tile_pool(det, tuple(r.shape[-2:]), window, (height, width),
                                                 source=len(pools)))
        with _outside_inference():  # the results are made here: not inside a caller's inference_mode
            merged = tiling.merge_detections(tiling.concat_pools(pools), match_thresh=tile.match_thresh,
                                             edge_margin=tile.edge_margin,
                                             mask_resolution=2 * self.cfg.model.roi_heads.mask_pool_size)
            found, onnx = merged["boxes"].shape[0], _is_onnx_model(self.model)
            cap = tiling.tile_cap(found, self.detections_per_image, (height, width), onnx=onnx)
            note = tiling.cap_note(found, self.detections_per_image, (height, width), onnx=onnx)
            if note and not self._tile_cap_warned:  # once: every large image of a folder may reach it
                self._tile_cap_warned = True
                warnings.warn(note, stacklevel=3)
            merged = tiling.top_detections(merged, self.detections_per_image)
            out = {k: merged[k] for k in ("boxes", "scores", "labels", "keypoints", "keypoint_scores")
                   if k in merged}
            if "bitmaps" in merged:
                if self.mask_format == "rle":
                    out["masks_rle"] = tiling.local_masks_to_rles(merged["origins"], merged["bitmaps"],
                                                                  (height, width))
                else:
                    out["masks"] = tiling.local_masks_to_dense(merged["origins"], merged["bitmaps"],
                                                               (height, width))
        return out, cap

    def _resize_tile(self, crop: torch.Tensor) -> torch.Tensor:
        """A tile (3, th, tw) as the model sees it: the usual resize, or ``tile.scale`` times its size."""
        from maskrcnn.data.transforms import resize_image, resize_image_to

        scale = self.tile.scale
        if scale is None:
            return resize_image(crop, min_size=self.min_size, max_size=self.max_size,
                                method=self.resize_method)
        if scale == 1:
            return crop.contiguous()
        new_hw = (max(1, round(crop.shape[-2] * scale)), max(1, round(crop.shape[-1] * scale)))
        return resize_image_to(crop, new_hw, method=self.resize_method)

    def _tile_pool(self, det: dict, input_hw: tuple, window, image_hw: tuple, *, source: int) -> dict:
        """One tile's (or the whole image's) detections: score threshold applied, in image pixels, masks
        box-local (``engine.tiling.local_masks``), with the cut flags (``engine.tiling.shift_to_image``)."""
        from maskrcnn.engine import tiling
        from maskrcnn.modeling.postprocess import detections_to_original

        x0, y0, x1, y1 = window
        crop_hw = (y1 - y0, x1 - x0)
        det = detections_to_original(self._thresholded(det), input_hw, crop_hw, paste_masks=False)
        if "mask_probs" in det:
            det["origins"], det["bitmaps"] = tiling.local_masks(
                det["mask_probs"], det["boxes"], crop_hw, method=self.paste_method,
                threshold=self.mask_threshold)
        return tiling.shift_to_image(det, window, image_hw, source=source, margin=self.tile.edge_margin)

    def _thresholded(self, det: dict) -> dict:
        """Detections in float32 with the score threshold applied (before pasting: never paste what is
        dropped)."""
        det = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in det.items()}
        if self.score_thresh is not None and "scores" in det:
            keep = det["scores"] >= self.score_thresh
            det = {
                k: (v[keep] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == keep.shape[0] else v)
                for k, v in det.items()
            }
        return det

    def _to_original(self, det: dict, input_hw: tuple, original_hw: tuple) -> dict:
        """One image's detections: float32, score threshold applied, in original coordinates, masks
        pasted, on the CPU."""
        from maskrcnn.modeling.postprocess import detections_to_original

        det = self._thresholded(det)
        det = detections_to_original(
            det,
            input_hw,
            original_hw,
            paste_masks=self.paste_masks and "mask_probs" in det,
            mask_threshold=self.mask_threshold,
            paste_method=self.paste_method,
            mask_format=self.mask_format,
        )
        return {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in det.items()}


def load_image(item: ImageLike, where: str, *, channels: str = "RGB") -> torch.Tensor:
    """``Predictor.load`` of one image named ``where`` in messages: (3, H, W) float32 in [0, 1]. Also what
    ``draw_instances`` reads, so that an overlay is drawn on the pixels the Predictor saw."""
    if isinstance(item, (str, os.PathLike)):
        from maskrcnn.data.images import read_image

        return read_image(Path(item))
    if isinstance(item, (bytes, bytearray, memoryview)):  # a file's content, e.g. an HTTP upload
        from maskrcnn.data.images import decode_image_bytes

        return decode_image_bytes(bytes(item), name=f"{where} (bytes, read as an encoded image file; give "
                                  "a path as str or Path)")
    if _is_file_object(item):  # open(path, "rb"), io.BytesIO, a web framework's upload
        # a text-mode file is told before reading: its read() decodes the image's bytes as text (a raw
        # UnicodeDecodeError) and moves the caller's file position
        data = None if _is_text_mode(item) else item.read()
        if not isinstance(data, (bytes, bytearray)):
            got = "str" if data is None else type(data).__name__
            raise TypeError(f"{where}: a file object opened in text mode gives {got}, not an "
                            "image's bytes; open it with mode 'rb'")
        from maskrcnn.data.images import decode_image_bytes

        return decode_image_bytes(bytes(data), name=f"{where} ({type(item).__name__}, read from its position "
                                  "as an encoded image file)")
    return _as_float_image(item, where, channels)


def _is_text_mode(item) -> bool:
    """A stream that reads str: ``io.TextIOBase`` (open(path), io.StringIO), or, for a stream of neither io
    kind, one whose ``mode`` lacks 'b'. io's binary classes are binary whatever their ``mode`` says: a zip
    member (``ZipFile.open``) is a ``BufferedIOBase`` whose mode is 'r'."""
    import io

    if isinstance(item, io.TextIOBase):
        return True
    if isinstance(item, (io.BufferedIOBase, io.RawIOBase)):
        return False
    mode = getattr(item, "mode", "b")
    return isinstance(mode, str) and "b" not in mode


def _is_file_object(item) -> bool:
    """A readable stream (``io.IOBase``, or anything with ``read``): not a tensor or array."""
    import io

    return isinstance(item, io.IOBase) or (callable(getattr(item, "read", None))
                                           and not isinstance(item, torch.Tensor))


def _is_onnx_model(model) -> bool:
    """An exported graph run by onnxruntime (its config fixed at export), not another runtime model."""
    from maskrcnn.export.onnx_runtime import OnnxModel

    return isinstance(model, OnnxModel)


def _check_path(path) -> None:
    """``from_weights``' path: a str or Path, one line otherwise (not os.fspath's "str, bytes or ...")."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
        raise TypeError(f"path: expected a weights file as str or pathlib.Path, got {type(path).__name__}")


def _is_one_image(images) -> bool:
    """One image (not a list of them): a (C, H, W) / (H, W) tensor, a numpy array (H, W[, C]) of any
    ndarray subclass (a masked array's rows are not images) or a PIL image."""
    import numpy as np

    if isinstance(images, torch.Tensor):
        return images.dim() in (2, 3)
    if type(images).__module__.startswith("PIL.") and hasattr(images, "mode"):
        return True
    return isinstance(images, np.ndarray) and images.ndim in (2, 3)


def _some(keys: Sequence[str], n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
