"""Atomic writes: the target is either the old file or the new one, never half of one, never a temp."""

import json
import os

import pytest

from maskrcnn import io_utils


def test_writes_bytes_text_and_json(tmp_path):
    io_utils.atomic_write_bytes(tmp_path / "sub" / "a.bin", b"\x00\x01")  # creates the folder
    io_utils.atomic_write_text(tmp_path / "b.txt", "héllo\n")
    io_utils.atomic_write_json(tmp_path / "c.json", {"x": [1, 2]}, indent=2)
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    assert "\n  " in (tmp_path / "c.json").read_text()  # dumps options reach json.dumps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", "c.json", "sub"]


def test_failures_leave_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    io_utils.atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):  # not JSON-serialisable: fails before anything is written
        io_utils.atomic_write_json(target, {"v": object()})

    def power_cut(fd):
        raise OSError("simulated power cut")

    monkeypatch.setattr(io_utils.os, "fsync", power_cut)
    with pytest.raises(OSError, match="power cut"):
        io_utils.atomic_write_json(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_writes_get_an_ordinary_files_mode_not_0600(tmp_path):
    """mkstemp's 0600 made every predictions.json, checkpoint and overlay video readable by its owner
    only: a group, a web server or a container's other user could not read the results."""
    import os
    import stat

    from maskrcnn.io_utils import atomic_write_text

    old = os.umask(0o022)  # the test sets the umask the expectation depends on (restored)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_json_with_a_file_name_that_is_not_utf8_is_written_and_reads_back(tmp_path):
    """``os.fsdecode(b"caf\\xe9.png")`` holds a lone surrogate that UTF-8 cannot encode: it crashed the
    write of the whole file (predictions.json, run.json) once non-ASCII was written as itself."""
    import os

    name = os.fsdecode(b"caf\xe9.png")  # "caf\udce9.png"
    data = {"file_name": name, "category_name": "Ölfleck"}
    io_utils.atomic_write_json(tmp_path / "own.json", data)  # our own file: names readable
    raw = (tmp_path / "own.json").read_bytes()
    assert b'"caf\\udce9.png"' in raw and "Ölfleck".encode() in raw
    assert json.loads(raw.decode("utf-8")) == data  # the same string back
    io_utils.atomic_write_json(tmp_path / "coco.json", data, ensure_ascii=True)  # for other tools
    raw = (tmp_path / "coco.json").read_bytes()
    assert raw.isascii() and b'"\\u00d6lfleck"' in raw and json.loads(raw) == data


def test_an_output_that_is_the_input_file_by_any_name_is_refused(tmp_path):
    source = tmp_path / "in.pth"
    source.write_bytes(b"weights")
    (tmp_path / "link.pth").symlink_to("in.pth")
    (tmp_path / "hard.pth").hardlink_to(source)
    (tmp_path / "copy.pth").write_bytes(b"weights")  # equal bytes, another file
    for same in (f"{tmp_path}/./in.pth", tmp_path / "link.pth", tmp_path / "hard.pth"):
        with pytest.raises(ValueError, match=rf"^--out {same}: names the same file as --in; write it under "
                                             r"another name$"):
            io_utils.check_output_not_input(same, source, option="--out", source_option="--in", result="it")
    # the input given by its link, the output by the file's own name: the write would replace the file
    # the link points to, which is the case that really loses data
    with pytest.raises(ValueError, match=rf"^--out {source}: names the same file as --in; write it under "
                                         r"another name$"):
        io_utils.check_output_not_input(source, tmp_path / "link.pth", option="--out", source_option="--in",
                                        result="it")
    for other in (tmp_path / "copy.pth", tmp_path / "new.pth"):  # not written yet: nothing to replace
        io_utils.check_output_not_input(other, source)
    io_utils.check_output_not_input(source, tmp_path / "missing.pth")  # no input there to lose


def _failing_rename_of(name, monkeypatch):
    real_replace = os.replace

    def failing(src, dst):
        if str(dst).endswith(name):
            raise PermissionError(1, "Operation not permitted", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)


def test_a_rollback_without_hard_links_copies_the_old_file_aside(tmp_path, monkeypatch):
    """No hard link (a file system without them, protected_hardlinks): a.json stayed new while the error
    said the previous file was kept."""
    (tmp_path / "a.json").write_text("OLDA")
    (tmp_path / "b.json").write_text("OLDB")
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(PermissionError(1, "no links")))
    _failing_rename_of("b.json", monkeypatch)
    with pytest.raises(PermissionError) as caught:
        io_utils.atomic_write_all({tmp_path / "a.json": b"NEWA", tmp_path / "b.json": b"NEWB"})
    assert [(tmp_path / n).read_text() for n in ("a.json", "b.json")] == ["OLDA", "OLDB"]
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"] and "put back" not in str(caught.value)


def test_a_target_that_cannot_be_put_back_is_named(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text("OLDA")
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(PermissionError(1, "no links")))
    monkeypatch.setattr(io_utils.shutil, "copy", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "full")))
    _failing_rename_of("b.json", monkeypatch)
    with pytest.raises(PermissionError, match="a.json was already replaced and could not be put back"):
        io_utils.atomic_write_all({tmp_path / "a.json": b"NEWA", tmp_path / "b.json": b"NEWB"})
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


@pytest.mark.parametrize("tail", ["/", "/.", "/.."])
def test_an_output_ending_as_a_folder_is_refused_without_calling_a_file_a_folder(tmp_path, tail):
    """'new/x/.' wrote a file named x; 'ex.json/' (ex.json a file) was called "a folder"."""
    (tmp_path / "ex.json").write_text("{}")
    for text in (f"{tmp_path / 'new' / 'x'}{tail}", f"{tmp_path / 'ex.json'}{tail}"):
        with pytest.raises(ValueError, match=f"ends in '{tail}', as a folder's path does") as caught:
            io_utils.check_output_file(text, "--output")
        assert "is a folder" not in str(caught.value)
    assert not (tmp_path / "new").exists()


def test_a_folder_in_a_targets_place_is_refused_before_any_part_is_written(tmp_path, monkeypatch):
    """The check ran only after every temporary file was written (a large part for nothing)."""
    (tmp_path / "b.json").mkdir()
    written, real = [], io_utils.create_temp_file
    monkeypatch.setattr(io_utils, "create_temp_file", lambda *a, **k: written.append(a) or real(*a, **k))
    with pytest.raises(IsADirectoryError, match="b.json"):
        io_utils.atomic_write_all({tmp_path / "a.json": b"A" * 1000, tmp_path / "b.json": b"B"})
    assert not written and sorted(os.listdir(tmp_path)) == ["b.json"]


def test_an_output_folder_still_to_be_made_is_checked_in_its_nearest_existing_parent(tmp_path, monkeypatch):
    """Before: only an existing --output was probed for writes; one to be made was found unwritable after
    the work (predict had its own probe, which left its probe file behind when the removal failed)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_create, real_unlink = io_utils.create_temp_file, os.unlink

    def refuse(folder, **kwargs):
        if str(folder) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_create(folder, **kwargs)

    monkeypatch.setattr(io_utils, "create_temp_file", refuse)
    with pytest.raises(ValueError, match=r"--output .*new.out: cannot be made: .*locked: cannot write there "
                                         r"\(Permission denied\)"):
        io_utils.check_output_dir(locked / "new" / "out")
    assert io_utils.check_output_dir(tmp_path / "fine" / "out") == tmp_path / "fine" / "out"
    assert not (tmp_path / "fine").exists() and os.listdir(tmp_path) == ["locked"]  # the probe went
    monkeypatch.setattr(io_utils, "create_temp_file", real_create)

    def no_removal(path, *args, **kwargs):  # chattr +a: files can be made, not removed
        if ".write-check." in str(path):
            raise PermissionError(1, "Operation not permitted")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(io_utils.os, "unlink", no_removal)
    with pytest.raises(ValueError, match="cannot be made: .*: cannot remove files there"):
        io_utils.check_output_dir(locked / "new" / "out", option="--save-dir")
