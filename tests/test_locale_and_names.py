"""Odd locales and odd names: a console that cannot encode a class name, a file name that is not valid
UTF-8 in split-data, a target name near the 255-byte limit, an output folder that refuses files, an image
name the file-system encoding cannot spell, wide (CJK, emoji) class names in tables, paths quoted in the
command lines we suggest."""

import io
import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

from maskrcnn import io_utils
from maskrcnn.cli import main
from maskrcnn.data.split import split_coco
from maskrcnn.engine.class_table import format_class_table
from maskrcnn.text_width import display_width, pad

ROOT = Path(__file__).resolve().parents[1]


def _coco(names, classes=("Ölfleck", "葉 leaf")):
    images = [{"id": i + 1, "file_name": n, "height": 4, "width": 4} for i, n in enumerate(names)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 2, "bbox": [0, 0, 2, 2], "area": 4,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]], "iscrowd": 0} for i in range(len(names))]
    return {"images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}


def test_split_data_under_an_ascii_console_escapes_instead_of_failing(tmp_path):
    src = tmp_path / "d.json"
    src.write_text(json.dumps(_coco([f"{i}.png" for i in range(5)])), encoding="utf-8")
    env = dict(os.environ, PYTHONIOENCODING="ascii", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "maskrcnn.cli", "split-data", "--json", str(src),
                           "--output-dir", str(tmp_path / "o")], env=env, capture_output=True)
    out, err = proc.stdout.decode("ascii"), proc.stderr.decode("ascii")
    assert proc.returncode == 0, err
    assert "  \\xd6lfleck " in out and "\\u8449 leaf" in out  # the table row, escaped
    # the warning (our formatwarning) went through the same stream: escaped, not a crash
    assert "maskrcnn split-data: warning: class '\\xd6lfleck' has no instance" in err
    assert (tmp_path / "o" / "val.json").is_file()


def test_main_restores_the_streams_error_setting(tmp_path, monkeypatch):
    src = tmp_path / "d.json"
    src.write_text(json.dumps(_coco([f"{i}.png" for i in range(5)])), encoding="utf-8")
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["split-data", "--json", str(src), "--output-dir", str(tmp_path / "o")]) == 0
    assert stdout.errors == "strict"  # a program calling main() keeps its own setting
    assert b"  \\xd6lfleck " in raw.getvalue()


def test_split_hashes_a_name_that_is_not_utf8_and_keeps_every_valid_names_part():
    names = ["a.png", "Ölfleck 葉.png", "🍃leaf.png", "with space.png", "b.jpg", "c.jpg", "d.jpg", "e.jpg",
             "f.jpg", "g.jpg"]

    def parts_of(file_names):
        parts, _ = split_coco(_coco(file_names, classes=("x",)) | {"annotations": []},
                              fractions=[0.6, 0.4], names=["train", "val"], seed=0)
        return {k: [im["file_name"] for im in v["images"]] for k, v in parts.items()}

    # the assignment the UTF-8 hash gave before: unchanged for every valid name
    assert parts_of(names) == {"train": ["a.png", "Ölfleck 葉.png", "c.jpg", "d.jpg", "f.jpg", "g.jpg"],
                               "val": ["🍃leaf.png", "with space.png", "b.jpg", "e.jpg"]}
    odd = parts_of(names + [os.fsdecode(b"caf\xe9.png")])
    assert sorted(odd["train"] + odd["val"]) == sorted(names + ["caf\udce9.png"])
    assert odd == parts_of(names + [os.fsdecode(b"caf\xe9.png")])  # defined: the same every time


def test_a_target_name_near_the_limit_gets_a_temp_name_that_fits(tmp_path, monkeypatch):
    long_a = "L" * 240 + "é" + "a.json"  # 248 bytes: legal, but 266 with ".NAME.<12 hex>.tmp"
    long_b = "L" * 240 + "é" + "b.json"
    io_utils.atomic_write_text(tmp_path / long_a, "a")
    io_utils.atomic_write_text(tmp_path / long_b, "b")
    assert (tmp_path / long_a).read_text() == "a" and (tmp_path / long_b).read_text() == "b"
    prefix_a = io_utils.fitting_prefix(tmp_path, f".{long_a}.", ".tmp")
    prefix_b = io_utils.fitting_prefix(tmp_path, f".{long_b}.", ".tmp")
    assert prefix_a != prefix_b and prefix_a.startswith(".LLLL") and prefix_a.endswith(".")
    assert len(os.fsencode(prefix_a)) + 12 + 4 <= 255
    assert io_utils.fitting_prefix(tmp_path, ".short.json.", ".tmp") == ".short.json."
    # a dead temporary file of the long target (shortened form) is found and removed by its next write
    dead = tmp_path / f"{prefix_a}0123456789ab.tmp"
    dead.write_bytes(b"x" * 10)
    other = tmp_path / f"{prefix_b}0123456789ab.tmp"  # another target's: left alone
    other.write_bytes(b"y")
    old = io_utils.PROCESS_START - io_utils.STALE_TEMP_AGE - 60
    os.utime(dead, (old, old))
    os.utime(other, (old, old))
    io_utils._stale_listings.clear()
    assert io_utils.remove_stale_temps(tmp_path / long_a) == [dead]
    assert not dead.exists() and other.exists()


@pytest.fixture
def refusing_folder(tmp_path, monkeypatch):
    """tmp_path / "ro": a folder that refuses new files (as chattr +i or a read-only mount does)."""
    real_open = os.open

    def refusing(path, *args, **kwargs):
        if Path(path).parent == tmp_path / "ro":
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_open(path, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", refusing)
    return tmp_path / "ro"


def test_output_folder_that_refuses_files_is_said_before_any_work(tmp_path, refusing_folder):
    with pytest.raises(ValueError, match=r"^--output .*ro: cannot write there \(Operation not permitted\)$"):
        io_utils.check_output_dir(refusing_folder)
    assert io_utils.check_output_dir(tmp_path / "fine") == tmp_path / "fine"
    assert not list(refusing_folder.iterdir())


def test_eval_refuses_an_unwritable_output_before_evaluating(tmp_path, refusing_folder, monkeypatch, capsys):
    import maskrcnn.engine.evaluator as evaluator

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated before checking --output")

    monkeypatch.setattr(evaluator, "evaluate_results_file", no_evaluation)
    monkeypatch.setattr(evaluator, "load_ground_truth", no_evaluation)
    (tmp_path / "r.json").write_text("[]")
    (tmp_path / "g.json").write_text(json.dumps(_coco(["a.png"])))
    assert main(["eval", "--results", str(tmp_path / "r.json"), "--json", str(tmp_path / "g.json"),
                 "--output", str(refusing_folder)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"maskrcnn eval: error: --output {refusing_folder}: cannot write there (Operation not permitted)")


def test_a_missing_image_the_locale_cannot_name_says_how_to_fix_it(tmp_path, monkeypatch, caplog):
    from maskrcnn.data import images
    from maskrcnn.data.coco import CocoDataset

    (tmp_path / "g.json").write_text(json.dumps(_coco(["Ölfleck.png", "plain.png"])), encoding="utf-8")
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    with pytest.warns(UserWarning):
        CocoDataset(json_path=tmp_path / "g.json", image_dir=tmp_path)
    lines = [r.getMessage() for r in caplog.records]
    note = ("Ölfleck.png not found; it cannot be named in this locale's file-system encoding (ascii): run "
            "with PYTHONUTF8=1 or LC_ALL=C.UTF-8; skipped")
    assert any(line.endswith(note) for line in lines), lines
    assert any(line.endswith("plain.png not found; skipped") for line in lines), lines  # ASCII: no note
    assert images.unnameable_note("caf\udce9.png", "ascii") == ""  # bytes read from the disk: nameable


def test_tables_pad_wide_names_by_display_width(tmp_path, capsys):
    assert display_width("葉 leaf") == 7 and display_width("🍃 emoji") == 8 and display_width("é") == 1
    assert pad("葉", 4) == "葉  " and pad("葉", 4, ">") == "  葉"
    rows = [{"name": n, "category_id": 1, "ground_truth": 1, "detections": 0, "bbox_AP": 1.0,
             "bbox_AP50": 2.0} for n in ("葉 leaf", "🍃 emoji", "plain")]
    lines = format_class_table(rows, 0.5).splitlines()
    assert len({display_width(line) for line in lines}) == 1  # every row as wide: columns line up
    src = tmp_path / "d.json"
    src.write_text(json.dumps(_coco([f"{i}.png" for i in range(5)], classes=("葉🍃", "plain"))))
    assert main(["split-data", "--json", str(src), "--output-dir", str(tmp_path / "o")]) == 0
    table = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and ":" not in line]  # the class table's rows, not "  skipped: none"
    assert len({display_width(line) for line in table}) == 1, table


def test_suggested_command_lines_quote_paths(tmp_path):
    from maskrcnn.engine.trainer import finished_without_checkpoint

    out = tmp_path / "run 葉#ema"
    out.mkdir()
    (out / "model_final.pth").write_bytes(b"")
    hint = finished_without_checkpoint(out)
    assert f"--init {shlex.quote(str(out / 'model_final.pth'))} --output" in hint
    assert shlex.split(hint.split("; ")[1])[1] == str(out / "model_final.pth")


@pytest.mark.parametrize("encoding, errors, expected", [
    ("utf-8", "surrogateescape", b"caf\xe9.png \xc3\x96lfleck"),  # PYTHONUTF8=1, C.UTF-8: as Python wrote it
    ("ascii", "surrogateescape", b"caf\xe9.png \\xd6lfleck"),  # the C locale without UTF-8 mode
    ("ascii", "strict", b"caf\xe9.png \\xd6lfleck"),  # PYTHONIOENCODING=ascii
    ("utf-16-le", "strict", "caf\\udce9.png Ölfleck".encode("utf-16-le")),  # no lone byte there: escaped
])
def test_a_name_that_is_not_utf8_is_printed_as_its_bytes(encoding, errors, expected):
    from maskrcnn.cli import _escape_unencodable

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors=errors, write_through=True)
    undo = _escape_unencodable(stream)
    stream.write(os.fsdecode(b"caf\xe9.png") + " Ölfleck")
    undo()
    assert raw.getvalue() == expected and stream.errors == errors
    replacing = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="replace")
    _escape_unencodable(replacing)
    assert replacing.errors == "replace"  # a stream that already copes is left as it is


@pytest.mark.parametrize("os_name, path, expected", [
    ("posix", "run 葉#ema/model_final.pth", "'run 葉#ema/model_final.pth'"),
    ("posix", "plain/model.pth", "plain/model.pth"),
    ("nt", "C:\\My Runs\\model_final.pth", '"C:\\My Runs\\model_final.pth"'),  # cmd.exe: double quotes
    ("nt", "C:\\runs\\model.pth", "C:\\runs\\model.pth"),
])
def test_shell_word_quotes_for_the_platforms_shell(monkeypatch, os_name, path, expected):
    from maskrcnn import shell

    # the helper module's own ``os`` only: the real os.name stays, or pathlib (pytest's too) breaks
    monkeypatch.setattr(shell, "os", types.SimpleNamespace(name=os_name))
    assert shell.shell_word(path) == expected


def test_suggested_command_lines_use_shell_word(tmp_path, monkeypatch):
    from maskrcnn import shell
    from maskrcnn.engine.trainer import finished_without_checkpoint

    out = tmp_path / "run 1"
    out.mkdir()
    (out / "model_final.pth").write_bytes(b"")
    monkeypatch.setattr(shell, "os", types.SimpleNamespace(name="nt"))
    hint = finished_without_checkpoint(out)
    assert f'--init "{out / "model_final.pth"}" --output' in hint  # no single quotes for cmd.exe
    for module in ("convert_data", "export", "merge_data", "quantize"):
        source = (ROOT / "maskrcnn" / "commands" / f"{module}.py").read_text(encoding="utf-8")
        assert "shell_word(" in source and "shlex" not in source, module


def test_write_check_removes_dead_probes_and_says_a_folder_that_keeps_files(tmp_path, monkeypatch):
    dead = tmp_path / ".write-check.0123456789ab.tmp"  # a run killed between the probe's create and unlink
    dead.write_bytes(b"")
    old = io_utils.PROCESS_START - io_utils.STALE_TEMP_AGE - 60
    os.utime(dead, (old, old))
    io_utils._stale_listings.clear()
    assert io_utils.check_output_dir(tmp_path) == tmp_path
    assert not list(tmp_path.iterdir())  # the dead probe gone, and this run's own

    def refusing(path, *args, **kwargs):  # chattr +a: files are made but cannot be removed
        raise PermissionError(1, "Operation not permitted", str(path))

    keeping = tmp_path / "append-only"
    keeping.mkdir()
    monkeypatch.setattr(os, "unlink", refusing)
    said = r"cannot remove files there \(Operation not permitted\), so temporary files would be left behind"
    with pytest.raises(ValueError, match=rf"^--output .*append-only: {said}$"):
        io_utils.check_output_dir(keeping)


def test_skin_tones_and_joined_emoji_take_one_emojis_width():
    assert display_width("👍🏽") == 2 and display_width("👩\u200d🔬") == 2
    assert display_width("👨\u200d👩\u200d👧 family") == 9 and display_width("葉 leaf") == 7
    assert pad("👍🏽", 4) == "👍🏽  "
