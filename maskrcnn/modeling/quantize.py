"""INT8 post-training quantization of a built Mask R-CNN (CPU inference), with PyTorch's FX flow.

Three steps, each in place on a ``MaskRCNN`` whose norms are already folded
(``modeling.fuse.optimise_for_inference``):

1. ``prepare_int8(model, parts)`` swaps the chosen parts for FX-traced copies that observe their
   activations (``torch.ao.quantization.quantize_fx.prepare_fx``, the "x86" qconfig mapping: per-channel
   symmetric int8 weights, histogram-calibrated uint8 activations).
2. The caller runs calibration images through the normal inference path (``engine.int8``), so the
   observers see exactly the tensors inference will see.
3. ``convert_int8(model)`` replaces the observing copies by quantized modules.

``observer_state(model)`` returns the calibrated activation statistics as plain tensors, and
``load_observer_state`` puts them back into a freshly prepared model: tracing is deterministic and the
weight scales are recomputed from the weights at conversion, so prepare -> load -> convert rebuilds the
same int8 model from an fp32 checkpoint plus these tensors, without pickling any module.

Parts (``PARTS``):
- ``features``: backbone + FPN as one graph (static int8; its outputs dequantized to float32, which
  the RPN's box decoding and RoIAlign read). ``model.backbone`` becomes ``QuantizedFeatures`` and
  ``model.fpn`` a ``FeaturePassthrough``.
- ``rpn``: the RPN head's 3x3 convolution(s) (static int8; objectness and deltas stay float32).
- ``box_head``: the box head's fully connected layers (dynamic int8 ``Linear``: weights int8,
  activations quantized per batch; its convolutions, if any, stay float32).
- ``mask_head``: the mask head's convolutions and transposed convolution (static int8; the per-class
  1x1 predictor stays float32, its logits become probabilities thresholded at 0.5). The transposed
  convolution stays float32 where this PyTorch's INT8 kernel for its geometry disagrees with float32
  on this CPU (``modeling.int8_kernel_check``: e.g. 512 or more input channels, a C4 mask head, under
  x86 or onednn; any size under fbgemm), observed all the same.
Always float32: anchors, box decoding, NMS, RoIAlign, box and class predictors, mask pasting,
keypoint heads.

A model may lack a part (``quantizable_parts``): a keypoint model has no mask head, a C4 model's box
head (res5 + average pooling) no fully connected layer, an RPN built with ``model.rpn.head_convs`` 0 no
convolution. ``prepare_int8`` without ``parts`` quantizes those the model has; asked for one it lacks,
it refuses naming it (``missing_parts_problem``) instead of leaving it out unsaid.

Shapes: N images, (N, 3, Hp, Wp) padded batch; features name -> (N, C, Hl, Wl); R RoIs,
(R, C, S, S) pooled features.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.engine.int8_choices import PARTS
from maskrcnn.modeling.int8_kernel_check import INT8_TOLERANCE, int8_transposed_conv_error
from maskrcnn.modeling.int8_qconfig import int8_qconfig_mapping
from maskrcnn.modeling.mask_head import MaskHead
from maskrcnn.ops.onednn_linear import plain_linears

__all__ = [
    "PARTS",
    "QuantizedFeatures",
    "QuantizedMaskHead",
    "FeaturePassthrough",
    "prepare_int8",
    "convert_int8",
    "observer_state",
    "load_observer_state",
    "unobserved_parts",
    "observer_sites",
    "int8_engine",
    "lacking_parts",
    "quantizable_parts",
    "missing_parts_problem",
    "check_parts",
    "check_int8_runs",
]

_OBSERVER_KEY = "activation_post_process"


@contextmanager
def _quiet():
    """torch.ao.quantization's FX flow warns that it is deprecated in favour of torch.export-based
    quantization; it is the flow that runs eagerly on every PyTorch we support, so silence only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*reduce_range.*", category=UserWarning)
        yield


def int8_engine() -> str:
    """PyTorch's current quantized engine ("x86" on x86 builds: fbgemm or oneDNN chosen per op;
    "qnnpack" on ARM), whose qconfig mapping is used. Read, never set: it is process-wide state."""
    engine = torch.backends.quantized.engine
    if engine in (None, "none") or engine not in ("x86", "fbgemm", "onednn", "qnnpack"):
        raise RuntimeError(f"int8: this PyTorch build has no usable quantized CPU engine ({engine!r})")
    return engine


class FeaturePassthrough(nn.Module):
    """Stands in for the FPN once ``QuantizedFeatures`` computes it: returns its input; keeps the names
    and strides the RPN and poolers read."""

    def __init__(self, *, out_names, strides):
        super().__init__()
        self.out_names = list(out_names)
        self.strides = dict(strides)

    def forward(self, features: dict) -> dict:
        return features


class _Features(nn.Module):
    """backbone (+ FPN) as one module to trace: (N, 3, Hp, Wp) -> name -> (N, C, Hl, Wl)."""

    def __init__(self, backbone: nn.Module, fpn):
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn

    def forward(self, x):
        feats = self.backbone(x)
        return self.fpn(feats) if self.fpn is not None else feats


class QuantizedFeatures(nn.Module):
    """Backbone (+ FPN) as an FX graph, observing or quantized; ``model.backbone`` after ``prepare_int8``.
    Keeps the backbone attributes the rest of the model reads (stage names, channels, strides)."""

    def __init__(self, body: nn.Module, *, stage_names, out_channels, strides):
        super().__init__()
        self.body = body
        self.stage_names = list(stage_names)
        self.out_channels = dict(out_channels)
        self.strides = dict(strides)

    def forward(self, x: torch.Tensor) -> dict:
        return self.body(x)


class QuantizedMaskHead(nn.Module):
    """The mask head as an FX graph (observing or quantized): ``roi_heads.mask_head`` after
    ``prepare_int8``; same ``forward`` and ``channels_for`` as ``MaskHead``."""

    channels_for = MaskHead.channels_for

    def __init__(self, body: nn.Module, *, class_agnostic: bool):
        super().__init__()
        self.body = body
        self.class_agnostic = bool(class_agnostic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _MaskBody(nn.Module):
    """Mask head convs + transposed conv + ReLU + predictor, as ``MaskHead.forward`` computes them."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.convs = head.convs
        self.deconv = head.deconv
        self.predictor = head.predictor

    def forward(self, x):
        for conv in self.convs:
            x = conv(x)
        return self.predictor(F.relu(self.deconv(x)))


def _trace_without_identity(module: nn.Module):
    """symbolic_trace ``module`` and drop its ``nn.Identity`` calls (the folded norms), so that conv ->
    ReLU and conv -> add -> ReLU are adjacent and fuse into single quantized kernels."""
    gm = torch.fx.symbolic_trace(module)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def _qconfig_mapping(float_modules=()):
    """The engine's INT8 mapping (``int8_qconfig``: per-tensor weights for the transposed convolution,
    which onednn's default refuses) with ``float_modules`` (submodule names) left in float32."""
    mapping = int8_qconfig_mapping(int8_engine())
    for name in float_modules:
        mapping = mapping.set_module_name(name, None)
    return mapping


# the mask head's 1x1 predictor stays float32 (per-class logits, cheap); see the module docstring
_MASK_FLOAT = ("predictor",)


def _prepare(module: nn.Module, example: tuple, float_modules=()) -> nn.Module:
    from torch.ao.quantization.quantize_fx import prepare_fx

    with _quiet():
        return prepare_fx(_trace_without_identity(module).eval(), _qconfig_mapping(float_modules), example)


def _check_folded(module: nn.Module, part: str) -> None:
    """Every norm of a part to quantize must be folded into its convolution (GroupNorm cannot be)."""
    from maskrcnn.modeling.layers import ConvNorm

    for name, m in module.named_modules():
        if isinstance(m, ConvNorm) and not isinstance(m.norm, nn.Identity):
            where = f"{part}.{name}" if name else part
            if isinstance(m.norm, nn.GroupNorm):
                raise ValueError(f"int8: {where} uses GroupNorm, which cannot be folded into an INT8 "
                                 f"convolution; leave '{part}' out of the quantized parts")
            raise ValueError(f"int8: {where}'s norm is not folded; run modeling.fuse.optimise_for_inference "
                             "(fold_bn=True) first")


# what a model lacking a part lacks, in words for the refusal and the note ("features" is not here:
# every MaskRCNN has a backbone + FPN to quantize)
_LACKS = {
    "rpn": "this model's RPN head has no convolution (model.rpn.head_convs 0)",
    "box_head": "this model's box head has no fully connected layer (C4: res5 + average pooling)",
    "mask_head": "this model has no mask head",
}


def lacking_parts(model: nn.Module) -> dict:
    """The ``PARTS`` a built (not yet prepared) ``MaskRCNN`` has nothing to quantize in -> why, in order:
    ``{"mask_head": "this model has no mask head"}`` for a keypoint model."""
    has = {
        "rpn": len(getattr(model.rpn.head, "convs", ())) > 0,
        "box_head": len(getattr(model.roi_heads.box_head, "fcs", ())) > 0,
        "mask_head": model.roi_heads.mask_head is not None,
    }
    return {p: _LACKS[p] for p in PARTS if not has.get(p, True)}


def quantizable_parts(model: nn.Module) -> list:
    """The ``PARTS`` a built (not yet prepared) ``MaskRCNN`` has something to quantize in, in order."""
    lacking = lacking_parts(model)
    return [p for p in PARTS if p not in lacking]


def missing_parts_problem(model: nn.Module, parts) -> str:
    """"" when ``model`` has all of ``parts``; else one sentence naming those it lacks and those it has:
    "this model has no mask head (parts it has: features, rpn, box_head)"."""
    lacking = lacking_parts(model)
    missing = [why for p, why in lacking.items() if p in parts]
    if not missing:
        return ""
    return f"{'; '.join(missing)} (parts it has: {', '.join(quantizable_parts(model)) or 'none'})"


def check_parts(model: nn.Module, parts=None, *, named: str = "int8") -> list:
    """The parts ``prepare_int8`` quantizes in ``model`` (a built, not yet prepared ``MaskRCNN``):
    ``parts``, or with None all the model has (``quantizable_parts``). Unknown parts, none, or a part the
    model lacks are refused (ValueError; a lacking part's message starts with ``named``: a command names
    its option, "--parts mask_head"). ``prepare_int8`` calls it; a command calls it first too, so that a
    bad ``--parts`` is refused before the calibration images are looked at."""
    if parts is None:
        parts = quantizable_parts(model)
    parts = list(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"int8: unknown parts {unknown}; expected some of {list(PARTS)}")
    if not parts:
        raise ValueError(f"int8: no parts to quantize; expected some of {list(PARTS)}")
    problem = missing_parts_problem(model, parts)
    if problem:
        raise ValueError(f"{named}: {problem}")
    return parts


@torch.no_grad()
def prepare_int8(model: nn.Module, *, parts=None, named: str = "int8") -> nn.Module:
    """Swap ``parts`` of ``model`` (a folded, eval-mode ``MaskRCNN`` on the CPU) for observing FX
    copies; returns ``model``. ``model.int8_parts`` records which parts were prepared. ``parts`` None:
    all the model has (``quantizable_parts``); a part it lacks, asked for, is refused (ValueError, its
    message starting with ``named``: a command names its option, "--parts mask_head")."""
    if getattr(model, "int8_parts", None):
        raise ValueError("int8: this model is already prepared or quantized")
    parts = check_parts(model, parts, named=named)
    first = next(iter(model.parameters()), None)
    if first is not None and first.device.type != "cpu":
        raise ValueError(f"int8: quantized kernels run on the CPU; the model is on {first.device}")
    model.eval()
    done = []
    if "features" in parts:
        backbone = model.backbone
        features = _Features(backbone, model.fpn)
        _check_folded(features, "features")
        x = torch.zeros(1, 3, 64, 64)
        model.backbone = QuantizedFeatures(
            _prepare(features, (x,)), stage_names=backbone.stage_names,
            out_channels=backbone.out_channels, strides=backbone.strides,
        )
        if model.fpn is not None:
            model.fpn = FeaturePassthrough(out_names=model.fpn.out_names, strides=model.fpn.strides)
        done.append("features")
    head = model.rpn.head
    if "rpn" in parts and len(head.convs) > 0:
        channels = head.convs[0].conv.in_channels
        convs = nn.Sequential(*head.convs)
        _check_folded(convs, "rpn")
        head.convs = nn.ModuleList([_prepare(convs, (torch.zeros(1, channels, 8, 8),))])
        done.append("rpn")
    box_head = model.roi_heads.box_head
    if "box_head" in parts and len(getattr(box_head, "fcs", ())) > 0:
        # dynamic: no observers, nothing to calibrate; quantized at convert time
        box_head.int8_dynamic = True
        done.append("box_head")
    mask_head = model.roi_heads.mask_head
    if "mask_head" in parts and mask_head is not None:
        body = _MaskBody(mask_head)
        _check_folded(body, "mask_head")
        x = torch.zeros(1, mask_head.deconv.in_channels, 14, 14)
        model.roi_heads.mask_head = QuantizedMaskHead(
            _prepare(body, (x,), float_modules=_MASK_FLOAT), class_agnostic=mask_head.class_agnostic
        )
        done.append("mask_head")
    model.int8_parts = done
    model.int8_converted = False
    return model


def _prepared_graphs(model: nn.Module) -> dict:
    """part name -> the FX graph module holding its observers (static parts only)."""
    out = {}
    if "features" in model.int8_parts:
        out["features"] = model.backbone.body
    if "rpn" in model.int8_parts:
        out["rpn"] = model.rpn.head.convs[0]
    if "mask_head" in model.int8_parts:
        out["mask_head"] = model.roi_heads.mask_head.body
    return out


@torch.no_grad()
def convert_int8(model: nn.Module) -> nn.Module:
    """Replace the observing parts of a prepared, calibrated ``model`` by quantized ones (in place).
    ``model.int8_float_layers`` names the layers of those parts left in float32 because this CPU's INT8
    kernel for them is wrong (``modeling.int8_kernel_check``)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    if not getattr(model, "int8_parts", None) or model.int8_converted:
        raise ValueError("int8: convert_int8 needs a model from prepare_int8 that is not yet converted")
    prepared = _prepared_graphs(model)
    model.int8_float_layers = []
    model.int8_float_why = {}  # layer -> what was measured, for the note
    with _quiet():
        graphs = {name: convert_fx(gm) for name, gm in prepared.items() if name != "mask_head"}
        if "mask_head" in prepared:
            # Observed like the rest (the file's statistics do not depend on the CPU), converted in
            # float32 where this CPU's INT8 transposed convolution is wrong (int8_kernel_check)
            deconv = next(m for m in prepared["mask_head"].modules() if isinstance(m, nn.ConvTranspose2d))
            error = int8_transposed_conv_error(deconv)
            works = error is not None and error < INT8_TOLERANCE
            keep_float = _MASK_FLOAT if works else _MASK_FLOAT + ("deconv",)
            if "deconv" in keep_float:
                model.int8_float_layers.append("mask_head.deconv")
                model.int8_float_why["mask_head.deconv"] = _deconv_measured(deconv, error)
            mapping = _qconfig_mapping(keep_float)
            graphs["mask_head"] = convert_fx(prepared["mask_head"], qconfig_mapping=mapping)
        if "features" in graphs:
            model.backbone.body = graphs["features"]
        if "rpn" in graphs:
            model.rpn.head.convs[0] = graphs["rpn"]
        if "mask_head" in graphs:
            model.roi_heads.mask_head.body = graphs["mask_head"]
        # an INT8 model runs its float linear layers as F.linear, like one loaded from its file (the
        # Predictor's int8 branch: onednn_linear=False), and quantize_dynamic maps nn.Linear by type
        plain_linears(model)
        box_head = model.roi_heads.box_head
        if getattr(box_head, "int8_dynamic", False):
            box_head.fcs = torch.ao.quantization.quantize_dynamic(
                box_head.fcs, {nn.Linear}, dtype=torch.qint8
            )
    model.int8_converted = True
    return model


def _deconv_measured(deconv: nn.ConvTranspose2d, error) -> str:
    """What ``int8_kernel_check`` measured for ``deconv``'s geometry, in one clause for the note."""
    k, s = deconv.kernel_size, deconv.stride
    what = (f"the {int8_engine()} engine's INT8 kernel for a {deconv.in_channels}->{deconv.out_channels} "
            f"{k[0]}x{k[1]} stride-{s[0]} transposed convolution")
    if error is None:
        return f"{what} cannot run here"
    return (f"{what} disagrees with float32 on this CPU (relative error {error:.2f} on random data, "
            f"against < {INT8_TOLERANCE} for a working one)")


@torch.no_grad()
def check_int8_runs(model: nn.Module) -> None:
    """Run each converted part of ``model`` once on a tiny zero input, so that a model whose INT8 kernels
    cannot run under the current engine (qnnpack refuses the FPN's 1x1 stride-2 max-pool for p6) is
    refused here, naming the engine, and not at its first prediction. RuntimeError."""
    if not getattr(model, "int8_converted", False):
        raise ValueError("int8: check_int8_runs needs a converted model")
    trials = []
    if "features" in model.int8_parts:
        trials.append(("features", model.backbone.body, torch.zeros(1, 3, 64, 64)))
    if "rpn" in model.int8_parts:
        head = model.rpn.head  # its float32 objectness reads what the convolutions give: same channels
        trials.append(("rpn", head.convs[0], torch.zeros(1, head.objectness.in_channels, 8, 8)))
    if "box_head" in model.int8_parts:
        fcs = model.roi_heads.box_head.fcs
        first = fcs[0] if isinstance(fcs, (nn.Sequential, nn.ModuleList)) else fcs
        trials.append(("box_head", first, torch.zeros(1, int(first.in_features))))
    if "mask_head" in model.int8_parts:
        body = model.roi_heads.mask_head.body
        channels = next(m for m in body.modules() if hasattr(m, "in_channels")).in_channels
        trials.append(("mask_head", body, torch.zeros(1, channels, 14, 14)))
    for part, module, x in trials:
        try:
            module(x)
        except (RuntimeError, NotImplementedError, AssertionError) as e:
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            first_line = first_line if len(first_line) <= 300 else first_line[:297] + "..."
            raise RuntimeError(
                f"int8: the quantized {part} cannot run under torch.backends.quantized.engine "
                f"{int8_engine()!r} here ({first_line}); calibrate under another engine (this PyTorch "
                f"offers {', '.join(torch.backends.quantized.supported_engines)}; the default is 'x86' "
                "on x86 CPUs), or leave the part out (parts=... / --parts)"
            ) from None


def observer_state(model: nn.Module) -> dict:
    """The calibrated activation observers of a prepared model: ``"<part>.<observer>.<buffer>"`` ->
    tensor (plain tensors only, for a ``weights_only`` file)."""
    if not getattr(model, "int8_parts", None) or model.int8_converted:
        raise ValueError("int8: observer_state needs a prepared, not yet converted model")
    out = {}
    for part, gm in _prepared_graphs(model).items():
        for key, value in gm.state_dict().items():
            if key.startswith(_OBSERVER_KEY):
                out[f"{part}.{key}"] = value.detach().clone()
    return out


def _describe(node) -> str:
    """What a graph node computes, in words that survive re-tracing: a module path, a function name."""
    if node.op == "call_module":
        return str(node.target)
    if node.op in ("call_function", "call_method"):
        return getattr(node.target, "__name__", str(node.target))
    return node.op


def observer_sites(model: nn.Module) -> dict:
    """``"<part>.activation_post_process_<n>"`` -> what that observer watches (the node feeding it, e.g.
    ``"backbone.res2.0.conv1.conv"``, ``"add"``, ``"x"`` for the input), for a prepared model. Saved
    with the statistics, it tells a later load whether the observers are numbered as they were: a change
    of the model's code that reorders them would otherwise give each activation another's scale."""
    sites = {}
    for part, gm in _prepared_graphs(model).items():
        for node in gm.graph.nodes:
            if node.op == "call_module" and str(node.target).startswith(_OBSERVER_KEY):
                src = node.args[0]
                sites[f"{part}.{node.target}"] = src.name if src.op == "placeholder" else _describe(src)
    return sites


def unobserved_parts(state: dict) -> list:
    """Parts of an ``observer_state`` with an observer that saw no tensor (its range still +-inf): the
    mask head when no calibration image gave a detection, for example. Their scales would be made up."""
    bad = {key.split(".", 1)[0] for key, value in state.items()
           if key.endswith(("min_val", "max_val")) and not torch.isfinite(value).all()}
    return [p for p in PARTS if p in bad]


def load_observer_state(model: nn.Module, state: dict) -> None:
    """Put ``observer_state`` tensors back into a freshly prepared model; raises ``ValueError`` naming the
    first key that is missing, unexpected or of another shape (a file written for another model or
    another version of this library)."""
    expected = {}
    graphs = _prepared_graphs(model)
    for part, gm in graphs.items():
        for key, value in gm.state_dict().items():
            if key.startswith(_OBSERVER_KEY):
                expected[f"{part}.{key}"] = value
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise ValueError(f"observer statistics do not fit this model ({len(missing)} missing, "
                         f"{len(extra)} unexpected: {what})")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"observer statistic {key}: expected shape {tuple(expected[key].shape)}, "
                             f"got {shape}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"observer statistic {key} is not finite (an observer that saw no data)")
    for part, gm in graphs.items():
        prefix = part + "."
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        gm.load_state_dict(own, strict=False)
