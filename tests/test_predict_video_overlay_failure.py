"""An overlay whose encoder failed mid-video was finished and renamed to its final name anyway: a partial
``clip.overlay.mp4`` stood beside the results as if whole (and an FFmpeg error that is neither an OSError
nor a ValueError, libx264's "Generic error in an external library", escaped as a traceback). Now the
writer removes its temporary file at the first error and nothing is renamed: no partial overlay ever sits
under the final name, and a later run into the same folder finds no video of its own to predict."""

import json
from fractions import Fraction

import numpy as np
import pytest
import test_predict_video
from test_predict_video import _lines, _predict_quick, make_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

av, checkpoint = test_predict_video.av, test_predict_video.checkpoint


def _failing_encoder(monkeypatch, av, *, after: int):
    """The encoder raises libx264's error from the ``after + 1``-th write on."""
    from maskrcnn.data import video_writer

    real = video_writer.VideoWriter._encode_held
    calls = []

    def encode(self, *, until):
        calls.append(until)
        if len(calls) > after:
            raise av.error.ExternalError(542398533, "Generic error in an external library")
        return real(self, until=until)

    monkeypatch.setattr(video_writer.VideoWriter, "_encode_held", encode)


def test_a_failed_writer_leaves_no_file(av, tmp_path, monkeypatch):
    from maskrcnn.data.video_writer import VideoWriteError, VideoWriter

    _failing_encoder(monkeypatch, av, after=2)
    target = tmp_path / "x.overlay.mp4"
    writer = VideoWriter(target, fps=Fraction(10))
    for _ in range(2):  # (each write encodes the frame before it: the first encodes none)
        writer.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(VideoWriteError, match=r"x\.overlay\.mp4: its encoder failed \(Generic error in an "
                                              r"external library\); removed"):
        writer.write(np.zeros((16, 16, 3), np.uint8))
    assert writer.close() is None  # nothing to finish: the frames written are gone with the file
    assert list(tmp_path.iterdir()) == []
    # a frame of another size (a stream that changes resolution): its 2 frames were renamed into place
    monkeypatch.undo()
    writer = VideoWriter(target, fps=Fraction(10))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(VideoWriteError, match=r"x\.overlay\.mp4: writing it failed \(a frame of 20x20 in a "
                                              r"video of 16x16\); removed$"):
        writer.write(np.zeros((20, 20, 3), np.uint8))
    assert writer.close() is None and list(tmp_path.iterdir()) == []


def test_an_overlay_whose_encoder_failed_is_not_left_under_its_name(av, checkpoint, tmp_path, monkeypatch,
                                                                    capsys):
    """Before: the encoder's failure at frame 2 stopped the video's prediction too (status failed, 3 of 6
    frames, exit 1). Now the overlay alone stops (removed, said in one line naming the frame) and the
    predictions go on to the end."""
    folder = tmp_path / "v"
    folder.mkdir()
    make_video(av, folder / "clip.mp4", n=6)
    _failing_encoder(monkeypatch, av, after=2)
    assert _predict_quick(checkpoint, folder, folder) == 0  # into the videos' own folder
    err = capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "clip.predictions.jsonl"], err
    frames, summary = _lines(folder / "clip.predictions.jsonl")
    assert [f["frame"] for f in frames] == list(range(6)), err
    assert summary["status"] == "complete" and summary["problem"] is None and summary.get("overlay") is None
    said = [line for line in err.splitlines() if "overlay stopped" in line]
    assert len(said) == 1, err
    assert said[0] == (f"[video 1/1] {folder / 'clip.mp4'}: overlay stopped at frame 2 and removed "
                       f"({folder / 'clip.overlay.mp4'}: its encoder failed (Generic error in an external "
                       "library)); the predictions went on to the end without it"), err
    assert [n for n in summary["notes"] if "overlay stopped at frame 2 and removed" in n], summary["notes"]
    wrote = folder / "clip.predictions.jsonl"
    assert f"6 frame(s), {summary['detections']} detections; wrote {wrote}\n" in err
    monkeypatch.undo()
    # the next run into the same folder predicts the video only, and draws its overlay
    assert _predict_quick(checkpoint, folder, folder) == 0
    err = capsys.readouterr().err
    assert "[video 1/1]" in err and "[video 1/2]" not in err, err
    summary = json.loads((folder / "clip.predictions.jsonl").read_text().splitlines()[-1])["summary"]
    assert summary["status"] == "complete" and summary["overlay"] == str(folder / "clip.overlay.mp4")
