"""convert-data --from cityscapes: instanceIds preferred, polygons drawn as the official scripts draw
them (z-order, deleted objects, groups as crowd, clipping), exact masks, file_names relative to ROOT."""

import json

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

H, W = 30, 40


def _convert(src, out, *options):
    return main(["convert-data", "--from", "cityscapes", str(src), "--output", str(out), *options])


def _image(root, split, city, stem):
    path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(path)
    return root / "gtFine" / split / city / stem


def _polygons(prefix, objects):
    prefix.parent.mkdir(parents=True, exist_ok=True)
    path = prefix.with_name(prefix.name + "_gtFine_polygons.json")
    path.write_text(json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}))


def _instance_ids(prefix, ids):
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint16)).save(prefix.with_name(prefix.name + "_gtFine_instanceIds.png"))


def _rect(x1, y1, x2, y2):
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def _box(x1, y1, x2, y2):
    """An (H, W) mask of the pixels PIL fills for the integer rectangle: both ends inclusive."""
    m = np.zeros((H, W), bool)
    m[y1 : y2 + 1, x1 : x2 + 1] = True
    return m


def _tree(root):
    # 1. polygons only: z-order, a group, a deleted object, an object cut by the border, bad objects.
    _polygons(_image(root, "train", "aachen", "aachen_000000_000019"), [
        {"label": "road", "polygon": _rect(0, 0, 39, 29)},
        {"label": "car", "polygon": _rect(2, 3, 8, 7)},
        {"label": "person", "polygon": _rect(10, 10, 20, 20)},
        {"label": "car", "polygon": _rect(30, 10, 35, 14), "deleted": 1},
        {"label": "car", "polygon": _rect(15, 12, 25, 18)},  # drawn later: hides part of the person
        {"label": "cargroup", "polygon": _rect(30, 2, 36, 6)},
        {"label": "bicycle", "polygon": _rect(35, 20, 50, 28)},  # reaches past the right border
        {"label": "spaceship", "polygon": _rect(0, 25, 3, 28)},
        {"label": "car", "polygon": [[1, 1], [5, 5]]},
        {"label": "license plate", "polygon": _rect(3, 4, 5, 5)},  # label id -1: never drawn
    ])  # fmt: skip
    # 2. instanceIds only.
    ids = np.full((H, W), 7)
    ids[2:6, 3:9] = 26000  # car
    ids[10:20, 5:15] = 24001  # person
    ids[0:5, 30:40] = 24  # persongroup: crowd
    ids[25:30, 0:10] = 29000  # caravan: has instances but is not evaluated
    ids[20:24, 20:30] = 17  # pole: no instances
    _instance_ids(_image(root, "train", "aachen", "aachen_000001_000019"), ids)
    # 3. both: the instanceIds PNG wins.
    prefix = _image(root, "train", "bochum", "bochum_000000_000001")
    _polygons(prefix, [{"label": "car", "polygon": _rect(0, 0, 9, 9)}])
    truck = np.zeros((H, W))
    truck[5:9, 20:31] = 27003
    _instance_ids(prefix, truck)
    # ground truth whose image is missing (a city not downloaded): counted
    _polygons(root / "gtFine" / "train" / "zurich" / "zurich_000000_000019", [])
    # 4. no ground truth; 5. another split.
    _image(root, "train", "bochum", "bochum_000000_000002")
    _instance_ids(_image(root, "val", "frankfurt", "frankfurt_000000_000001"), np.full((H, W), 26000))


def _masks(coco, image_id):
    return [
        (a["category_id"], a["iscrowd"], a["bbox"], a["area"], mask_utils.decode(a["segmentation"]) > 0)
        for a in coco["annotations"]
        if a["image_id"] == image_id
    ]


def test_cityscapes_instances_crowd_occlusion_and_sources(tmp_path, capsys):
    root = tmp_path / "cityscapes"
    _tree(root)
    out = tmp_path / "out" / "train.json"
    assert _convert(root, out) == 0
    captured = capsys.readouterr()
    coco = json.loads(out.read_text())

    assert coco["categories"] == [{"id": i, "name": n} for i, n in (
        (24, "person"), (25, "rider"), (26, "car"), (27, "truck"), (28, "bus"), (31, "train"),
        (32, "motorcycle"), (33, "bicycle"))]  # fmt: skip
    assert [(i["id"], i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        (1, "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", H, W),
        (2, "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png", H, W),
        (3, "leftImg8bit/train/bochum/bochum_000000_000001_leftImg8bit.png", H, W),
    ]

    # Image 1, from the polygons: ids in increasing order (crowd 26 first), the person minus the car
    # drawn over it, the bicycle clipped at x = 39.
    person = _box(10, 10, 20, 20) & ~_box(15, 12, 25, 18)
    bicycle = _box(35, 20, 39, 28)
    expected = [
        (26, 1, [30.0, 2.0, 7.0, 5.0], 35, _box(30, 2, 36, 6)),
        (24, 0, [10.0, 10.0, 11.0, 11.0], 121 - 42, person),
        (26, 0, [2.0, 3.0, 7.0, 5.0], 35, _box(2, 3, 8, 7)),
        (26, 0, [15.0, 12.0, 11.0, 7.0], 77, _box(15, 12, 25, 18)),
        (33, 0, [35.0, 20.0, 5.0, 9.0], 45, bicycle),
    ]
    got = _masks(coco, 1)
    assert [g[:4] for g in got] == [e[:4] for e in expected]
    for g, e in zip(got, expected):
        assert (g[4] == e[4]).all()

    # Image 2, from the instanceIds PNG: the caravan and the pole are not instances of the 8 classes.
    got = _masks(coco, 2)
    assert [g[:4] for g in got] == [
        (24, 1, [30.0, 0.0, 10.0, 5.0], 50),
        (24, 0, [5.0, 10.0, 10.0, 10.0], 100),
        (26, 0, [3.0, 2.0, 6.0, 4.0], 24),
    ]
    # Image 3: the PNG, not the polygons.
    assert [g[:4] for g in _masks(coco, 3)] == [(27, 0, [20.0, 5.0, 11.0, 4.0], 44)]

    # Bad records named by file and object index, counted; the image without ground truth skipped.
    err = captured.err
    assert (
        "gtFine/train/aachen/aachen_000000_000019_gtFine_polygons.json: objects[7] (label 'spaceship')" in err
    )
    assert "objects[8] (label 'car'): polygon has 2 point(s)" in err
    assert "leftImg8bit/train/bochum/bochum_000000_000002_leftImg8bit.png: neither" in err
    assert "skipped 3 record(s): 1 few_points, 1 missing_annotation, 1 unknown_label" in err
    assert "1 deleted objects left out" in err
    assert "2 images with masks from instanceIds, 1 images with masks from polygons" in err
    assert ("1 gtFine annotations (polygons or instanceIds) without their leftImg8bit image, left out "
            "(e.g. zurich/zurich_000000_000019)") in err
    assert f"--train-images {root}" in captured.out

    # Training reads the file with nothing skipped: every file_name resolves under ROOT.
    dataset = CocoDataset(json_path=out, image_dir=root)
    assert dataset.skipped == {} and len(dataset) == 3
    _, target = dataset[0]
    assert target["iscrowd"].tolist() == [True, False, False, False, False]
    assert (target["masks"][1].numpy().astype(bool) == person).all()


def test_cityscapes_split_and_option_errors(tmp_path, capsys):
    root = tmp_path / "cs"
    _tree(root)
    out = tmp_path / "val.json"
    assert _convert(root, out, "--split", "val") == 0
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == [
        "leftImg8bit/val/frankfurt/frankfurt_000000_000001_leftImg8bit.png"
    ]
    assert [(a["category_id"], a["area"]) for a in coco["annotations"]] == [(26, H * W)]

    assert _convert(root, out, "--split", "test") == 1
    assert "leftImg8bit/test: no such folder" in capsys.readouterr().err
    assert _convert(root, out, "--classes", "car") == 1
    assert "--classes applies to --from labelme / via" in capsys.readouterr().err


def test_split_without_cityscapes_images_and_colour_instance_ids_are_named(tmp_path, capsys):
    """A split of JPEGs (a re-encoded copy) or of empty city folders ended on 'no image could be
    converted (see the problems above)' with no problem above; an RGB instanceIds PNG was 'is 40x30, the
    image 40x30'."""
    root = tmp_path / "cs"
    (root / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    assert _convert(root, tmp_path / "a.json") == 1
    assert "leftImg8bit/train: no <city>/*_leftImg8bit.png image" in capsys.readouterr().err
    Image.new("RGB", (W, H)).save(root / "leftImg8bit/train/aachen/a_000000_000019_leftImg8bit.jpg")
    assert _convert(root, tmp_path / "a.json") == 1
    assert "found 1 other files, e.g. a_000000_000019_leftImg8bit.jpg" in capsys.readouterr().err

    prefix = _image(root, "train", "aachen", "aachen_000000_000019")
    prefix.parent.mkdir(parents=True)
    Image.new("RGB", (W, H)).save(prefix.with_name(prefix.name + "_gtFine_instanceIds.png"))
    assert _convert(root, tmp_path / "a.json") == 1
    assert "aachen_000000_000019_gtFine_instanceIds.png has 3 channels" in capsys.readouterr().err


def test_resized_image_gets_its_ids_resized_and_another_shape_is_skipped_by_name(tmp_path, capsys):
    """leftImg8bit resized to half (a common speed-up): the full-size polygons were drawn unscaled on the
    small canvas, misplaced, and an object beyond it lost without a word; then such images were skipped.
    Now, the rule of every converter: a resized copy (the same shape) gets the ids drawn at full size
    resized to it (a full-size instanceIds PNG too), said once; an image of another shape is skipped by
    name (image_size_mismatch)."""
    root = tmp_path / "cs"
    objects = [{"label": "car", "polygon": _rect(2, 4, 9, 7)},
               {"label": "car", "polygon": _rect(24, 4, 35, 9)}]
    full = np.zeros((H, W), np.int64)
    for k, (x1, y1, x2, y2) in enumerate(((2, 4, 9, 7), (24, 4, 35, 9))):
        full[_box(x1, y1, x2, y2)] = 26000 + k
    half = full[1::2, 1::2]  # the id under each centre of the half-size image's pixels
    for city, size, source in (("lindau", (W // 2, H // 2), "polygons"), ("ulm", (W // 2, H // 2), "ids"),
                               ("bonn", (W // 2, H // 3), "polygons")):
        prefix = _image(root, "val", city, f"{city}_000000_000019")
        if source == "polygons":
            _polygons(prefix, objects)
        else:
            _instance_ids(prefix, full)
        small = root / "leftImg8bit" / "val" / city / f"{city}_000000_000019_leftImg8bit.png"
        Image.open(small).resize(size).save(small)
    out = tmp_path / "val.json"
    assert _convert(root, out, "--split", "val") == 0
    err = capsys.readouterr().err
    assert ("bonn_000000_000019_leftImg8bit.png: drawn on a 40x30 image (the width x height the file gives), "
            "the image file is 20x10, of another shape") in err
    assert "the size it gives, 40x30 (WxH), is not the image file's 20x15 but has its shape" in err
    assert "2 images resized since they were annotated" in err
    assert "skipped 1 record(s): 1 image_size_mismatch" in err
    coco = json.loads(out.read_text())
    names = {i["id"]: i["file_name"].split("/")[2] for i in coco["images"]}
    assert sorted(names.values()) == ["lindau", "ulm"]
    for city in ("lindau", "ulm"):
        masks = [mask_utils.decode(a["segmentation"]) > 0 for a in coco["annotations"]
                 if names[a["image_id"]] == city]
        assert [m.shape for m in masks] == [(H // 2, W // 2)] * 2
        assert all((m == (half == 26000 + k)).all() for k, m in enumerate(masks)), city


def test_an_8_bit_instance_ids_png_is_not_read_as_all_crowd(tmp_path, capsys):
    """A _labelIds.png copied under the instanceIds name (or ids saved through convert("L")) holds no id
    >= 1000: every object became a crowd region, 0 instances, the polygons beside it ignored."""
    root = tmp_path / "cs"
    labels = np.full((H, W), 7, np.uint8)
    labels[3:8, 2:9] = 26  # a car, as a labelIds PNG holds it
    prefix = _image(root, "val", "lindau", "lindau_000000_000019")
    _polygons(prefix, [{"label": "car", "polygon": _rect(2, 3, 8, 7)}])
    Image.fromarray(labels).save(prefix.with_name(prefix.name + "_gtFine_instanceIds.png"))
    lone = _image(root, "val", "ulm", "ulm_000000_000019")  # no polygons to fall back to
    lone.parent.mkdir(parents=True)
    Image.fromarray(labels).save(lone.with_name(lone.name + "_gtFine_instanceIds.png"))
    out = tmp_path / "val.json"
    assert _convert(root, out, "--split", "val") == 0
    err = capsys.readouterr().err
    assert ("lindau_000000_000019_gtFine_instanceIds.png: warning: "
            "lindau_000000_000019_gtFine_instanceIds.png "
            "is an 8-bit PNG (mode L), which cannot hold instance ids") in err
    assert "drawing the polygons instead" in err
    assert ("ulm_000000_000019_leftImg8bit.png: ulm_000000_000019_gtFine_instanceIds.png is an 8-bit "
            "PNG") in err
    assert "skipped 1 record(s): 1 bad_instance_ids" in err
    coco = json.loads(out.read_text())
    assert [(a["category_id"], a["iscrowd"], a["area"]) for a in coco["annotations"]] == [(26, 0, 35)]


def test_missing_or_misnamed_gtfine_split_is_one_line(tmp_path, capsys):
    """No gtFine/<split>: one 'neither ... nor ...' line per image (2975 for train), then 'no image could
    be converted'."""
    root = tmp_path / "cs"
    for k in range(3):
        _image(root, "val", "lindau", f"lindau_000000_00001{k}")
    assert _convert(root, tmp_path / "val.json", "--split", "val") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gtFine/val: no such folder; Cityscapes' layout is" in err[0]
    (root / "gtFine" / "val" / "lindau").mkdir(parents=True)
    (root / "gtFine" / "val" / "lindau" / "lindau_000000_000010_gtfine_polygons.json").write_text("{}")
    assert _convert(root, tmp_path / "val.json", "--split", "val") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "gtFine/val: no <city>/*_gtFine_instanceIds.png nor *_gtFine_polygons.json" in err[0]
    assert "e.g. lindau_000000_000010_gtfine_polygons.json" in err[0]


def test_a_pixel_off_instance_ids_png_says_it_is_resampled(tmp_path, capsys):
    """An instanceIds PNG a pixel larger than its image is resampled to it (nearest), but the warning said
    "the shapes are used as drawn". Now it says what is done."""
    root = tmp_path / "cs"
    prefix = _image(root, "val", "ulm", "ulm_000000_000019")
    ids = np.zeros((H + 1, W + 1), np.int64)
    ids[4:9, 2:10] = 26000
    _instance_ids(prefix, ids)
    assert _convert(root, tmp_path / "val.json", "--split", "val") == 0
    err = capsys.readouterr().err
    assert ("is a pixel off the image file's 40x30: the instance ids are resampled to the image file's "
            "size") in err
    assert "used as drawn" not in err


def test_ground_truth_without_its_image_is_noted_when_only_instance_ids_exist(tmp_path, capsys):
    """Orphans were counted from *_gtFine_polygons.json only: a gtFine of instanceIds PNGs only said
    nothing of one without its leftImg8bit image."""
    root = tmp_path / "cs"
    ids = np.zeros((H, W), np.int64)
    ids[4:9, 2:10] = 26000
    _instance_ids(_image(root, "train", "aachen", "aachen_000000_000019"), ids)
    _instance_ids(root / "gtFine" / "train" / "aachen" / "aachen_000004_000019", ids)  # no image
    assert _convert(root, tmp_path / "train.json") == 0
    err = capsys.readouterr().err
    assert ("1 gtFine annotations (polygons or instanceIds) without their leftImg8bit image, left out "
            "(e.g. aachen/aachen_000004_000019)") in err, err


def test_zips_unpacked_apart_and_gtcoarse_alone_are_named(tmp_path, capsys):
    """Each zip unpacked into its own folder (leftImg8bit_trainvaltest/leftImg8bit, gtFine_trainvaltest/
    gtFine), or only gtCoarse downloaded: 'no such folder ... (splits in ...: none)' without a word of
    what was found."""
    root = tmp_path / "cs"
    _image(root / "leftImg8bit_trainvaltest", "val", "ulm", "ulm_000000_000019")
    _polygons(root / "gtFine_trainvaltest" / "gtFine" / "val" / "ulm" / "ulm_000000_000019",
              [{"label": "car", "polygon": _rect(2, 3, 8, 7)}])
    assert _convert(root, tmp_path / "val.json", "--split", "val") == 1
    err = capsys.readouterr().err
    assert (f"leftImg8bit is at {root / 'leftImg8bit_trainvaltest' / 'leftImg8bit'}, in a folder of its own "
            "(a zip unpacked into one): move gtFine and leftImg8bit side by side") in err, err
    assert _convert(root / "leftImg8bit_trainvaltest", tmp_path / "val.json", "--split", "val") == 1
    err = capsys.readouterr().err
    assert f"gtFine is at {root / 'gtFine_trainvaltest' / 'gtFine'}, in a folder of its own" in err, err

    coarse = tmp_path / "coarse"
    _image(coarse, "val", "ulm", "ulm_000000_000019")
    (coarse / "gtCoarse" / "val" / "ulm").mkdir(parents=True)
    assert _convert(coarse, tmp_path / "val.json", "--split", "val") == 1
    err = capsys.readouterr().err
    assert f"{coarse} holds gtCoarse, the coarse annotations, which are not read" in err, err


def test_gtcoarse_is_not_blamed_when_gtfine_lacks_only_the_split(tmp_path, capsys):
    """gtFine there with train only, gtCoarse beside it: the split is what is missing, not gtFine."""
    root = tmp_path / "cs"
    car = [{"label": "car", "polygon": _rect(2, 3, 8, 7)}]
    _polygons(_image(root, "train", "ulm", "ulm_000000_000019"), car)
    (root / "gtCoarse" / "val" / "ulm").mkdir(parents=True)
    _image(root, "val", "ulm", "ulm_000001_000019")
    assert _convert(root, tmp_path / "val.json", "--split", "val") == 1
    err = capsys.readouterr().err
    assert "(splits in gtFine: ['train'])" in err and "gtCoarse" not in err, err


def test_the_test_split_says_it_has_no_public_labels(tmp_path, capsys):
    """Cityscapes' test gtFine holds placeholder regions only: the conversion ended on 'the annotations hold
    no object', not saying that the split is published without labels."""
    root = tmp_path / "cs"
    _polygons(_image(root, "test", "berlin", "berlin_000000_000019"),
              [{"label": "ego vehicle", "polygon": _rect(0, 20, 39, 29)}])
    assert _convert(root, tmp_path / "test.json", "--split", "test") == 1
    err = capsys.readouterr().err
    assert "1 image(s) but no instance: Cityscapes' test split has no public labels" in err, err
    assert not (tmp_path / "test.json").exists()
    (root / "gtFine" / "test" / "berlin" / "berlin_000000_000019_gtFine_polygons.json").unlink()
    (root / "gtFine" / "test" / "berlin").rmdir()
    (root / "gtFine" / "test").rmdir()
    assert _convert(root, tmp_path / "test.json", "--split", "test") == 1
    err = capsys.readouterr().err
    assert "gtFine/test: no such folder" in err and "test split has no public labels" in err, err


def _scene_ids():
    """Full-size instance ids as the official drawing makes them: road, two cars, a person, a cargroup."""
    ids = np.full((H, W), 7, np.int64)
    ids[2:12, 3:15] = 26000
    ids[4:10, 15:24] = 26001  # touches the first car: a car-car boundary as well
    ids[15:28, 20:35] = 24000
    ids[18:26, 2:10] = 26  # cargroup: a crowd region
    return ids


def test_instance_ids_resized_with_interpolation_are_refused_not_read_as_phantom_instances(tmp_path, capsys):
    """A 16-bit instanceIds PNG resized with Pillow's default (bicubic) holds blended ids at every
    boundary (106, 13000, ...), each of which was read as one more instance, silently. Now such a PNG is
    refused by name: the polygons are drawn instead when present, else the image is skipped. A real file
    (and the same one resized with NEAREST) converts as before."""
    root = tmp_path / "cs"
    ids = _scene_ids()
    objects = [{"label": "road", "polygon": _rect(0, 0, W - 1, H - 1)},
               {"label": "car", "polygon": _rect(3, 2, 14, 11)},
               {"label": "car", "polygon": _rect(15, 4, 23, 9)},
               {"label": "person", "polygon": _rect(20, 15, 34, 27)},
               {"label": "cargroup", "polygon": _rect(2, 18, 9, 25)}]
    half = (W // 2, H // 2)
    for city, resample, polygons in (("aachen", None, False), ("bonn", Image.NEAREST, False),
                                     ("lindau", Image.BICUBIC, True), ("ulm", Image.BICUBIC, False)):
        prefix = _image(root, "val", city, f"{city}_000000_000019")
        _instance_ids(prefix, ids)
        if polygons:
            _polygons(prefix, objects)
        if resample is not None:
            png = prefix.with_name(prefix.name + "_gtFine_instanceIds.png")
            Image.open(png).resize(half, resample).save(png)
            small = root / "leftImg8bit" / "val" / city / f"{city}_000000_000019_leftImg8bit.png"
            Image.open(small).resize(half).save(small)
    resized = np.asarray(Image.open(root / "gtFine/val/ulm/ulm_000000_000019_gtFine_instanceIds.png"))
    assert len(np.unique(resized)) > 10  # the blends this test is about are there
    out = tmp_path / "val.json"
    assert _convert(root, out, "--split", "val") == 0
    err = capsys.readouterr().err
    assert "ulm_000000_000019_leftImg8bit.png: ulm_000000_000019_gtFine_instanceIds.png holds" in err
    assert "resized with interpolation? resize id images with NEAREST" in err
    assert "lindau_000000_000019_gtFine_instanceIds.png: warning:" in err
    assert "drawing the polygons instead" in err
    assert "1 implausible_instance_ids" in err
    coco = json.loads(out.read_text())
    names = {i["id"]: i["file_name"].split("/")[2] for i in coco["images"]}
    assert sorted(names.values()) == ["aachen", "bonn", "lindau"]
    for city in ("aachen", "bonn", "lindau"):
        found = sorted((a["category_id"], a["iscrowd"]) for a in coco["annotations"]
                       if names[a["image_id"]] == city)
        assert found == [(24, 0), (26, 0), (26, 0), (26, 1)], city
    # the real file: each mask is exactly its id's pixels
    aachen = next(k for k, v in names.items() if v == "aachen")
    for a in coco["annotations"]:
        if a["image_id"] == aachen and not a["iscrowd"]:
            mask = mask_utils.decode(a["segmentation"]) > 0
            assert len(np.unique(ids[mask])) == 1 and mask.sum() == (ids == ids[mask][0]).sum()


def test_an_image_in_another_city_folder_is_skipped_saying_where_its_gtfine_is(tmp_path, capsys):
    """An image under leftImg8bit/val/frankfurt whose gtFine is in gtFine/val/lindau was skipped ('neither
    ... in gtFine/val/frankfurt') with an unconnected orphan note; the skip now says where it was found."""
    root = tmp_path / "cs"
    _image(root, "val", "frankfurt", "lindau_000003_000019")
    _instance_ids(root / "gtFine" / "val" / "lindau" / "lindau_000003_000019", _scene_ids())
    _instance_ids(_image(root, "val", "ulm", "ulm_000000_000019"), _scene_ids())
    assert _convert(root, tmp_path / "val.json", "--split", "val") == 0
    err = capsys.readouterr().err
    assert ("lindau_000003_000019_leftImg8bit.png: neither lindau_000003_000019_gtFine_instanceIds.png nor "
            "lindau_000003_000019_gtFine_polygons.json in ") in err
    assert "; found in gtFine/val/lindau/ (the image's city folder is frankfurt)" in err
