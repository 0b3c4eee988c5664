"""Real-world image files: sizes over PIL's decompression-bomb limit (refused in one line naming the
file, the limit raised with MASKRCNN_MAX_IMAGE_PIXELS, PIL's process setting left as it was), empty
files, folders and broken links where an image should be, float images holding NaN, and 16-bit and
integer images on the 16-bit scale whatever their brightest pixel."""

import json
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.images import (
    MAX_PIXELS_ENV,
    ImageReadError,
    ImageTooLargeError,
    image_header,
    list_images_and_passed_over,
    max_image_pixels,
    read_image,
)
from maskrcnn.predictor import _as_float_image


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (8-bit grey) and that holds no pixel: PIL opens it, and
    its size is checked, without a byte of pixels allocated."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_an_image_over_the_default_limit_is_refused_naming_the_file_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    huge = _png_header_only(tmp_path / "slide.png", 15000, 15000)  # 225 MP: PIL's DecompressionBombError
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError) as e:
        image_header(huge)
    message = str(e.value)
    assert message.startswith(f"{huge}: image too large (225 MP > limit 179 MP; raise it with")
    assert MAX_PIXELS_ENV in message and "MAX_IMAGE_PIXELS in a program" in message
    assert "decompression bomb" not in message
    with pytest.raises(ImageTooLargeError, match="image too large"):
        read_image(huge)
    assert Image.MAX_IMAGE_PIXELS == before  # reading only reads PIL's setting

    monkeypatch.setenv(MAX_PIXELS_ENV, "300000000")  # the library ignores the variable: the CLI applies it
    with pytest.raises(ImageTooLargeError):
        image_header(huge)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150_000_000)  # a program raises PIL's own setting
    assert image_header(huge) == ((15000, 15000), 1)
    assert max_image_pixels() == 300_000_000


def test_the_cli_sets_pils_limit_once_from_the_variable_and_restores_it(monkeypatch, capsys):
    from maskrcnn import cli
    from maskrcnn.data.images import apply_max_pixels_env, parse_max_pixels

    assert parse_max_pixels("1e9") == parse_max_pixels("1_000_000_000") == 10**9
    assert parse_max_pixels("0") is None and parse_max_pixels("None") is None
    for bad in ("lots", "1.5", "-3", "nan", "inf"):
        with pytest.raises(ValueError, match=f"{MAX_PIXELS_ENV}='{bad}': expected a whole number"):
            parse_max_pixels(bad)
    before = Image.MAX_IMAGE_PIXELS
    seen = []
    monkeypatch.setattr(cli, "_run", lambda args, **kw: seen.append(Image.MAX_IMAGE_PIXELS) or 0)
    argv = ["show-data", "--json", "d.json", "--images", "i", "--output", "o"]
    for value, limit in (("1e9", 5 * 10**8), ("0", None)):
        monkeypatch.setenv(MAX_PIXELS_ENV, value)
        assert cli.main(argv) == 0 and seen[-1] == limit
        assert Image.MAX_IMAGE_PIXELS == before  # restored for a program calling main()
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    count = len(seen)
    assert cli.main(argv) == 2 and len(seen) == count  # one configuration error, nothing run
    err = capsys.readouterr().err
    assert f"maskrcnn show-data: error: {MAX_PIXELS_ENV}='lots': expected a whole number" in err
    apply_max_pixels_env({})  # unset: PIL's setting as it is
    assert Image.MAX_IMAGE_PIXELS == before


def test_the_limit_follows_pils_setting_and_replaces_its_nameless_warning(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL warns above 100 pixels, refuses above 200
    Image.fromarray(np.zeros((10, 15), np.uint8)).save(tmp_path / "warned.png")  # 150: PIL's warning zone
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "big.png")  # 400: over the limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_image(tmp_path / "warned.png").shape == (3, 10, 15)
        assert image_header(tmp_path / "warned.png") == ((10, 15), 1)
    assert [str(w.message) for w in caught] == []  # PIL's "could be decompression bomb DOS attack" is gone
    for read in (image_header, read_image):
        with pytest.raises(ImageTooLargeError, match=r"big.png: image too large \(0.0004 MP > limit "
                                                     r"0.0002 MP; raise it"):
            read(tmp_path / "big.png")
    assert Image.MAX_IMAGE_PIXELS == 100


def test_a_coco_image_over_the_limit_is_skipped_and_counted_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    images = tmp_path / "images"
    images.mkdir()
    _png_header_only(images / "pano.png", 15000, 15000)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "ok.png")
    records = [{"id": 1, "file_name": "pano.png", "width": 15000, "height": 15000},
               {"id": 2, "file_name": "ok.png", "width": 8, "height": 8}]
    anns = [{"id": k, "image_id": k, "category_id": 1, "bbox": [1, 1, 4, 4],
             "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]], "area": 16, "iscrowd": 0} for k in (1, 2)]
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps(
        {"images": records, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}))
    dataset = CocoDataset(json_path=json_path, image_dir=images)
    dataset.check_image_files()
    # a good file: not unreadable; its one object counted as left out with it
    assert dataset.skipped == {"image_too_large": 1, "annotation_of_skipped_image": 1} and len(dataset) == 1
    assert "pano.png: image too large (225 MP > limit 179 MP" in dataset.problems[0]


def test_empty_folder_and_broken_link_files_say_what_they_are(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"zero.jpg: empty file \(0 bytes\)"):
        image_header(tmp_path / "zero.jpg")  # as read_image says it
    (tmp_path / "dir_like.jpg").mkdir()
    (tmp_path / "broken.jpg").symlink_to("nonexistent.jpg")
    with pytest.raises(ImageReadError, match="dir_like.jpg: is a folder, not an image file"):
        read_image(tmp_path / "dir_like.jpg")
    with pytest.raises(ImageReadError, match=r"broken.jpg: is a broken link \(to nonexistent.jpg\)"):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(FileNotFoundError, match=r"broken.jpg: is a broken link \(to nonexistent.jpg\)"):
        list_images_and_passed_over(tmp_path / "broken.jpg")  # predict given the link by name
    with pytest.raises(FileNotFoundError, match="gone.jpg: no such file or folder"):
        list_images_and_passed_over(tmp_path / "gone.jpg")

    records = [{"id": i, "file_name": n, "width": 8, "height": 8}
               for i, n in enumerate(["dir_like.jpg/", "broken.jpg", "gone.jpg"], 1)]
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps(
        {"images": records, "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    with pytest.warns(UserWarning, match="skipped 3 missing_image_file"):
        problems = CocoDataset(json_path=json_path, image_dir=tmp_path, filter_empty=False).problems
    assert "image id 1: file" in problems[0] and "dir_like.jpg is a folder, not an image file" in problems[0]
    assert "broken.jpg is a broken link (to nonexistent.jpg)" in problems[1]
    assert "gone.jpg not found" in problems[2]


def test_float_files_with_nan_are_refused_or_said_once_without_a_numpy_warning(tmp_path):
    Image.fromarray(np.full((4, 5), np.nan, np.float32)).save(tmp_path / "nan.tiff")
    part = np.full((4, 5), 0.5, np.float32)
    part[0, :3] = np.nan
    Image.fromarray(part).save(tmp_path / "part.tiff")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageReadError, match="nan.tiff: every pixel is NaN or infinite"):
            read_image(tmp_path / "nan.tiff")
        image = read_image(tmp_path / "part.tiff")
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'part.tiff'}: 3 of 20 pixels are NaN or infinite (not a number); read as 0 (black)"]
    assert float(image[:, 0, 0].max()) == 0.0 and float(image[:, 3, 4].min()) == 0.5


def test_an_infinite_pixel_in_a_float_file_is_said_like_nan_and_does_not_set_the_scale(tmp_path):
    values = np.full((2, 3), 0.5, np.float32)
    values[0, 0], values[0, 1] = np.inf, -np.inf
    Image.fromarray(values).save(tmp_path / "inf.tiff")
    with pytest.warns(UserWarning, match="inf.tiff: 2 of 6 pixels are NaN or infinite"):
        image = read_image(tmp_path / "inf.tiff")
    assert float(image[0, 1, 2]) == 0.5  # not 0.5 / 255: the scale from the finite values
    assert float(image[0, 0, 0]) == float(image[0, 0, 1]) == 0.0


def test_16_bit_files_and_integer_images_are_on_the_16_bit_scale_whatever_their_maximum(tmp_path):
    dark = np.array([[0, 100], [200, 255]], np.uint16)  # a dark 16-bit scan: its maximum is under 256
    bright = np.array([[0, 65535], [32768, 1000]], np.uint16)
    for name, array in (("dark.png", dark), ("bright.png", bright)):
        Image.fromarray(array).save(tmp_path / name)
        image = read_image(tmp_path / name)
        np.testing.assert_allclose(image[0].numpy(), array / 65535.0, rtol=1e-6)
    # mode "I" (a 16-bit PNG as some Pillow versions open it, or 16-bit data converted): read as 16-bit,
    # in memory (the Predictor) as from a file; 257 times brighter when scaled by its maximum
    as_i = Image.fromarray(dark.astype(np.int32))
    assert as_i.mode == "I"
    with pytest.warns(UserWarning, match="image 0: PIL image of mode I with values 0..255 read as 16-bit "
                                         r"\(0..65535\), so it looks dark \(0 detections are likely\); "
                                         "convert it to L for 8-bit values"):
        np.testing.assert_allclose(_as_float_image(as_i, "image 0")[0].numpy(), dark / 65535.0, rtol=1e-6)
    as_i.save(tmp_path / "dark_i.tiff")
    np.testing.assert_allclose(read_image(tmp_path / "dark_i.tiff")[0].numpy(), dark / 65535.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"image 0: integer image \(mode I\) values span \[0, 70000\]"):
        _as_float_image(Image.fromarray(np.array([[0, 70000]], np.int32)), "image 0")


def test_float_pil_images_in_memory_follow_the_numpy_rules():
    ok = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(_as_float_image(Image.fromarray(ok), "image 0")[1].numpy(), ok)
    nan = ok.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="image 0: image holds NaN"):
        _as_float_image(Image.fromarray(nan), "image 0")  # was read as black
    with pytest.raises(ValueError, match=r"image 0: float image values span \[0, 255\]"):
        _as_float_image(Image.fromarray(ok * 255), "image 0")  # was divided by 255 quietly


def test_unreadable_images_are_remembered_by_id_not_by_a_position_leave_out_shifts(tmp_path):
    from maskrcnn.data.images import ImageReadError as ReadError

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not a png")
    for name in ("b.png", "c.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / name)
    records = [{"id": i, "file_name": n, "width": 8, "height": 8} for i, n in enumerate("abc", 1)]
    records = [dict(r, file_name=r["file_name"] + ".png") for r in records]
    json_path = tmp_path / "d.json"
    json_path.write_text(json.dumps({"images": records, "annotations": [],
                                     "categories": [{"id": 1, "name": "a"}]}))
    dataset = CocoDataset(json_path=json_path, image_dir=images)
    with pytest.warns(UserWarning, match="using another image"):
        assert dataset[0][1]["image_id"] == 2  # a.png unreadable: b.png in its place
    dataset.leave_out({1: ReadError("a.png: cannot decode image")})  # b.png now at position 0
    assert dataset.ids == [2, 3] and set(dataset._unreadable) == {1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dataset[0][1]["image_id"] == 2  # b.png itself, not skipped as the stale position 0 said
