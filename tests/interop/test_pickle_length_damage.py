"""A whole pickle whose length field is damaged (a string asking for more bytes than are there) was
called "truncated ... a cut-off download or copy": the reader runs out of the file in both. Told apart
by what the opcode asks for against the file: more than a whole frame holds (protocol 4+), or more than
the whole file while the file ends with the pickle's STOP; every real cut is still a cut."""

import io
import pickle
import pickletools
import struct

import pytest

from maskrcnn.checkpoint_refusal import damaged_pickle_message

OBJ = {"model": {"conv1.weight": b"\x01" * 64, "conv1.bias": b"\x02" * 8}, "__author__": "someone"}


def _last(whole: bytes, name: str) -> int:
    return [pos for op, _arg, pos in pickletools.genops(io.BytesIO(whole)) if op.name == name][-1]


def test_a_damaged_4_byte_length_in_a_whole_file_is_damage_not_a_cut(tmp_path):
    whole = pickle.dumps(OBJ, protocol=2)  # no frames: BINUNICODE with a 4-byte length
    at = _last(whole, "BINUNICODE")
    damaged = whole[:at + 1] + struct.pack("<I", 0x7FFFFFF0) + whole[at + 5:]
    path = tmp_path / "w.pkl"
    path.write_bytes(damaged)
    said = damaged_pickle_message(path)
    assert said == (f"{path} is a corrupt pickle: damaged at byte {at} of {len(damaged)} (its BINUNICODE "
                    "asks for 2147483632 bytes, more than the whole file holds, and the file ends as a "
                    "whole pickle does: a damaged length field, not a cut)"), said


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
