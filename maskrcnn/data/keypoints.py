"""Keypoint sets: names, the horizontal-flip map, the skeleton for drawing, OKS sigmas for evaluation.

Shapes: K keypoints per instance; a flip map is a length-K tuple (``map[k]`` = the keypoint that
keypoint k becomes in the mirrored image); a skeleton is E pairs of keypoint indices.

Everything here follows from a COCO category's ``keypoints`` (names) and ``skeleton`` (1-based index
pairs, as the COCO files write them), so that a dataset with its own keypoint set needs no code:

- flip map: a name containing the word ``left`` swaps with the same name saying ``right`` (and back),
  case-insensitively, with ``_``, ``-``, ``.`` or a space around the word (``left_knee``, ``Left-Knee``,
  ``hand.left``); so do ``L`` and ``R`` as words (``L_Eye``, ``R_F_Paw``) and camelCase sides
  (``leftShoulder``, ``handRight``), ``L``/``R`` glued to a capitalised word (OpenPose's ``LEye``,
  Human3.6M's ``RHip``), ``l_``/``r_`` prefixes and ``_L``/``_R`` suffixes, a capital ``L``/``R``
  glued after a lowercase word, before an optional number (SLEAP's ``wingL``, ``forelegL4``; not the
  ``L`` of ``Lip`` or ``PCL``), or after a limb's ``F``/``H`` or a capital and a digit (DeepLabCut's
  ``pawFL``, ``HR_paw``, a fly's ``T1L``), or opening the name or a word before a leg's number or a
  limb's ``F``/``H`` (a fly's ``L1``/``R1``, quadrupeds' ``LF``/``RH``; no side alone: a vertebra's
  ``L1``), a lowercase ``l``/``r`` glued to a capitalised word (``lEye``), when both names exist; every
  other name maps to itself; the case-sensitive spellings (camelCase, glued ``L``/``R``) pair by exact
  name only (``Rear`` is no right ``ear``); so does a side word glued to a lowercase word, by exact
  spelling too (``leftshoulder``/``rightshoulder``, ``SHOULDERLEFT``/``SHOULDERRIGHT``; at the end after
  three letters or more: ``bright`` is none; only the first side word swaps: ``rightleft`` is no
  ``leftright``). A name that looks sided but finds no partner (``leftshoulder`` alone, ``L_Eye``
  without ``R_Eye``; a glued word only at the start: ``copyright`` alone is none) is kept in place with
  a warning naming every such name (``unpaired_sided_names``; names with control characters escaped, as
  every problem line shows a file's names: ``shown_text.display_name``). A ``left`` name with no
  ``right`` partner is an error, because flipping would silently mislabel it, and so is a map that is
  not its own inverse (a flip would copy one point over another) (``FlipMapError``: training that flips
  no image, input.flip_prob=0, needs no map and says it in a note instead). ``data.keypoint_flip_map``
  (pairs of 0-based indices or of names) wins over the names when given, with the same warning for the
  sided names its pairs leave in place (a partial list) and one for a pair of a sided name with an
  unsided one; ``--set data.keypoint_flip_map=[]`` means no pairs (stored as ``no_flip_pairs``);
  training prints the pairs it uses and stores them there in the run's config (``flip_pairs``), so
  that predict's flip TTA, ``--resume`` and export use the same; ``pairs_nothing`` tells a set whose
  names pair nothing (iBUG's "1".."68"), which training warns about while it flips images.
- names (``keypoint_names_problem``): non-empty strings, distinct case-insensitively; every reader of a
  file (``CocoDataset``, the evaluation's ground truth) refuses another list, naming file and category.
- OKS sigmas (COCO's keypoint AP): ``data.keypoint_sigmas`` when the config gives them (one per
  keypoint); otherwise each COCO person keypoint name (any case, words joined by ``_ - .``, a space or
  camelCase: ``Left Eye``, ``left-eye``, ``leftEye``; the side spellings the flip map reads, before or
  after the part: ``LEye``, ``eyeL``, ``eye_left``, ``ShoulderLeft``) gets COCO's own sigma and every
  other name ``DEFAULT_KEYPOINT_SIGMA`` (the mean of COCO's 17 sigmas, 0.067: a joint located about as
  precisely as an average COCO joint). Without names, 17 keypoints are taken to be COCO's.
- points outside the image (``clip_keypoints``): a labelled point within ``KEYPOINT_MARGIN`` (5%) of
  the image's size past the border is clipped to it, one farther out made unlabelled (v=0). Training
  (``CocoDataset``) and every evaluation's ground truth (``engine/evaluator.py``, also ``eval
  --results``) apply the same function, so the two ways of scoring a model score the same points.
- visibility flags other than 0, 1, 2 (``read_visibility``): read as COCOeval reads them, labelled (2)
  when > 0, unlabelled (0) otherwise; both readers say so in the same line (``odd_visibility_note``).
"""

from __future__ import annotations

import re
import warnings
from typing import Optional, Sequence

from maskrcnn.shown_text import display_name

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "COCO_KEYPOINT_SIGMAS",
    "COCO_SKELETON",
    "DEFAULT_KEYPOINT_SIGMA",
    "FlipMapError",
    "KEYPOINT_MARGIN",
    "clip_keypoints",
    "default_sigma_note",
    "drawing_skeleton",
    "flip_map_from_names",
    "flip_map_from_pairs",
    "flip_pairs",
    "flip_pairs_line",
    "keypoint_flip_map",
    "keypoint_names_problem",
    "keypoint_sigmas",
    "no_flip_pairs",
    "odd_visibility_note",
    "pairs_nothing",
    "read_visibility",
    "skeleton_edges",
    "unpaired_sided_names",
]

COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# COCO's per-keypoint OKS constants (pycocotools' Params.kpt_oks_sigmas), in the order above.
COCO_KEYPOINT_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087,
    0.087, 0.089, 0.089,
)  # fmt: skip
DEFAULT_KEYPOINT_SIGMA = round(sum(COCO_KEYPOINT_SIGMAS) / len(COCO_KEYPOINT_SIGMAS), 4)  # 0.0669
# COCO's person skeleton, 0-based index pairs (the COCO file lists them 1-based).
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

# how far past the border (a fraction of the image's width / height) a labelled keypoint is clipped to
# it; farther, it is made unlabelled (clip_keypoints)
KEYPOINT_MARGIN = 0.05

_SIDE = re.compile(r"(?i)(?<![a-z0-9])(left|right)(?![a-z0-9])")
# the side as one letter, as the Animal-Pose set writes it (L_Eye, R_F_Paw), or a camelCase word, as
# TensorFlow.js pose models name keypoints (leftShoulder, LeftEye, handRight); a pair only when both exist
_SIDE_LETTER = re.compile(r"(?i)(?<![a-z0-9])([lr])(?![a-z0-9])")
_SIDE_CAMEL = re.compile(r"(?<![A-Za-z])(left|right|Left|Right)(?=[A-Z])|(?<=[a-z0-9])(Left|Right)(?![a-z])")
# OpenPose / Human3.6M: the side letter glued to a capitalised word (LEye, RShoulder, LHip), also as a
# lowercase prefix (lEye, rShoulder); a lowercase letter before a lowercase one is a word (leg, rump)
_SIDE_GLUED = re.compile(r"^([LRlr])(?=[A-Z][a-z])")
# SLEAP / DeepLabCut: a capital side letter glued after a lowercase word, before an optional number and
# the end or a separator (wingL, eyeR, forelegL4, legR1_tip); a capital after capitals is no side (the
# knee's PCL), nor a lowercase or leading one (Lip, tail)
_SIDE_SUFFIX = re.compile(r"(?<=[a-z])([LR])(?=\d*(?:[_\-. ]|$))")
# DeepLabCut rodents / flies: the side letter after a limb's capital, F(ront) or H(ind) (pawFL, FL_paw,
# paw_HR), or after a capital and a digit opening the name or a word (the fly's legs T1L, T3R_tip); a
# capital after other capitals stays no side (the knee's ACL / PCL)
_SIDE_LIMB = re.compile(r"(?:(?<=^[FH])|(?<=[a-z_\-. ][FH])|(?<=^[A-Z]\d)|(?<=[_\-. ][A-Z]\d))([LR])"
                        r"(?=\d*(?:[_\-. ]|$))")
# DeepLabCut / SLEAP flies and quadrupeds: the side letter opening the name or a word, before a leg's
# number or a limb's F(ront) / H(ind) / B(ack) / R(ear) (L1, R3_tip, LF, RH, LB, RR, paw_LF): the mirror
# of T1L and pawFL. A side only when the mirrored name exists, and no warning alone (a lone L1 is a lumbar
# vertebra), unless the set pairs other names so (``unpaired_sided_names``)
_SIDE_NUMBERED = re.compile(r"(?:^|(?<=[_\-. ]))([LR])(?=(?:\d+|[FHBR]\d*)(?:[_\-. ]|$))")
# the side word glued to a lowercase one (leftshoulder, RIGHTHAND, shoulderleft): a side only when the
# partner exists spelt the same way, case included (leftover and RIGHTOVER are none); at the end, after
# three letters at least (bright, upright are no sides)
_SIDE_GLUED_WORD = re.compile(r"(?i)^(left|right)(?=[a-z])|(?<=[a-z]{3})(left|right)$")
# what makes a name look sided (a warning when it pairs with nothing): a side word anywhere it is one of
# the spellings above, or a side letter standing alone (L_Eye, eye.R) or glued as OpenPose's; a glued
# side word only at the start (leftshoulder): at the end it is too often part of a word (copyright,
# downright) to be warned about alone, though shoulderleft/shoulderright still pair
_SIDED = (_SIDE, _SIDE_LETTER, _SIDE_CAMEL, _SIDE_GLUED, _SIDE_SUFFIX, _SIDE_LIMB,
          re.compile(r"(?i)^(left|right)(?=[a-z])"))


def _mirror_name(name: str) -> str:
    """``left_knee`` -> ``right_knee`` (keeping the case of the word), unchanged without a side."""

    return _SIDE.sub(_swap, name)


def _swap(m: re.Match) -> str:
    word = m.group(m.lastindex)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


def _other_spellings(name: str) -> tuple:
    """The mirror names of the spellings that are sides only when the partner exists, each with whether
    it is looked up by its exact spelling: ``L_Eye`` -> ``R_Eye`` (any case: ``l_eye`` is a side too),
    ``leftShoulder`` -> ``rightShoulder``, ``LEye`` -> ``REye`` and ``wingL`` -> ``wingR`` (exact: these
    are sides only by their capitals; ``Rear`` is no right ``ear``)."""
    table = {"l": "r", "r": "l", "L": "R", "R": "L"}  # lEye -> rEye keeps the lowercase
    return ((_SIDE_LETTER.sub(lambda m: table[m.group(1)], name), False),
            (_SIDE_CAMEL.sub(_swap, name), True),
            (_SIDE_GLUED.sub(lambda m: table[m.group(1)], name), True),
            (_SIDE_SUFFIX.sub(lambda m: table[m.group(1)], name, count=1), True),
            (_SIDE_LIMB.sub(lambda m: table[m.group(1)], name, count=1), True),
            (_SIDE_NUMBERED.sub(lambda m: table[m.group(1)], name, count=1), True),
            (_SIDE_GLUED_WORD.sub(_swap, name, count=1), True))  # one side: rightleft is no leftright


def keypoint_names_problem(names) -> Optional[str]:
    """Why a category's ``keypoints`` field names no keypoint set, None when it does: a list of
    non-empty strings, distinct case-insensitively (as the flip map and the sigma lookup tell them
    apart). Every command reads a file's names through this (``CocoDataset``), so a bad list stops
    show-data and eval as it stops training, not only at training's flip map."""
    if not isinstance(names, list):
        return f"'keypoints' must be a list of keypoint names, got {type(names).__name__}"
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        shown = ", ".join(display_name(n) if isinstance(n, str) else repr(n) for n in bad[:3])
        return (f"keypoint names must be non-empty strings (write numbers as \"7\"), got {shown}"
                f"{', ...' if len(bad) > 3 else ''}")
    first, repeated = {}, []
    for n in names:
        key = n.lower()
        if key in first and first[key] not in repeated:
            repeated.append(first[key])
        first.setdefault(key, n)
    if repeated:
        shown = ", ".join(display_name(n) for n in repeated[:3]) + (", ..." if len(repeated) > 3 else "")
        verb = "appears" if len(repeated) == 1 else "appear"
        return f"keypoint names must be distinct (case-insensitively): {shown} {verb} more than once"
    return None


def unpaired_sided_names(names: Sequence[str], flip_map: Sequence[int]) -> list:
    """The names that look like one side (``_SIDED``: ``leftshoulder``, ``L_Eye``, ``hand.R``) but that
    the flip map keeps in place: a flip teaches such a point where the other side's is."""
    # a set that pairs legs by a leading side letter (L1<->R1, LF<->RF) uses that spelling for sides: its
    # other such names left alone (L2 without R2, LB beside RF) are sided too, though a lone L1 is not
    numbered = any(int(j) != i and _SIDE_NUMBERED.search(str(names[i])) for i, j in enumerate(flip_map))
    sided = (*_SIDED, _SIDE_NUMBERED) if numbered else _SIDED
    return [str(n) for i, n in enumerate(names)
            if int(flip_map[i]) == i and any(p.search(str(n)) for p in sided)]


class FlipMapError(ValueError):
    """Names that give no flip map (a ``left`` name without its ``right``, a pair that does not pair back):
    ``problem`` is what is wrong, the message adds the ways out. Training without flips needs no map, and
    says ``problem`` in a note instead of stopping (engine/training.py)."""

    def __init__(self, problem: str, advice: str):
        super().__init__(f"{problem}, {advice}")
        self.problem = problem


def flip_map_from_names(names: Sequence[str], *, source: str = "keypoint names") -> tuple:
    """The flip map of a keypoint set from its names (see the module docstring). The map is checked to
    be its own inverse (a flip twice gives the image back): a name that would pair with a keypoint that
    pairs elsewhere is refused, naming both, rather than copying one point over another at every flip."""
    names = [str(n) for n in names]
    index = {n.lower(): i for i, n in enumerate(names)}
    exact = {n: i for i, n in enumerate(names)}
    problem = keypoint_names_problem(names)  # the one check every command's loading makes
    if problem:
        raise ValueError(f"{source}: {problem}")
    out = []
    for i, name in enumerate(names):
        partner = _mirror_name(name)
        if partner == name:
            # L_Eye / R_Eye were kept in place: a flip taught the left eye where the right one is
            found = [exact[m] if by_case else index[m.lower()] for m, by_case in _other_spellings(name)
                     if m != name and (m in exact if by_case else m.lower() in index)]
            out.append(found[0] if found else i)
            continue
        j = index.get(partner.lower())
        if j is None:
            raise FlipMapError(
                f"{source}: keypoint {name!r} has no mirror keypoint {partner!r}",
                "so a horizontal flip would mislabel it; add the partner, rename it, give the pairs with "
                "data.keypoint_flip_map ([] for none: every keypoint keeps its label), or train without "
                "flips (input.flip_prob=0)")
        out.append(j)
    for i, j in enumerate(out):
        if out[j] != i:
            raise FlipMapError(
                f"{source}: keypoint {names[i]!r} pairs with {names[j]!r}, which does not pair back (it maps "
                f"to {names[out[j]]!r})",
                "so a flip would copy one point over another; rename them, give the pairs in "
                "data.keypoint_flip_map, or train without flips (input.flip_prob=0)")
    _warn_unpaired(names, out, source=source, by="", fix="give the pairs with data.keypoint_flip_map")
    return tuple(out)


def _warn_unpaired(names: Sequence[str], flip_map: Sequence[int], *, source: str, by: str, fix: str) -> None:
    """One warning naming the sided-looking names ``flip_map`` keeps in place (``unpaired_sided_names``):
    each flip teaches such a point where the other side's is. ``by``: what paired them with nothing
    ("" for the names themselves), ``fix``: what gives them their pairs."""
    lone = unpaired_sided_names(names, flip_map)
    if not lone:
        return
    many = len(lone) > 1
    # names from the file, escaped as in every problem line: a newline or an ANSI escape in a name
    # would otherwise forge lines or recolour the terminal
    shown = ", ".join(display_name(n) for n in lone)
    them = "them" if many else "it"
    pairs = f"{by}pairs {them}" if by else f"pair{'' if many else 's'}"
    warnings.warn(
        f"{source}: keypoint{'s' if many else ''} {shown} look{'' if many else 's'} like one "
        f"side but {pairs} with no other name, so a horizontal flip keeps {them} in place; {fix}, or "
        "train without flips (input.flip_prob=0)", stacklevel=3)


def _looks_sided(name: str) -> bool:
    return any(p.search(name) for p in _SIDED)


def _warn_mixed_pairs(names: Sequence[str], flip_map: Sequence[int], *, source: str) -> None:
    """One warning naming the configured pairs that swap a sided-looking name (``_SIDED``) with one that
    looks like no side (``[["L_ear", "nose"]]``): ``unpaired_sided_names`` sees L_ear paired and says
    nothing, yet each flip then teaches the nose where the ear is. Warned, not refused: the names'
    spelling only suggests a side (a set may name a point ``Lip``)."""
    mixed = [(str(names[i]), str(names[j])) for i, j in enumerate(int(j) for j in flip_map)
             if i < j and _looks_sided(str(names[i])) != _looks_sided(str(names[j]))]
    if not mixed:
        return
    shown = ", ".join(f"{display_name(a)}<->{display_name(b)}" for a, b in mixed)
    many = len(mixed) > 1
    warnings.warn(
        f"{source}: data.keypoint_flip_map pairs {shown}: {'each pairs' if many else 'it pairs'} a name that "
        "looks like one side with one that looks like no side, so a horizontal flip swaps a sided point "
        "with a middle one; check the pairs (a left name with its right one)", stacklevel=3)


def keypoint_flip_map(names: Optional[Sequence[str]], num_keypoints: int, *, configured: Sequence = (),
                      source: str = "keypoint names", warn_unpaired: bool = True) -> Optional[tuple]:
    """The flip map for a model with ``num_keypoints``: ``configured`` (``data.keypoint_flip_map``) when
    given, else from ``names`` when known, COCO's for 17 unnamed keypoints, None (no swap) for unnamed
    sets of other sizes. ``source`` (the dataset's file) names where the names came from in errors.
    ``warn_unpaired`` False: ``configured`` are the pairs a run derived and stored in its config (predict's
    flip TTA, ``--resume``), not a user's setting, so a sided name they leave unpaired is not blamed on
    data.keypoint_flip_map (training said it once, from the names, when it derived them)."""
    if names and len(names) != num_keypoints:  # first: a short list made configured names look unknown
        raise ValueError(f"{source}: {len(names)} keypoint names for {num_keypoints} keypoints")
    if configured:
        out = flip_map_from_pairs(configured, names, num_keypoints)
        if names and warn_unpaired:  # a partial list: the sided names it leaves out stay in place
            _warn_unpaired(names, out, source=source, by="data.keypoint_flip_map ",
                           fix="add the pairs to data.keypoint_flip_map")
            _warn_mixed_pairs(names, out, source=source)
        return out
    if names:
        return flip_map_from_names(names, source=source)
    if num_keypoints == len(COCO_KEYPOINT_NAMES):
        return flip_map_from_names(COCO_KEYPOINT_NAMES)
    return None


def flip_map_from_pairs(pairs: Sequence, names: Optional[Sequence[str]], num_keypoints: int) -> tuple:
    """``data.keypoint_flip_map``: [[a, b], ...] of 0-based keypoint indices or of keypoint names (each a
    left/right pair, swapped both ways) -> the flip map; unlisted keypoints map to themselves, and so does
    a keypoint paired with itself ([a, a]: how a run stores an explicit [], ``no_flip_pairs``)."""
    where = "data.keypoint_flip_map"
    index = {str(n): i for i, n in enumerate(names or ())}
    out = list(range(num_keypoints))
    seen = set()
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{where}: each entry is a pair [a, b] of keypoint indices or names, "
                             f"got {pair!r}")
        ends = []
        for v in pair:
            if isinstance(v, int) and not isinstance(v, bool):
                if not 0 <= v < num_keypoints:
                    raise ValueError(f"{where}: index {v} is not in 0..{num_keypoints - 1} (0-based)")
                ends.append(v)
            elif isinstance(v, str) and v in index:
                ends.append(index[v])
            else:
                raise ValueError(f"{where}: {v!r} is neither a 0-based keypoint index nor one of the "
                                 f"keypoint names {list(index) or '(none known)'}")
        a, b = ends
        if a in seen or b in seen:
            raise ValueError(f"{where}: keypoint {pair!r} pairs a keypoint twice")
        seen |= {a, b}
        out[a], out[b] = b, a
    return tuple(out)


def flip_pairs(flip_map: Optional[Sequence[int]], names: Optional[Sequence[str]] = None) -> tuple:
    """A flip map -> its swapped pairs, as ``data.keypoint_flip_map`` takes them (``flip_map_from_pairs``
    reads them back to the same map): ((a, b), ...) with a < b, by name when ``names`` are given, by
    0-based index otherwise; () when it swaps nothing. A run stores them in its config."""
    if flip_map is None:
        return ()
    pairs = [(i, int(j)) for i, j in enumerate(flip_map) if i < int(j)]
    if names:
        return tuple((str(names[a]), str(names[b])) for a, b in pairs)
    return tuple(pairs)


def no_flip_pairs(names: Optional[Sequence[str]], num_keypoints: int) -> tuple:
    """The pairs a run stores for a map that swaps nothing by the user's word (``--set
    data.keypoint_flip_map=[]``): the first keypoint paired with itself. Stored as (), predict's flip TTA
    and --resume would derive the pairs from the names again (another map, or a one-sided set's error)."""
    if num_keypoints < 1:
        return ()
    first = str(names[0]) if names else 0
    return ((first, first),)


def flip_pairs_line(pairs: Sequence) -> str:
    """``(("left_eye", "right_eye"), ...)`` -> "left_eye<->right_eye, ..." ("none" when empty; a keypoint
    paired with itself, ``no_flip_pairs``, is no pair); names with control characters shown escaped
    (``shown_text.display_name``)."""
    return ", ".join(f"{display_name(a)}<->{display_name(b)}" for a, b in pairs if a != b) or \
        "none (a flip keeps every keypoint's label)"


def pairs_nothing(flip_map: Optional[Sequence[int]]) -> bool:
    """True when a flip map (or its absence) swaps no keypoint: a flip then mirrors the image and leaves
    every left keypoint labelled left, now where the right one is."""
    return flip_map is None or all(int(j) == i for i, j in enumerate(flip_map))


def keypoint_sigmas(names: Optional[Sequence[str]], num_keypoints: int,
                    configured: Sequence[float] = ()) -> tuple:
    """The OKS sigmas (length ``num_keypoints``) for COCO keypoint AP (see the module docstring)."""
    if configured:
        sigmas = tuple(float(s) for s in configured)
        if len(sigmas) != num_keypoints or not all(s > 0 for s in sigmas):
            raise ValueError(
                f"data.keypoint_sigmas: expected {num_keypoints} positive numbers (one per keypoint), "
                f"got {list(configured)}"
            )
        return sigmas
    if not names:
        if num_keypoints == len(COCO_KEYPOINT_SIGMAS):
            return COCO_KEYPOINT_SIGMAS
        return (DEFAULT_KEYPOINT_SIGMA,) * num_keypoints
    if len(names) != num_keypoints:
        raise ValueError(f"{len(names)} keypoint names for {num_keypoints} keypoints")
    coco = dict(zip(COCO_KEYPOINT_NAMES, COCO_KEYPOINT_SIGMAS))
    return tuple(coco.get(_coco_spelling(n), DEFAULT_KEYPOINT_SIGMA) for n in names)


def _coco_spelling(name) -> str:
    """A keypoint name as COCO spells its names, for the sigma lookup: lowercase, words joined by ``_``
    (``Left Eye``, ``left-eye``, ``left.eye``, ``leftEye`` -> ``left_eye``), the spellings the flip map
    reads as the same side word; the side letters it pairs by too, OpenPose's ``LEye``, ``lEye``,
    ``l_eye``, ``L_Eye``, ``eyeR``, ``eye_r`` -> ``left_eye`` / ``right_eye``; the side word glued
    (``lefthip``, ``hipleft``) or after the part (``eye_left``, Kinect's ``ShoulderLeft``,
    ``SHOULDER_LEFT`` -> ``left_eye`` / ``left_shoulder``), as the flip map pairs those."""
    name = str(name).strip()
    side = {"l": "left", "r": "right"}
    glued = _SIDE_GLUED.match(name) or re.match(r"(?i)^([lr])(?=[\s_.\-])", name)
    if glued:  # LEye, lEye, l_eye: the letter opens the name
        name = side[glued.group(1).lower()] + "_" + name[1:]
    else:
        tail = re.search(r"(?:(?<=[a-z])([LR])|(?<=[a-z0-9])[\s_.\-]+([LRlr]))$", name)
        if tail:  # eyeL, eye_r: the letter ends it
            name = side[(tail.group(1) or tail.group(2)).lower()] + "_" + name[:tail.start()]
    word = _SIDE_GLUED_WORD.search(name)
    if word:  # lefthip, SHOULDERLEFT: the side word glued to the part, a word of its own here
        name = name[:word.start()] + "_" + word.group(0) + "_" + name[word.end():]
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    words = [w for w in re.split(r"[\s_.\-]+", name.lower()) if w]
    if len(words) > 1 and words[-1] in ("left", "right") and words[0] not in ("left", "right"):
        words = words[-1:] + words[:-1]  # eye_left: COCO puts the side first
    return "_".join(words)


def skeleton_edges(skeleton: Sequence, num_keypoints: int, *, source: str = "skeleton") -> tuple:
    """COCO's 1-based ``skeleton`` pairs -> 0-based edges, checked against ``num_keypoints``."""
    edges = []
    for pair in skeleton:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                or not all(1 <= v <= num_keypoints for v in pair)):
            raise ValueError(
                f"{source}: each skeleton entry is a pair of 1-based keypoint indices in 1..{num_keypoints}, "
                f"got {pair!r}"
            )
        edges.append((pair[0] - 1, pair[1] - 1))
    return tuple(edges)


def drawing_skeleton(names: Optional[Sequence[str]], skeleton: Sequence, num_keypoints: int, *,
                     source: str = "skeleton") -> tuple:
    """The 0-based edges overlays join a keypoint set's points with: its own ``skeleton`` (1-based, as
    the COCO file lists it) when it has one; else COCO's person skeleton for COCO's 17 keypoints (no names,
    or COCO's 17 names in any order, in any spelling ``keypoint_sigmas`` reads: its limbs joined by name);
    else none (points only): COCO's limbs would join the unrelated points of another 17-point set
    (AP-10K's animals)."""
    if skeleton:
        return skeleton_edges(skeleton, num_keypoints, source=source)
    if num_keypoints != len(COCO_KEYPOINT_NAMES):
        return ()
    if not names:
        return COCO_SKELETON
    at = {n: i for i, n in enumerate(_coco_spelling(n) for n in names)}
    if sorted(at) != sorted(COCO_KEYPOINT_NAMES):
        return ()
    return tuple((at[COCO_KEYPOINT_NAMES[a]], at[COCO_KEYPOINT_NAMES[b]]) for a, b in COCO_SKELETON)


def clip_keypoints(kp: Sequence[float], width: float, height: float) -> tuple:
    """A flat [x1, y1, v1, ...] list (finite numbers) with its labelled points (v > 0) outside the
    ``width`` x ``height`` image clipped to the border within ``KEYPOINT_MARGIN`` of the image's side (a
    click on the border's far side), the ones farther out made unlabelled (x, y, v = 0): a point nobody
    could see there would teach the head a place off the picture. -> (the new list, how many points were
    made unlabelled). Points already inside are returned as they are, so clipping twice changes nothing."""
    out = list(kp)
    far = 0
    mx, my = KEYPOINT_MARGIN * width, KEYPOINT_MARGIN * height
    for k in range(0, len(out) - 2, 3):
        x, y, v = out[k: k + 3]
        if v <= 0 or (0 <= x <= width and 0 <= y <= height):
            continue
        if -mx <= x <= width + mx and -my <= y <= height + my:
            out[k], out[k + 1] = min(max(x, 0.0), width), min(max(y, 0.0), height)
            continue
        out[k: k + 3] = [0.0, 0.0, 0.0]
        far += 1
    return out, far


def read_visibility(kp: Sequence[float]) -> tuple:
    """A flat [x1, y1, v1, ...] list with its visibility flags other than COCO's 0 (not labelled), 1
    (labelled, hidden), 2 (labelled, visible) read as COCOeval reads them: labelled (then 2) when > 0,
    unlabelled otherwise (then 0, its x and y too). -> (the new list, the odd flags as found, in order)."""
    odd = [k for k in range(2, len(kp), 3) if kp[k] not in (0, 1, 2)]
    if not odd:
        return kp, []
    out = list(kp)
    for k in odd:
        out[k - 2: k + 1] = [kp[k - 2], kp[k - 1], 2] if kp[k] > 0 else [0, 0, 0]
    return out, [kp[k] for k in odd]


def odd_visibility_note(source, odd: Sequence[tuple]) -> Optional[str]:
    """The line for a file's odd visibility flags (``odd``: (annotation id, value), one per flag, in file
    order): how many, the first and how they were read; None without any."""
    if not odd:
        return None
    aid, value = odd[0]
    return (f"{source}: {len(odd)} keypoint visibility flags are not 0, 1 or 2 (the first: {value!r} in "
            f"annotation id {aid}): read as COCOeval reads them, labelled (2) when > 0, unlabelled (0) "
            "otherwise")


_OWN_SIGMAS = "set data.keypoint_sigmas (one per keypoint) for your own"


def default_sigma_note(names, configured, *, advice: str = _OWN_SIGMAS) -> Optional[str]:
    """One line naming the keypoints whose OKS sigma is the default (not COCO names, no
    ``data.keypoint_sigmas``), None when there are none (eval prints it, from a model or from --results;
    ``advice``: the way to other sigmas there)."""
    if configured or not names:
        return None
    unknown = [str(n) for n in names if _coco_spelling(n) not in COCO_KEYPOINT_NAMES]
    if not unknown:
        return None
    shown = ", ".join(unknown[:8]) + (", ..." if len(unknown) > 8 else "")
    return f"OKS sigmas: {DEFAULT_KEYPOINT_SIGMA} (default) for {shown}; {advice}"


def other_counts_words(lengths) -> str:
    """Keypoint lists of another count in words, commonest first: ``{15: 3, 11: 1}`` (a Counter of list
    lengths) -> "5 keypoints (15 numbers) or 11 numbers". Training's note and the evaluation's say them
    alike."""
    return " or ".join(f"{n // 3} keypoints ({n} numbers)" if n % 3 == 0 else f"{n} numbers"
                       for n, _ in lengths.most_common())
