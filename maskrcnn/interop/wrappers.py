"""How training tools wrap a state dict, undone before its key names are read: the prefix a wrapper puts
in front of every name, and the EMA copy some tools keep beside the weights.

Prefixes: (Distributed)DataParallel writes ``module.``, a LightningModule holding the detector as
``self.model`` writes ``model.`` (both: ``model.module.``); no layout of ours or another library's starts
so, so these are dropped wherever every key has them (``strip_module_prefix``). A LightningModule whose
attribute has another name (``self.detector``) writes that name instead: ``strip_common_prefix`` drops a
single prefix every key shares only when the names without it are a layout the caller recognises (a
backbone-only file of ``backbone.*`` keys keeps its names).

EMA copies, by the key each tool stores them under (``EMA_KEYS``): torchvision's reference ``train.py
--model-ema`` and this library ("model_ema", written by ``save_checkpoint(..., model_ema=...)``), timm
("state_dict_ema"), other training scripts ("ema_state_dict"); each beside the raw weights ("model" /
"state_dict"). An ``AveragedModel`` copy
carries its model behind ``module.`` and a step counter ("n_averaged"), both dropped by ``ema_copy``.
mmengine's ``EMAHook`` is not among them: it swaps the two copies before saving, so a file's
"state_dict" already holds the averaged weights and "ema_state_dict" (``MMENGINE_RAW_KEY``: its keys
behind ``module.``, a "steps" counter) the raw ones; the MMDetection converter takes "state_dict" and
says it is the average (``mmengine_ema_note``), as the torchvision one does for an "ema_state_dict" with
that counter (``swapped_by_mmengine``: an mmengine run of a torchvision model).
"""

from __future__ import annotations

from typing import Callable, Optional

WRAPPER_PREFIXES = ("module.", "model.")
MMENGINE_RAW_KEY = "ema_state_dict"
# (an "ema_state_dict" is the EMA copy of other training scripts, unless mmengine's: ``ema_copy``)
EMA_KEYS = ("model_ema", "state_dict_ema", MMENGINE_RAW_KEY)
_EMA_COUNTERS = ("n_averaged", "steps")
_MMENGINE_COUNTER = "steps"  # mmengine's averaged model (BaseAveragedModel) keeps it beside the weights


# the entries training scripts keep the weights under, in the order they are taken
STATE_DICT_ENTRIES = ("model", "state_dict")


def inner_state_dict(obj) -> tuple:
    """``(the weights' dict, the entry it was under or None, [the other entries holding a dict too])``:
    the first of ``STATE_DICT_ENTRIES`` holding a dict, else ``obj`` itself. The one choice every reader
    makes (``inner_note`` says it when another entry was passed over)."""
    if not isinstance(obj, dict):
        return obj, None, []
    held = [k for k in STATE_DICT_ENTRIES if isinstance(obj.get(k), dict)]
    if not held:
        return obj, None, []
    return obj[held[0]], held[0], held[1:]


def inner_note(taken: Optional[str], ignored: list) -> Optional[str]:
    """The note for a file holding weights under more than one entry (``inner_state_dict``); None when
    there was no choice."""
    if taken is None or not ignored:
        return None
    others = ", ".join(f"'{k}'" for k in ignored)
    return f"the file holds dicts under both '{taken}' and {others}: took '{taken}', ignored {others}"


def state_dict_problem(obj, source: str) -> Optional[str]:
    """Why ``obj`` (what a file holds) has no weights to read, in one line naming ``source`` and the
    entry: an empty dict, an empty inner dict, or "model" / "state_dict" holding something else (a list);
    None when it may hold weights."""
    if not isinstance(obj, dict):
        return None
    if not obj:
        return f"{source} holds no tensors (an empty dict)"
    inner, taken, _ignored = inner_state_dict(obj)
    if taken is not None and not inner:
        return f"{source}: '{taken}' holds no tensors (an empty dict)"
    if taken is None:
        for key in STATE_DICT_ENTRIES:
            value = obj.get(key)
            if key in obj and not hasattr(value, "shape"):  # (a tensor named "model" is a state dict's)
                return (f"{source}: '{key}' is a {type(value).__name__}, not a state dict (a mapping of "
                        "names to tensors)")
    return None


def strip_module_prefix(sd: dict) -> dict:
    """Drop the ``module.`` / ``model.`` wrappers put in front of every name (both, in any order)."""
    while sd:
        shared = [p for p in WRAPPER_PREFIXES if all(isinstance(k, str) and k.startswith(p) for k in sd)]
        if not shared:
            break
        sd = {k[len(shared[0]):]: v for k, v in sd.items()}
    return sd


def common_prefix(keys) -> Optional[str]:
    """The first dotted part every key shares ("detector."), None when they do not share one."""
    keys = list(keys)
    if not keys or not all(isinstance(k, str) and "." in k for k in keys):
        return None
    first = keys[0].split(".", 1)[0] + "."
    return first if all(k.startswith(first) for k in keys) else None


def strip_common_prefix(sd: dict, recognised: Callable[[list], bool]) -> tuple:
    """``(sd without its wrappers, the single extra prefix dropped or None)``: ``strip_module_prefix``,
    then a prefix every key shares dropped when ``recognised`` (a test of key names) fails with it and
    holds without it."""
    sd = strip_module_prefix(sd)
    keys = [k for k in sd if isinstance(k, str)]
    prefix = common_prefix(keys)
    if prefix is None or recognised(keys):
        return sd, None
    stripped = {k[len(prefix):]: v for k, v in sd.items()}
    stripped = strip_module_prefix(stripped)  # (self.detector holding a DDP model: detector.module.)
    if not recognised([k for k in stripped if isinstance(k, str)]):
        return sd, None
    return stripped, prefix


def dropped_prefix(before: dict, after: dict) -> Optional[str]:
    """The prefix dropped from every key of ``before`` to give ``after`` (``strip_module_prefix`` /
    ``strip_common_prefix`` keep the order, so the first keys name the same tensor); None when none was."""
    if not before or not after:
        return None
    first, kept = next(iter(before)), next(iter(after))
    if not isinstance(first, str) or not isinstance(kept, str) or len(first) <= len(kept):
        return None
    return first[: len(first) - len(kept)]


def where_keys(obj, sd: dict, entries: tuple = STATE_DICT_ENTRIES) -> tuple:
    """``(entry, prefix)``: where the keys of ``sd`` (a reader's dict, its wrappers dropped) lie in what
    the file holds, ``obj``: under which of ``entries`` (the ones the reader looks in, in its order; None:
    at the top) and behind which prefix dropped from every key ("module.detector."; "" for none), so that
    a message can name a tensor by the key the file has. ``(None, "")`` when no entry holds them all."""
    if not isinstance(obj, dict) or not sd:
        return None, ""
    kept = next(iter(sd))
    if not isinstance(kept, str):
        return None, ""
    held = [(None, obj)] + [(e, obj[e]) for e in entries if isinstance(obj.get(e), dict)]
    for entry, keys in held:
        for key in keys:
            if isinstance(key, str) and key.endswith(kept):
                prefix = key[: len(key) - len(kept)]
                if all(isinstance(k, str) and prefix + k in keys for k in sd):
                    return entry, prefix
    return None, ""


def prefix_note(prefix: str) -> str:
    """The note for a prefix dropped from every key (``dropped_prefix``, ``strip_common_prefix``), said
    alike by every reader of weights."""
    return f"dropped the prefix '{prefix}' every key had (a DataParallel / LightningModule wrapper)"


def is_our_layout(keys) -> bool:
    """Key names of this library's model (``docs/checkpoints.md``)."""
    return any(isinstance(k, str) and k.startswith("backbone.stem.") for k in keys)


def _copy_under(obj, keys) -> Optional[tuple]:
    if not isinstance(obj, dict):
        return None
    for key in keys:
        ema = obj.get(key)
        if isinstance(ema, dict) and ema:
            steps = next((ema[c] for c in _EMA_COUNTERS if c in ema), None)
            try:
                one = steps is not None and getattr(steps, "numel", lambda: 1)() == 1
                steps = int(steps) if one else None
            except (TypeError, ValueError):
                steps = None
            return key, strip_module_prefix({k: v for k, v in ema.items() if k not in _EMA_COUNTERS}), steps
    return None


def ema_copy(obj) -> Optional[tuple]:
    """``(key, the EMA copy without its wrapper prefix and step counter, steps or None)`` of a file's
    object, None when it holds none (``EMA_KEYS``). An "ema_state_dict" with mmengine's "steps" counter is
    none: mmengine's EMAHook swapped the raw weights into it (``swapped_by_mmengine``)."""
    for key in EMA_KEYS:
        found = _copy_under(obj, (key,))
        if found is not None and not (key == MMENGINE_RAW_KEY and swapped_by_mmengine(obj)):
            return found
    return None


def swapped_by_mmengine(obj) -> bool:
    """Whether the file's "ema_state_dict" is the one mmengine's EMAHook writes (its averaged model's
    "steps" counter beside the weights): the raw weights, the average being in "state_dict"."""
    held = obj.get(MMENGINE_RAW_KEY) if isinstance(obj, dict) else None
    return isinstance(held, dict) and _MMENGINE_COUNTER in held


def mmengine_ema_note(obj) -> Optional[str]:
    """The note for an mmengine file whose ``EMAHook`` swapped the copies before saving: "state_dict"
    (taken) is the EMA average, "ema_state_dict" the raw weights (not converted); None without one."""
    found = _copy_under(obj, (MMENGINE_RAW_KEY,))
    if found is None:
        return None
    averaged = f", averaged over {found[2]} steps" if found[2] is not None else ""
    return (f"took 'state_dict': the EMA average of the weights{averaged} (mmengine's EMAHook swaps it in "
            f"before saving; the raw weights in '{MMENGINE_RAW_KEY}' are not converted)")


def no_ema_error(source: str, accepted: str):
    """The ConversionError of ``--ema`` / ``#ema`` on ``source`` that has no EMA copy the path reads:
    ``accepted`` says which copies that path takes (and why this file has none). The same text for every
    command, so it says whose each spelling is: only ``convert`` has an ``--ema`` flag; the others (predict,
    export, quantize, train --init, ...) take the ``FILE#ema`` suffix of a weights path."""
    from maskrcnn.interop.torchvision import ConversionError

    return ConversionError(f"{source}: the EMA copy of the weights was asked for (the #ema suffix of a "
                           f"weights path, or convert's --ema), but {accepted}")


def ema_note(obj, *, taken: str, how: str) -> Optional[str]:
    """The note for a file holding an EMA copy beside the weights ``taken`` (e.g. "'model'"): which key
    holds it and ``how`` to take it instead; None when it holds none."""
    found = ema_copy(obj)
    if found is None:
        return None
    key, _sd, steps = found
    averaged = f", averaged over {steps} steps" if steps is not None else ""
    return f"the file also holds an EMA copy of the weights ('{key}'{averaged}); took {taken}; {how}"
