"""The summary's ``fps`` is the whole video's average frame rate, not the rate of the frames a range read:
``--max-frames 2`` of a variable-rate video read 0, 0.1 and 0.2 s and said 10 fps for a video of 7 frames
over 1.64 s. Without a way to know it (Matroska gives no frame count), the rate said is labelled an
estimate (``fps_estimated``, a note)."""

import pytest
import test_predict_video
from test_predict_video import _lines, _predict_quick, make_timed_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

av, checkpoint = test_predict_video.av, test_predict_video.checkpoint

VFR = [0, 100, 200, 500, 600, 1500, 1600]  # ms: 7 frames, 1.64 s by the header (the last lasts 40 ms)


def _summary(checkpoint, out, path, *args):
    assert _predict_quick(checkpoint, out, path, "--no-overlays", *args) == 0
    return _lines(out / f"{path.stem}.predictions.jsonl")[1]


def test_a_range_reports_the_whole_videos_rate_or_says_it_estimates(av, checkpoint, tmp_path, capsys):
    mp4, mkv = tmp_path / "vfr.mp4", tmp_path / "vfr_mkv.mkv"
    make_timed_video(av, mp4, VFR)
    make_timed_video(av, mkv, VFR)
    # read to the end: every frame's time (6 steps over 1.6 s), known
    whole = _summary(checkpoint, tmp_path / "a", mp4)
    assert (whole["fps"], whole["fps_estimated"]) == (pytest.approx(6 / 1.6, rel=1e-3), False)
    # a range: the MP4's frame count over its length (FFmpeg's average rate), known; was 10 fps
    for args in (["--max-frames", "2"], ["--end", "0.25"]):
        part = _summary(checkpoint, tmp_path / f"b{len(args[1])}", mp4, *args)
        assert (part["fps"], part["fps_estimated"]) == (pytest.approx(7 / 1.64, rel=1e-3), False), args
    # no frame count in a Matroska header: what is said is labelled an estimate, with what it rests on
    capsys.readouterr()
    guess = _summary(checkpoint, tmp_path / "c", mkv, "--max-frames", "2")
    assert guess["fps_estimated"] is True
    said = [n for n in guess["notes"] if n.startswith(f"fps {guess['fps']:.4g} is an estimate")]
    assert said and "not read to its end and its header gives no frame count" in said[0], guess["notes"]
    # --every and --start decode every frame: the rate is the whole video's
    every = _summary(checkpoint, tmp_path / "d", mkv, "--every", "3", "--start", "0.55")
    assert (every["fps"], every["fps_estimated"]) == (pytest.approx(6 / 1.6, rel=1e-3), False)
