"""Label Studio's brush RLE -> an (H, W) boolean mask.

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
"""

from __future__ import annotations

import numpy as np

from maskrcnn.data.formats.common import Skip

__all__ = ["ALPHA_THRESHOLD", "decode_brush_mask", "decode_words"]

# A pixel belongs to the mask when its alpha is at least half: the front end draws strokes anti-aliased,
# and a border pixel less than half covered is outside, as a pixel whose centre a polygon misses is.
ALPHA_THRESHOLD = 128
_HEADER_BITS = 32 + 5 + 4 * 4


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
