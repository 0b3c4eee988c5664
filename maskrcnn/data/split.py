"""Split a COCO instance dataset into parts (train / val / test) by fractions, stratified by class.

Terms: N images, U units (images that must stay together: one image each, or the images of one
``group_by`` match), C classes, S parts with fractions f_1..f_S (summing to 1).

Iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the stratification of multi-label
data", ECML PKDD 2011), over units instead of single images:
- each part j wants f_j * N images and, for each class c, f_j * N_c of the N_c images showing c;
- take the class with the fewest images still unassigned (the rarest first: a common class has room to
  even out later, a rare one does not; ties: the lower category id), and give each unassigned unit
  showing it to the part that still wants the most images of that class (ties: the part wanting the
  most images in all; then a seeded draw), subtracting what the unit holds from that part's wants for
  every class it shows;
- the image records that name one file are one unit, whatever ``group_by`` says: one picture in train
  and in val is the leak ``group_by`` exists to prevent. Which file a record names is ``files`` where
  the caller knows the image folder (``file_key(name, folder)``: the real path, merge-data's and
  show-data's rule), else its name (``written_file_keys``: separators alike, the path normalised, and
  an absolute or '..' path one with the record whose name is the longest end of it, also where several
  different such paths end in that name: at most one of them is that file, but one of them may be, and
  keeping files together only shifts the fractions);
- units without any instance (images without annotations, or only crowd regions) go last, each to the
  part wanting the most images, so they too spread by the fractions;
- a part left without any unit while another holds several (few units: every one went to the part
  wanting most of its class) gets the unit that brings the part sizes closest to the fractions (ties:
  the smaller unit), so val is not empty when there are units enough for it.
A unit counts, for class c, its images that show c (a unit's instances of one class are not independent
samples: they stay together whatever the split does).

Determinism: units are visited in an order drawn from the seed and each unit's name (its file names,
or its group key), and ties between parts are broken the same way, with a hash (BLAKE2b), not Python's
``random``: the same file and seed give the same split on every machine and Python version, whatever the
order of the images in the file. Every part keeps the full ``categories`` list as written (ids and
class order never shift between parts) and the file's other top-level keys (``info``, ``licenses``);
image and annotation ids are kept.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import Optional, Sequence

from maskrcnn.data.file_keys import file_key

__all__ = ["assign_units", "check_fractions", "compile_group_by", "default_part_names", "group_keys",
           "split_by_keys", "split_coco", "split_table", "written_file_keys", "written_file_matches"]

_TIE = 9  # decimals wants are compared at: f * n minus whole numbers leaves float noise (0.7*10-7 != 0)


def _draw(seed: int, *parts) -> int:
    """A number drawn from the seed and ``parts``, the same on every machine.

    A file name that is not valid UTF-8 ("caf\\udce9.png": ``os.fsdecode``'s lone surrogates, as predict
    and merge-data write them) hashes as its original bytes (b"caf\\xe9.png"); every valid name's bytes,
    and so its draw, are those of plain UTF-8."""
    text = "\x00".join(str(p) for p in (seed, *parts))
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name's byte gives (\ud800): kept as its code point
        data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def check_fractions(fractions: Sequence[float], names: Sequence[str]) -> None:
    """ValueError in one line when the fractions or part names cannot make a split."""
    if len(fractions) < 2:
        raise ValueError(f"--fractions {_listed(fractions)}: give at least two fractions, e.g. 0.8,0.2")
    if any(not math.isfinite(f) or f <= 0 for f in fractions):
        raise ValueError(f"--fractions {_listed(fractions)}: every fraction must be above 0")
    if abs(sum(fractions) - 1.0) > 0.01:  # 0.333 x 3 is a third each: the caller scales within 0.01
        raise ValueError(f"--fractions {_listed(fractions)}: they sum to {sum(fractions):g}, not 1")
    if len(names) != len(fractions):
        raise ValueError(f"--names {','.join(names)}: {len(names)} names for {len(fractions)} fractions")
    if len({n.casefold() for n in names}) != len(names):  # a.json and A.json: one file on Windows, macOS
        raise ValueError(f"--names {','.join(names)}: the names must differ, also ignoring case")
    for name in names:
        if not name or name in (".", "..") or re.search(r"[/\\:*?\"<>|\x00-\x1f]", name):
            raise ValueError(f"--names: {name!r} cannot be a file name")


def _listed(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def default_part_names(n: int) -> list:
    """train,val for two parts, train,val,test for three; more need --names."""
    if n == 2:
        return ["train", "val"]
    if n == 3:
        return ["train", "val", "test"]
    raise ValueError(f"--fractions: {n} parts need --names (train,val / train,val,test are the defaults "
                     f"for 2 / 3)")


def compile_group_by(pattern: str) -> re.Pattern:
    """The ``--group-by`` regular expression, or ValueError naming it and the error."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"--group-by {pattern!r}: not a valid regular expression ({e})") from None


def group_keys(file_names: Sequence[str], pattern: Optional[re.Pattern]) -> tuple:
    """(key per image, number of images the pattern did not match). Images of one key stay together:
    the pattern's first group where it has one (and it took part in the match), else the whole match,
    searched anywhere in ``file_name``; an image it does not match is a unit of its own."""
    keys, unmatched = [], 0
    for name in file_names:
        match = pattern.search(name) if pattern is not None else None
        if match is None:
            unmatched += pattern is not None
            keys.append(None)  # its own unit
            continue
        group = match.group(1) if pattern.groups and match.group(1) is not None else match.group(0)
        keys.append(group)
    return keys, unmatched


def assign_units(unit_classes: Sequence[Counter], unit_sizes: Sequence[int], unit_names: Sequence[str],
                 fractions: Sequence[float], seed: int) -> list:
    """The part (index into ``fractions``) of each unit, by iterative stratification (module docstring).

    ``unit_classes[u]``: {class: images of unit u showing it}; ``unit_sizes[u]``: its images;
    ``unit_names[u]``: a name unique to the unit (what the seeded order is drawn from)."""
    n_parts = len(fractions)
    class_images = Counter()
    for classes in unit_classes:
        class_images.update(classes)
    total = sum(unit_sizes)
    wants = [f * total for f in fractions]  # images part j still wants
    class_wants = {c: [f * n for f in fractions] for c, n in class_images.items()}  # (C, S)
    left = Counter(class_images)  # images of each class among unassigned units
    order = sorted(range(len(unit_names)), key=lambda u: (_draw(seed, "unit", unit_names[u]), unit_names[u]))
    by_class: dict = {c: [] for c in class_images}
    for u in order:
        for c in unit_classes[u]:
            by_class[c].append(u)
    part = [None] * len(unit_names)

    def give(u: int, j: int) -> None:
        part[u] = j
        wants[j] -= unit_sizes[u]
        for c, n in unit_classes[u].items():
            class_wants[c][j] -= n
            left[c] -= n

    while True:
        open_classes = [c for c in left if left[c] > 0]
        if not open_classes:
            break
        rarest = min(open_classes, key=lambda c: (left[c], c))
        for u in by_class[rarest]:
            if part[u] is not None:
                continue
            name = unit_names[u]
            give(u, max(range(n_parts), key=lambda j: (round(class_wants[rarest][j], _TIE),
                                                        round(wants[j], _TIE), _draw(seed, "part", name, j))))
    for u in order:  # units without instances: by the images each part still wants
        if part[u] is None:
            name = unit_names[u]
            give(u, max(range(n_parts), key=lambda j: (round(wants[j], _TIE), _draw(seed, "part", name, j))))
    _fill_empty_parts(part, unit_classes, unit_sizes, unit_names, fractions, seed)
    return part


def _fill_empty_parts(part: list, unit_classes: Sequence[Counter], unit_sizes: Sequence[int],
                      unit_names: Sequence[str], fractions: Sequence[float], seed: int) -> None:
    """Give each part left without a unit one from a part holding several (in place), while there is one.

    With few units the rarest class's unit goes to the part wanting most of it (train), and so may every
    later one: val came out empty for every seed. The unit moved is the one that brings the parts' sizes
    closest to their fractions (the sum of |images - f * N|; ties: the smaller unit, then a seeded draw),
    so a small group goes to val rather than the big one. Before closeness: the fewest classes the move
    leaves with no image in the part it leaves, so the only unit of a class stays in train."""
    total = sum(unit_sizes)
    while True:
        sizes = [0] * len(fractions)
        held = [0] * len(fractions)
        class_held = [Counter() for _ in fractions]  # part -> {class: images showing it}
        for u, j in enumerate(part):
            sizes[j] += unit_sizes[u]
            held[j] += 1
            class_held[j].update(unit_classes[u])
        empty = [j for j in range(len(fractions)) if held[j] == 0]
        movable = [u for u, j in enumerate(part) if held[j] > 1]
        if not empty or not movable:
            return
        target = max(empty, key=lambda j: (fractions[j], -j))  # the one that should hold the most

        def cost(u: int, sizes=sizes, target=target, class_held=class_held) -> tuple:
            moved = list(sizes)
            moved[part[u]] -= unit_sizes[u]
            moved[target] += unit_sizes[u]
            gap = sum(abs(n - f * total) for n, f in zip(moved, fractions))
            emptied = sum(1 for c, n in unit_classes[u].items() if n and class_held[part[u]][c] <= n)
            return emptied, round(gap, _TIE), unit_sizes[u], _draw(seed, "fill", unit_names[u])

        part[min(movable, key=cost)] = target


def written_file_keys(file_names: Sequence[str]) -> list:
    """The file each name stands for when the image folder is not known: ``written_file_matches``'
    keys."""
    return written_file_matches(file_names)[0]


def written_file_matches(file_names: Sequence[str]) -> tuple:
    """(keys, joined, crowded) for names whose image folder is not known. keys: ``file_key`` of each
    name, and for an absolute path ('/data/img/a.png', 'C:\\data\\img\\a.png') or one with '..'
    ('../img/a.png') the longest end of it (whole parts) that another record writes plainly ('a.png',
    'img/a.png'): the folder those are relative to is unknown, and two records of one file split apart
    are a leak, where two files kept together only shift the fractions a little. So also when two names
    of one kind (two absolute paths, two '..' paths: ``_kind``) that differ end in one plain name
    ('/d/a/x.png' and '/e/b/x.png', both 'x.png'): at most one of them is that file, yet either may be,
    and leaving them apart could put one picture in train and val; all are kept in one unit, and the
    caller says so. joined: [(key, the plain key it was taken for)] in file order, one per distinct key,
    those of ``crowded`` left out; crowded: {plain key: [the different keys of one kind ending in it]}."""
    keys = [file_key(name) for name in file_names]
    plain = {k for k in keys if not _outside(k)}
    ends: dict = {}  # an absolute or '..' key -> the plain key that is its longest end
    for key in keys:
        if _outside(key) and key not in ends:
            parts = key.split("/")
            ends[key] = next(("/".join(parts[k:]) for k in range(1, len(parts))
                              if "/".join(parts[k:]) in plain), None)
    sharing: dict = {}  # plain key -> the distinct outside keys ending in it
    for key, end in ends.items():
        if end is not None:
            sharing.setdefault(end, []).append(key)
    crowded = {end: outs for end, outs in sharing.items() if _two_files(outs)}
    taken = {key: end for key, end in ends.items() if end is not None}
    joined = [(key, end) for key, end in taken.items() if end not in crowded]
    return [taken.get(key, key) for key in keys], joined, crowded


def _kind(key: str) -> str:
    """Which way an absolute or '..' key names a file: two keys of one kind that differ are two files
    (a drive path compared ignoring case, as Windows opens it)."""
    return "/" if key.startswith("/") else "C:" if re.match(r"[A-Za-z]:/", key) else ".."


def _two_files(keys: Sequence[str]) -> bool:
    """Whether two of the distinct absolute or '..' ``keys`` are certainly two files: of one kind
    (``_kind``) and different (a drive path compared ignoring case, as Windows opens it)."""
    spellings: dict = {}  # kind -> the keys of that kind
    for key in keys:
        kind = _kind(key)
        spellings.setdefault(kind, set()).add(key.lower() if kind == "C:" else key)
    return any(len(keys) > 1 for keys in spellings.values())


def _outside(key: str) -> bool:
    """Whether a ``file_key`` may name a file by another way than the plain relative names do."""
    return key.startswith("/") or re.match(r"[A-Za-z]:/", key) is not None or ".." in key.split("/")


def split_coco(coco: dict, *, fractions: Sequence[float], names: Sequence[str], seed: int = 0,
               group_by: Optional[re.Pattern] = None, files: Optional[Sequence[str]] = None) -> tuple:
    """(parts, unmatched): parts is {name: COCO dict} in the order of ``names``, each with the images
    assigned to it (file order), their annotations, the full ``categories`` and the other top-level keys of
    ``coco``; unmatched: images ``group_by`` did not match (each kept as a unit of its own). ``files``:
    the file each image names (``file_key(name, folder)``), None: from the names (``written_file_keys``)."""
    keys, unmatched = group_keys([img["file_name"] for img in coco["images"]], group_by)
    return split_by_keys(coco, keys, fractions=fractions, names=names, seed=seed, files=files), unmatched


def split_by_keys(coco: dict, keys: Sequence[Optional[str]], *, fractions: Sequence[float],
                  names: Sequence[str], seed: int = 0, files: Optional[Sequence[str]] = None) -> dict:
    """``split_coco``'s parts from the images' group keys already drawn (``group_keys``' first value,
    one per image of ``coco``, None: a unit of its own), for a caller that looks at the groups first;
    ``files`` as ``split_coco``'s."""
    check_fractions(fractions, names)
    images = coco["images"]
    if len(keys) != len(images):
        raise ValueError(f"split_by_keys: {len(keys)} group keys for {len(images)} images")
    if files is None:
        files = written_file_keys([img["file_name"] for img in images])
    elif len(files) != len(images):
        raise ValueError(f"split_by_keys: {len(files)} files for {len(images)} images")
    shows: dict = {img["id"]: set() for img in images}  # image id -> classes with a non-crowd instance
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            shows[ann["image_id"]].add(ann["category_id"])
    image_units = _unit_names(images, keys, files)
    unit_of: dict = {}
    unit_names, unit_classes, unit_sizes = [], [], []
    for img, name in zip(images, image_units):
        u = unit_of.setdefault(name, len(unit_names))
        if u == len(unit_names):
            unit_names.append(name)
            unit_classes.append(Counter())
            unit_sizes.append(0)
        unit_classes[u].update(shows[img["id"]])
        unit_sizes[u] += 1
    part_of_unit = assign_units(unit_classes, unit_sizes, unit_names, fractions, seed)
    image_part = {img["id"]: part_of_unit[unit_of[name]] for img, name in zip(images, image_units)}
    rest = {k: v for k, v in coco.items() if k not in ("images", "annotations", "categories")}
    parts = {}
    for j, part_name in enumerate(names):
        parts[part_name] = {
            **rest,
            "images": [img for img in images if image_part[img["id"]] == j],
            "annotations": [a for a in coco["annotations"] if image_part[a["image_id"]] == j],
            "categories": coco["categories"],
        }
    return parts


def _unit_names(images: list, keys: list, files: Sequence[str]) -> list:
    """The unit of each image: its group, or itself (named by file name and id, unique in the file). The
    records of one file (``files``) are one unit, the first one's, also when a group key was found in
    one spelling of the name and not in another ('cam1/x.png' and 'cam1\\x.png'): two records of one
    picture split into train and val put the picture in both. An image without a twin keeps its name,
    and so its seeded draw."""
    first: dict = {}  # file -> the unit of its first record
    names = []
    for img, key, file in zip(images, keys, files):
        own = f"group\x00{key}" if key is not None else f"image\x00{img['file_name']}\x00{img['id']}"
        names.append(first.setdefault(file, own))
    return names


def split_table(parts: dict, class_names: dict) -> dict:
    """{class name, then None for all images: {part: (images, instances)}}: the images showing the class
    (all images for None) and its instances, crowd regions aside, per part; ``class_names`` is {category
    id: name}, names distinct."""
    table = {name: {} for name in class_names.values()}
    table[None] = {}
    for part, coco in parts.items():
        instances = Counter()
        pairs = set()  # (image, class): an image with 3 cats counts once among the cat images
        for ann in coco["annotations"]:
            if not ann.get("iscrowd", 0):
                instances[ann["category_id"]] += 1
                pairs.add((ann["image_id"], ann["category_id"]))
        images = Counter(cid for _, cid in pairs)
        for cid, name in class_names.items():
            table[name][part] = (images[cid], instances[cid])
        table[None][part] = (len(coco["images"]), sum(instances.values()))
    return table
