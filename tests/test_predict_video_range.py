"""``maskrcnn predict`` on videos with ``--max-frames`` / ``--start`` / ``--end``: the summary records the
range, the status says limited when it left frames out, and a limited run does not replace an earlier
complete run's results."""

import pytest
import test_predict_video
from test_predict_video import _lines, _predict_quick, make_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

# the video tests' fixtures: PyAV (skipped without it), a tiny checkpoint written once per module
av, checkpoint = test_predict_video.av, test_predict_video.checkpoint


def test_range_is_recorded_and_a_limited_run_keeps_the_complete_one(av, checkpoint, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    make_video(av, video, n=6)  # 12 fps: 0.5 s
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, video) == 0
    complete = (out / "clip.predictions.jsonl").read_bytes()
    overlay = (out / "clip.overlay.mp4").read_bytes()
    frames, summary = _lines(out / "clip.predictions.jsonl")
    assert len(frames) == 6 and summary["status"] == "complete"
    assert (summary["start"], summary["end"], summary["max_frames"]) == (0.0, None, None)
    capsys.readouterr()

    # a quick look at 2 frames replaced the 6-frame results and said "complete"
    assert _predict_quick(checkpoint, out, video, "--max-frames", "2") == 0
    err = capsys.readouterr().err
    assert (out / "clip.predictions.jsonl").read_bytes() == complete
    assert (out / "clip.overlay.mp4").read_bytes() == overlay
    assert f"{video}: limited by --max-frames 2: the earlier run's clip.predictions.jsonl and overlay are " \
           "kept" in err
    frames, summary = _lines(out / "clip.predictions.partial.jsonl")
    assert [f["frame"] for f in frames] == [0, 1]
    assert summary["status"] == "limited" and summary["max_frames"] == 2

    # without earlier results: written in place, the range in the summary
    fresh = tmp_path / "fresh"
    assert _predict_quick(checkpoint, fresh, video, "--start", "0.1", "--end", "0.4", "--no-overlays") == 0
    frames, summary = _lines(fresh / "clip.predictions.jsonl")
    assert [f["frame"] for f in frames] == [1, 2, 3, 4]  # from frame 1 (0.083 s): on screen at 0.1 s
    assert (summary["status"], summary["start"], summary["end"]) == ("limited", 0.1, 0.4)


def test_a_range_leaving_nothing_out_is_complete_and_replaces(av, checkpoint, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    make_video(av, video, n=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.predictions.jsonl").write_text('{"earlier": 1}\n')
    # the whole video lies within the range: a complete prediction of it
    assert _predict_quick(checkpoint, out, video, "--max-frames", "10", "--end", "60", "--no-overlays") == 0
    frames, summary = _lines(out / "clip.predictions.jsonl")
    assert len(frames) == 3 and summary["status"] == "complete" and summary["max_frames"] == 10
    assert not (out / "clip.predictions.partial.jsonl").exists()
