"""CVAT for video: the converted images follow the frames' order, frames without shapes included."""

import json

import numpy as np
from PIL import Image

from maskrcnn.cli import main


def test_cvat_video_images_are_in_frame_order(tmp_path, capsys):
    # frame 2 has no shape in view (the car is outside there): it came after frame 3, its image id too
    src, out = tmp_path / "src", tmp_path / "coco.json"
    (src / "images").mkdir(parents=True)
    for f in range(4):
        Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(src / "images" / f"frame_{f:06d}.PNG")
    box = '<box frame="{}" keyframe="1" outside="{}" occluded="0" xtl="2" ytl="2" xbr="10" ybr="8"/>'
    (src / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label></labels>'
        '</task></meta><track id="0" label="car">' + box.format(0, 0) + box.format(1, 0) + box.format(2, 1)
        + box.format(3, 0) + '</track></annotations>')  # fmt: skip
    assert main(["convert-data", "--from", "cvat", str(src), "--output", str(out)]) == 0
    capsys.readouterr()
    images = sorted(json.loads(out.read_text())["images"], key=lambda i: i["id"])
    assert [i["file_name"] for i in images] == [f"images/frame_{f:06d}.PNG" for f in range(4)]
