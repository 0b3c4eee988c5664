"""split-data and merge-data keep a rectangle (``"segmentation": []``, as CVAT and Label Studio export
them) box-only: written as its box's polygon, training put mask loss on a filled box and segm AP scored
it as one."""

import json

from PIL import Image

from maskrcnn.cli import main

H, W = 16, 20


def _coco(n_images: int) -> dict:
    images = [{"id": i + 1, "file_name": f"i{i}.png", "height": H, "width": W} for i in range(n_images)]
    anns = []
    for img in images:  # a polygon and a rectangle on each image
        anns.append({"id": 2 * img["id"], "image_id": img["id"], "category_id": 1, "iscrowd": 0,
                     "bbox": [2, 2, 8, 8], "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]], "area": 64})
        anns.append({"id": 2 * img["id"] + 1, "image_id": img["id"], "category_id": 1, "iscrowd": 0,
                     "bbox": [11, 3, 6, 9], "segmentation": [], "area": 54})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}


def _segmentations(path) -> dict:
    return {a["id"]: a["segmentation"] for a in json.loads(path.read_text())["annotations"]}


def test_a_rectangle_stays_box_only_through_split_data_and_merge_data(tmp_path, recwarn):
    src = tmp_path / "all.json"
    src.write_text(json.dumps(_coco(4)))
    out = tmp_path / "splits"
    assert main(["split-data", "--json", str(src), "--output-dir", str(out), "--seed", "0"]) == 0
    written = {**_segmentations(out / "train.json"), **_segmentations(out / "val.json")}
    assert sorted(written) == list(range(2, 10))
    assert all(written[aid] == [] for aid in (3, 5, 7, 9))  # was [[11, 3, 17, 3, 17, 12, 11, 12]]
    assert all(written[aid] == [[2, 2, 10, 2, 10, 10, 2, 10]] for aid in (2, 4, 6, 8))

    images = tmp_path / "imgs"
    images.mkdir()
    for k in range(4):
        Image.new("RGB", (W, H)).save(images / f"i{k}.png")
    merged = tmp_path / "merged.json"
    assert main(["merge-data", f"{out / 'train.json'}:{images}", f"{out / 'val.json'}:{images}",
                 "--output", str(merged)]) == 0
    anns = json.loads(merged.read_text())["annotations"]
    assert len(anns) == 8
    assert sorted(len(a["segmentation"]) for a in anns) == [0] * 4 + [1] * 4
    assert all(a["segmentation"] == [] for a in anns if a["bbox"] == [11, 3, 6, 9])
