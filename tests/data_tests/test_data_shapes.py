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


def test_small_objects_option(tmp_path):
    small = generate_shapes_dataset(tmp_path / "s", num_train=8, num_val=0, image_size=(128, 128),
                                    max_objects=10, radius_range=(0.04, 0.07), min_area=20, seed=1)
    default = generate_shapes_dataset(tmp_path / "d", num_train=8, num_val=0, image_size=(128, 128), seed=1)
    small_areas = [a["area"] for a in json.load(open(small["train_json"]))["annotations"]]
    default_areas = [a["area"] for a in json.load(open(default["train_json"]))["annotations"]]
    # a shape never covers more than its circumscribed disc: pi * (0.07 * 128) ** 2 ~ 252 pixels
    assert len(small_areas) > 3 * 8 and 20 <= min(small_areas) and max(small_areas) <= 252
    assert min(default_areas) > max(small_areas)
    with pytest.raises(ValueError, match="radius_range"):
        generate_shapes_dataset(tmp_path / "e", radius_range=(0.2, 0.1))
