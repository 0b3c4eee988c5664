"""An image path that exists but is no regular file (a FIFO, /dev/null, a link to /dev/zero): predict
said "PATH: None" for one named on its command line, and show-data said "file ... not found" for a COCO
record naming one. Both now say it is not a regular file, and what it is."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from tiny_model import cat_dog_inputs  # tests/ is on the path

from maskrcnn.cli import main

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="needs FIFOs and /dev/zero")


def test_predict_names_a_fifo_or_a_device_on_its_command_line_as_not_a_regular_file(tmp_path, capsys):
    ckpt, _ = cat_dog_inputs(tmp_path, {})
    os.mkfifo(tmp_path / "fifo.png")
    for path, kind in ((tmp_path / "fifo.png", "a FIFO"), ("/dev/null", "a character device")):
        assert main(["predict", "--weights", str(ckpt), str(path), "--output", str(tmp_path / "out"),
                     "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert f"maskrcnn predict: error: {path}: is not a regular file ({kind})" in err, err
        assert "None" not in err


def test_show_data_reports_a_fifo_or_a_link_to_dev_zero_as_not_a_regular_file(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "ok.png")
    os.mkfifo(images / "fifo.png")
    os.symlink("/dev/zero", images / "zero.png")
    names = ["ok.png", "fifo.png", "zero.png"]
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps({
        "images": [{"id": i, "file_name": n, "width": 32, "height": 32} for i, n in enumerate(names, 1)],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100,
                         "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "iscrowd": 0} for i in (1, 2, 3)],
        "categories": [{"id": 1, "name": "cat"}]}))
    out = tmp_path / "show"
    assert main(["show-data", "--json", str(json_path), "--images", str(images), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"]["missing_image_file"] == 2  # the count's key as before: summaries compare it
    problems = "\n".join(summary["problems"])
    assert "fifo.png is not a regular file (a FIFO)" in problems, problems
    assert "zero.png is not a regular file (a character device)" in problems, problems
    assert "not found" not in problems + captured.out + captured.err


def test_read_image_still_reads_one_image_through_a_pipe(tmp_path):
    # the wording fix must not refuse a pipe that read_image was given by name (a shell's <(cat x.png)):
    # only listings (a folder, a COCO file's records) leave FIFOs out, since reading one there would wait
    import threading

    from maskrcnn.data.images import read_image

    pixels = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.png")
    data = (tmp_path / "a.png").read_bytes()
    writer = threading.Thread(target=lambda: (tmp_path / "pipe.png").write_bytes(data), daemon=True)
    writer.start()
    assert read_image(tmp_path / "pipe.png").equal(read_image(tmp_path / "a.png"))
    writer.join(timeout=10)
