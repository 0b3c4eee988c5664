"""``maskrcnn predict`` on videos: the names and numbers its lines give. A video name too long for its
results' file names gets them shortened (one rule, said once with the name used), a variable frame rate
says which rate is the container's and which the frame times', and a damaged file's warning counts the
frames read. Tiny videos made here with PyAV, a tiny random-weight checkpoint."""

import os

import numpy as np
import pytest
import test_predict_video
from test_predict_video import _lines, _predict_quick, make_timed_video, make_video  # tests/ is on the path

pytestmark = pytest.mark.usefixtures("single_thread")

# the video tests' fixtures: PyAV (skipped without it), a tiny checkpoint written once per module
av, checkpoint = test_predict_video.av, test_predict_video.checkpoint


def _name_max(folder) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def test_a_long_video_name_gets_shortened_results_names_a_later_limited_run_finds(av, checkpoint, tmp_path,
                                                                                  capsys):
    """A 250-character video name: its .predictions.jsonl was 'File name too long' and the video skipped;
    a 230-character one predicted, but a later --start run's .predictions.partial.jsonl was refused."""
    if _name_max(tmp_path) < 255:
        pytest.skip("a file system with shorter names")
    stem = "M" * 246  # clip name 250 bytes: legal
    video = tmp_path / "in" / f"{stem}.mp4"
    video.parent.mkdir()
    make_video(av, video, n=6)  # 12 fps: 0.5 s
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, video) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    (jsonl,) = out.glob("*.predictions.jsonl")
    short = jsonl.name[:-len(".predictions.jsonl")]
    assert short != stem and short.startswith("M" * 100) and "~" in short
    assert sorted(p.name for p in out.iterdir()) == [f"{short}.overlay.mp4", f"{short}.predictions.jsonl"]
    named = [line for line in err.splitlines() if "file names shortened" in line]
    assert len(named) == 1 and f"shortened to {short}.*" in named[0], err
    frames, summary = _lines(jsonl)
    assert len(frames) == 6 and summary["status"] == "complete"
    assert any(f"shortened to {short}.*" in note for note in summary["notes"])
    complete = jsonl.read_bytes()

    # a later look at part of it finds the earlier results (same shortened name) and goes beside them
    assert _predict_quick(checkpoint, out, video, "--start", "0.1") == 0, capsys.readouterr().err
    capsys.readouterr()
    assert jsonl.read_bytes() == complete
    frames, summary = _lines(out / f"{short}.predictions.partial.jsonl")
    # from frame 1 (0.083 s), the one on screen at 0.1 s
    assert [f["frame"] for f in frames] == [1, 2, 3, 4, 5] and summary["status"] == "limited"
    assert (out / f"{short}.overlay.partial.mp4").is_file()
    assert all(len(os.fsencode(p.name)) <= 255 for p in out.iterdir())
    assert not list(out.glob(".*.tmp"))

    # a complete run replaces the earlier pair and takes the partial ones away
    assert _predict_quick(checkpoint, out, video, "--no-overlays") == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{short}.predictions.jsonl"]


def test_fitting_stem_keeps_a_name_that_fits_and_shortens_one_alike_each_time(tmp_path):
    from maskrcnn.io_utils import fitting_stem

    assert fitting_stem(tmp_path, "clip", ".predictions.partial.jsonl") == "clip"
    long_a, long_b = "é" * 120 + "a", "é" * 120 + "b"  # 241 bytes each, alike but for the last character
    a = fitting_stem(tmp_path, long_a, ".predictions.partial.jsonl")
    assert a == fitting_stem(tmp_path, long_a, ".predictions.partial.jsonl")  # a later run finds it again
    assert a != fitting_stem(tmp_path, long_b, ".predictions.partial.jsonl")
    assert len(os.fsencode(a + ".predictions.partial.jsonl")) <= 255 and a.startswith("é" * 50)
    a.encode("utf-8")  # whole characters only


def test_a_variable_frame_rate_names_both_rates_as_what_they_are(av, checkpoint, tmp_path, capsys):
    """The header line said '10 frames at 4.902 fps' (the container's), the note '4.5 fps on average'
    (the frame times'), one after the other, for one video."""
    path = tmp_path / "vfr.mp4"
    make_timed_video(av, path, [0, 100, 140, 440, 500, 520, 900, 1300, 1310, 2000])
    with av.open(str(path)) as c:
        container = float(c.streams.video[0].average_rate)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, path, "--no-overlays") == 0
    err = capsys.readouterr().err
    _, summary = _lines(out / "vfr.predictions.jsonl")
    measured = 9 / 2.0  # 9 intervals over 2 s
    assert summary["fps"] == pytest.approx(measured) and summary["variable_frame_rate"] is True
    assert abs(container - measured) > 0.1  # the case: two different rates for one video
    header = [line for line in err.splitlines() if "10 frames" in line]
    assert len(header) == 1 and header[0].endswith(f"10 frames, container says {container:.4g} fps"), err
    (note,) = [line for line in err.splitlines() if "variable frame rate" in line]
    assert f"container says {container:.4g} fps; frame times average {measured:.4g} fps" in note, note
    assert " fps on average" not in err and " frames at " not in err


def _cut(path, keep: float):
    data = path.read_bytes()
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


def test_a_damaged_video_says_the_frames_read_not_the_first_missing_one(av, tmp_path):
    """'ends at 0.100 s (frame 2)' with frames 0 and 1 kept: the time was frame 1's, the number the first
    missing frame's, and read as the last one kept."""
    from maskrcnn.data.video import VideoReader

    make_timed_video(av, tmp_path / "long.mkv", [40 * i for i in range(40)])  # header: 1.6 s, no count
    make_video(av, tmp_path / "counted.mp4")  # the index counts 12 frames
    make_video(av, tmp_path / "mid.mp4")
    mid = tmp_path / "cut_mid.mp4"  # index first, the second half of the frames' bytes random
    data = bytearray((tmp_path / "mid.mp4").read_bytes())
    data[len(data) // 2:] = np.random.default_rng(1).integers(0, 256, len(data) - len(data) // 2,
                                                              dtype=np.uint8).tobytes()
    mid.write_bytes(bytes(data))
    for cut in (_cut(tmp_path / "long.mkv", 1 / 3), _cut(tmp_path / "counted.mp4", 1 / 2), mid):
        with VideoReader(cut) as reader:
            frames = list(reader.frames())
        n = len(frames)
        assert 2 <= n < 12 and [f.index for f in frames] == list(range(n)), (cut, n)
        problem = reader.problem
        assert problem.startswith(f"{cut}: {n} frames read (0..{n - 1})"), problem
        assert f"the file is damaged after {frames[-1].time:.3f} s" in problem, problem
        assert f"frame {n})" not in problem and "ends at" not in problem, problem


def test_results_kept_under_a_whole_name_that_is_now_shortened_are_the_same_videos(av, checkpoint, tmp_path,
                                                                                    capsys):
    """Reader r4_kpcity: a 232-byte name's complete results, written whole by an earlier version, were not
    found by a later --start run (it wrote its limited results as the main file) and the next complete run
    removed them as another video's. Now they are kept beside a limited run and replaced by a complete one."""
    if _name_max(tmp_path) < 255:
        pytest.skip("a file system with shorter names")
    stem = "W" * 232  # .predictions.jsonl fits, .predictions.partial.jsonl does not
    video = tmp_path / "in" / f"{stem}.mp4"
    video.parent.mkdir()
    make_video(av, video, n=6)
    out = tmp_path / "out"
    assert _predict_quick(checkpoint, out, video, "--no-overlays") == 0, capsys.readouterr().err
    (jsonl,) = out.glob("*.predictions.jsonl")
    legacy = out / f"{stem}.predictions.jsonl"
    jsonl.rename(legacy)  # as the earlier version named it
    complete = legacy.read_bytes()

    assert _predict_quick(checkpoint, out, video, "--no-overlays", "--start", "0.1") == 0
    capsys.readouterr()
    assert legacy.read_bytes() == complete  # kept
    assert not jsonl.exists()  # the limited results went beside it, not as the main file
    partial = jsonl.name.replace(".predictions.jsonl", ".predictions.partial.jsonl")
    _, summary = _lines(out / partial)
    assert summary["status"] == "limited"

    assert _predict_quick(checkpoint, out, video, "--no-overlays") == 0
    assert sorted(p.name for p in out.iterdir()) == [jsonl.name]  # replaced under the shortened name
