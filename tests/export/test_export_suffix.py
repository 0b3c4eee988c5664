"""``export --format`` against the ``--output`` suffix: a pt2 archive named .onnx was written without a word
and later blamed as an ONNX file "cut short"; a contradiction is refused now, before the model loads."""

import pytest
import torch
from tiny_model import TINY, build_tiny, save_tiny_checkpoint  # tests/ is on the path

from maskrcnn.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, cfg = build_tiny(TINY)
    return save_tiny_checkpoint(tmp_path_factory.mktemp("suffix") / "tiny.pth", model, cfg)


@pytest.mark.parametrize("fmt, name, says", [("pt2", "x.onnx", "onnx"), ("onnx", "x.PT2", "pt2")])
def test_a_format_contradicting_the_suffix_is_refused(tiny, tmp_path, capsys, fmt, name, says):
    out = tmp_path / name
    assert main(["export", "--weights", str(tiny), "--format", fmt, "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"--format {fmt} contradicts --output '{out}', whose suffix says {says}" in err
    assert not out.exists()


def test_another_suffix_takes_the_format_given(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: "a program")  # no tracing here
    monkeypatch.setattr(torch.export, "save", lambda program, f, **k: f.write(b"PK a zip"))
    out = tmp_path / "x.bin"
    assert main(["export", "--weights", str(tiny), "--format", "pt2", "--size", "64x64",
                 "--output", str(out)]) == 0
    assert "contradicts" not in capsys.readouterr().err
    assert out.read_bytes() == b"PK a zip"
