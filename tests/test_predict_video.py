"""``maskrcnn predict`` on video files: tiny videos made here with PyAV, a tiny random-weight checkpoint."""

import json
import sys

import numpy as np
import pytest
import torch
from tiny_model import save_cat_dog_checkpoint  # tests/ is on the path

from maskrcnn.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

W, H, N, FPS = 64, 48, 12, 12


@pytest.fixture(scope="module")
def av():
    return pytest.importorskip("av")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_cat_dog_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _frame(rng, i, noise):
    # noise: every frame some kB, so that a file cut in half keeps a few
    a = rng.integers(0, 255, (H, W, 3), dtype=np.uint8) if noise else np.full((H, W, 3), 30, np.uint8)
    a[10:26, 4 * i : 4 * i + 16] = (255, 40, 40)  # a square moving right
    return a


def make_video(av, path, *, n=N, rotation=None, noise=True):
    """``n`` frames of W x H at FPS, MPEG-4 part 2, every frame a key frame, index first (a cut file
    keeps its first frames)."""
    rng = np.random.default_rng(0)
    frames = [_frame(rng, i, noise) for i in range(n)]
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("mpeg4", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.gop_size = 1
        if rotation is not None:
            if not hasattr(s, "set_display_rotation"):
                pytest.skip("this PyAV cannot write a display matrix")
            s.set_display_rotation(rotation)
        for a in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return frames


@pytest.fixture(scope="module")
def video(av, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    make_video(av, path)
    return path


def _decode(av, path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _lines(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "summary" in lines[-1] and all("summary" not in r for r in lines[:-1])
    return lines[:-1], lines[-1]["summary"]


def _predict(checkpoint, out, *args):
    return main(["predict", "--weights", str(checkpoint), *map(str, args), "--output", str(out),
                 "--device", "cpu", "--score-thresh", "0"])


def test_video_results_per_frame_and_overlay(av, checkpoint, video, tmp_path, capsys):
    from maskrcnn.data.mask_codec import annotation_to_mask
    from maskrcnn.visualize import draw_instances

    out = tmp_path / "out"
    # every detection drawn (random weights score low): the overlay is compared with them below
    assert _predict(checkpoint, out, video, "--batch-size", "2", "--overlay-score-thresh", "0") == 0, \
        capsys.readouterr().err
    frames, summary = _lines(out / "clip.predictions.jsonl")
    assert [f["frame"] for f in frames] == list(range(N))
    times = [f["time"] for f in frames]
    assert times == pytest.approx([i / FPS for i in range(N)], abs=1e-3) and times == sorted(set(times))
    assert summary["status"] == "complete" and summary["frames_predicted"] == N
    assert (summary["width"], summary["height"], summary["fps"]) == (W, H, FPS)
    assert summary["detections"] == sum(len(f["detections"]) for f in frames) > 0
    for d in frames[0]["detections"]:
        assert d.keys() == {"category_id", "category_name", "bbox", "score", "segmentation"}
        assert d["category_id"] in (5, 9) and d["segmentation"]["size"] == [H, W]
    assert not (out / "predictions.json").exists()  # no image among the inputs

    overlay = _decode(av, out / "clip.overlay.mp4")
    assert len(overlay) == N and overlay[0].shape == (H, W, 3)
    assert not list(out.glob(".*.tmp"))
    # the overlay is frame 0 drawn with frame 0's detections (up to the two lossy encodings)
    source = _decode(av, video)[0]
    dets = frames[0]["detections"]
    boxes = torch.tensor([d["bbox"] for d in dets])
    det = {"boxes": torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1),
           "scores": torch.tensor([d["score"] for d in dets]),
           "labels": torch.tensor([{5: 1, 9: 2}[d["category_id"]] for d in dets]),
           "masks": torch.from_numpy(np.stack([annotation_to_mask(d["segmentation"], H, W) for d in dets]))}
    expected = np.asarray(draw_instances(source, det, ["__background__", "cat", "dog"])).astype(float)
    got = overlay[0].astype(float)
    assert np.abs(got - expected).mean() < 0.5 * np.abs(source.astype(float) - expected).mean()


def test_every_start_end_and_max_frames(checkpoint, video, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(checkpoint, out, video, "--every", "3", "--no-overlays") == 0, capsys.readouterr().err
    frames, summary = _lines(out / "clip.predictions.jsonl")
    assert [f["frame"] for f in frames] == [0, 3, 6, 9] and summary["every"] == 3
    assert not (out / "clip.overlay.mp4").exists()

    # [0.25 s, 0.75 s) is frames 3..8; --every 2 from the first of them; at most 2; the video found in
    # its folder (searched as for images)
    assert _predict(checkpoint, out, video.parent, "--start", "0.25", "--end", "0.75", "--every", "2",
                    "--max-frames", "2", "--no-overlays") == 0
    # a limited run does not replace the complete one: its frames go beside it (test_predict_video_range)
    frames, _ = _lines(out / "clip.predictions.partial.jsonl")
    assert [f["frame"] for f in frames] == [3, 5]
    assert _predict(checkpoint, out, video, "--start", "0.5", "--end", "0.5") == 1
    assert "--end must be after --start" in capsys.readouterr().err


def test_truncated_video_keeps_its_frames_and_a_non_video_is_refused(av, checkpoint, video, tmp_path, capsys):
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    fake = tmp_path / "notes.mkv"
    fake.write_text("not a video at all")
    out = tmp_path / "out"
    assert _predict(checkpoint, out, fake, cut) == 0  # the run goes on after the refused file
    err = capsys.readouterr().err
    refused = [line for line in err.splitlines() if "notes.mkv" in line]
    assert len(refused) == 1 and "not a video PyAV can read" in refused[0]
    frames, summary = _lines(out / "cut.predictions.jsonl")
    assert 1 <= len(frames) < N and [f["frame"] for f in frames] == list(range(len(frames)))
    warning = [line for line in err.splitlines() if "warning" in line]
    n = len(frames)
    read = "1 frame read (0)" if n == 1 else f"{n} frames read (0..{n - 1})"  # the frames kept, numbered
    assert len(warning) == 1 and str(cut) in warning[0] and read in warning[0]
    assert summary["status"] == "truncated" and str(cut) in summary["problem"]
    assert len(_decode(av, out / "cut.overlay.mp4")) == len(frames)


def test_missing_pyav_is_one_line(checkpoint, tmp_path, monkeypatch, capsys):
    clip = tmp_path / "clip.mov"
    clip.write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    assert _predict(checkpoint, tmp_path / "out", clip) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs PyAV" in err and "maskrcnn[video]" in err
    assert not (tmp_path / "out").exists()  # refused before the checkpoint was loaded


def test_reader_applies_rotation_and_writer_pads_odd_sizes(av, tmp_path, monkeypatch):
    from maskrcnn.data.video import VideoReader
    from maskrcnn.data.video_writer import VideoWriter

    path = tmp_path / "portrait.mp4"
    source = make_video(av, path, n=2, rotation=90, noise=False)
    with VideoReader(path) as reader:
        frames = list(reader.frames())
    assert [f.image.shape for f in frames] == [(W, H, 3)] * 2  # turned: 48 wide, 64 high
    # the square, rows 10..25 and columns 0..15 as stored, turned counter-clockwise (as the display matrix
    # says): rows 48..63 (from the columns, counted from the right), columns 10..25
    image = frames[0].image.astype(int)
    rows, cols = np.nonzero((image[..., 0] > 180) & (image[..., 1] < 100))
    assert rows.mean() == pytest.approx(55.5, abs=1.5) and cols.mean() == pytest.approx(17.5, abs=1.5)
    assert source[0].shape == (H, W, 3)
    assert any("rotated 90" in note for note in reader.notes)

    from maskrcnn.data import video_writer

    for codec in ("libx264", "mpeg4"):  # the fallback where PyAV's build has no x264
        if codec == "mpeg4":
            monkeypatch.setattr(video_writer, "_pick_codec", lambda av: "mpeg4")
        writer = VideoWriter(tmp_path / f"odd_{codec}.mp4", fps=FPS)
        for _ in range(3):
            writer.write(np.full((9, 15, 3), 200, np.uint8))
        assert writer.close() == tmp_path / f"odd_{codec}.mp4"
        decoded = _decode(av, tmp_path / f"odd_{codec}.mp4")
        assert len(decoded) == 3 and decoded[0].shape == (10, 16, 3)
        assert decoded[0][:9, :15].mean() > 150 and decoded[0][9:, :].mean() < 60  # the pad row is black
        assert any("padded 15x9 to 16x10" in note for note in writer.notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd_libx264.mp4", "odd_mpeg4.mp4", "portrait.mp4"]


def test_interrupt_keeps_the_frames_done(av, checkpoint, video, tmp_path, monkeypatch, capsys):
    from maskrcnn.predictor import Predictor

    calls, predict_tensors = [], Predictor.predict_tensors

    def interrupted_second_time(self, images):  # Ctrl-C during the second forward
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict_tensors(self, images)

    monkeypatch.setattr(Predictor, "predict_tensors", interrupted_second_time)
    out = tmp_path / "out"
    assert _predict(checkpoint, out, video, "--batch-size", "2") == 130
    frames, summary = _lines(out / "clip.predictions.jsonl")
    assert [f["frame"] for f in frames] == [0, 1] and summary["status"] == "interrupted"
    assert len(_decode(av, out / "clip.overlay.mp4")) == 2 and not list(out.glob(".*.tmp"))


def test_a_stopped_rerun_keeps_the_earlier_runs_results(av, checkpoint, tmp_path, monkeypatch, capsys):
    # an earlier run's results of v and w; this run is stopped (Ctrl-C, then a model error) in v: nothing
    # earlier is removed or overwritten, this run's frames of v go beside them; a complete rerun replaces
    from maskrcnn.predictor import Predictor

    folder = tmp_path / "in"
    folder.mkdir()
    make_timed_video(av, folder / "v.mp4", [0, 40, 80])
    out = tmp_path / "out"
    out.mkdir()
    for stem in ("v", "w"):
        (out / f"{stem}.predictions.jsonl").write_text('{"earlier": 1}\n')
        (out / f"{stem}.overlay.mp4").write_bytes(b"earlier")
    predict_tensors = Predictor.predict_tensors

    def stop_after_one(error):
        def predict(self, images):
            if getattr(self, "_done", 0):
                raise error
            self._done = 1
            return predict_tensors(self, images)
        return predict

    for error, code in ((KeyboardInterrupt, 130), (RuntimeError("out of memory"), 1)):
        monkeypatch.setattr(Predictor, "predict_tensors", stop_after_one(error))
        assert _predict_quick(checkpoint, out, folder / "v.mp4", "--batch-size", "1") == code
        err = capsys.readouterr().err
        assert not any(line.startswith("removed") for line in err.splitlines()), err
        assert "the earlier run's v.predictions.jsonl and overlay are kept; this run's frames done are in " \
               "v.predictions.partial.jsonl" in err
        for stem in ("v", "w"):
            assert (out / f"{stem}.predictions.jsonl").read_text() == '{"earlier": 1}\n'
            assert (out / f"{stem}.overlay.mp4").read_bytes() == b"earlier"
        frames, summary = _lines(out / "v.predictions.partial.jsonl")
        assert [f["frame"] for f in frames] == [0] and summary["status"] in ("interrupted", "failed")
        assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(Predictor, "predict_tensors", predict_tensors)
    assert _predict_quick(checkpoint, out, folder / "v.mp4") == 0
    err = capsys.readouterr().err
    assert ("removed 2 file(s) of the earlier run's videos that this run did not write again from "
            f"{out}/: w.predictions.jsonl, w.overlay.mp4") in err
    assert sorted(p.name for p in out.iterdir()) == ["v.overlay.mp4", "v.predictions.jsonl"]
    frames, summary = _lines(out / "v.predictions.jsonl")
    assert len(frames) == 3 and summary["status"] == "complete"


def _predict_quick(checkpoint, out, *args):
    # no batch-norm folding / Winograd weights: most of a tiny run's time, not what these tests are about
    return _predict(checkpoint, out, *args, "--no-optimise")


def make_timed_video(av, path, times_ms, *, fmt=None, faststart=True):
    """Frames of 32 x 32 at ``times_ms`` (milliseconds, the stream's time base 1/1000; a late first time
    is a clip cut from a longer recording, uneven steps a variable frame rate), MPEG-4 part 2."""
    from fractions import Fraction

    options = {"movflags": "faststart"} if faststart and str(path).endswith(".mp4") else {}
    with av.open(str(path), "w", format=fmt, options=options) as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        s.codec_context.gop_size = 1
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_late_start_or_variable_rate_is_not_truncated_but_a_cut_matroska_is(av, tmp_path):
    from maskrcnn.data.video import VideoReader

    late, vfr = tmp_path / "late.mkv", tmp_path / "vfr.mkv"
    make_timed_video(av, late, [5000 + 40 * i for i in range(6)])  # 6 frames at 25 fps from 5 s
    make_timed_video(av, vfr, [5000, 5040, 5160, 5200, 5320, 5360])  # 40 / 120 ms apart, from 5 s
    for path in (late, vfr):
        with VideoReader(path) as reader:
            frames = list(reader.frames())
        assert len(frames) == 6 and reader.problem is None, reader.problem
        assert frames[0].time == pytest.approx(0.0) and frames[-1].time == pytest.approx(0.2 if path == late
                                                                                         else 0.36)
    make_timed_video(av, tmp_path / "long.mkv", [40 * i for i in range(40)])
    data = (tmp_path / "long.mkv").read_bytes()  # its duration (1.6 s) is written in the header
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 3])
    with VideoReader(cut) as reader:
        frames = list(reader.frames())
    assert 1 <= len(frames) < 40 and str(cut) in reader.problem and "1.600 s its header declares" in \
        reader.problem


def test_variable_frame_rate_overlay_keeps_the_source_times(av, checkpoint, tmp_path, capsys):
    times = [0, 100, 200, 500, 600, 1500, 1600]  # ms: gaps far apart, so that B-frames' made-up times show
    path = tmp_path / "vfr.mkv"
    make_timed_video(av, path, times)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, path) == 0, capsys.readouterr().err
    frames, summary = _lines(out / "vfr.predictions.jsonl")
    assert [f["time"] for f in frames] == pytest.approx([t / 1000 for t in times], abs=1e-6)
    assert summary["fps"] == pytest.approx(6 / 1.6, rel=1e-3) and summary["variable_frame_rate"] is True
    assert any("variable frame rate" in note for note in summary["notes"])
    with av.open(str(path)) as c:
        source_length = c.duration / 1_000_000  # 1.64 s: the last frame lasts 40 ms
    with av.open(str(out / "vfr.overlay.mp4")) as c:
        stream = c.streams.video[0]
        lengths = (c.duration / 1_000_000, float(stream.duration * stream.time_base))
        overlay_times = [f.time for f in c.decode(video=0)]
    assert overlay_times == pytest.approx([t / 1000 for t in times], abs=2e-3)  # not 40 ms apart
    # the header's length too (what players show and seek by): 1.7 s, the last frame as long as the one
    # before it; B-frames made it 0.9 s
    assert lengths == pytest.approx((source_length, source_length), abs=0.1)


def test_start_past_the_end_warns(av, checkpoint, tmp_path, capsys):
    path = tmp_path / "short.mp4"
    make_timed_video(av, path, [0, 40, 80])  # 0.120 s long by its header, the last frame at 0.080 s
    # past the header's length; at it (the last frame, shown from 0.080 s, is gone by then: a --start
    # within its time predicts it, test_predict_video_start)
    for k, (args, expected) in enumerate((
            (["--start", "5"], "--start 5 s is at or past the end of the video (0.120 s long, last frame "
                               "at 0.080 s): no frame predicted"),
            (["--start", "0.12"], "--start 0.12 s is at or past the end of the video (0.120 s long, last "
                                  "frame at 0.080 s): no frame predicted"))):
        out = tmp_path / f"out{k}"
        assert _predict_quick(checkpoint, out, path, "--no-overlays", *args) == 0
        warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
        assert warning == [f"maskrcnn predict: warning: {path}: {expected}"]
        _, summary = _lines(out / "short.predictions.jsonl")
        # the range left every frame out: limited, not a complete prediction of the video
        assert summary["frames_predicted"] == 0 and summary["status"] == "limited"


def test_summary_without_a_predicted_frame_gives_the_shown_size(av, checkpoint, tmp_path, capsys):
    """--start after the last frame left "width": null, "height": null in the summary although the size is
    known; it is the size as shown (this one turned to portrait: 48 wide, 64 high), as with frames."""
    path = tmp_path / "portrait.mp4"
    make_video(av, path, n=2, rotation=90, noise=False)
    assert _predict_quick(checkpoint, tmp_path / "out", path, "--no-overlays", "--start", "10",
                          "--end", "20") == 0
    _, summary = _lines(tmp_path / "out" / "portrait.predictions.jsonl")
    assert (summary["frames_predicted"], summary["width"], summary["height"]) == (0, H, W)


def test_reader_gives_no_shown_size_before_a_frame_of_a_rotated_video(av, tmp_path):
    """The header gives the stored size (64 wide, 48 high); a phone video's rotation is a display matrix
    read from its frames, so before one is decoded the shown size is unknown (None), not the stored one."""
    from maskrcnn.data.video import VideoReader

    path = tmp_path / "portrait.mp4"
    make_video(av, path, n=2, rotation=90)
    with VideoReader(path) as reader:
        assert reader.shown_size is None and reader.stored_size == (H, W)
        assert next(reader.frames()).image.shape[:2] == (W, H)
        assert reader.shown_size == (W, H)


def test_camcorder_and_phone_extensions_are_videos(av, checkpoint, tmp_path, capsys):
    folder = tmp_path / "cam"
    folder.mkdir()
    make_timed_video(av, folder / "00001.MTS", [40 * i for i in range(8)], fmt="mpegts")  # fewer: unprobed
    make_timed_video(av, folder / "clip.3gp", [0, 40], fmt="3gp")
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, folder, "--no-overlays", "--every", "4") == 0
    err = capsys.readouterr().err
    assert "skipped" not in err and "2 video(s)" in err
    for stem, predicted in (("00001", [0, 4]), ("clip", [0])):
        frames, summary = _lines(out / f"{stem}.predictions.jsonl")
        assert [f["frame"] for f in frames] == predicted and summary["status"] == "complete"


def test_mp4_cut_before_its_index_is_named(av, tmp_path):
    from maskrcnn.data.video import VideoReader, VideoReadError

    whole = tmp_path / "whole.mp4"
    make_timed_video(av, whole, [40 * i for i in range(10)], faststart=False)  # moov written last
    data = whole.read_bytes()
    # cut in the frames: FFmpeg refuses it; cut inside the moov: FFmpeg opens it with one "data" stream
    # and no video stream (PyAV 18), the second of VideoReader's two ways to this message
    for k, size in enumerate((len(data) // 10, len(data) // 2)):
        cut = tmp_path / f"cut{k}.mp4"
        cut.write_bytes(data[:size])
        with pytest.raises(VideoReadError, match=rf"cut{k}\.mp4: truncated or missing its index \(moov\)"):
            VideoReader(cut)
    text = tmp_path / "text.mp4"
    text.write_text("hello, not a video")
    with pytest.raises(VideoReadError, match="text.mp4: not a video PyAV can read"):
        VideoReader(text)
    sound = tmp_path / "sound.mp4"  # whole, its index in place, but audio only: no "truncated"
    with av.open(str(sound), "w") as c:
        s = c.add_stream("aac", rate=8000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, 1024 * i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoReadError, match=r"sound\.mp4: holds no video stream$"):
        VideoReader(sound)


def test_video_options_without_a_video_get_a_note(checkpoint, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    assert _predict_quick(checkpoint, tmp_path / "out", image, "--every", "2", "--start", "1",
                          "--no-overlays") == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "videos only" in line]
    assert notes == ["maskrcnn predict: note: --every, --start apply to videos only, and no video is among "
                     "the inputs: ignored"]


def _overlay_seconds(av, path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return c.duration / 1_000_000, float(stream.duration * stream.time_base)


def test_every_n_overlay_ends_with_its_source(av, checkpoint, tmp_path, capsys):
    # 25 frames 40 ms apart: 1.0 s; --every 10 predicts 0, 0.4, 0.8 s; the last is held to 1.0 s, not for
    # one --every step (to 1.2 s); --end holds it to --end
    path = tmp_path / "long.mp4"
    make_timed_video(av, path, [40 * i for i in range(25)])
    assert _predict_quick(checkpoint, tmp_path / "out", path, "--every", "10") == 0, capsys.readouterr().err
    assert _overlay_seconds(av, tmp_path / "out" / "long.overlay.mp4") == pytest.approx((1.0, 1.0), abs=0.01)
    assert _predict_quick(checkpoint, tmp_path / "end", path, "--every", "10", "--end", "0.9") == 0
    assert _overlay_seconds(av, tmp_path / "end" / "long.overlay.mp4") == pytest.approx((0.9, 0.9), abs=0.01)
    # --max-frames stops before the source's end: the last predicted frame lasts one --every step, not one
    # source frame (0, 0.2, 0.4 s predicted: to 0.6 s, not 0.44 s), never past the source's end (0, 0.4,
    # 0.8 s: to 1.0 s, not 1.2 s, nor 0.84 s)
    assert _predict_quick(checkpoint, tmp_path / "max", path, "--every", "5", "--max-frames", "3") == 0
    assert _overlay_seconds(av, tmp_path / "max" / "long.overlay.mp4") == pytest.approx((0.6, 0.6), abs=0.01)
    assert _predict_quick(checkpoint, tmp_path / "max2", path, "--every", "10", "--max-frames", "3") == 0
    assert _overlay_seconds(av, tmp_path / "max2" / "long.overlay.mp4") == pytest.approx((1.0, 1.0), abs=0.01)


def test_rerun_removes_the_earlier_runs_video_files_and_a_video_given_twice_is_one(
        av, checkpoint, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    make_timed_video(av, folder / "v.mp4", [0, 40, 80])
    monkeypatch.chdir(folder)
    out = tmp_path / "out"
    (out / "other").mkdir(parents=True)
    (out / "mine.overlay.mp4").write_bytes(b"the user's")  # no results beside it: not a run's
    # an earlier run of three (v, v_2, v_3: the same file given three times was predicted three times)
    for stem in ("v", "v_2", "v_3"):
        (out / f"{stem}.predictions.jsonl").write_text("{}\n")
        (out / f"{stem}.overlay.mp4").write_bytes(b"old")
    assert _predict_quick(checkpoint, out, "v.mp4", "v.mp4", "./v.mp4", folder, "--no-overlays") == 0
    err = capsys.readouterr().err
    assert "1 video(s)" in err and "[video 1/1]" in err
    assert f"note: {out} holds an earlier run's video results (3 video(s): v, v_2, v_3)" in err
    assert ("removed 5 file(s) of the earlier run's videos that this run did not write again from "
            f"{out}/: v_2.predictions.jsonl, v_3.predictions.jsonl, v.overlay.mp4, v_2.overlay.mp4, "
            "v_3.overlay.mp4") in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.overlay.mp4", "other", "v.predictions.jsonl"]
    frames, _ = _lines(out / "v.predictions.jsonl")
    assert len(frames) == 3
    # drawn this time: the overlay is this run's, kept; nothing else to remove
    assert _predict_quick(checkpoint, out, "v.mp4") == 0
    err = capsys.readouterr().err
    assert not any(line.startswith("removed") for line in err.splitlines()), err
    assert (out / "v.overlay.mp4").stat().st_size > 100
