"""What a probe of ``maskrcnn serve`` found, one test each: JSON with both "image" and "tasks" (the image
was dropped without a word); a Label Studio label that is a class name the checkpoint repeats (no hint
of what it is called here); the README's list of the answer's fields (no "seconds"); POST /health (200,
where Label Studio and the README use GET)."""

import base64
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from serve_helpers import png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")

from maskrcnn.serve.app import create_app  # noqa: E402

JSON = {"Content-Type": "application/json"}
README = Path(__file__).resolve().parents[2] / "README.md"


class _Repeats:
    """A predictor as ``Predictor`` has its names: ``class_names`` told apart, ``source_class_names`` as
    the checkpoint gives them ('circle' twice, one empty); one fixed detection per image."""

    source_class_names = ["__background__", "circle", "circle", "", "star", "cross"]
    class_names = ["__background__", "circle (id 1)", "circle (id 2)", "(id 3)", "star", "cross"]
    label_to_category_id, batch_size, device = None, 1, "cpu"

    def predict_tensors(self, images):
        det = {"boxes": torch.tensor([[2.0, 2, 20, 20]]), "scores": torch.tensor([0.9]),
               "labels": torch.tensor([4])}
        return [dict(det) for _ in images]


@pytest.fixture
def server(start_server):
    return start_server(create_app(_Repeats(), weights_name="repeats.pth"))


def _config(labels):
    items = "".join(f'<Label value="{v}"/>' for v in labels)
    return (f'<View><Image name="img" value="$image"/><BrushLabels name="seg" toName="img">{items}'
            "</BrushLabels></View>")


def test_image_and_tasks_together_are_a_400(server):
    b64 = base64.b64encode(png_bytes(np.zeros((30, 40, 3), np.uint8))).decode()
    assert server.request("POST", "/predict", body=json.dumps({"image": b64}), headers=JSON)[0] == 200
    for tasks in ([], [{"id": 1, "data": {"image": "data:image/png;base64," + b64}}]):
        for headers in (JSON, {}):  # with its Content-Type, or sniffed as JSON
            status, body = server.request("POST", "/predict", body=json.dumps({"image": b64, "tasks": tasks}),
                                          headers=headers)
            assert status == 400, body
            assert "both 'image' and 'tasks', which exclude each other" in body["detail"]
            assert "'tasks' a Label Studio call" in body["detail"]


def test_a_label_that_the_checkpoint_repeats_is_told_its_names_here(server, caplog):
    said = "'circle' is 'circle (id 1)', 'circle (id 2)' here: the checkpoint repeats it; use those labels"
    with caplog.at_level(logging.WARNING, logger="maskrcnn.serve"):
        setup = {"project": "4.1", "schema": _config(["Circle", "star"])}
        status, body = server.request("POST", "/setup", body=json.dumps(setup), headers=JSON)
        assert status == 200, body
        assert body["unmatched_labels"] == ["Circle"] and body["matched"] == {"star": "star"}
        assert body["renamed"] == {"Circle": ["circle (id 1)", "circle (id 2)"]}
        assert body["hint"] == said.replace("'circle' is", "'Circle' is")
        # /predict's warning for a config that misses classes (no task needed: it is checked first)
        payload = {"tasks": [], "project": "4.1", "label_config": _config(["circle", "star"])}
        assert server.request("POST", "/predict", body=json.dumps(payload), headers=JSON)[0] == 200
    warned = [r.getMessage() for r in caplog.records]
    assert any("project 4.1: classes without a label" in w and said.replace("'circle' is", "'Circle' is") in w
               for w in warned), warned
    assert any("have no label" in w and said in w for w in warned), warned

    # no label in common: the refusal says it too; labels that match nothing renamed get no hint
    status, body = server.request("POST", "/setup", headers=JSON,
                                  body=json.dumps({"project": "4", "schema": _config(["circle", "zebra"])}))
    assert status == 400 and body["detail"].endswith("; " + said), body
    status, body = server.request("POST", "/setup", headers=JSON,
                                  body=json.dumps({"project": "4", "schema": _config(["star", "zebra"])}))
    assert status == 200 and body["renamed"] == {} and body["hint"] == ""


def test_the_readme_lists_every_field_of_the_answer(server):
    status, body = server.post_file("/predict", png_bytes(np.zeros((30, 40, 3), np.uint8)))
    assert status == 200 and body["seconds"] >= 0
    section = README.read_text(encoding="utf-8").split("## ")
    serve = next(s for s in section if "POST /predict" in s and "maskrcnn serve" in s)
    listed = re.search(r"answers\s*`(\{.*?\})`\s*where", serve, re.S).group(1)
    named = set(re.findall(r'"(\w+)"', listed))
    assert named == set(body), (named, sorted(body))
    assert "`seconds` is the\ntime the server spent on the request" in serve


def test_health_is_get_only_as_predict_is_post_only(server):
    assert server.request("GET", "/health")[0] == 200
    assert server.request("POST", "/health", body=b"{}", headers=JSON)[0] == 405
    assert server.request("GET", "/predict")[0] == 405
