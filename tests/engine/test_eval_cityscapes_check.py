"""eval --cityscapes without the cityscapesscripts package: refused before the inference (the scorer's own
check came after the whole of it). Runs whether or not the package is installed."""

import importlib.util

from maskrcnn.cli import main


def test_missing_cityscapesscripts_is_said_before_the_weights_are_read(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "cityscapesscripts" else real(name, *a, **k))
    (tmp_path / "cs").mkdir()
    code = main(["eval", "--weights", str(tmp_path / "absent.pth"), "--json", str(tmp_path / "val.json"),
                 "--images", str(tmp_path / "cs"), "--cityscapes", str(tmp_path / "cs")])
    err = capsys.readouterr().err
    assert code == 1
    assert "--cityscapes: the Cityscapes evaluation needs the cityscapesscripts package: " \
           "pip install 'maskrcnn[cityscapes]'" in err
    assert "absent.pth" not in err  # nothing else was opened first
