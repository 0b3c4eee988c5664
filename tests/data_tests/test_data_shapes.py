"""The synthetic shapes dataset: deterministic, annotations agree with the pixels, loadable."""

import json

import pytest
import torch

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.shapes import SHAPE_CLASSES, generate_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return generate_shapes_dataset(root / "a", num_train=24, num_val=4, image_size=(72, 96), seed=3), root


def test_deterministic_for_a_seed(shapes):
    paths, root = shapes
    again = generate_shapes_dataset(root / "b", num_train=24, num_val=4, image_size=(72, 96), seed=3)
    assert open(paths["train_json"]).read() == open(again["train_json"]).read()
    name = json.load(open(paths["train_json"]))["images"][5]["file_name"]
    assert (
        open(f"{paths['train_images']}/{name}", "rb").read()
        == open(f"{again['train_images']}/{name}", "rb").read()
    )
    other = generate_shapes_dataset(root / "c", num_train=24, num_val=0, image_size=(72, 96), seed=4)
    assert open(paths["train_json"]).read() != open(other["train_json"]).read()


def test_annotations_match_visible_pixels(shapes):
    paths, _ = shapes
    data = json.load(open(paths["train_json"]))
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    kinds = {type(a["segmentation"]).__name__ for a in data["annotations"]}
    assert kinds == {"list", "dict"}  # polygons and RLE both present
    ds = CocoDataset(json_path=paths["train_json"], image_dir=paths["train_images"])
    assert ds.skipped == {} and len(ds) == 24
    anns = {a["id"]: a for a in data["annotations"]}
    n_instances = 0
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (3, 72, 96)
        for box, mask in zip(t["boxes"], t["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert [
                xs.min().item(),
                ys.min().item(),
                xs.max().item() + 1,
                ys.max().item() + 1,
            ] == box.tolist()
            n_instances += 1
    assert n_instances == len(anns) and n_instances >= 24
    areas = [a["area"] for a in data["annotations"]]
    assert min(areas) >= 40


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        generate_shapes_dataset("unused", image_size=(10, 10))
