"""COCO files as real exporters write them (CocoDataset, show-data, split-data, merge-data): repeated
annotation ids, labelme2coco's _background_ category, EXIF-rotated photos sized as stored, images whose
size disagrees with the JSON, coco_url without file_name, ids written as strings of digits."""

import json
import logging
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.validated import read_validated

H, W = 20, 30


def _rect(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def _ann(aid, iid, cid, x1, y1, x2, y2):
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "segmentation": _rect(x1, y1, x2, y2), "iscrowd": 0}


def _write(tmp_path, data, names=("a.png", "b.png"), size=(H, W)):
    folder = tmp_path / "img"
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(folder / name)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, folder


def _images(n=2):
    return [{"id": i + 1, "file_name": "ab"[i] + ".png", "height": H, "width": W} for i in range(n)]


CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def _quiet_dataset(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CocoDataset(**kwargs)


def test_repeated_annotation_ids_keep_every_object_and_an_exact_copy_is_skipped(tmp_path, caplog):
    anns = [_ann(1, 1, 1, 2, 2, 8, 8), _ann(1, 2, 2, 4, 4, 9, 9), _ann(1, 1, 2, 10, 3, 20, 9),
            _ann(5, 2, 1, 1, 1, 6, 6),
            _ann(5, 2, 1, 1, 1, 6, 6)]  # the same id, image, category and geometry: a real duplicate
    path, folder = _write(tmp_path, {"images": _images(), "annotations": anns, "categories": CATS})
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        ds = _quiet_dataset(json_path=path, image_dir=folder)
    assert ds.skipped == {"duplicate_annotation": 1}
    assert "annotation id 5 (image id 2) is an exact copy of annotation id 5" in ds.problems[0]
    kept = ds.to_coco_dict()["annotations"]
    # every object kept; the repeats renumbered above the largest id (5), in file order
    assert [(a["id"], a["image_id"], a["bbox"]) for a in kept] == [
        (1, 1, [2, 2, 6, 6]), (7, 1, [10, 3, 10, 6]), (6, 2, [4, 4, 5, 5]), (5, 2, [1, 1, 5, 5])]
    notes = [n for n in ds.notes if "repeat an id" in n]
    assert len(notes) == 1 and "2 annotations repeat an id used before (ids 1): kept, with new ids from 6" \
        in notes[0]
    _, target = ds[0]
    assert target["labels"].tolist() == [1, 2] and target["masks"].shape == (2, H, W)


def test_split_and_merge_write_every_object_of_a_file_with_repeated_ids(tmp_path, capsys):
    anns = [_ann(1, 1, 1, 2, 2, 8, 8), _ann(1, 2, 2, 4, 4, 9, 9), _ann(1, 2, 1, 10, 3, 20, 9)]
    path, folder = _write(tmp_path, {"images": _images(), "annotations": anns, "categories": CATS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["split-data", "--json", str(path), "--output-dir", str(tmp_path / "sp"),
                     "--fractions", "0.5,0.5", "--names", "p,q"]) == 0
        written = [json.loads((tmp_path / "sp" / f"{n}.json").read_text())["annotations"] for n in "pq"]
        ids = [a["id"] for part in written for a in part]
        assert sorted(ids) == [1, 2, 3]  # every object, ids unique
        out = tmp_path / "merged.json"
        assert main(["merge-data", f"{path}:{folder}", "--output", str(out)]) == 0
    assert len(json.loads(out.read_text())["annotations"]) == 3


@pytest.mark.parametrize("name", ["_background_", "Background", "__background__"])
def test_a_background_category_without_annotations_is_no_class(tmp_path, name):
    cats = [{"id": 0, "name": name}, *CATS]  # labelme2coco writes _background_ with id 0
    path, folder = _write(tmp_path, {"images": _images(), "annotations": [_ann(1, 1, 1, 2, 2, 8, 8)],
                                     "categories": cats})
    ds = _quiet_dataset(json_path=path, image_dir=folder)
    assert ds.class_names == ["__background__", "cat", "dog"] and ds.num_classes == 3
    assert any(f"category {name!r} (id 0) has no annotation and is named as the background" in n
               for n in ds.notes)
    assert read_validated(path, folder).categories == CATS  # split-data / merge-data write no such class


def test_a_background_category_with_annotations_stays_a_class_with_a_warning(tmp_path):
    cats = [{"id": 0, "name": "background"}, *CATS]
    path, folder = _write(tmp_path, {"images": _images(), "annotations": [_ann(1, 1, 0, 2, 2, 8, 8)],
                                     "categories": cats})
    with pytest.warns(UserWarning, match="'background' .id 0. is named as the background but has annot"):
        ds = CocoDataset(json_path=path, image_dir=folder)
    assert ds.class_names == ["__background__", "background", "cat", "dog"]


def _exif_photo(folder, name, stored_hw):
    """A JPEG stored as ``stored_hw`` pixels with EXIF orientation 6 (shown turned by a quarter); its
    left column is white, so where that column lands tells stored pixels from turned ones."""
    folder.mkdir(exist_ok=True)
    pixels = np.zeros((*stored_hw, 3), np.uint8)
    pixels[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(folder / name, exif=exif.tobytes(), quality=95)


@pytest.mark.parametrize("json_size", ["stored", "shown"])
def test_an_exif_rotated_photo_is_read_as_the_json_sizes_it(tmp_path, json_size, caplog):
    stored = (20, 30)  # H, W as stored; shown 30 x 20
    _exif_photo(tmp_path / "img", "p.jpg", stored)
    hw = stored if json_size == "stored" else stored[::-1]
    data = {"images": [{"id": 1, "file_name": "p.jpg", "height": hw[0], "width": hw[1]}],
            "annotations": [_ann(1, 1, 1, 2, 2, 8, 8)], "categories": CATS}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = CocoDataset(json_path=tmp_path / "ann.json", image_dir=tmp_path / "img")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, target = ds[0]
    assert tuple(image.shape[-2:]) == hw and tuple(target["masks"].shape[-2:]) == hw
    said = [str(w.message) for w in caught if "without its EXIF rotation" in str(w.message)]
    if json_size == "stored":  # the white column stays on the left: the stored pixels, unturned
        assert image[:, :, :3].mean() > 0.9 and image[:, :, -3:].mean() < 0.1
        assert len(said) == 1 and "the annotations were drawn on the stored pixels" in said[0]
        with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
            ds2 = _quiet_dataset(json_path=tmp_path / "ann.json", image_dir=tmp_path / "img")
            ds2.check_image_files()
        assert len(ds2) == 1 and "1 images read without their EXIF rotation" in caplog.text
    else:  # turned as before: the white column is now the top rows
        assert image[:, :3, :].mean() > 0.9 and image[:, -3:, :].mean() < 0.1 and not said
        assert ds.skipped == {}


def test_show_data_does_not_count_the_objects_of_images_of_another_size(tmp_path, capsys):
    images = _images()
    images[0].update(height=2 * H, width=2 * W)  # a.png is H x W: refused when read
    anns = [_ann(1, 1, 1, 2, 2, 8, 8), _ann(2, 1, 2, 3, 3, 9, 9), _ann(3, 2, 1, 2, 2, 8, 8)]
    path, folder = _write(tmp_path, {"images": images, "annotations": anns, "categories": CATS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["show-data", "--json", str(path), "--images", str(folder),
                     "--output", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 1 and summary["instances"] == 1
    assert summary["skipped"] == {"image_size_mismatch": 1, "annotation_of_skipped_image": 2}  # a.png's 2
    assert f"image is {H}x{W} (HxW), {path} says {2 * H}x{2 * W} (image id 1)" in summary["problems"][0]
    # training meets it image by image: counted under the same reason
    ds = _quiet_dataset(json_path=path, image_dir=folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, target = ds[0]
    assert target["image_id"] == 2 and ds.skipped == {"image_size_mismatch": 1}


def test_an_image_with_only_a_coco_url_is_found_by_the_urls_file_name(tmp_path, caplog):
    images = [{"id": 1, "coco_url": "http://host/val2017/a.png?dl=1", "height": H, "width": W},
              {"id": 2, "coco_url": "https://host/x/b%20c.png", "height": H, "width": W},
              {"id": 3, "coco_url": "http://host/gone.png", "height": H, "width": W}]
    anns = [_ann(1, 1, 1, 2, 2, 8, 8), _ann(2, 2, 1, 2, 2, 8, 8)]
    path, folder = _write(tmp_path, {"images": images, "annotations": anns, "categories": CATS},
                          names=("a.png", "b c.png"))
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        ds = _quiet_dataset(json_path=path, image_dir=folder)
    assert [ds.image_info(i)["file_name"] for i in range(len(ds))] == ["a.png", "b c.png"]
    assert ds.skipped == {"missing_image_file": 1}
    assert "(the name taken from its coco_url 'http://host/gone.png')" in ds.problems[0]
    assert "2 images without file_name were looked up by the last part of their coco_url" in caplog.text
    _, target = ds[1]
    assert target["image_id"] == 2 and target["labels"].tolist() == [1]
    # split-data / merge-data write the file_name found
    assert [im["file_name"] for im in read_validated(path, folder).images] == ["a.png", "b c.png"]


def test_ids_written_as_strings_of_digits_are_read_as_integers(tmp_path, caplog):
    images = [{**im, "id": str(im["id"])} for im in _images()]
    anns = [{**_ann(1, 1, 1, 2, 2, 8, 8), "id": "1", "image_id": "1", "category_id": "2"},
            {**_ann(2, 2, 1, 2, 2, 8, 8), "image_id": "x2"}]  # not digits: refused as before
    cats = [{"id": "1", "name": "cat"}, {"id": 2, "name": "dog"}]
    path, folder = _write(tmp_path, {"images": images, "annotations": anns, "categories": cats})
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        ds = _quiet_dataset(json_path=path, image_dir=folder)
    assert "6 ids are written as strings of digits" in caplog.text
    assert ds.category_id_to_label == {1: 1, 2: 2} and ds.skipped == {"unknown_image": 1}
    _, target = ds[0]
    assert target["image_id"] == 1 and target["labels"].tolist() == [2]
    assert torch.equal(target["boxes"], torch.tensor([[2.0, 2.0, 8.0, 8.0]]))
    validated = read_validated(path, folder)
    assert [im["id"] for im in validated.images] == [1, 2]
    assert [c["id"] for c in validated.categories] == [1, 2]
    assert [(a["id"], a["image_id"], a["category_id"]) for a in validated.annotations] == [(1, 1, 2)]


def test_an_id_of_thousands_of_digits_is_a_bad_record_not_a_crash(tmp_path):
    # int() of a string past Python's 4300-digit limit raises ValueError: such an id stays a string
    images = _images() + [{"id": "9" * 5000, "file_name": "a.png", "height": H, "width": W}]
    anns = [_ann(1, 1, 1, 2, 2, 8, 8), {**_ann(2, 2, 1, 2, 2, 8, 8), "image_id": "8" * 4400},
            {**_ann(3, 2, 1, 2, 2, 8, 8), "image_id": "2" * 19}]  # past 64 bits: a string too
    path, folder = _write(tmp_path, {"images": images, "annotations": anns, "categories": CATS})
    ds = _quiet_dataset(json_path=path, image_dir=folder)
    assert ds.skipped == {"bad_image": 1, "unknown_image": 2} and len(ds) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [a["id"] for a in read_validated(path, folder).annotations] == [1]


def test_a_coco_url_with_escaped_backslashes_stays_inside_the_image_folder(tmp_path):
    # '..%5Cc.png' decodes to '..\\c.png': joined to the folder as written it named tmp_path/c.png
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(tmp_path / "c.png")  # outside the folder
    images = [{"id": 1, "coco_url": "http://h/x/..%5Cc.png", "height": H, "width": W},
              {"id": 2, "coco_url": "http://h/x/a%5C..", "height": H, "width": W},
              {"id": 3, "coco_url": "http://h/x/sub%5Cb.png", "height": H, "width": W}]
    anns = [_ann(i, i, 1, 2, 2, 8, 8) for i in (1, 2, 3)]
    path, folder = _write(tmp_path, {"images": images, "annotations": anns, "categories": CATS})
    ds = _quiet_dataset(json_path=path, image_dir=folder)
    assert [ds.image_info(i)["file_name"] for i in range(len(ds))] == ["b.png"]
    assert ds.skipped == {"missing_image_file": 1, "bad_image": 1, "annotation_of_skipped_image": 2}
    said = f"file {folder / 'c.png'} not found (the name taken from its coco_url 'http://h/x/..%5Cc.png')"
    assert said in ds.problems[0]


def _counting(monkeypatch, name):
    """Count the calls of maskrcnn.data.coco's ``name`` (read_image, image_header), still calling it."""
    import maskrcnn.data.coco as coco

    calls, real = [], getattr(coco, name)
    monkeypatch.setattr(coco, name, lambda path, **kw: calls.append(path) or real(path, **kw))
    return calls


def test_a_photo_read_as_stored_is_decoded_once_per_item(tmp_path, monkeypatch):
    from maskrcnn.data.images import read_image

    _exif_photo(tmp_path / "img", "p.jpg", (20, 30))  # the JSON gives the stored size
    data = {"images": [{"id": 1, "file_name": "p.jpg", "height": 20, "width": 30}],
            "annotations": [_ann(1, 1, 1, 2, 2, 8, 8)], "categories": CATS}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    stored = read_image(tmp_path / "img" / "p.jpg", orient=False)
    decodes = _counting(monkeypatch, "read_image_and_orientation")
    headers = _counting(monkeypatch, "image_header")
    for _ in range(2):  # a new dataset each time: a DataLoader worker of a new epoch starts afresh
        ds = _quiet_dataset(json_path=tmp_path / "ann.json", image_dir=tmp_path / "img")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image, _ = ds[0]
            image, _ = ds[0]
        assert torch.equal(image, stored)
    assert len(decodes) == 4 and len(headers) == 2  # one decode per item; one header read per dataset


def test_check_image_files_opens_each_header_once_and_names_problems_in_order(tmp_path, monkeypatch):
    folder = tmp_path / "img"
    _exif_photo(folder, "p.jpg", (H, W))  # sized as stored: kept, read unturned
    images = [{"id": i + 1, "file_name": f"{n}.png", "height": H, "width": W} for i, n in enumerate("abcd")]
    images[1].update(height=2 * H)  # b.png is H x W: refused
    images.append({"id": 5, "file_name": "p.jpg", "height": H, "width": W})
    anns = [_ann(i, i, 1, 2, 2, 8, 8) for i in range(1, 6)]
    path, folder = _write(tmp_path, {"images": images, "annotations": anns, "categories": CATS},
                          names=("a.png", "b.png", "c.png", "d.png"))
    (folder / "c.png").write_bytes(b"not an image")
    ds = _quiet_dataset(json_path=path, image_dir=folder)
    headers = _counting(monkeypatch, "image_header")
    ds.check_image_files(threads=3)
    assert sorted(p.name for p in headers) == ["a.png", "b.png", "c.png", "d.png", "p.jpg"]
    assert [ds.image_info(i)["id"] for i in range(len(ds))] == [1, 4, 5]
    # b.png's and c.png's annotations are counted too
    assert ds.skipped == {"image_size_mismatch": 1, "unreadable_image": 1, "annotation_of_skipped_image": 2}
    assert "b.png: image is" in ds.problems[0]
    assert "c.png: not an image file PIL can identify" in ds.problems[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, target = ds[2]
    assert target["image_id"] == 5 and tuple(image.shape[-2:]) == (H, W) and len(headers) == 5


def test_evaluation_predicts_a_photo_sized_as_its_stored_pixels_on_those_pixels(tmp_path):
    """Training reads it without its EXIF rotation; eval --weights (and training's evaluation) read it
    turned and left it out as image_size_mismatch."""
    from maskrcnn.data.images import read_image
    from maskrcnn.engine.inference import evaluate_dataset

    class Predictor:  # records the pixels it is given: (H, W), the mean of the left three columns
        window = 4

        def predict_files(self, paths, on_error=None):
            images = [read_image(p) for p in paths]
            yield [(i, im, det) for i, (im, det) in enumerate(zip(images, self.predict_tensors(images)))]

        def predict_tensors(self, images):
            return [(tuple(im.shape[-2:]), round(float(im[:, :, :3].mean()))) for im in images]

    class Evaluator:
        def __init__(self):
            self.seen = {}

        def process(self, image_id, det):
            self.seen[image_id] = det

        def image_ids(self):
            return list(self.seen)

        def evaluate(self):
            return dict(self.seen)

    _exif_photo(tmp_path / "img", "p.jpg", (20, 30))  # the JSON gives the stored size
    data = {"images": [{"id": 7, "file_name": "p.jpg", "height": 20, "width": 30}],
            "annotations": [_ann(1, 7, 1, 2, 2, 8, 8)], "categories": CATS}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = _quiet_dataset(json_path=tmp_path / "ann.json", image_dir=tmp_path / "img")
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the once-said "read without its EXIF rotation"
        got = evaluate_dataset(Predictor(), ds, Evaluator(), on_error=lambda *a: errors.append(a))
    assert errors == [] and got == {7: ((20, 30), 1)}  # the stored pixels: the white column on the left


def _not_found_line(tmp_path, caplog, images):
    path, folder = _write(tmp_path, {"images": images, "annotations": [], "categories": CATS}, names=())
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        ds = _quiet_dataset(json_path=path, image_dir=folder)
    assert ds.skipped == {"missing_image_file": len(images)}
    [line] = [r.getMessage() for r in caplog.records if "image files not found" in r.getMessage()]
    return line


def test_the_line_of_images_not_found_keeps_a_detail_only_when_every_file_has_it(tmp_path, caplog):
    """Before: the combined line repeated the first file's detail (its coco_url) as if true of all."""
    images = [{"id": 1, "coco_url": "http://host/gone.png", "height": H, "width": W}]
    images += [{"id": i, "file_name": f"x{i}.png", "height": H, "width": W} for i in range(2, 6)]
    line = _not_found_line(tmp_path, caplog, images)
    assert line.startswith(f"{tmp_path / 'ann.json'}: 5 image files not found (") and "coco_url" not in line
    assert line.endswith("...); skipped")
    caplog.clear()
    images = [{"id": i, "file_name": f"C:\\shots\\g{i}.png", "height": H, "width": W} for i in range(1, 6)]
    (tmp_path / "b").mkdir()
    line = _not_found_line(tmp_path / "b", caplog, images)
    assert line.endswith(f"...) (nor in {tmp_path / 'b' / 'img'} by the end of its path); skipped")
    assert line.count("nor in") == 1
