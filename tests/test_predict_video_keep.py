"""``maskrcnn predict`` on videos into a folder with earlier results, and stops while a video is being
finished: only a complete prediction of a video replaces its own earlier files; a limited or stopped one
goes beside them (results and overlay); a stop while the overlay is finished keeps the summary and says
what was kept. Tiny videos made here with PyAV, a tiny random-weight checkpoint."""

import os
import resource
import signal

import pytest
import test_predict_video
from test_predict_video import _decode, _lines, _predict_quick, make_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

# the video tests' fixtures: PyAV (skipped without it), a tiny checkpoint written once per module
av, checkpoint = test_predict_video.av, test_predict_video.checkpoint


def _files(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_limited_or_unreadable_video_keeps_its_earlier_results_beside_a_complete_one(
        av, checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(av, folder / "a.mp4", n=6)
    make_video(av, folder / "b.mp4", n=2)
    make_video(av, folder / "c.mp4", n=2)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, folder / "a.mp4", folder / "c.mp4") == 0
    earlier = _files(out)
    (folder / "c.mp4").write_bytes(b"not a video any more")
    capsys.readouterr()

    # a quick look at 3 frames of a, c unreadable, b complete: the removal after the run took the earlier
    # results of a and c, which the run had just said were kept
    assert _predict_quick(checkpoint, out, *(folder / f"{s}.mp4" for s in "abc"), "--max-frames", "3") == 0
    err = capsys.readouterr().err
    assert not any(line.startswith("removed") for line in err.splitlines()), err
    for name, data in earlier.items():
        assert (out / name).read_bytes() == data, name
    frames, summary = _lines(out / "a.predictions.partial.jsonl")
    assert [f["frame"] for f in frames] == [0, 1, 2] and summary["status"] == "limited"
    # the look gets its overlay too, beside its results (it had none before)
    assert len(_decode(av, out / "a.overlay.partial.mp4")) == 3
    assert ("the earlier run's a.predictions.jsonl and overlay are kept; this run's frames done are in "
            "a.predictions.partial.jsonl and a.overlay.partial.mp4") in err
    assert _lines(out / "b.predictions.jsonl")[1]["status"] == "complete"

    # a complete run of a replaces its earlier files and takes the partial ones away
    assert _predict_quick(checkpoint, out, folder / "a.mp4", folder / "b.mp4") == 0
    assert {p.name for p in out.iterdir() if p.name.startswith("a.")} == {"a.predictions.jsonl",
                                                                          "a.overlay.mp4"}


def test_max_frames_leaving_nothing_out_is_complete(av, checkpoint, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    make_video(av, video, n=6)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, video, "--max-frames", "2") == 0
    # --max-frames as many as the video has (or --every 2 --max-frames 3: frames 0, 2, 4) is complete,
    # and so replaces the earlier results (it was "limited", went to .partial and its overlay was dropped)
    for extra in (("--max-frames", "6"), ("--every", "2", "--max-frames", "3")):
        assert _predict_quick(checkpoint, out, video, *extra) == 0
        frames, summary = _lines(out / "clip.predictions.jsonl")
        assert len(frames) == summary["frames_predicted"]
        assert summary["status"] == "complete", summary
        assert summary["frames_predicted"] == (6 if extra[0] == "--max-frames" else 3)
        assert not (out / "clip.predictions.partial.jsonl").exists()
        assert len(_decode(av, out / "clip.overlay.mp4")) == summary["frames_predicted"]
    # one frame fewer than the video's leaves one out
    assert _predict_quick(checkpoint, out, video, "--max-frames", "5", "--no-overlays") == 0
    assert _lines(out / "clip.predictions.partial.jsonl")[1]["status"] == "limited"


def _on_close(monkeypatch, action):
    """``action()`` while the overlay video is renamed into place (the end of its finishing)."""
    from maskrcnn.data import video_writer

    real = video_writer.replace_durably

    def replace(src, dst):
        action()
        return real(src, dst)

    monkeypatch.setattr(video_writer, "replace_durably", replace)


def test_ctrl_c_while_the_overlay_is_finished_keeps_the_summary(av, checkpoint, tmp_path, monkeypatch,
                                                                 capsys):
    video = tmp_path / "clip.mp4"
    make_video(av, video, n=4)

    def interrupt():
        raise KeyboardInterrupt

    _on_close(monkeypatch, interrupt)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, video) == 130
    err = capsys.readouterr().err
    frames, summary = _lines(out / "clip.predictions.jsonl")  # the summary line was lost
    assert len(frames) == 4 and summary["status"] == "complete"
    assert "overlay video not written: stopped while it was being finished" in summary["notes"]
    assert not list(out.glob("*.mp4")) and not list(out.glob(".*.tmp"))
    # was "...; clip.mp4: stopped before its first frame"
    assert err.rstrip().splitlines()[-1] == (
        f"interrupted: after 0 of 1 video(s); {video}: 4 frame(s) kept in {out / 'clip.predictions.jsonl'}")


def _guarded(run):
    """``run()`` with SIGTERM's default action replaced by an error (the command installs its own)."""
    def unhandled(signum, frame):
        raise RuntimeError("SIGTERM reached the default handler")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        return run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_second_sigterm_while_the_overlay_is_finished(av, checkpoint, tmp_path, monkeypatch, capfd):
    from maskrcnn.predictor import Predictor

    video = tmp_path / "clip.mp4"
    make_video(av, video, n=6)
    calls, real = [], Predictor.predict_tensors

    def predict(self, images):  # the first SIGTERM during the second batch
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, images)

    monkeypatch.setattr(Predictor, "predict_tensors", predict)
    _on_close(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))  # the second
    out = tmp_path / "out"
    rc = _guarded(lambda: _predict_quick(checkpoint, out, video, "--batch-size", "2"))
    err = capfd.readouterr().err
    assert rc == 143, err
    frames, summary = _lines(out / "clip.predictions.jsonl")  # no summary before
    assert len(frames) == 4 and summary["status"] == "interrupted"
    # was "stopped by SIGTERM: after 0 of 1 video(s); stopped at once by a second signal"
    assert err.rstrip().splitlines()[-1] == (
        f"stopped by SIGTERM: after 0 of 1 video(s); {video}: 4 frame(s) kept in "
        f"{out / 'clip.predictions.jsonl'}")


def test_sigterm_while_the_last_overlay_is_finished_exits_143(av, checkpoint, tmp_path, monkeypatch, capfd):
    video = tmp_path / "clip.mp4"
    make_video(av, video, n=2)
    _on_close(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))
    out = tmp_path / "out"
    rc = _guarded(lambda: _predict_quick(checkpoint, out, video))
    err = capfd.readouterr().err
    assert rc == 143, err  # was 0: the signal's "then predict stops" line, and a run taken for finished
    assert err.rstrip().splitlines()[-1] == "stopped by SIGTERM: after the 1 video(s) (their results written)"
    assert _lines(out / "clip.predictions.jsonl")[1]["status"] == "complete"
    assert len(_decode(av, out / "clip.overlay.mp4")) == 2


def test_a_full_disk_before_the_first_line_leaves_no_empty_file(av, checkpoint, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    make_video(av, video, n=2)
    out = tmp_path / "out"
    out.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40, hard))  # less than any line: as a full disk
    try:
        rc = _predict_quick(checkpoint, out, video, "--no-overlays", "--batch-size", "1")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert not (out / "clip.predictions.jsonl").exists()  # was left, 0 bytes
    assert "wrote" not in err and "the frames done are kept" not in err, err
    assert f"nothing could be written to {out / 'clip.predictions.jsonl'}" in err


def test_another_oserror_is_said_as_it_is(av, checkpoint, tmp_path, monkeypatch, capsys):
    from maskrcnn.commands import predict_video

    video = tmp_path / "clip.mp4"
    make_video(av, video, n=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.predictions.jsonl").write_text('{"earlier": 1}\n')
    real = os.replace

    def replace(src, dst):  # the complete results cannot be renamed over the earlier ones
        if str(src).endswith(".predictions.partial.jsonl"):
            raise PermissionError(13, "Permission denied", str(src), None, str(dst))
        return real(src, dst)

    monkeypatch.setattr(predict_video.os, "replace", replace)
    assert _predict_quick(checkpoint, out, video, "--no-overlays") == 1
    err = capsys.readouterr().err
    # was "skipped ...: cannot write its results": the results were written, their rename failed
    assert "cannot write its results" not in err
    assert f"[video 1/1] {video}: stopped by an error (PermissionError: [Errno 13] Permission denied" in err
    assert (out / "clip.predictions.jsonl").read_text() == '{"earlier": 1}\n'
    assert _lines(out / "clip.predictions.partial.jsonl")[1]["status"] == "complete"


def test_sigterm_while_an_overlay_is_finished_stops_before_the_next_video(av, checkpoint, tmp_path,
                                                                          monkeypatch, capfd):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(av, folder / name, n=2)
    _on_close(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))
    out = tmp_path / "out"
    rc = _guarded(lambda: _predict_quick(checkpoint, out, folder / "a.mp4", folder / "b.mp4"))
    err = capfd.readouterr().err
    assert rc == 143, err
    assert _lines(out / "a.predictions.jsonl")[1]["status"] == "complete"
    assert not (out / "b.predictions.jsonl").exists()
    # was "...; b.mp4: stopped before its first frame"
    assert err.rstrip().splitlines()[-1] == (
        f"stopped by SIGTERM: after 1 of 2 video(s); {folder / 'b.mp4'} and the 0 video(s) after it not "
        "started")
