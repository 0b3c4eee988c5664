"""``maskrcnn predict`` on videos stopped part-way: SIGTERM, Ctrl-C's stop line, a full disk, a results or
overlay name taken by a folder. Tiny videos made here with PyAV, a tiny random-weight checkpoint."""

import json
import os
import resource
import signal

import numpy as np
import pytest
import test_predict_video
from test_predict_video import _decode, _lines, _predict_quick, make_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

# the video tests' fixtures: PyAV (skipped without it), a tiny checkpoint written once per module
av, checkpoint = test_predict_video.av, test_predict_video.checkpoint


@pytest.fixture(scope="module")
def video(av, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    make_video(av, path)  # 12 frames
    return path


def _on_second_forward(monkeypatch, action):
    from maskrcnn.predictor import Predictor

    calls, real = [], Predictor.predict_tensors

    def predict(self, images):
        calls.append(len(images))
        if len(calls) == 2:
            action()
        return real(self, images)

    monkeypatch.setattr(Predictor, "predict_tensors", predict)


def test_sigterm_during_a_video_is_handled_as_ctrl_c(av, checkpoint, video, tmp_path, monkeypatch, capfd):
    # SIGTERM during the second batch: that batch is finished, the overlay of the 4 frames done written,
    # the summary says interrupted, no hidden temporary file, a stop line, exit 143. Before, the video
    # call ran outside the handler: the signal's default action (here the guard) cut the run
    def unhandled(signum, frame):
        raise RuntimeError("SIGTERM reached the default handler")

    _on_second_forward(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        out = tmp_path / "out"
        rc = _predict_quick(checkpoint, out, video, "--batch-size", "2")
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capfd.readouterr().err  # the handler's line is written to fd 2
    assert rc == 143, err
    frames, summary = _lines(out / "clip.predictions.jsonl")
    assert [f["frame"] for f in frames] == [0, 1, 2, 3] and summary["status"] == "interrupted"
    assert len(_decode(av, out / "clip.overlay.mp4")) == 4 and not list(out.glob(".*.tmp"))
    assert "SIGTERM: the frames being predicted are finished" in err
    assert err.rstrip().splitlines()[-1] == (
        f"stopped by SIGTERM: after 0 of 1 video(s); {video}: 4 frame(s) kept in "
        f"{out / 'clip.predictions.jsonl'} and {out / 'clip.overlay.mp4'}")


def test_ctrl_c_line_says_the_frames_kept_and_the_files(av, checkpoint, video, tmp_path, monkeypatch, capsys):
    def interrupt():
        raise KeyboardInterrupt

    _on_second_forward(monkeypatch, interrupt)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, video, "--batch-size", "3") == 130
    last = capsys.readouterr().err.rstrip().splitlines()[-1]  # was one word: "interrupted"
    assert last == (f"interrupted: after 0 of 1 video(s); {video}: 3 frame(s) kept in "
                    f"{out / 'clip.predictions.jsonl'} and {out / 'clip.overlay.mp4'}")


def test_a_full_disk_leaves_whole_lines_and_the_next_video_is_tried(av, checkpoint, tmp_path, capsys):
    # files over a size limit fail as on a full disk (EFBIG, where ENOSPC would be): the JSONL is cut back
    # to its last complete line (it ended in half a record), the missing summary is said, and the next
    # video is still predicted (the whole run ended with an error before)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(av, folder / name, n=8)
    out = tmp_path / "out"
    out.mkdir()
    sizes = _line_sizes(checkpoint, folder / "a.mp4", tmp_path / "probe", capsys)
    limit = sum(sizes[:2]) + 50  # two frame lines, not the third nor the summary
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        rc = _predict_quick(checkpoint, out, folder / "a.mp4", folder / "b.mp4", "--no-overlays",
                            "--batch-size", "1")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert rc == 1, err  # no video complete
    for stem in ("a", "b"):
        text = (out / f"{stem}.predictions.jsonl").read_text()
        assert text.endswith("\n") and len(text) <= limit
        lines = [json.loads(line) for line in text.splitlines()]  # every line parses
        assert [r["frame"] for r in lines] == [0, 1]
        assert f"{folder / stem}.mp4: stopped after 2 predicted frame(s)" in err
        assert f"{folder / stem}.mp4: the summary line could not be written" in err


def _line_sizes(checkpoint, video, out, capsys) -> list:
    """The bytes of the first frame lines of this tiny model's results (the same run after)."""
    assert _predict_quick(checkpoint, out, video, "--no-overlays", "--max-frames", "3") == 0
    capsys.readouterr()
    lines = (out / f"{video.stem}.predictions.jsonl").read_text().splitlines()[:-1]
    assert all(len(line) > 100 for line in lines)
    return [len(line.encode()) + 1 for line in lines]


def test_a_results_name_taken_by_a_folder_skips_that_video_only(av, checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("one.mp4", "two.mp4"):
        make_video(av, folder / name, n=2)
    out = tmp_path / "out"
    (out / "one.predictions.jsonl").mkdir(parents=True)
    rc = _predict_quick(checkpoint, out, folder / "one.mp4", folder / "two.mp4")
    err = capsys.readouterr().err
    assert rc == 0, err  # was 1: "error: ...: is a directory", two.mp4 never predicted
    taken = out / "one.predictions.jsonl"
    assert f"[video 1/2] skipped {folder / 'one.mp4'}: cannot write its results ({taken}: " in err
    _, summary = _lines(out / "two.predictions.jsonl")
    assert summary["status"] == "complete" and (out / "two.overlay.mp4").is_file()
    assert not list(out.glob(".*.tmp"))  # the overlay's temporary file of one.mp4 was left


def test_an_overlay_name_taken_by_a_folder_leaves_no_temporary_file(av, checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(av, folder / "one.mp4", n=2)
    out = tmp_path / "out"
    (out / "one.overlay.mp4").mkdir(parents=True)
    assert _predict_quick(checkpoint, out, folder / "one.mp4") == 0
    assert "overlay video not written" in capsys.readouterr().err
    _, summary = _lines(out / "one.predictions.jsonl")
    assert summary["status"] == "complete"
    assert not list(out.glob(".*.tmp"))  # a whole encoded video was left hidden


def test_video_writer_close_discards_its_file_when_the_rename_fails(av, tmp_path):
    from fractions import Fraction

    from maskrcnn.data.video_writer import VideoWriter

    target = tmp_path / "x.mp4"
    target.mkdir()
    writer = VideoWriter(target, fps=Fraction(10))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(OSError):
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]
