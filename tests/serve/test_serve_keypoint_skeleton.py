"""serve's page draws the model's own skeleton: ``/health`` names the keypoint set and its limbs (the
dataset's skeleton, COCO's for COCO's 17 keypoints, none for another set without one, as the PNG
overlays choose), and page.js joins the points with those limbs for any point count (it drew COCO's
limbs for every 17-point model and none for any other). The page's drawing runs in Node with a stub
canvas (skipped without Node)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from maskrcnn.config import load_config
from maskrcnn.data.keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")

from maskrcnn.serve.app import _keypoint_summary  # noqa: E402

PAGE = Path(__file__).resolve().parents[2] / "maskrcnn" / "serve" / "static" / "page.js"
AP10K = ["left_eye", "right_eye", "nose", "neck", "root_of_tail", "left_shoulder", "left_elbow",
         "left_front_paw", "right_shoulder", "right_elbow", "right_front_paw", "left_hip", "left_knee",
         "left_back_paw", "right_hip", "right_knee", "right_back_paw"]


def _cfg(names, skeleton=()):
    return load_config("demo_keypoints", {"model.roi_heads.num_keypoints": len(names),
                                          "data.keypoint_names": tuple(names),
                                          "data.keypoint_skeleton": tuple(skeleton)})


def test_health_names_the_keypoint_set_and_its_limbs():
    critter = ["nose", "left_ear", "right_ear", "tail_base", "tail_tip"]
    assert _keypoint_summary(_cfg(critter, [[1, 2], [1, 3], [1, 4], [4, 5]])) == {
        "names": critter, "skeleton": [[0, 1], [0, 2], [0, 3], [3, 4]]}
    assert _keypoint_summary(_cfg(AP10K))["skeleton"] == []
    assert _keypoint_summary(_cfg(COCO_KEYPOINT_NAMES))["skeleton"] == [list(e) for e in COCO_SKELETON]
    assert _keypoint_summary(load_config("r50_fpn")) is None


# page.js under Node: a stub document and canvas recording the lines drawn; `health` is GET health's answer
RUNNER = r"""
const fs = require("fs");
const [page, health, kps] = [process.argv[1], JSON.parse(process.argv[2]), JSON.parse(process.argv[3])];
const lines = [];
let at = null;
const ctx = new Proxy({}, {
  get: (t, k) => k in t ? t[k] : (k === "moveTo" ? (x, y) => { at = [x, y]; }
    : k === "lineTo" ? (x, y) => lines.push([at, [x, y]]) : () => ({ data: [] })),
  set: (t, k, v) => { t[k] = v; return true; } });
const el = () => ({ addEventListener() {}, getContext: () => ctx, dataset: {}, children: [], style: {},
  classList: { add() {}, remove() {}, toggle() {} }, value: "0.5" });
global.document = { getElementById: el, body: { dataset: {} }, createElement: el };
global.window = { addEventListener() {} };
let answered;
global.fetch = () => ({
  then: (f) => ({ then: (g) => { answered = () => g(health); return { catch() {} }; } }) });
eval(fs.readFileSync(page, "utf8") + "\n;global.draw = drawKeypoints;");
answered();
draw(kps, 1, "rgb(1,2,3)", 2);
console.log(JSON.stringify(lines));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="the page's drawing test runs page.js in Node")
@pytest.mark.parametrize("names,skeleton", [(["nose", "left_ear", "right_ear", "tail_base", "tail_tip"],
                                             [[1, 2], [1, 3], [1, 4], [4, 5]]), (AP10K, [])],
                         ids=["custom5", "ap10k17"])
def test_page_joins_the_points_with_the_models_skeleton(names, skeleton):
    summary = _keypoint_summary(_cfg(names, skeleton))
    kps = [v for k in range(len(names)) for v in (10.0 * k, 5.0 * k + 1, 1)]
    health = json.dumps({"categories": {}, "keypoints": summary})
    out = subprocess.run(["node", "-e", RUNNER, str(PAGE), health, json.dumps(kps)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    drawn = json.loads(out.stdout.strip().splitlines()[-1])
    want = [[[kps[3 * a], kps[3 * a + 1]], [kps[3 * b], kps[3 * b + 1]]] for a, b in summary["skeleton"]]
    assert drawn == want  # the model's limbs: the five-point set's four; none for AP-10K's (not COCO's)
