"""Which files ``maskrcnn predict`` takes for videos: not the overlays a video run wrote (recognised by the
summary of the results beside them), and not an image named .mp4."""

import pytest
import test_predict_video
from test_predict_video import _predict_quick, make_timed_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

av = test_predict_video.av
checkpoint = test_predict_video.checkpoint


def test_a_rerun_into_the_videos_folder_leaves_its_own_overlays_out(av, checkpoint, tmp_path, capsys):
    folder = tmp_path / "v"
    folder.mkdir()
    make_timed_video(av, folder / "one.mp4", [0, 40])
    assert _predict_quick(checkpoint, folder, folder) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["one.mp4", "one.overlay.mp4", "one.predictions.jsonl"]
    capsys.readouterr()
    # again, and a stopped run's partial overlay beside the results it names
    assert _predict_quick(checkpoint, folder, folder, "--max-frames", "1") == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "one.mp4", "one.overlay.mp4", "one.overlay.partial.mp4", "one.predictions.jsonl",
        "one.predictions.partial.jsonl"]
    assert _predict_quick(checkpoint, folder, folder, "--max-frames", "1") == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == [  # no one.overlay.predictions.jsonl, ...
        "one.mp4", "one.overlay.mp4", "one.overlay.partial.mp4", "one.predictions.jsonl",
        "one.predictions.partial.jsonl"]
    assert ("maskrcnn predict: left out 2 video file(s) that a video run wrote (overlays named by the "
            "summary of the results beside them)") in err, err
    assert "[video 1/1]" in err
    # a user's own video called x.overlay.mp4 beside the results of a --no-overlays run of x.mp4 (its
    # summary names no overlay) is predicted, and so is an overlay given by name: asked for
    own = tmp_path / "own"
    own.mkdir()
    make_timed_video(av, own / "x.overlay.mp4", [0, 40])
    (own / "x.predictions.jsonl").write_text('{"summary": {"video": "x.mp4", "overlay": null}}\n')
    assert _predict_quick(checkpoint, tmp_path / "out", own, folder / "one.overlay.mp4") == 0
    err = capsys.readouterr().err
    assert "video file(s) that a video run wrote" not in err and "[video 2/2]" in err, err
    assert (tmp_path / "out" / "x.overlay.predictions.jsonl").is_file()
    assert (tmp_path / "out" / "one.overlay.predictions.jsonl").is_file()


def test_an_image_named_as_a_video_is_refused_in_one_line(av, checkpoint, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from maskrcnn.data.video import VideoReader, VideoReadError

    picture = Image.fromarray(np.full((24, 32, 3), 90, np.uint8))
    picture.save(tmp_path / "photo.mp4", format="PNG")
    picture.save(tmp_path / "snap.mov", format="JPEG")
    for name, kind, ext in (("photo.mp4", "PNG", ".png"), ("snap.mov", "JPEG", ".jpg")):
        with pytest.raises(VideoReadError) as e:
            VideoReader(tmp_path / name)
        assert str(e.value) == (f"{tmp_path / name}: not a video: a {kind} image under a video extension "
                                f"(predict it as an image: rename it to {ext})"), str(e.value)
    make_timed_video(av, tmp_path / "real.mp4", [0, 40])
    assert _predict_quick(checkpoint, tmp_path / "out", tmp_path) == 0
    err = capsys.readouterr().err
    refused = [line for line in err.splitlines() if "not a video" in line]
    assert len(refused) == 2 and all("skipped" in line for line in refused), err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["real.overlay.mp4", "real.predictions.jsonl"]


def test_the_first_line_does_not_claim_a_frame_count_the_header_lacks(av, checkpoint, tmp_path, capsys):
    import numpy as np

    from maskrcnn.data.video import VideoReader

    # Matroska keeps no frame count: 10 frames over 3.08 s at a variable rate are no "about 77 frames"
    vfr = tmp_path / "vfr.mkv"
    make_timed_video(av, vfr, [0, 40, 80, 500, 520, 1500, 1540, 1580, 3000, 3040], fmt="matroska")
    assert _predict_quick(checkpoint, tmp_path / "out", vfr, "--max-frames", "1", "--no-overlays") == 0
    first = [line for line in capsys.readouterr().err.splitlines() if "container says" in line][0]
    assert first.endswith(f"{vfr}: 3.080 s, no frame count in its header (about 77 frames at the "
                          "container's rate), container says 25 fps"), first
    # a count the muxer wrote as a tag (mkvmerge's NUMBER_OF_FRAMES) is the count
    tagged = tmp_path / "tagged.mkv"
    with av.open(str(tagged), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        s.metadata["NUMBER_OF_FRAMES"] = "3"
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with VideoReader(tagged) as reader:
        assert reader.declared_frames == 3 and not reader.frames_estimated
