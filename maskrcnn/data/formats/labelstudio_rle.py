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
        """``count`` values of ``n`` bits each: (count,) uint64."""
        if self.pos + count * n > self.total:
            raise Skip("bad_rle", f"brush RLE ends in the middle of a literal run (bit {self.pos} of "
                                  f"{self.total})")
        byte, shift = divmod(self.pos, 8)
        span = self.data[byte:byte + (shift + count * n + 7) // 8]
        bits = np.unpackbits(span)[shift:shift + count * n].reshape(count, n)  # (count, n) 0/1
        self.pos += count * n
        weights = np.left_shift(np.uint64(1), np.arange(n - 1, -1, -1, dtype=np.uint64))  # (n,)
        return bits.astype(np.uint64) @ weights


def _as_bytes(rle) -> np.ndarray:
    if not isinstance(rle, list) or not rle:
        raise Skip("bad_rle", "brush 'rle' must be a non-empty list of bytes (0..255)")
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
    i = 0
    while i < num:
        repeated = bits.read(1)
        length = bits.read(widths[bits.read(2)]) + 1
        if i + length > num:
            raise Skip("bad_rle", f"a run of {length} at value {i} goes past the {num} values of the image")
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
