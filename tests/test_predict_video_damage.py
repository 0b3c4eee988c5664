"""A video with undecodable packets mid-file: the packet is skipped and reading goes on, frame numbers and
times staying the file's; a run of failures ends reading as a truncation does."""

import pytest
import test_predict_video
from test_predict_video import FPS, _lines, _predict_quick, make_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

av = test_predict_video.av
checkpoint = test_predict_video.checkpoint


def _zero_packets(av, path, ks, out):
    """``path`` with the bytes of its video packets ``ks`` (0-based, in file order) zeroed, as ``out``."""
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for k in ks:
        pos, size = spans[k]
        data[pos:pos + size] = bytes(size)
    out.write_bytes(bytes(data))
    return out


def test_a_damaged_packet_is_skipped_and_the_frames_after_it_keep_their_numbers(av, checkpoint, tmp_path,
                                                                                 capsys):
    from maskrcnn.data.video import VideoReader

    make_video(av, tmp_path / "clip.mp4")  # 12 frames at 12 fps, each its own packet
    damaged = _zero_packets(av, tmp_path / "clip.mp4", [6], tmp_path / "damaged.mp4")
    with VideoReader(damaged) as reader:
        frames = list(reader.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert [f.time for f in frames] == pytest.approx([f.index / FPS for f in frames])
    assert reader.problem is None and reader.skipped_frames == 1
    # the step over the skipped frame is no variable frame rate
    assert not reader.timing.variable and reader.timing.fps == pytest.approx(FPS)
    assert reader.damage.startswith(f"{damaged}: 1 damaged frame could not be decoded and was skipped "
                                    "(frame 6 at 0.500 s: "), reader.damage
    assert reader.damage.endswith("; 11 frame(s) read"), reader.damage

    assert _predict_quick(checkpoint, tmp_path / "out", damaged) == 0
    err = capsys.readouterr().err
    assert f"maskrcnn predict: warning: {reader.damage}" in err, err
    lines, summary = _lines(tmp_path / "out" / "damaged.predictions.jsonl")
    assert [r["frame"] for r in lines] == [f.index for f in frames]
    assert summary["status"] == "damaged_frames_skipped" and summary["frames_skipped"] == 1
    assert summary["problem"] == reader.damage
    assert summary["variable_frame_rate"] is False and summary["fps"] == pytest.approx(FPS)
    assert "variable frame rate" not in err


def test_many_undecodable_packets_in_a_row_end_reading(av, tmp_path, monkeypatch):
    from maskrcnn.data import video

    make_video(av, tmp_path / "clip.mp4")
    damaged = _zero_packets(av, tmp_path / "clip.mp4", range(4, 12), tmp_path / "damaged.mp4")
    monkeypatch.setattr(video, "MAX_FAILURES_IN_A_ROW", 3)
    with video.VideoReader(damaged) as reader:
        frames = list(reader.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert reader.skipped_frames == 0 and reader.damage is None
    assert reader.problem.startswith(f"{damaged}: 4 frames read (0..3); the file is damaged after 0.250 s (3 "
                                     "packets in a row cannot be decoded: "), reader.problem
