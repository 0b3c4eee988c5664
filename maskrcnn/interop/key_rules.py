"""Checkpoint keys across frameworks: renaming tables, counting indexed parts, the report of what did
not fit. Shared by the torchvision, detectron2 and MMDetection converters.

Renaming: ordered (regex, replacement) rules, the first match wins. A replacement is a ``re`` template
(``r"fpn.lateral.\\1.conv.\\2"``), a function of the match's groups, or a marker string a converter
handles itself (torchvision's ``"box_linear"``)."""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence, Union

__all__ = ["compile_rules", "conversion_problems", "count_indices", "file_keys", "first_rule",
           "missing_file_keys", "rename_key", "shape_mismatches"]

Replacement = Union[str, Callable[[tuple], str]]


def compile_rules(rules: Sequence[tuple]) -> list:
    """[(pattern, replacement)] -> [(compiled pattern, replacement)]."""
    return [(re.compile(pattern), repl) for pattern, repl in rules]


def first_rule(compiled: Sequence[tuple], key: str) -> Optional[tuple]:
    """(match, replacement) of the first rule matching ``key``; None when none does."""
    for pattern, repl in compiled:
        m = pattern.match(key)
        if m:
            return m, repl
    return None


def rename_key(compiled: Sequence[tuple], key: str) -> Optional[str]:
    """``key`` renamed by the first rule matching it; None when none does."""
    hit = first_rule(compiled, key)
    if hit is None:
        return None
    m, repl = hit
    return repl(m.groups()) if callable(repl) else m.expand(repl)


def count_indices(sd, pattern: str) -> int:
    """How many distinct values the first group of ``pattern`` takes over the keys of ``sd``: the blocks
    of a stage (``r"^backbone\\.layer1\\.(\\d+)\\."``), the convs of a head."""
    regex = re.compile(pattern)
    return len({m.group(1) for m in map(regex.match, sd) if m})


def conversion_problems(unmapped: list, missing: list, unexpected: list, shapes: list, *,
                        source_name: str, origin: Optional[dict] = None) -> list:
    """One line per kind of key that did not fit (the first 8 named); [] when all did. ``source_name``
    names the other framework ("detectron2", "MMDetection"); ``origin`` (our key -> the file's): the
    missing keys are said as the file would spell them (``missing_file_keys``)."""
    out = []
    for name, items in ((f"unmapped {source_name} keys", unmapped),
                        ("keys our model needs but the file lacks", missing_file_keys(missing, origin or {})),
                        ("converted keys our model does not have", unexpected), ("shape mismatches", shapes)):
        if items:
            out.append(f"{len(items)} {name}: {', '.join(items[:8])}{' ...' if len(items) > 8 else ''}")
    return out


def shape_mismatches(ours: dict, model_sd: dict, origin: dict) -> list:
    """One item per converted tensor whose shape is not the model's, naming the file's own key and ours
    and which shape is which: "the file's roi_heads.box_head.fc7.weight (1024, 512), the model's
    roi_heads.box_head.fcs.1.weight needs (1024, 1024)". ``origin``: our key -> the file's key."""
    out = []
    for k in model_sd:
        if k in ours and ours[k].shape != model_sd[k].shape:
            theirs = origin.get(k, k)
            out.append(f"the file's {theirs} {tuple(ours[k].shape)}, the model's "
                       f"{k + ' ' if theirs != k else ''}needs {tuple(model_sd[k].shape)}")
    return out


def under_entry(entry) -> str:
    """The words after a listing of ``file_keys`` for a file whose weights lie under ``entry`` ("model",
    ``wrappers.where_keys``): the keys said are that dict's, not the top level's; "" for None."""
    return f" (under the file's '{entry}')" if entry else ""


def file_keys(keys, origin: dict) -> list:
    """Our ``keys`` as the file spells them, for messages about its tensors (a NaN in them): "the file's
    key (ours: our key)", the file's key alone where the names agree, "our key (our name)" where
    ``origin`` (our key -> the file's, a converter's ``report["origin"]``) does not know it. Someone
    opening the file with ``torch.load`` looks for its own key, which our name is not."""
    out = []
    for k in keys:
        theirs = origin.get(k)
        out.append(f"{k} (our name)" if theirs is None else theirs if theirs == k
                   else f"{theirs} (ours: {k})")
    return out


def missing_file_keys(missing, origin: dict) -> list:
    """Our ``missing`` keys as the file would spell them, for "keys our model needs but the file lacks":
    "the file's key (ours: our key)", found from a sibling the file has (``origin``: our key -> the file's;
    our "roi_heads.box_head.fcs.0.weight" is the file's "roi_heads.box_head.fc6.weight" when its
    "fc6.bias" gave our "fcs.0.bias"); "our key (our name)" when the file has nothing of that layer. A
    user looks in the file for its own key, which our name is not."""
    modules = {}
    for ours, theirs in origin.items():
        head, _, leaf = ours.rpartition(".")
        if head and theirs.endswith("." + leaf):
            modules.setdefault(head, theirs[: -len(leaf) - 1])
    out = []
    for k in missing:
        head, _, leaf = k.rpartition(".")
        theirs = modules.get(head)
        out.append(f"{k} (our name)" if theirs is None else k if theirs == head
                   else f"{theirs}.{leaf} (ours: {k})")
    return out


def drop_frozen_counters(ours: dict, norm: str) -> tuple:
    """(``ours`` without the backbone's ``num_batches_tracked`` entries, their keys) when the model's
    norms are frozen (``model.norm`` "frozen_bn": they keep no batch counter); else (``ours``, []). The
    converters count the dropped keys in their report (``train --init`` says how many)."""
    if norm != "frozen_bn":
        return ours, []
    counters = [k for k in ours if k.startswith("backbone.") and k.endswith("num_batches_tracked")]
    dropped = set(counters)
    return {k: v for k, v in ours.items() if k not in dropped}, counters
