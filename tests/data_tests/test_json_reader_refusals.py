"""The one JSON reader of annotation files (``data/json_values.read_json_file``): a key given twice in
one object and a number too long for Python are refused in words a command's user can act on."""

import json

import pytest

from maskrcnn.cli import main
from maskrcnn.data.coco import load_coco_json
from maskrcnn.data.formats.common import Skip, read_json
from maskrcnn.data.json_values import read_json_file


def _ann(aid):
    return json.dumps({"id": aid, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20], "area": 400,
                       "iscrowd": 0, "segmentation": [[1, 1, 21, 1, 21, 21, 1, 21]]})


def test_a_key_given_twice_is_refused_naming_the_file_and_the_key(tmp_path, capsys):
    """p_hostile 3: '"annotations"' twice (a hand-concatenated export): Python's reader kept the last
    list, 5 of 6 annotations were lost without a word by show-data, train, eval and merge-data."""
    path = tmp_path / "dup.json"
    first, second = ",".join(_ann(i) for i in range(1, 6)), _ann(6)
    path.write_text('{"images": [{"id": 1, "file_name": "img.png", "width": 80, "height": 64}], '
                    f'"annotations": [{first}], "categories": [{{"id": 1, "name": "a"}}], '
                    f'"annotations": [{second}]}}')
    with pytest.raises(ValueError, match="duplicate key 'annotations' in one object"):
        read_json_file(path)
    with pytest.raises(ValueError) as info:
        load_coco_json(path)
    assert str(info.value).startswith(f"{path}: not valid JSON (duplicate key 'annotations'")
    with pytest.raises(Skip) as skip:  # the converters' reader
        read_json(path)
    assert skip.value.reason == "unreadable_json" and "duplicate key 'annotations'" in str(skip.value)
    assert main(["show-data", "--json", str(path), "--images", str(tmp_path), "--output",
                 str(tmp_path / "look")]) == 1
    assert f"{path}: not valid JSON (duplicate key 'annotations'" in capsys.readouterr().err
    # a nested object's repeat too; the same key in two objects is no repeat
    (tmp_path / "nested.json").write_text('[{"id": 1, "id": 2}]')
    with pytest.raises(ValueError, match="duplicate key 'id'"):
        read_json_file(tmp_path / "nested.json")
    (tmp_path / "fine.json").write_text('[{"id": 1}, {"id": 2}]')
    assert read_json_file(tmp_path / "fine.json") == [{"id": 1}, {"id": 2}]


def test_a_key_repeated_with_the_same_value_is_accepted(tmp_path):
    """rev_d1 6: {"id": 1, "id": 1} was refused though nothing is lost; a repeat whose values differ
    (true is not 1) is still refused."""
    (tmp_path / "same.json").write_text('[{"id": 1, "name": "a", "id": 1, "bbox": [1, 2], "bbox": [1, 2]}]')
    assert read_json_file(tmp_path / "same.json") == [{"id": 1, "name": "a", "bbox": [1, 2]}]
    (tmp_path / "typed.json").write_text('{"iscrowd": 1, "iscrowd": true}')
    with pytest.raises(ValueError, match="duplicate key 'iscrowd' in one object with different values"):
        read_json_file(tmp_path / "typed.json")


def test_a_number_of_5000_digits_is_refused_without_python_advice(tmp_path):
    """p_hostile 5: the message told a command's user to call sys.set_int_max_str_digits(); now it says
    what and where (the line)."""
    path = tmp_path / "bigint.json"
    path.write_text('{"images": [\n{"id": 1, "file_name": "a.png", "width": ' + "9" * 5000
                    + ', "height": 64}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}')
    with pytest.raises(ValueError) as info:
        load_coco_json(path)
    assert str(info.value) == (f"{path}: not valid JSON (a number of more than 4300 digits at line 2; no "
                               "annotation value is that long)")


def test_a_file_whose_first_byte_cannot_start_json_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    """A 1 GB sparse file (NUL bytes) was read whole (seconds, 2.3 GB of memory) before json said
    "Expecting value" at its first byte; now its first bytes are enough, and the message is json's own."""
    import builtins
    import json

    from maskrcnn.data import json_values

    big = tmp_path / "sparse.json"
    with open(big, "wb") as f:
        f.truncate(64 * 2**20)  # sparse: no disk used
    small = tmp_path / "small.json"
    small.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError) as expected:
        json.loads(small.read_text(encoding="utf-8"))
    read = []

    class Counted:
        def __init__(self, f):
            self.f = f

        def read(self, *args):
            data = self.f.read(*args)
            read.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(json_values, "open", lambda *a, **k: Counted(builtins.open(*a, **k)), raising=False)
    for path in (small, big):
        read.clear()
        with pytest.raises(ValueError) as e:
            read_json_file(path)
        assert str(e.value) == str(expected.value) == "Expecting value: line 1 column 1 (char 0)"
        assert sum(read) <= 65536, read
    # blanks first, and values of every kind, as before
    (tmp_path / "blank.json").write_text("  \n  x")
    with pytest.raises(ValueError, match=r"Expecting value: line 2 column 3 \(char 5\)"):
        read_json_file(tmp_path / "blank.json")
    for text, value in (('\n {"a": 1}', {"a": 1}), ("[1]", [1]), ("-5", -5), ('"s"', "s"), ("null", None)):
        (tmp_path / "v.json").write_text(text)
        assert read_json_file(tmp_path / "v.json") == value
