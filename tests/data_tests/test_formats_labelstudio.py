"""Label Studio's brush RLE decoder: a hand-derived vector, a round trip through an encoder written here,
corrupt input."""


import numpy as np
import pytest

from maskrcnn.data.formats.common import Skip
from maskrcnn.data.formats.labelstudio_rle import decode_brush_mask, decode_words

H, W = 30, 40
_WIDTHS = (2, 5, 9, 16)  # the four run-length widths the encoder below declares
_FOUR = "00000000000000000000000000000100"  # N = 4 as 32 bits: one RGBA pixel


def _pack(bits: str) -> list:
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]


def _encode(words, word=8) -> list:
    """rle-pack as the module docstring describes it: equal neighbours as repeated runs, the rest as
    literal runs; every run length in the narrowest of the four widths that holds it."""
    out = [format(len(words), "032b"), format(word - 1, "05b"), *(format(w - 1, "04b") for w in _WIDTHS)]

    def run(repeated, n):
        k = next(k for k, w in enumerate(_WIDTHS) if n - 1 < 1 << w)
        out.append(f"{repeated}{k:02b}{n - 1:0{_WIDTHS[k]}b}")

    groups = []
    for v in words:
        if groups and groups[-1][0] == v and groups[-1][1] < 1 << 16:
            groups[-1][1] += 1
        else:
            groups.append([int(v), 1])
    literal = []

    def flush():
        if literal:
            run(0, len(literal))
            out.extend(format(v, f"0{word}b") for v in literal)
            literal.clear()

    for v, count in groups:
        if count > 1:
            flush()
            run(1, count)
            out.append(format(v, f"0{word}b"))
        else:
            if len(literal) == 1 << 16:
                flush()
            literal.append(v)
    flush()
    return _pack("".join(out))


def _brush_rle(mask, alpha=None) -> list:
    """A brush region as Label Studio's front end stores it: RGBA (red, alpha 255 on the mask)."""
    rgba = np.zeros(mask.shape + (4,), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    if alpha is not None:
        rgba[..., 3] = alpha
    return _encode(rgba.reshape(-1))


def test_brush_rle_hand_derived_vectors():
    """One RGBA pixel (0, 0, 0, 255) written by hand, bit by bit: N = 4, word size 8, four widths of 2."""
    header = _FOUR + "00111" + "0001" * 4
    repeated = "1" + "00" + "10" + "00000000" + "1" + "00" + "00" + "11111111"  # 3 x 0, then 1 x 255
    literal = "0" + "00" + "11" + "00000000" * 3 + "11111111"  # 4 words one after another
    for body in (repeated, literal):
        words, word = decode_words(_pack(header + body), expected=4)
        assert word == 8 and words.tolist() == [0, 0, 0, 255]
        assert decode_brush_mask(_pack(header + body), 1, 1).tolist() == [[True]]
    # The test's encoder writes the lone 255 as a literal run of one, and declares widths 2, 5, 9, 16.
    widths = "0001" + "0100" + "1000" + "1111"
    single = "0" + "00" + "00" + "11111111"
    assert _encode([0, 0, 0, 255]) == _pack(_FOUR + "00111" + widths + repeated[:13] + single)


def test_brush_rle_round_trip_and_alpha_threshold():
    rng = np.random.default_rng(0)
    mask = np.zeros((H, W), bool)
    mask[5:20, 3:30] = True
    mask[rng.random((H, W)) < 0.05] ^= True  # scattered pixels: literal runs
    got = decode_brush_mask(_brush_rle(mask), H, W)
    assert got.shape == (H, W) and got.dtype == bool and (got == mask).all()
    # Anti-aliased borders: alpha under half is outside.
    alpha = np.zeros((H, W), np.uint8)
    alpha[2, 2], alpha[2, 3], alpha[2, 4], alpha[2, 5] = 127, 128, 255, 1
    got = decode_brush_mask(_brush_rle(alpha > 0, alpha=alpha), H, W)
    assert np.argwhere(got).tolist() == [[2, 3], [2, 4]]
    # An empty mask is one run of 4800 zeros (the widest width).
    assert not decode_brush_mask(_brush_rle(np.zeros((H, W), bool)), H, W).any()


@pytest.mark.parametrize("rle, size, message", [
    ("abc", (H, W), "must be a non-empty list of bytes"),
    ([], (H, W), "must be a non-empty list of bytes"),
    ([1.5, 2], (H, W), "list of whole numbers"),
    ([[1], [2, 3]], (H, W), "list of whole numbers"),
    ([0, 300], (H, W), "bytes are 0..255"),
    ([0, 0, 0], (H, W), "its header alone needs 53"),
    (_brush_rle(np.ones((2, 2), bool)), (H, W), "holds 16 values, the image needs 4800"),
    (_brush_rle(np.ones((H, W), bool))[:-3], (H, W), "ends in the middle of"),
    (_pack(_FOUR + "00111" + "0001" * 4 + "1001000000000" + "1000111111111"), (1, 1), "run of 2 at value 3"),
    (_pack(_FOUR + "01111" + "0001" * 4 + "10011" + "0" * 16), (1, 1), "words are 16 bits"),
])  # fmt: skip
def test_brush_rle_corrupt_input_is_a_skip_with_a_reason(rle, size, message):
    height, width = size
    with pytest.raises(Skip, match=message) as e:
        decode_brush_mask(rle, height, width)
    assert e.value.reason == "bad_rle"
