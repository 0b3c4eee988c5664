"""Label Studio's brush RLE <-> an (H, W) boolean mask.

Label Studio stores a brush region as ``{"format": "rle", "rle": [byte, ...]}``: the RGBA pixels of an
image of ``original_height`` x ``original_width`` (row-major, 4 bytes a pixel) packed by the ``rle-pack``
scheme its front end uses (the label-studio-converter's ``brush.py`` documents and decodes it). Written
here from that description:

- The bytes are a stream of bits, most significant bit of each byte first.
- Header: 32 bits N (how many words follow), 5 bits ``word size - 1``, then four 4-bit fields
  ``bits - 1``: the four widths a run length may be written with.
- Runs until N words are out: 1 bit (1: a repeated run, 0: a literal run), 2 bits choosing one of
  the four widths, that many bits holding ``length - 1``; then one word repeated ``length`` times, or
  ``length`` words one after another. Bits left over at the end are padding.

Shapes: N = H * W * 4 words of 8 bits; the mask is the alpha channel, (H, W) bool.

A brush holds millions of runs (RGBA channels that differ make every pixel two to four runs), so the
runs are read in batches of one size with numpy (see ``_FIRST_BATCH``): a 1920x1080 stroke of
(255, 0, 0, 255) decodes in ~0.08 s on a 2-core CPU (a Python step a run took ~2.2 s).

``encode_brush_mask`` writes the inverse for pre-annotations: every pixel's four words 255 (inside) or 0
(as the label-studio-converter's own encoder writes them), each run of equal words as repeated runs only
(runs of a mask are long: a literal run would never be shorter), run-length widths 3, 4, 8 and 16 bits.
"""

from __future__ import annotations

import numpy as np

from maskrcnn.data.formats.common import Skip

__all__ = ["ALPHA_THRESHOLD", "decode_brush_mask", "decode_words", "encode_brush_mask"]

# A pixel belongs to the mask when its alpha is at least half: the front end draws strokes anti-aliased,
# and a border pixel less than half covered is outside, as a pixel whose centre a polygon misses is.
ALPHA_THRESHOLD = 128
_HEADER_BITS = 32 + 5 + 4 * 4
_RUN_WIDTHS = (3, 4, 8, 16)  # bits of a run length the encoder may use (runs of up to 8, 16, 256, 65536)


class _Bits:
    """Reads unsigned integers of up to 32 bits, most significant bit first, from a byte array."""

    def __init__(self, data: np.ndarray):
        self.data = np.concatenate([data, np.zeros(5, np.uint8)])  # (B + 5,) uint8: reads never run off
        self.raw = self.data.tobytes()
        self.total = 8 * len(data)
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > self.total:
            raise Skip("bad_rle", f"brush RLE ends in the middle of a value (bit {self.pos} of {self.total})")
        byte, shift = divmod(self.pos, 8)
        window = int.from_bytes(self.raw[byte:byte + 5], "big")  # 40 bits cover any n <= 32 at any shift
        self.pos += n
        return (window >> (40 - shift - n)) & ((1 << n) - 1)

    def read_many(self, count: int, n: int) -> np.ndarray:
        """``count`` values of ``n`` bits each: (count,) unsigned."""
        if self.pos + count * n > self.total:
            raise Skip("bad_rle", f"brush RLE ends in the middle of a literal run (bit {self.pos} of "
                                  f"{self.total})")
        values = _read_at(self.data, self.pos + n * np.arange(count, dtype=np.int64), n)  # (count,)
        self.pos += count * n
        return values


# Runs are read in batches (one Python step a run took ~2.8 s for a 1.9 MP brush of (255, 0, 0, 255)):
# a run's size in bits fixes where the next one starts, so the reader guesses that the next runs are as
# long as the one in hand (a brush of one colour repeats a few patterns: (255, 0, 0, 255) is 1 x 255,
# 2 x 0, 2 x 255, 2 x 0, ..., every run the same size), reads all their headers at once and keeps those
# up to the first of another size. How many to guess is remembered per size: twice the last batch when
# all of it was kept, else a quarter more than the last streak of that size (the runs of one row of a
# stroke). A size seen once at a time (the empty run between two rows) is read alone, with a batch
# tried again now and then.
_FIRST_BATCH = 8
_MAX_BATCH = 1 << 20


def _read_at(data: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """The ``n``-bit values (n <= 32) starting at the bit offsets ``pos`` (R,) of ``data``: (R,) unsigned."""
    nbytes = (n + 14) // 8  # the bytes n bits starting at any of the 8 shifts can touch
    dtype = np.uint32 if nbytes <= 4 else np.uint64
    byte = pos >> 3
    window = data[byte].astype(dtype)  # (R,) the nbytes bytes from byte on, big-endian
    for k in range(1, nbytes):
        window = (window << dtype(8)) | data[byte + k]
    shift = (8 * nbytes - n - (pos & 7)).astype(dtype)
    return (window >> shift) & dtype((1 << n) - 1)


def _same_size_runs(bits: _Bits, start: int, size: int, batch: int, widths: np.ndarray, word: int,
                    left: int) -> tuple:
    """The runs at ``start + k * size`` (k < batch) up to the first one of another size or the first that
    would fill past the ``left`` values still empty: (repeated, bit offset of the values, length), each
    (R,) with R >= 1 (the first run is the one in hand, checked by the caller)."""
    pos = start + size * np.arange(batch, dtype=np.int64)  # (batch,) where each run would start
    widest = int(widths.max())
    header = _read_at(bits.data, pos, 3 + widest).astype(np.int64)  # (batch,) flag, choice, length - 1
    repeated = (header >> (widest + 2)) == 1
    width = widths[(header >> widest) & 3]  # (batch,)
    length = ((header >> (widest - width)) & ((1 << width) - 1)) + 1
    same = 3 + width + np.where(repeated, word, length * word) == size  # (batch,)
    count = batch if same.all() else int(np.argmin(same))
    filled = np.cumsum(length[:count])  # (count,)
    if filled[-1] > left:
        count = int(np.searchsorted(filled, left, side="right"))
    return repeated[:count], pos[:count] + 3 + width[:count], length[:count]


def _fill(out: np.ndarray, i: int, data: np.ndarray, runs: tuple, word: int) -> int:
    """Writes the values of ``runs`` (from ``_same_size_runs``, which keeps them inside ``out``) from
    ``out[i]`` on; returns the next i."""
    repeated, at, length = runs
    if (repeated | (length == 1)).all():  # one word a run (a literal of one too): the common batch
        filled = np.repeat(_read_at(data, at, word), length)
    else:
        stored = np.where(repeated, 1, length)  # (R,) words stored in each run
        run = np.repeat(np.arange(len(stored)), stored)  # (V,) the run of each stored word
        nth = np.arange(len(run)) - np.repeat(np.cumsum(stored) - stored, stored)  # (V,) its place in it
        values = _read_at(data, at[run] + nth * word, word)  # (V,)
        filled = values if not repeated.any() else np.repeat(values, np.where(repeated, length, 1)[run])
    out[i:i + len(filled)] = filled
    return i + len(filled)


def _as_bytes(rle) -> np.ndarray:
    if not isinstance(rle, list) or not rle:
        raise Skip("bad_rle", "brush 'rle' must be a non-empty list of bytes (0..255)")
    try:  # the common case, valid bytes, at C speed (a 1.9 MP brush is millions of them)
        return np.frombuffer(bytes(rle), np.uint8)
    except (TypeError, ValueError):
        pass  # find what is wrong, for the message
    try:
        values = np.asarray(rle)
    except (ValueError, TypeError):  # ragged nested lists
        values = None
    if values is None or values.ndim != 1 or values.dtype.kind not in "iu":
        raise Skip("bad_rle", "brush 'rle' must be a list of whole numbers (bytes 0..255)")
    if values.min() < 0 or values.max() > 255:
        raise Skip("bad_rle", f"brush 'rle' holds {int(values.min())}..{int(values.max())}; bytes are 0..255")
    return values.astype(np.uint8)


def decode_words(rle, *, expected: int) -> tuple:
    """(words (N,) unsigned, word size in bits) of an rle-pack byte list; Skip when it is corrupt or does
    not hold exactly ``expected`` words (checked before anything is allocated)."""
    bits = _Bits(_as_bytes(rle))
    if bits.total < _HEADER_BITS:
        raise Skip("bad_rle", f"brush RLE has {bits.total} bits, its header alone needs {_HEADER_BITS}")
    num = bits.read(32)
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    if num != expected:
        raise Skip("bad_rle", f"brush RLE holds {num} values, the image needs {expected} (H x W x 4)")
    dtype = np.uint8 if word <= 8 else np.uint16 if word <= 16 else np.uint32  # 12 MP RGBA: 48 MB as uint8
    out = np.zeros(num, dtype=dtype)  # (N,)
    widths_table = np.asarray(widths, np.int64)  # (4,)
    guesses = {}  # run size in bits -> how many runs of that size the next batch guesses
    streak, streak_size = 0, None  # runs of one size kept by whole batches in a row, that size
    i = 0
    while i < num:
        start = bits.pos
        repeated = bits.read(1)
        length = bits.read(widths[bits.read(2)]) + 1
        if i + length > num:
            raise Skip("bad_rle", f"a run of {length} at value {i} goes past the {num} values of the image")
        size = bits.pos - start + (word if repeated else length * word)
        batch = min(guesses.get(size, _FIRST_BATCH), (bits.total - start) // size)
        if batch >= _FIRST_BATCH and (repeated or length <= _FIRST_BATCH):  # (a long literal is one read)
            runs = _same_size_runs(bits, start, size, batch, widths_table, word, num - i)
            i = _fill(out, i, bits.data, runs, word)
            kept = len(runs[0])
            streak = (streak if streak_size == size else 0) + kept
            streak_size = size if kept == batch else None
            guesses[size] = min(2 * batch if kept == batch else streak + streak // 4, _MAX_BATCH)
            bits.pos = start + len(runs[0]) * size
            continue
        guesses[size] = guesses.get(size, _FIRST_BATCH) + 1  # read alone; guess a batch again later
        streak_size = None
        if repeated:
            out[i:i + length] = bits.read(word)
        else:
            out[i:i + length] = bits.read_many(length, word)
        i += length
    return out, word


def decode_brush_mask(rle, height: int, width: int) -> np.ndarray:
    """A brush region's ``rle`` for an image of ``height`` x ``width`` -> (H, W) bool (alpha >= 128)."""
    words, word = decode_words(rle, expected=height * width * 4)
    if word != 8:
        raise Skip("bad_rle", f"brush RLE words are {word} bits; Label Studio writes 8-bit RGBA")
    return words.reshape(height, width, 4)[:, :, 3] >= ALPHA_THRESHOLD  # (H, W)


def _pack_fields(values: np.ndarray, widths: np.ndarray) -> list:
    """Unsigned ``values`` (F,) written with ``widths`` (F,) bits each, most significant bit first, as
    bytes (the last one padded with 0 bits)."""
    total = int(widths.sum())
    field = np.repeat(np.arange(len(widths)), widths)  # (T,) the field each bit belongs to
    offset = np.arange(total) - np.repeat(np.cumsum(widths) - widths, widths)  # (T,) bit within it
    shift = (widths[field] - 1 - offset).astype(np.uint64)
    bits = (values[field] >> shift) & np.uint64(1)  # (T,)
    return np.packbits(bits.astype(np.uint8)).tolist()


def encode_brush_mask(mask: np.ndarray) -> list:
    """An (H, W) bool mask -> Label Studio's brush ``rle`` (a list of bytes) of its RGBA image:
    ``decode_brush_mask(encode_brush_mask(m), H, W)`` is ``m``."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)  # (H * W,) row-major, as the RGBA image is laid out
    if flat.size == 0:
        raise ValueError("an empty (0-pixel) mask has no brush RLE")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])  # (R,) first pixel of each run of equal pixels
    lengths = np.diff(np.append(starts, flat.size)) * 4  # (R,) words: 4 a pixel
    words = np.where(flat[starts], 255, 0)  # (R,)
    limit = 1 << _RUN_WIDTHS[-1]  # the longest run one length field can say
    pieces = (lengths + limit - 1) // limit  # (R,) chunks each run is written in
    run = np.repeat(np.arange(len(lengths)), pieces)  # (C,)
    index = np.arange(len(run)) - np.repeat(np.cumsum(pieces) - pieces, pieces)  # (C,) chunk within its run
    chunk = np.minimum(lengths[run] - index * limit, limit)  # (C,) words per chunk, 1..65536
    width_index = np.searchsorted(1 << np.array(_RUN_WIDTHS), chunk)  # (C,) smallest width that fits
    # per chunk: repeated-run flag 1, width index (2 bits), length - 1, the word (8 bits)
    fields = np.stack([np.ones_like(chunk), width_index, chunk - 1, words[run]], axis=1)  # (C, 4)
    widths = np.stack([np.ones_like(chunk), np.full_like(chunk, 2), np.array(_RUN_WIDTHS)[width_index],
                       np.full_like(chunk, 8)], axis=1)  # (C, 4)
    header = np.array([flat.size * 4, 8 - 1, *(w - 1 for w in _RUN_WIDTHS)])
    header_widths = np.array([32, 5, 4, 4, 4, 4])
    values = np.concatenate([header, fields.reshape(-1)]).astype(np.uint64)
    return _pack_fields(values, np.concatenate([header_widths, widths.reshape(-1)]).astype(np.int64))
