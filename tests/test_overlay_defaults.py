"""The overlays' shared defaults and checks (maskrcnn.overlay_defaults): ``--overlay-min-size`` was
refused below 0 by predict, taken as 0 by show-data, and unbounded in both (100000 on a 1000 px image
asked for about 30 GB); the serve page repeats the score threshold as a literal."""

import re
from argparse import Namespace
from pathlib import Path

import pytest

from maskrcnn.cli import main
from maskrcnn.overlay_defaults import (
    OVERLAY_MAX_SIZE,
    OVERLAY_MIN_SIZE,
    OVERLAY_SCORE_THRESH,
    check_overlay_min_size,
    overlay_min_size,
)


def test_check_overlay_min_size_bounds():
    for fine in (None, 0, 1, OVERLAY_MIN_SIZE, OVERLAY_MAX_SIZE):
        check_overlay_min_size(fine)
    with pytest.raises(ValueError, match=r"^--overlay-min-size must be >= 0, got -1$"):
        check_overlay_min_size(-1)
    too_large = rf"^--overlay-min-size must be at most {OVERLAY_MAX_SIZE} px .*got 100000$"
    with pytest.raises(ValueError, match=too_large):
        check_overlay_min_size(100000)
    assert overlay_min_size(Namespace(overlay_min_size=None), video=False) == OVERLAY_MIN_SIZE
    assert overlay_min_size(Namespace(overlay_min_size=None), video=True) == 0
    assert overlay_min_size(Namespace(overlay_min_size=7), video=True) == 7


@pytest.mark.parametrize("value, message", [("-1", "must be >= 0, got -1"),
                                            ("100000", f"must be at most {OVERLAY_MAX_SIZE} px")])
def test_predict_and_show_data_refuse_the_same_sizes(tmp_path, capsys, value, message):
    """Checked first, with one line: before the weights or the annotations are read (neither exists)."""
    rc = main(["predict", "--weights", str(tmp_path / "none.pth"), str(tmp_path / "none.png"),
               "--output", str(tmp_path / "p"), "--overlay-min-size", value])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and f"--overlay-min-size {message}" in err and "Traceback" not in err
    rc = main(["show-data", "--json", str(tmp_path / "none.json"), "--images", str(tmp_path),
               "--output", str(tmp_path / "s"), "--overlay-min-size", value])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and f"--overlay-min-size {message}" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "p").exists()


def test_serve_page_starts_at_the_overlay_score_threshold():
    """index.html writes the threshold as literals (slider value and its <output>): kept equal here."""
    import maskrcnn.serve

    page = (Path(maskrcnn.serve.__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
    slider = re.search(r'<input[^>]*id="score"[^>]*>', page).group(0)
    assert float(re.search(r'value="([^"]+)"', slider).group(1)) == OVERLAY_SCORE_THRESH
    shown = re.search(r'<output id="score-value">([^<]*)</output>', page).group(1)
    assert shown == f"{OVERLAY_SCORE_THRESH:.2f}"
