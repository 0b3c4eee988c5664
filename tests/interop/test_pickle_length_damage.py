"""A whole pickle whose length field is damaged (a string asking for more bytes than are there) was
called "truncated ... a cut-off download or copy": the reader runs out of the file in both. Told apart
by what the opcode asks for: more than a whole frame holds (protocol 4+), or more than a terabyte. One
asking for more than the whole file while the file ends with STOP's byte is said to be either: a cut
inside a long text ends on that byte (".") as often. Every real cut is still a cut."""

import io
import pickle
import pickletools
import struct

import pytest

from maskrcnn.checkpoint_refusal import damaged_pickle_message

OBJ = {"model": {"conv1.weight": b"\x01" * 64, "conv1.bias": b"\x02" * 8}, "__author__": "someone"}


def _last(whole: bytes, name: str) -> int:
    return [pos for op, _arg, pos in pickletools.genops(io.BytesIO(whole)) if op.name == name][-1]


def test_a_damaged_4_byte_length_in_a_whole_file_is_called_cut_or_damaged(tmp_path):
    whole = pickle.dumps(OBJ, protocol=2)  # no frames: BINUNICODE with a 4-byte length
    at = _last(whole, "BINUNICODE")
    damaged = whole[:at + 1] + struct.pack("<I", 0x7FFFFFF0) + whole[at + 5:]
    path = tmp_path / "w.pkl"
    path.write_bytes(damaged)
    said = damaged_pickle_message(path)
    # a cut inside a long text ends on STOP's byte as often: this file is said to be either
    assert said == (f"{path} is a truncated or corrupt pickle (its data stops at byte {len(damaged)}, before "
                    f"the pickle's end: cut off, or a damaged length field: its BINUNICODE at byte {at} asks "
                    "for 2147483632 bytes, more than the whole file holds, and the file ends with the byte a "
                    "whole pickle ends with)"), said


def test_a_length_past_its_whole_frame_is_damage_not_a_cut(tmp_path):
    whole = pickle.dumps(OBJ, protocol=4)  # one frame, whole in the file
    at = _last(whole, "SHORT_BINUNICODE")
    damaged = whole[:at + 1] + b"\xff" + whole[at + 2:]
    path = tmp_path / "w.pkl"
    path.write_bytes(damaged)
    said = damaged_pickle_message(path)
    assert said.startswith(f"{path} is a corrupt pickle: damaged at byte {at} of {len(damaged)} (its "
                           "SHORT_BINUNICODE asks for 255 bytes, more than its frame holds, and the frame is "
                           "whole in the file: a damaged length field, not a cut)"), said


@pytest.mark.parametrize("protocol", [2, 4])
def test_every_cut_of_these_pickles_is_still_a_cut(tmp_path, protocol):
    whole = pickle.dumps(OBJ, protocol=protocol)
    path = tmp_path / "w.pkl"
    for end in range(1, len(whole)):
        path.write_bytes(whole[:end])
        said = damaged_pickle_message(path)
        assert f"its data stops at byte {end}, before the pickle's end" in said, (end, said)


def test_a_cut_of_a_long_text_that_ends_on_a_stop_byte_is_not_called_damage(tmp_path):
    # a cut inside a string of decimals often ends on "." (STOP): the file then ends as a whole pickle
    # does, yet it is a cut; such a file may be either, and is called so
    text = " ".join(f"{i * 0.001:.3f}" for i in range(1500))
    whole = pickle.dumps({"model": {}, "notes": text}, protocol=2)
    path = tmp_path / "w.pkl"
    ends = [end for end in range(200, len(whole) - 20) if whole[end - 1:end] == b"."]
    assert len(ends) > 1000
    either = 0
    for end in ends:
        path.write_bytes(whole[:end])
        said = damaged_pickle_message(path)
        assert "not a cut" not in said and f"its data stops at byte {end}, before the pickle's end" in said, \
            (end, said)
        either += "cut off, or a damaged length field: its BINUNICODE at byte" in said
    assert either > 1000, either  # the cuts inside the text: said to be either


def _eight_byte_length_file(path, asked: int) -> bytes:
    # BINUNICODE8 (protocol 4) asking for far more than any file holds, then a few bytes and STOP
    data = b"\x80\x04\x8d" + struct.pack("<Q", asked) + b"x" * 8 + pickle.STOP
    path.write_bytes(data)
    return data


def test_a_damaged_8_byte_length_is_a_corrupt_length_field_not_out_of_memory(tmp_path):
    path = tmp_path / "w.pkl"
    data = _eight_byte_length_file(path, 2 ** 50)
    said = damaged_pickle_message(path)  # genops allocated the 1 PiB it asks for: MemoryError
    assert said == (f"{path} is a corrupt pickle: damaged at byte 2 of {len(data)} (its BINUNICODE8 asks "
                    f"for {2 ** 50} bytes, more than a terabyte, which no checkpoint's string holds: a "
                    "damaged length field, not a cut)"), said


def test_convert_from_detectron2_calls_a_damaged_8_byte_length_corrupt(tmp_path, capsys):
    from maskrcnn.cli import main

    path = tmp_path / "w.pkl"
    _eight_byte_length_file(path, 2 ** 50)
    rc = main(["convert", "--from", "detectron2", str(path), str(tmp_path / "out.pth")])
    err = capsys.readouterr().err
    assert rc != 0 and "out of memory" not in err, err
    assert f"{path} is a corrupt pickle: damaged at byte 2 of 20 (its BINUNICODE8 asks for" in err, err
    assert not (tmp_path / "out.pth").exists()
