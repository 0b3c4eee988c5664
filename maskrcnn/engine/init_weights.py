"""Start a run from existing weights (``maskrcnn train --init``, ``model.init_weights``).

Steps, run by ``engine/training.py`` before training (never on ``--resume``: the run's checkpoint holds
its weights):
1. ``follow_weights(cfg, source)``: the config keys the weights fix (``SourceWeights.implied``: their input
   convention and, for a detector, the shapes and conventions of every part it has) replace the run's,
   and each change is listed. A key the user set explicitly (``--set``, or the YAML file given as
   ``--config``) that the weights only suggest (not in ``SHAPE_KEYS``: the frozen-BN eps, the input
   convention, ...) keeps the user's value, listed as "kept ... (the weights suggest ...)" and in the
   report's ``config_kept``. What stays the run's: the classes (from the dataset), which heads are on
   (``mask_on``, ``keypoint_on``), the number of keypoints, frozen or trainable batch norm, ``freeze_at``,
   losses and sampling and the solver; the input sizes too, except a checkpoint of ours' (its stored
   sizes are implied, ``config.INPUT_SIZE_KEYS``: a suggestion, kept where set explicitly).
2. The model is built as usual (the builder's random initialisation, seeded).
3. ``plan_init(model_state, source, ...)`` (pure): the tensor each model key starts from. A key the weights
   have is copied and must match in shape; a key of a part the weights lack entirely (an ImageNet
   backbone has no FPN, RPN or heads; a Faster R-CNN no mask head) keeps its fresh value; a key missing
   from a part the weights do have, a key the weights have in a part the model has but the model lacks
   or in no part we know (``PARTS``: another version's or architecture's checkpoint, refused as a
   torchvision file's unmapped key is), or a shape mismatch stops the run before training, naming the
   --init file, the key and both shapes. Class-specific
   rows (box classifier and regression, mask predictor) are copied for every class whose name matches
   one of the weights' (``normalise_name``: case aside, ``_``, ``-`` and runs of spaces read as one
   space, so 'Traffic_Light' is 'traffic light' but 'trafficlight' is not; ``model.init_class_map``
   maps other names), background included, the others keep their fresh rows; keypoint channels likewise
   by keypoint name when the sets differ; the map's names are exact (a spelling that only reads alike is
   refused with a did-you-mean). Of our classes whose names read alike ('star', 'STAR') only
   the first takes the row, the others start fresh, said in a warning. A row named as a placeholder
   ("N/A", "__background__") matches no name unless our checkpoint records it as a trained class
   (``trained_rows``).
4. The report (``init_report.json``): ``source``, ``config_changes``, ``config_kept``, ``loaded``,
   ``reinitialised``, ``unused``, ``counters_ignored`` (the weights' batch-norm counters,
   num_batches_tracked, that the model has no place for in a part it has: its norms keep none; those of
   a part it lacks are ``unused``), ``class_specific``, ``weights_classes`` (weights with class rows:
   ``{"num_classes": K', "placeholders": rows named N/A, "run_num_classes": K}``, printed "weights: 90
   classes + background (10 of them N/A placeholders) -> this run: 4 + background"), ``copied_classes``
   (ours -> theirs), ``fresh_classes``, ``warnings`` (classes that read alike, rows several classes
   take: ``shared_rows_warning``), ``notes``. Printed (``summary_lines``) as counts plus one line
   per part that starts fresh or goes unused as a whole (``part_lines``: "mask head starts fresh: the
   weights have none" for a Faster R-CNN file, "keypoint head of the weights unused: this model has
   none").

Shapes: K classes incl. background (ours), K' (the weights'); F box head width; C mask head width;
J keypoints. Class-specific tensors: cls_score (K, F) / (K,), bbox_pred (4K, F) / (4K,) with rows
4k..4k+3 for class k, mask predictor (K, C, 1, 1) / (K,), keypoint predictor (C, J, 4, 4) / (J,).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Optional, Sequence

import torch

from maskrcnn.config import apply_overrides, get_key

# key -> (axis of the class rows, rows per class)
CLASS_ROWS = {
    "roi_heads.box_predictor.cls_score.weight": (0, 1),
    "roi_heads.box_predictor.cls_score.bias": (0, 1),
    "roi_heads.box_predictor.bbox_pred.weight": (0, 4),
    "roi_heads.box_predictor.bbox_pred.bias": (0, 4),
    "roi_heads.mask_head.predictor.weight": (0, 1),
    "roi_heads.mask_head.predictor.bias": (0, 1),
}
KEYPOINT_ROWS = {
    "roi_heads.keypoint_head.predictor.weight": (1, 1),  # ConvTranspose2d: (in, J, 4, 4)
    "roi_heads.keypoint_head.predictor.bias": (0, 1),
}
# the parts of a model; a part the weights lack entirely starts fresh
PARTS = ("backbone.", "fpn.", "rpn.", "roi_heads.res5.", "roi_heads.box_head.", "roi_heads.box_predictor.",
         "roi_heads.mask_head.", "roi_heads.keypoint_head.")
_PLACEHOLDERS = {"", "n/a", "__background__", "background"}
_LISTED = 8  # keys named one by one in an error message


class InitError(ValueError):
    """Weights that cannot start this model; the message names the keys (and both shapes)."""


def _part(key: str) -> str:
    return next((p for p in PARTS if key.startswith(p)), key.split(".", 1)[0] + ".")


def normalise_name(name) -> str:
    """'Traffic_Light', 'traffic-light ' -> 'traffic light'; composed (NFC): 'crème' with a combining
    accent (a name from a macOS folder) is 'crème'."""
    words = re.split(r"[\s_\-]+", unicodedata.normalize("NFC", str(name)).strip().lower())
    return unicodedata.normalize("NFC", " ".join(w for w in words if w))


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
        return numbers and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


# Implied keys that fix tensor shapes (or which tensors exist): the weights force them, whatever was asked.
# Every other implied key (the input convention, frozen-BN eps, anchor rounding, pooler and paste
# conventions) is what the weights only suggest: a file cannot always tell (a torchvision model saved
# from ``weights=None`` used eps 1e-5, a published one 0), so a value the user set explicitly wins.
SHAPE_KEYS = frozenset({
    "model.backbone", "model.fpn", "model.roi_features", "model.fpn_dim", "model.fpn_norm", "model.norm",
    "model.rpn.head_convs", "model.rpn.aspect_ratios", "model.roi_heads.box_head",
    "model.roi_heads.box_head_dim", "model.roi_heads.box_head_norm", "model.roi_heads.box_pool_size",
    "model.roi_heads.mask_head_convs", "model.roi_heads.mask_head_dim", "model.roi_heads.mask_head_norm",
    "model.roi_heads.mask_class_agnostic", "model.roi_heads.keypoint_head_convs",
    "model.roi_heads.keypoint_head_dim",
})


def follow_weights(cfg, implied: dict) -> tuple:
    """(cfg with the ``implied`` keys set, {key: {"from": run's value, "to": the weights'}} per change)."""
    cfg, changes, _kept = follow_weights_keeping(cfg, implied, {})
    return cfg, changes


def follow_weights_keeping(cfg, implied: dict, explicit: dict, *, weights: Optional[str] = None,
                           init: str = "--init") -> tuple:
    """``follow_weights``, except that a key of ``explicit`` ({dotted key: where the user set it, e.g.
    "--set"}) outside ``SHAPE_KEYS`` keeps the run's value: (cfg, changes, {key: {"value": the run's,
    "by": where set, "weights": the weights' suggestion}} per key kept against the weights). A key of
    ``SHAPE_KEYS`` set explicitly to another value than the weights' is an InitError naming ``weights``
    (the --init file): their tensors load into no other architecture, and quietly training the weights'
    one instead ("model.backbone resnet50 -> resnet18") read as if the preset, not the user, had said
    resnet50. ``init``: how the caller names the weights ("--init", "init=": ``caller_words.init_word``);
    ``explicit``'s values name the changes as the caller did ("--set", "set=": ``caller_words``)."""
    changes, kept, refused = {}, {}, {}
    for key, value in implied.items():
        current = get_key(cfg, key)
        if _same(current, value):
            continue
        if key in explicit and key not in SHAPE_KEYS:
            kept[key] = {"value": _plain(current), "by": explicit[key], "weights": _plain(value)}
        elif key in explicit:
            refused[key] = (_plain(current), explicit[key], _plain(value))
        else:
            changes[key] = {"from": _plain(current), "to": _plain(value)}
    if refused:
        raise InitError(_architecture_refusal(refused, weights, init))
    if changes:
        cfg = apply_overrides(cfg, {k: implied[k] for k in changes})
    return cfg, changes, kept


def _shown(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def _architecture_refusal(refused: dict, weights: Optional[str], init: str = "--init") -> str:
    """One line: "--set model.backbone=resnet50 but the --init weights W are a resnet18 model; --set
    model.fpn_dim=256 but the weights have model.fpn_dim 64 (...): drop the --set, or use other weights";
    a ``maskrcnn.train()`` caller's "set={'model.fpn_dim': 256} but the init= weights ..."."""
    from maskrcnn.engine.caller_words import SET_WORDS, set_dropped, set_item

    parts, by_all = [], []
    for i, (key, (value, by, theirs)) in enumerate(refused.items()):
        what = f"the {init} weights{' ' + weights if weights else ''}" if i == 0 else "the weights"
        shown = _shown(value) if by.startswith("--") else value
        asked = set_item(by, key, shown) if by in SET_WORDS else f"{by} sets {key}={_shown(value)}"
        held = (f"are a {theirs} model" if key == "model.backbone"
                else f"have {key} {_shown(theirs)}")
        parts.append(f"{asked} but {what} {held}")
        by_all += [] if by in by_all else [by]
    keys = "keys" if len(refused) > 1 else "key"
    drop = " and ".join(set_dropped(by) if by in SET_WORDS else f"the {keys} from {by}" for by in by_all)
    return (f"{'; '.join(parts)} (weights load only into the architecture they were trained in): drop "
            f"{drop}, or use other weights")


def _plain(v):
    return list(_plain(x) for x in v) if isinstance(v, (list, tuple)) else v


# ------------------------------------------------------------------------------------------ names


def match_names(ours: Sequence[str], theirs: Optional[Sequence[str]], explicit: Optional[dict] = None, *,
                what: str = "class", background: bool = True, trained: Sequence[int] = ()) -> list:
    """For each of ``ours``, the index of the matching name in ``theirs`` or None (start fresh).

    ``background``: index 0 of both lists is the background and always matches. ``explicit``: {our name:
    their name or ""} overrides the name match; a name on either side that does not exist is an error.
    With ``theirs`` None (weights without names), rows match by position when both have as many.
    Names are compared as ``normalise_name`` reads them. A row of ``theirs`` named as a placeholder
    ("N/A", "__background__", "background": torchvision's unused COCO ids) matches no name unless its
    index is in ``trained`` (a class a run of ours trained under that name, ``trained_rows``); an empty
    name never matches. Of several of ``ours`` that read alike ('star', 'STAR') only the first takes the
    matching row, the later ones start fresh (``shared_rows_warning`` says so): two classes started from
    one row would start tied, with identical scores. ``explicit`` may still give one row to several.
    """
    explicit = dict(explicit or {})
    ours = list(ours)
    if theirs is None:
        if explicit:
            raise InitError(f"model.init_{what}_map: the weights carry no {what} names to map to")
        return None
    theirs = list(theirs)
    index = _their_index(theirs, background, set(trained))
    rows = [None] * len(ours)
    met = set()  # names one of ours took already: a later spelling of the same name starts fresh
    for i, name in enumerate(ours):
        if background and i == 0:
            rows[0] = 0 if theirs else None
            continue
        key = normalise_name(name)
        if key not in met:
            met.add(key)
            rows[i] = index.get(key)
    for mine, target in explicit.items():
        i = _our_index(mine, ours, what, background)
        if target in ("", None):
            rows[i] = None
            continue
        rows[i] = _their_row(target, mine, theirs, index, what)
    return rows


def _their_row(target, mine, theirs: list, index: dict, what: str) -> int:
    """The row of the weights' name ``target`` (``model.init_*_map``'s value for ``mine``), written exactly
    as the weights spell it; InitError naming the spelling that reads alike, if one does."""
    rows = sorted(set(index.values()))
    exact = [j for j in range(len(theirs)) if theirs[j] == target and normalise_name(theirs[j]) in index]
    if exact:
        return exact[0]
    alike = list(dict.fromkeys(str(theirs[j]) for j in range(len(theirs))
                               if normalise_name(theirs[j]) == normalise_name(target) and
                               normalise_name(theirs[j]) in index))
    if alike:
        raise InitError(f"model.init_{what}_map: {target!r} (for {mine!r}) is not a {what} of the weights as "
                        f"spelt: did you mean {_either(alike)}? (names in the map are written exactly)")
    some = list(dict.fromkeys(theirs[j] for j in rows))[:12]
    raise InitError(f"model.init_{what}_map: {target!r} (for {mine!r}) is not a {what} of the "
                    f"weights (e.g. {', '.join(map(str, some))})")


def _either(names: Sequence[str]) -> str:
    """'star' | 'star' or 'STAR' | 'a', 'b' or 'c'."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _their_index(theirs: list, background: bool, trained: set) -> dict:
    """{normalised name: index of its first row} over the weights' names that can match (``match_names``)."""
    index = {}
    for i, name in enumerate(theirs):
        key = normalise_name(name)
        if (i > 0 or not background) and key and (key not in _PLACEHOLDERS or i in trained):
            index.setdefault(key, i)
    return index


def _plural(what: str) -> str:
    """'class' -> 'classes', 'keypoint' -> 'keypoints'."""
    return what + ("es" if what.endswith("s") else "s")


def _our_index(mine, ours: list, what: str, background: bool) -> int:
    """The index in ``ours`` of ``model.init_*_map``'s key ``mine``: the name written exactly so (as the
    README says, each name as spelt: 'Widget' mapping 'widget' silently hid a typo, and with 'star' and
    'STAR' both present the spelling is what tells them apart); InitError otherwise, naming the names
    that read alike ("did you mean 'widget'?") or the training set's."""
    first = 1 if background else 0
    exact = [i for i in range(first, len(ours)) if ours[i] == mine]
    if exact:
        return exact[0]
    alike = [str(ours[i]) for i in range(first, len(ours)) if normalise_name(ours[i]) == normalise_name(mine)]
    if alike:
        raise InitError(f"model.init_{what}_map: {mine!r} is not a {what} of the training set as spelt: did "
                        f"you mean {_either(alike)}? (names in the map are written exactly)")
    raise InitError(f"model.init_{what}_map: {mine!r} is not a {what} of the training set "
                    f"({', '.join(map(str, ours[first:]))})")


def shared_rows_warning(ours: Sequence[str], rows: Optional[list], theirs: Optional[Sequence[str]], *,
                        what: str = "class", background: bool = True) -> Optional[str]:
    """One line, or None: the classes of ``ours`` whose names read alike (``normalise_name``: 'star' and
    'STAR') where the weights have a row for one of them, and which row each took (``match_names``: the
    first, the others fresh); and any row of the weights several of ours took (``model.init_*_map``), which
    start tied. Almost always a labelling slip ("Star" beside "star") that a user needs to hear of."""
    if rows is None:
        return None
    theirs = list(theirs or [])
    first = 1 if background else 0

    def took(i):
        j = rows[i]
        if j is None:
            return f"{ours[i]!r} starts fresh"
        return f"{ours[i]!r} takes the weights' row {j}" + (f" ({theirs[j]!r})" if j < len(theirs) else "")

    said, parts = set(), []
    groups = {}
    for i in range(first, len(ours)):
        groups.setdefault(normalise_name(ours[i]), []).append(i)
    for key, members in groups.items():
        if len(members) > 1 and any(rows[i] is not None for i in members):
            parts.append(f"{_plural(what)} {', '.join(repr(ours[i]) for i in members)} of the training set "
                         f"read as one name ({key!r}): {', '.join(took(i) for i in members)}")
            said.update(members)
    sharing = {}
    for i in range(first, len(ours)):
        if rows[i] is not None:
            sharing.setdefault(rows[i], []).append(i)
    for j, members in sharing.items():
        if len(members) > 1 and not set(members) <= said:
            parts.append(f"{', '.join(repr(ours[i]) for i in members)} all take the weights' row {j}"
                         + (f" ({theirs[j]!r})" if j < len(theirs) else "") + " and start tied")
    if not parts:
        return None
    return ("; ".join(parts) + f" (if they are one {what}, give them one name in the data; to choose the "
            f"rows, model.init_{what}_map={{NAME: THEIRS, OTHER: ''}}, each name as it is spelt)")


def _copy_rows(fresh: torch.Tensor, src: torch.Tensor, rows: list, axis: int, per: int, key: str,
               source: str = "the weights") -> tuple:
    """``fresh`` with the rows of each matched entry copied from ``src``; (tensor, copied, fresh counts).
    An InitError names ``source`` (the --init file) and ``key``."""
    other_fresh = [s for d, s in enumerate(fresh.shape) if d != axis]
    other_src = [s for d, s in enumerate(src.shape) if d != axis]
    if other_fresh != other_src or src.shape[axis] % per:
        raise InitError(f"{source}: {key}: the weights' {tuple(src.shape)} cannot give rows of the model's "
                        f"{tuple(fresh.shape)}")
    out = fresh.clone()
    copied = 0
    for i, j in enumerate(rows):
        if j is None:
            continue
        if (j + 1) * per > src.shape[axis]:
            raise InitError(f"{source}: {key}: the weights have {src.shape[axis] // per} rows, row {j} was "
                            "asked for")
        out.narrow(axis, i * per, per).copy_(src.narrow(axis, j * per, per))
        copied += 1
    return out, copied, len(rows) - copied


# ------------------------------------------------------------------------------------------ the plan


def plan_init(model_state: dict, source_state: dict, *, class_rows: Optional[list] = None,
              keypoint_rows: Optional[list] = None, source: str = "the weights") -> dict:
    """The state dict to load (see the module docstring) and what happened to each key.

    ``model_state``: the freshly built model's tensors. ``source_state``: the weights under our names.
    ``class_rows`` / ``keypoint_rows``: ``match_names``'s result (None: the tensors are copied whole and
    must match in shape). Returns {"state", "loaded", "reinitialised", "unused", "counters_ignored" (the
    weights' batch-norm counters the model has no place for), "class_specific"}.
    Weights of which (almost) nothing fits by name (``_too_little_loaded``) are refused naming ``source``:
    a run that would quietly start from random weights is no fine-tuning.
    """
    source_state = dict(source_state)
    # an ImageNet res5 is the C4 design's RoI head
    if not any(k.startswith("backbone.res5.") for k in model_state) and \
            any(k.startswith("roi_heads.res5.") for k in model_state) and \
            not any(k.startswith("roi_heads.res5.") for k in source_state):
        stage = "backbone.res5."
        source_state = {("roi_heads.res5." + k[len(stage):] if k.startswith(stage) else k): v
                        for k, v in source_state.items()}
    source_parts = {_part(k) for k in source_state if not k.endswith("num_batches_tracked")}
    model_parts = {_part(k) for k in model_state}
    state, loaded, fresh, class_specific = {}, [], [], {}
    mismatched, missing = [], []
    for key, value in model_state.items():
        src = source_state.get(key)
        rows_spec = CLASS_ROWS.get(key, (None, None)) if class_rows is not None else (None, None)
        if key in KEYPOINT_ROWS and keypoint_rows is not None:
            rows_spec, rows = KEYPOINT_ROWS[key], keypoint_rows
        else:
            rows = class_rows
        if src is not None and rows_spec[0] is not None:
            axis, per = rows_spec
            state[key], n_copied, n_fresh = _copy_rows(value, src.to(value.dtype), rows, axis, per, key,
                                                              source)
            class_specific[key] = {"rows_copied": n_copied, "rows_fresh": n_fresh}
            (loaded if n_copied else fresh).append(key)
        elif src is not None:
            if tuple(src.shape) != tuple(value.shape):
                mismatched.append(f"{key}: the weights have {tuple(src.shape)}, "
                                  f"the model {tuple(value.shape)}")
                continue
            state[key] = src.to(value.dtype).clone()
            loaded.append(key)
        elif key.endswith("num_batches_tracked") or _part(key) not in source_parts:
            state[key] = value
            if not key.endswith("num_batches_tracked"):
                fresh.append(key)
        else:
            missing.append(key)
    # a key of no part we know ("roi_heads.foo.weight") is another version's or architecture's, as a
    # torchvision file's unmapped key is: refused like it, not left unused as if a whole part were
    unexpected = [k for k in source_state if k not in model_state and not k.endswith("num_batches_tracked")
                  and (_part(k) in model_parts or _part(k) not in PARTS)]
    # a batch counter the model has no place for in a part it has (its BN frozen) is no part of the
    # weights left unused: not listed there, counted apart (the report lists every key of the weights);
    # one of a part the model lacks is unused with the rest of that part
    counters, unused = split_counters([k for k in source_state if k not in model_state], model_state)
    unused = [k for k in source_state if k not in model_state and not k.endswith("num_batches_tracked")
              and _part(k) not in model_parts and _part(k) in PARTS] + unused
    problems = []
    for what, items in (("shape mismatches", mismatched),
                        ("keys the model needs but the weights lack", missing),
                        ("keys the weights have but the model does not", unexpected)):
        if items:
            more = f"; ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else ""
            problems.append(f"{len(items)} {what}: {'; '.join(items[:_LISTED])}{more}")
    # first: keys that (almost) all fit nowhere are a naming mismatch (a wrapper prefix), said as such
    _too_little_loaded(model_state, source_state, loaded, source)
    if problems:
        raise InitError(f"{source}: the weights do not fit the model: " + " | ".join(problems))
    return {"state": state, "loaded": loaded, "reinitialised": fresh, "unused": unused,
            "counters_ignored": counters, "class_specific": class_specific}


# fewer of the model's tensors than this share loaded, while more of the weights' go unused, is a naming
# mismatch (an unknown wrapper prefix), not a part the weights lack (an ImageNet backbone fills well over it)
_MIN_LOADED_SHARE = 0.05


def _too_little_loaded(model_state: dict, source_state: dict, loaded: list, source: str) -> None:
    """InitError naming ``source`` and a few of its keys against the model's, when no tensor or only a
    tiny share of the model's loaded while most of the weights' found no place."""
    wanted = [k for k in model_state if not k.endswith("num_batches_tracked")]
    theirs = [k for k in source_state if not k.endswith("num_batches_tracked")]
    loaded = [k for k in loaded if not str(k).endswith("num_batches_tracked")]
    if not wanted:
        return
    if not theirs:
        raise InitError(f"{source}: the weights hold no tensors to load"
                        f"{' but batch counters (num_batches_tracked)' if source_state else ''}: training "
                        "would start from random weights")
    unplaced = [k for k in theirs if k not in model_state]
    if loaded and (len(loaded) >= _MIN_LOADED_SHARE * len(wanted) or len(unplaced) <= len(loaded)):
        return
    raise InitError(
        f"{source}: only {len(loaded)} of the model's {len(wanted)} tensors found in the weights by name, "
        f"{len(unplaced)} of its {len(theirs)} tensors fit nowhere: training would start from random weights "
        f"(the file's keys: {', '.join(map(str, unplaced[:3]))}; the model's: {', '.join(wanted[:3])})")


def split_counters(keys, model_state: dict) -> tuple:
    """``(ignored, unused)``: the batch counters (num_batches_tracked) among ``keys`` (the weights' keys
    under our names) that ``model_state`` has no key for, split by whether the model has their part (its
    norms there keep none: ignored) or lacks it (unused, as the part's other tensors are). A counter the
    model keeps (a trainable BN) is in neither."""
    model_parts = {_part(k) for k in model_state}
    counters = [k for k in keys if k.endswith("num_batches_tracked") and k not in model_state]
    return ([k for k in counters if _part(k) in model_parts],
            [k for k in counters if _part(k) not in model_parts])


def refuse_non_finite(state_dict: dict, source: str, origin: Optional[dict] = None,
                      entry: Optional[str] = None) -> None:
    """InitError naming ``source`` and the tensors holding a NaN or an infinity, by the file's keys
    (``origin``: our key -> the file's, ``SourceWeights.origin``; None: not known, our names said): another
    library's file is converted, not checked as our checkpoints are, and a run started from it would
    only stop later at its first non-finite loss, with a misleading hint to lower the learning rate.
    ``entry``: the file's entry holding them ("model", ``SourceWeights.entry``), said after the keys."""
    from maskrcnn.checkpoint import non_finite_keys
    from maskrcnn.interop.key_rules import file_keys, under_entry
    from maskrcnn.listing import short_listing

    bad = non_finite_keys(state_dict)
    if bad:
        named = file_keys(bad, origin or {})
        raise InitError(f"{source}: weights hold NaN or infinite values in tensors "
                        f"{short_listing(named, limit=5)}{under_entry(entry)}; training would not start "
                        "from them")


def initialise_model(model: torch.nn.Module, cfg, source) -> dict:
    """Load ``source`` (a ``SourceWeights``) into ``model`` (built from ``cfg`` after ``follow_weights``)
    and return the report (without ``config_changes``, which the caller adds)."""
    names = list(cfg.data.class_names)
    class_rows = None
    named = None  # the file's class names when they describe its rows and matched ours (else None)
    score = source.state_dict.get("roi_heads.box_predictor.cls_score.weight")  # (K', F)
    if score is not None:
        theirs = source.class_names
        if theirs is not None and len(theirs) != score.shape[0]:
            theirs = None  # names that do not describe the rows are no names at all
        trained = trained_rows(source) if theirs is not None else set()
        class_rows = match_names(names, theirs, cfg.model.init_class_map, what="class", trained=trained)
        if class_rows is None:  # no names: by position when the counts agree, else all fresh but background
            same = len(names) == score.shape[0]
            class_rows = list(range(len(names))) if same else [0] + [None] * (len(names) - 1)
        else:
            named = theirs
    keypoint_rows = None
    kp_key = "roi_heads.keypoint_head.predictor.bias"
    if kp_key in source.state_dict and cfg.model.roi_heads.keypoint_on:
        ours_kp = list(cfg.data.keypoint_names) or None
        n_src = int(source.state_dict[kp_key].shape[0])
        if ours_kp and source.keypoint_names and list(map(normalise_name, ours_kp)) != \
                list(map(normalise_name, source.keypoint_names)):
            keypoint_rows = match_names(ours_kp, source.keypoint_names, what="keypoint", background=False)
        elif cfg.model.roi_heads.num_keypoints != n_src:
            keypoint_rows = [None] * cfg.model.roi_heads.num_keypoints  # unnamed and different: all fresh
    spec = str(source.provenance.get("spec") or "the weights")
    refuse_non_finite(source.state_dict, spec, source.origin, source.entry)
    plan = plan_init(model.state_dict(), source.state_dict, class_rows=class_rows,
                     keypoint_rows=keypoint_rows, source=spec)
    model.load_state_dict(plan["state"], strict=True)
    dropped_ignored, dropped_unused = split_counters(source.counters, plan["state"])
    report = {
        "source": dict(source.provenance, kind=source.kind, layout=source.layout),
        "loaded": plan["loaded"],
        "reinitialised": plan["reinitialised"],
        # the counters the converter dropped (its frozen BN) count as the file's own would: a model that
        # keeps counters (model.norm=bn) has a place for them, and a part it lacks leaves them unused
        "unused": sorted(set(plan["unused"]) | set(source.unused) | set(dropped_unused)),
        "counters_ignored": sorted(set(plan["counters_ignored"]) | set(dropped_ignored)),
        "class_specific": plan["class_specific"],
        "copied_classes": {},
        "fresh_classes": [],
        "notes": list(source.notes),
        "warnings": [],
    }
    if score is not None:
        report["weights_classes"] = weights_classes(int(score.shape[0]), source.class_names, len(names),
                                                    trained=trained)
    if named is not None:  # discarded names (not the rows' count) or rows by position: no row is named
        report["notes"] += placeholder_notes(names, class_rows, named, trained)
        shared = shared_rows_warning(names, class_rows, named)
        report["warnings"] += [shared] if shared else []
    if class_rows is not None:
        theirs = source.class_names or []
        for i, j in enumerate(class_rows[1:], start=1):
            if j is None:
                report["fresh_classes"].append(names[i])
            else:
                report["copied_classes"][names[i]] = theirs[j] if j < len(theirs) else f"row {j}"
    else:
        report["fresh_classes"] = names[1:]
    if keypoint_rows is not None:
        kp_names = list(cfg.data.keypoint_names) or [f"keypoint_{i}" for i in range(len(keypoint_rows))]
        theirs = source.keypoint_names or []
        report["copied_keypoints"] = {kp_names[i]: theirs[j] for i, j in enumerate(keypoint_rows)
                                      if j is not None and j < len(theirs)}
        report["fresh_keypoints"] = [kp_names[i] for i, j in enumerate(keypoint_rows) if j is None]
    return report


def trained_rows(source) -> set:
    """The rows of ``source``'s class names (a ``SourceWeights``) that its file records as classes a run
    trained although named as placeholders ("N/A", "__background__": a dataset may name a category so,
    and training keeps it as a class): of a checkpoint of ours, the labels its ``label_to_category_id``
    maps to a dataset's category ids, which our training writes for every class of its data. Empty for
    other libraries' files (torchvision's "N/A" rows are COCO's unused ids) and for a checkpoint of ours
    without that map (one ``convert`` wrote from another library's file). The file is read again only
    when some row is so named: its object is not kept past ``read_weights``."""
    names = list(source.class_names or [])
    if source.kind != "maskrcnn" or not any(normalise_name(n) in _PLACEHOLDERS for n in names[1:]):
        return set()
    from maskrcnn.checkpoint import CheckpointError, label_to_category_id, read_checkpoint_object

    path = (source.provenance or {}).get("path")
    try:
        ckpt = read_checkpoint_object(path) if path else None
    except (CheckpointError, OSError):
        return set()
    if not isinstance(ckpt, dict) or list(ckpt.get("class_names") or []) != names:
        return set()  # not the file the weights were read from (replaced since): nothing assumed
    l2c = label_to_category_id(ckpt)
    try:
        labels = {int(k) for k in (l2c or {})}
    except (TypeError, ValueError):
        return set()
    return {i for i in labels if 0 < i < len(names)}


def placeholder_notes(ours: Sequence[str], rows: Optional[list], theirs: Optional[Sequence[str]],
                      trained=()) -> list:
    """One note when classes of ours named as a placeholder ("N/A", "__background__") start fresh although
    the weights have a row of that name: a placeholder (no class trained under that name), not theirs."""
    if rows is None or not theirs:
        return []
    placeholders = {normalise_name(n) for j, n in enumerate(theirs) if j > 0 and j not in set(trained)}
    fresh = [n for i, n in enumerate(ours) if i > 0 and rows[i] is None and normalise_name(n)
             and normalise_name(n) in _PLACEHOLDERS & placeholders]
    if not fresh:
        return []
    many = len(fresh) > 1
    return [f"class{'es' if many else ''} {', '.join(map(repr, fresh))} start{'' if many else 's'} fresh: "
            "the weights' rows of that name are placeholders (as torchvision's unused COCO ids are), not "
            "classes the file says a run trained (model.init_class_map can give them another class's row)"]


def weights_classes(rows: int, names: Optional[Sequence[str]], ours: int, trained=()) -> dict:
    """The report's ``weights_classes``: the weights' class count and the run's, each counting the
    background as ``model.num_classes`` does, and how many of the weights' rows are placeholders (COCO's
    unused ids, "N/A" in torchvision's 91), which hold no class a dataset could match; ``trained``: rows
    so named that a run trained as classes (``trained_rows``), no placeholders. Said because the
    class rows' counts ("3 of 5 from the weights") are the run's, never the weights'."""
    named = list(names) if names is not None and len(names) == rows else None
    unused = sum(normalise_name(n) in _PLACEHOLDERS and j not in set(trained)
                 for j, n in enumerate(named[1:], start=1)) if named else 0
    return {"num_classes": rows, "placeholders": unused, "run_num_classes": ours}


def classes_line(counts: dict) -> str:
    """"weights: 90 classes + background (10 of them N/A placeholders) -> this run: 4 + background"."""
    theirs = counts["num_classes"] - 1
    unused = counts.get("placeholders") or 0
    return (f"weights: {theirs} class{'' if theirs == 1 else 'es'} + background"
            + (f" ({unused} of them N/A placeholders)" if unused else "")
            + f" -> this run: {counts['run_num_classes'] - 1} + background")


# a part's prefix -> the words a user reads for it
PART_NAMES = {
    "backbone.": "backbone", "fpn.": "FPN", "rpn.": "RPN", "roi_heads.res5.": "res5 RoI head",
    "roi_heads.box_head.": "box head", "roi_heads.box_predictor.": "box predictor",
    "roi_heads.mask_head.": "mask head", "roi_heads.keypoint_head.": "keypoint head",
}


def part_lines(report: dict) -> list:
    """One line per part (``PARTS``) that starts fresh or goes unused as a whole, from the report's key
    lists: "mask head starts fresh: the weights have none (N tensors)", "keypoint head of the weights
    unused: this model has none (N tensors)". Class rows are left out (the class lines tell them: a box
    predictor whose classes all differ is not "a part the weights lack"). The counts alone ("12 start
    fresh") hide which part they are."""
    def by_part(keys):
        groups = {}
        for key in keys:
            groups.setdefault(_part(key), []).append(key)
        return groups

    loaded = by_part(report["loaded"])
    rows = set(report.get("class_specific") or {})
    lines = []
    for part, keys in by_part(k for k in report["reinitialised"] if k not in rows).items():
        if part not in loaded:  # plan_init refuses a part the weights hold only partly
            lines.append(f"{PART_NAMES.get(part, part.rstrip('.'))} starts fresh: the weights have none "
                         f"({len(keys)} tensors)")
    for part, keys in by_part(report["unused"]).items():
        name = PART_NAMES.get(part, part.rstrip("."))
        if part not in loaded:
            lines.append(f"{name} of the weights unused: this model has none ({len(keys)} tensors)")
        else:  # the part loaded, some of its keys did not: which ones, not "this model has none"
            more = f", ... ({len(keys) - _LISTED} more)" if len(keys) > _LISTED else ""
            lines.append(f"{name}: {len(keys)} unused: {', '.join(keys[:_LISTED])}{more}")
    return lines


def loaded_count(report: dict) -> str:
    """"loaded N tensors", or "loaded N tensors whole, M in part (class rows: 3 of 4 from the weights)"
    when class-specific tensors (``class_specific``) took some rows from the weights and kept fresh ones
    for the rest: counted as loaded alone, they read as if every class came from the weights."""
    rows = report.get("class_specific") or {}
    part = {k: v for k, v in rows.items() if k in report["loaded"] and v["rows_copied"] and v["rows_fresh"]}
    if not part:
        return f"loaded {len(report['loaded'])} tensors"
    said = {}
    for key, v in part.items():  # one count per kind of row (a keypoint channel is no class)
        what = "keypoint channels" if key in KEYPOINT_ROWS else "class rows"
        said.setdefault(what, f"{v['rows_copied']} of {v['rows_copied'] + v['rows_fresh']}")
    listed = "; ".join(f"{what}: {n} from the weights" for what, n in said.items())
    return f"loaded {len(report['loaded']) - len(part)} tensors whole, {len(part)} in part ({listed})"


def summary_lines(report: dict, changes: dict) -> list:
    """The report in a few printable lines."""
    src = report["source"]
    sha = (src.get("sha256") or "")[:12]
    lines = [f"init: {src.get('spec')} -> {src.get('format', src.get('kind'))}"
             + (f", sha256 {sha}..." if sha else "")]
    if changes:
        listed = "; ".join(f"{k} {v['from']} -> {v['to']}" for k, v in changes.items())
        lines.append(f"  the config follows the weights: {listed}")
    for key, v in (report.get("config_kept") or {}).items():
        lines.append(f"  kept {key}={v['value']} from {v['by']} (the weights suggest {v['weights']})")
    counters = len(report.get("counters_ignored") or [])
    lines.append(f"  {loaded_count(report)}, {len(report['reinitialised'])} start fresh, "
                 f"{len(report['unused'])} of the weights' unused"
                 + (f", {counters} batch-norm counter{'' if counters == 1 else 's'} (num_batches_tracked) "
                    "ignored (the model's norms keep none)" if counters else ""))
    lines.extend("  " + line for line in part_lines(report))
    if report.get("weights_classes"):
        lines.append("  " + classes_line(report["weights_classes"]))
    if report["copied_classes"]:
        lines.append("  class rows from the weights: " + ", ".join(
            f"{a} <- {b}" for a, b in report["copied_classes"].items()))
    if report["fresh_classes"]:
        lines.append("  fresh class rows: " + ", ".join(report["fresh_classes"]))
    lines.extend(f"  warning: {w}" for w in report.get("warnings") or [])
    lines.extend(f"  note: {n}" for n in report["notes"])
    return lines
