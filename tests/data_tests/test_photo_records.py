"""Photos as hand-made COCO converters and phones leave them: EXIF-turned photos whose record gives the
stored size, damaged files, integer-mode files (one test per reading rule)."""

import json
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset

H, W = 40, 60  # upright size (HxW) of the photos below


def _upright_photo(path):
    """A photo shown upright as 60 wide x 40 high (red square at x 30..46, y 5..21), stored turned a
    quarter (40 wide x 60 high) with EXIF orientation 6, as phones write them."""
    rgb = np.full((H, W, 3), 128, np.uint8)
    rgb[5:21, 30:46] = (230, 40, 40)
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)  # undone by orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif)


def _dataset(tmp_path, record, square):
    data = {"images": [dict(record, id=1, file_name="p.png")],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 256.0,
                             "bbox": [square[0], square[1], 16.0, 16.0],
                             "segmentation": [[square[0], square[1], square[0] + 16, square[1],
                                               square[0] + 16, square[1] + 16, square[0], square[1] + 16]]}],
            "categories": [{"id": 1, "name": "square"}]}
    (tmp_path / "d.json").write_text(json.dumps(data))
    return CocoDataset(json_path=tmp_path / "d.json", image_dir=tmp_path)


def test_upright_annotations_on_a_record_of_the_stored_size_read_the_photo_upright(tmp_path):
    # Image.open(f).size (stored, 40x60 WxH) written by the converter; the tool showed it upright
    _upright_photo(tmp_path / "p.png")
    with pytest.warns(UserWarning, match=r"image id 1 \(p.png\) read upright.*reach 6 px past"):
        ds = _dataset(tmp_path, {"width": 40, "height": 60}, (30.0, 5.0))
    image, target = ds[0]
    assert tuple(image.shape[-2:]) == (H, W)
    assert target["boxes"].tolist() == [[30.0, 5.0, 46.0, 21.0]]  # not clipped at x=40
    red = image[:, target["masks"][0].bool()].mean(dim=1) * 255
    assert red[0] > 200 and red[2] < 80  # the mask lies on the red square


def test_a_box_clipped_by_more_than_rounding_is_said(tmp_path):
    Image.new("RGB", (W, H), "gray").save(tmp_path / "p.png")  # no EXIF: nothing explains it
    with pytest.warns(UserWarning, match=r"1 annotation\(s\) reach more than 1 px past.*annotation id 1 "
                                         r"of image id 1 \(p.png\) spans x 50..66"):
        ds = _dataset(tmp_path, {"width": W, "height": H}, (50.0, 5.0))
    assert ds[0][1]["boxes"].tolist() == [[50.0, 5.0, 60.0, 21.0]]


def test_a_box_past_the_border_by_rounding_is_clipped_quietly(tmp_path):
    Image.new("RGB", (W, H), "gray").save(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = _dataset(tmp_path, {"width": W, "height": H}, (44.5, 5.0))  # reaches 60.5
    assert ds[0][1]["boxes"].tolist() == [[44.5, 5.0, 60.0, 21.0]]


def test_a_damaged_avif_is_not_sent_to_install_a_plugin_when_pillow_reads_avif(tmp_path):
    from PIL import features

    from maskrcnn.data.images import ImageReadError, read_image

    if not features.check("avif"):
        pytest.skip("this Pillow reads no AVIF")
    Image.new("RGB", (W, H), "red").save(tmp_path / "a.avif")
    data = (tmp_path / "a.avif").read_bytes()
    (tmp_path / "half.avif").write_bytes(data[: len(data) // 2])  # a copy cut short
    with pytest.raises(ImageReadError) as e:
        read_image(tmp_path / "half.avif")
    assert "plugin" not in str(e.value)
    assert "half.avif: cannot decode image (truncated or damaged AVIF file)" in str(e.value)


def _small_set(tmp_path, bad: dict):
    """4 images 16x16 with a box each; ``bad``: {file name: bytes} written over some of them."""
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i in range(4):
        Image.new("RGB", (16, 16), "gray").save(tmp_path / f"{i}.png")
        data["images"].append({"id": i + 1, "file_name": f"{i}.png", "width": 16, "height": 16})
        data["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                    "area": 16.0, "bbox": [2, 2, 4, 4], "segmentation": []})
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "d.json").write_text(json.dumps(data))
    return CocoDataset(json_path=tmp_path / "d.json", image_dir=tmp_path)


def test_each_unreadable_training_image_is_warned_once_with_workers(tmp_path, capfd):
    from itertools import islice

    from maskrcnn.data.loader import build_train_loader

    ds = _small_set(tmp_path, {"2.png": b"\x89PNG\r\n\x1a\n broken"})
    loader = build_train_loader(ds, batch_size=2, num_workers=2, seed=0, aspect_ratio_grouping=False)
    with warnings.catch_warnings():  # forked workers inherit it: every process writes to fd 2
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: sys.stderr.write(f"W: {message}\n")
        targets = [t for _, ts in islice(iter(loader), 12) for t in ts]
    said = [line for line in capfd.readouterr().err.splitlines() if "2.png" in line]
    assert sum("2.png" in p for t in targets for p in t.get("unread_images", ())) >= 2  # met more than once
    assert len(said) == 1, said
    assert not any("unread_warnings" in t for t in targets)  # taken out before training sees them


def test_an_image_of_another_size_is_not_said_unreadable(tmp_path):
    from io import BytesIO

    wrong = BytesIO()
    Image.new("RGB", (16, 12), "gray").save(wrong, format="PNG")  # decodes fine, the record says 16x16
    ds = _small_set(tmp_path, {"0.png": wrong.getvalue(), "1.png": b"junk", "2.png": b"junk",
                               "3.png": b"junk"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=r"no image of the dataset could be used "
                                               r"\(3 unreadable, 1 not its recorded size\)"):
            ds[0]


def test_the_replaced_files_say_which_was_not_its_recorded_size(tmp_path):
    from io import BytesIO

    wrong = BytesIO()
    Image.new("RGB", (16, 12), "gray").save(wrong, format="PNG")
    ds = _small_set(tmp_path, {"0.png": wrong.getvalue()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = ds[0][1]
    assert target["unread_images"] == (f"{tmp_path / '0.png'} (not its recorded size)",)


def test_a_mode_i_file_of_8_bit_values_is_said_to_look_dark_as_in_memory(tmp_path):
    from maskrcnn.data.images import read_image

    rgb = np.full((H, W, 3), 128, np.uint8)
    Image.fromarray(rgb).convert("I").save(tmp_path / "i32.tif")  # 8-bit values, 32-bit integer mode
    with pytest.warns(UserWarning, match=r"i32.tif: image file of mode I with values 0..128 read as 16-bit "
                                         r"\(0..65535\), so it looks dark \(0 detections are likely\); "
                                         "save it as 8-bit"):
        image = read_image(tmp_path / "i32.tif")
    assert float(image.max()) == pytest.approx(128 / 65535)  # the one scale of mode I, said above


def test_the_stored_pixels_warning_says_its_sizes_are_hxw(tmp_path):
    _upright_photo(tmp_path / "p.png")  # stored 60 high x 40 wide; annotations on the stored pixels
    with pytest.warns(UserWarning, match=r"read without its EXIF rotation.*\(stored 60x40 \(HxW\), "
                                         r"turned 40x60\)"):
        ds = _dataset(tmp_path, {"width": 40, "height": 60}, (10.0, 30.0))
        image, _ = ds[0]
    assert tuple(image.shape[-2:]) == (60, 40)


def test_pils_corrupt_exif_warning_names_the_file(tmp_path):
    from maskrcnn.data.images import ImageReadError, image_header, read_image

    Image.new("RGB", (200, 140), "red").save(tmp_path / "a.tif", compression="tiff_lzw")  # tags at the end
    data = (tmp_path / "a.tif").read_bytes()
    for read in (image_header, read_image):
        # a file of its own per reader: PIL's warning is said once per file (test_images_probe_pictures)
        path = tmp_path / f"half_{read.__name__}.tif"
        path.write_bytes(data[: len(data) // 2])  # a copy cut short
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                read(path)
            except ImageReadError:
                pass  # read_image refuses it; a header may read
        said = [str(w.message) for w in caught if "Corrupt EXIF" in str(w.message)]
        assert said and all(m.startswith(f"{path}: Corrupt EXIF data") for m in said), said


def test_rle_masks_of_the_upright_size_on_a_record_of_the_stored_size_read_the_photo_upright(tmp_path):
    # the converter wrote Image.open(f).size (stored, 40 wide x 60 high); the tool's RLE is of the upright
    # picture (40 high x 60 wide): the RLE's own size says the photo was drawn upright
    import pycocotools.mask as mask_utils

    _upright_photo(tmp_path / "p.png")
    upright = np.zeros((H, W), np.uint8, order="F")
    upright[5:21, 30:46] = 1
    rle = mask_utils.encode(upright)
    data = {"images": [{"id": 1, "file_name": "p.png", "width": 40, "height": 60}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 256.0,
                             "bbox": [30.0, 5.0, 16.0, 16.0],
                             "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}}],
            "categories": [{"id": 1, "name": "square"}]}
    (tmp_path / "d.json").write_text(json.dumps(data))
    said = r"image id 1 \(p.png\) read upright \(its EXIF orientation 6 applied\).*RLE masks are of the " \
           r"upright picture's size \[40, 60\]"
    with pytest.warns(UserWarning, match=said):
        ds = CocoDataset(json_path=tmp_path / "d.json", image_dir=tmp_path)
    assert ds.skipped.get("bad_segmentation", 0) == 0
    image, target = ds[0]
    assert tuple(image.shape[-2:]) == (H, W) and target["masks"].shape[0] == 1
    red = image[:, target["masks"][0].bool()].mean(dim=1) * 255
    assert red[0] > 200 and red[2] < 80  # the mask lies on the red square
