"""``maskrcnn predict`` and its output folder: a run that reads no image leaves the earlier run's results
as they were and fails; a re-run into the images folder never predicts its own output; output folder
problems are said before the model loads."""

import json

import numpy as np
import pytest
from PIL import Image
from pixel_limit import small_pixel_limit
from tiny_model import save_cat_dog_checkpoint  # tests/ is on the path

from maskrcnn.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_cat_dog_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _image(path, side=40, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(path)
    return path


def _predict(checkpoint, out, *inputs, flags=()):
    return main(["predict", "--weights", str(checkpoint), *map(str, inputs), "--output", str(out),
                 "--device", "cpu", "--score-thresh", "0", *flags])


def test_a_run_that_reads_no_image_fails_and_leaves_the_earlier_results(checkpoint, tmp_path, capsys,
                                                                       monkeypatch):
    out = tmp_path / "out"
    assert _predict(checkpoint, out, _image(tmp_path / "good.png")) == 0
    before = (out / "predictions.json").read_bytes()
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    capsys.readouterr()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert _predict(checkpoint, out, broken) == 1
    err = capsys.readouterr().err
    assert "none of the 1 input image(s) could be read (1 unreadable_image)" in err
    assert "done:" not in err and "removed" not in err
    assert (out / "predictions.json").read_bytes() == before  # not replaced by an empty list
    assert sorted(p.name for p in (out / "overlays").iterdir()) == overlays
    # one image over the pixel limit alone: the same
    small_pixel_limit(monkeypatch)
    assert _predict(checkpoint, out, _image(tmp_path / "big.png", side=80)) == 1
    err = capsys.readouterr().err
    assert "none of the 1 input image(s) could be read (1 image_too_large)" in err
    assert (out / "predictions.json").read_bytes() == before


def test_a_run_that_reads_some_images_counts_the_skipped_ones_and_succeeds(checkpoint, tmp_path, capsys):
    broken = tmp_path / "in" / "broken.jpg"
    _image(tmp_path / "in" / "good.png")
    broken.write_bytes(b"not a jpeg")
    assert _predict(checkpoint, tmp_path / "out", tmp_path / "in") == 0
    err = capsys.readouterr().err
    assert "done: 1 image(s)" in err and "1 skipped (1 unreadable_image)" in err
    assert len({r["file_name"] for r in json.loads((tmp_path / "out" / "predictions.json").read_text())}) == 1
