"""``--start S`` begins with the frame on screen at S (the one whose time is at or before S, the next one's
after it), as video players and editors mean a start time: a 1 fps video from 12.5 s starts with the
frame of 12 s, not 13 s; a variable frame rate alike, and the last frame lasts until the video's end."""

import pytest
import test_predict_video
from test_predict_video import _lines, _predict_quick, make_timed_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

av, checkpoint = test_predict_video.av, test_predict_video.checkpoint

ONE_FPS = [1000 * i for i in range(15)]  # ms: 1 fps, 15 frames (the header's length: 14.04 s)
VFR = [0, 100, 200, 500, 600, 1500, 1600]  # ms: frames 100 ms to 900 ms apart (1.64 s long)


def _taken(path, **range_):
    from maskrcnn.data.video import VideoReader

    with VideoReader(path) as reader:  # a reader decodes once: a new one for each range
        return [(f.index, round(f.time, 3)) for f in reader.frames(**range_)]


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_start_takes_the_frame_on_screen_at_that_time(av, tmp_path, ext):
    one, vfr = tmp_path / f"one{ext}", tmp_path / f"vfr{ext}"
    make_timed_video(av, one, ONE_FPS)
    make_timed_video(av, vfr, VFR)
    assert _taken(one, start=12.5) == [(12, 12.0), (13, 13.0), (14, 14.0)]  # was 13 s first
    assert _taken(one, start=12.0) == [(12, 12.0), (13, 13.0), (14, 14.0)]  # a frame at S is that one
    assert _taken(one, start=0.5, end=2.5) == [(0, 0.0), (1, 1.0), (2, 2.0)]  # end: shown from before it
    assert _taken(one, start=12.5, every=2) == [(12, 12.0), (14, 14.0)]  # --every counts from it
    assert _taken(one, start=14.02) == [(14, 14.0)]  # the last frame lasts until the video's end
    assert _taken(one, start=14.5) == []  # past the end: none
    assert _taken(vfr, start=1.0) == [(4, 0.6), (5, 1.5), (6, 1.6)]  # 0.6 s shows until 1.5 s
    assert _taken(vfr, start=0.55, end=0.58) == [(3, 0.5)]
    assert _taken(vfr, start=0.5, max_frames=1) == [(3, 0.5)]
    assert _taken(vfr, start=1.61) == [(6, 1.6)]


def test_a_start_inside_the_first_frame_leaves_nothing_out(av, checkpoint, tmp_path, capsys):
    path = tmp_path / "one.mp4"
    make_timed_video(av, path, ONE_FPS)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, path, "--start", "12.5", "--no-overlays") == 0
    frames, summary = _lines(out / "one.predictions.jsonl")
    assert [(f["frame"], f["time"]) for f in frames] == [(12, 12.0), (13, 13.0), (14, 14.0)]
    assert summary["status"] == "limited"  # frames 0..11 left out
    # the first frame is on screen at 0.5 s: the whole video predicted
    fresh = tmp_path / "fresh"
    assert _predict_quick(checkpoint, fresh, path, "--start", "0.5", "--no-overlays") == 0
    frames, summary = _lines(fresh / "one.predictions.jsonl")
    assert len(frames) == 15 and summary["status"] == "complete", summary
