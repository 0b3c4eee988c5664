"""Under torchrun, every process must train on the same images with the same settings.

Each process reads its own copy of the config and of the annotation files (its own ``--set``, its own disk:
a stale copy on one machine, a partial sync, another ``--train-json``). The sampler builds each epoch's
order from the process's own count of images, so a process whose training set differs takes its slice of
another list: some images are never trained on and others twice, and nothing failed. A process with
another ``solver.lr`` steps its weights otherwise than rank 0, and DDP's averaged gradients hide it.

``setup_fingerprint`` is a cheap summary of what a process set up (per dataset: the images in use and a hash
of their ids and file names, a hash of their objects, the object count of each class: what the file holds,
not how it is laid out; the config's settings); ``setup_differences`` compares the gathered summaries with
rank 0's and names, per rank, what differs. Paths themselves are not compared: each machine may mount the
data elsewhere; nor the device, the ``--init`` weights' location (DDP starts every process from rank 0's
weights) and the number of loader workers (a machine's cores: the batches are the same whatever it is).
"""

from __future__ import annotations

import hashlib
from typing import List, Optional

# settings a process may hold its own value of: where its weights start (DDP broadcasts rank 0's), its
# device (each process its own GPU) and its loader workers (each machine its cores; the batches, built
# from the seed and the index, do not depend on them)
PER_PROCESS_KEYS = frozenset({"device", "model.init_weights", "data.num_workers"})


def dataset_fingerprint(dataset, json_path) -> dict:
    """What a process's ``CocoDataset`` holds, cheaply: {"json", "images", "names", "annotations",
    "objects", "per_class"} (``names``: a hash of the ids and file names in use, in order;
    ``annotations``: of their objects; ``per_class``: the object count of each class). Not the file's
    size: the same annotations written with other indentation are the same training set."""
    digest = hashlib.sha256()
    for index in range(len(dataset)):
        info = dataset.image_info(index)
        digest.update(f"{info['id']}\t{info.get('file_name')}\n".encode("utf-8", "surrogateescape"))
    annotations = dataset.annotations_digest() if hasattr(dataset, "annotations_digest") else None
    counts = dataset.instances_per_class() if hasattr(dataset, "instances_per_class") else None
    return {"json": str(json_path), "images": len(dataset), "names": digest.hexdigest()[:12],
            "annotations": annotations, "objects": None if counts is None else sum(counts[1:]),
            "per_class": None if counts is None else list(counts)}


def config_fingerprint(cfg) -> dict:
    """{dotted key: repr of its value} of ``cfg``, ``PER_PROCESS_KEYS`` left out."""
    from maskrcnn.config import config_keys, get_key, to_plain

    return {key: repr(to_plain(get_key(cfg, key))) for key in config_keys(cfg) if key not in PER_PROCESS_KEYS}


def setup_fingerprint(cfg, train_set, train_json, val_set=None, val_json=None) -> dict:
    return {"train": dataset_fingerprint(train_set, train_json),
            "val": dataset_fingerprint(val_set, val_json) if val_set is not None else None,
            "config": config_fingerprint(cfg)}


def _data_words(fp: Optional[dict]) -> str:
    if fp is None:
        return "none"
    objects = "" if fp.get("annotations") is None else f", objects hash {fp['annotations']}"
    return (f"{fp['json']} ({fp['images']} usable images, {fp['objects']} objects, file names hash "
            f"{fp['names']}{objects})")


def _same_data(a: Optional[dict], b: Optional[dict]) -> bool:
    if a is None or b is None:
        return a is b
    return all(a.get(k) == b.get(k) for k in ("images", "names", "annotations", "per_class"))


def setup_differences(gathered: List[dict]) -> str:
    """One message naming, per rank, what differs from rank 0's setup (``setup_fingerprint`` of each rank,
    by rank); "" when every rank set up alike."""
    first = gathered[0]
    parts = []
    for what, flag in (("train", "--train-json / --train-images"), ("val", "--val-json / --val-images")):
        other = [r for r, fp in enumerate(gathered) if not _same_data(fp[what], first[what])]
        if other:
            ranks = "; ".join(f"rank {r}: {_data_words(gathered[r][what])}" for r in [0] + other)
            which = "training" if what == "train" else "validation"
            parts.append(f"the {which} set differs ({flag}): {ranks}")
    for r, fp in enumerate(gathered[1:], start=1):
        keys = [k for k in sorted(set(first["config"]) | set(fp["config"]))
                if first["config"].get(k) != fp["config"].get(k)]
        if keys:
            shown = ", ".join(f"{k} {fp['config'].get(k)} (rank 0: {first['config'].get(k)})"
                              for k in keys[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            parts.append(f"rank {r}'s config differs: {shown}{more}")
    if not parts:
        return ""
    return ("the processes did not set up alike: " + "; ".join(parts) + ". Every process must be given the "
            "same arguments and identical copies of the files (each machine its own copy)")


def check_same_setup(cfg, train_set, train_json, val_set=None, val_json=None) -> None:
    """Under torchrun: refuse (ValueError, raised by every process together, printed once) when a
    process's training set, validation set or config differs from rank 0's. One all-gather of a few
    kilobytes per process; nothing with one process."""
    from maskrcnn.engine import distributed as du

    if du.get_world_size() <= 1:
        return
    gathered = du.all_gather_objects(setup_fingerprint(cfg, train_set, train_json, val_set, val_json))
    message = setup_differences(gathered)
    if message:
        raise du.mark_shared(ValueError(message))
