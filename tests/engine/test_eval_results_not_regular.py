"""``eval --results`` naming something that exists but is no regular file (``/dev/null``, a FIFO) says so,
not "no such results file" (``commands/eval.py``)."""

import json
import os

import pytest

from maskrcnn.cli import main


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_results_that_are_not_a_regular_file_are_named_so(tmp_path, capsys):
    gt = tmp_path / "val.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
                              "categories": [{"id": 1, "name": "a"}],
                              "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4],
                                               "area": 16, "iscrowd": 0}]}))
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    for given in (str(fifo), os.devnull):
        assert main(["eval", "--results", given, "--json", str(gt)]) == 1
        err = capsys.readouterr().err
        assert err == (f"maskrcnn eval: error: --results {given}: not a regular file (a results JSON file is "
                       "expected)\n"), err
