"""read_image over PIL modes, EXIF orientation and broken files; decode_image_bytes and its pixel limit;
list_images."""

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.data.images import (
    ImageReadError,
    ImageTooLargeError,
    decode_image_bytes,
    list_images,
    read_image,
)


def _rgb(h=6, w=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_rgb_png_exact(tmp_path):
    array = _rgb()
    Image.fromarray(array).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.shape == (3, 6, 8) and img.dtype == torch.float32
    assert torch.equal(img, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1"])
def test_8bit_modes_give_rgb_like_pil(tmp_path, mode):
    src = Image.fromarray(_rgb()).convert(mode)
    path = tmp_path / ("a.tif" if mode == "CMYK" else "a.png")
    src.save(path)
    img = read_image(path)
    expected = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    assert img.shape == (3, 6, 8)
    assert torch.equal(img, torch.from_numpy(expected).permute(2, 0, 1))


def test_16bit_gray_uses_full_range(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.shape == (3, 2, 2)
    np.testing.assert_allclose(img[0].numpy(), array / 65535.0, atol=1e-6)
    assert torch.equal(img[0], img[2])


def test_exif_orientation_applied(tmp_path):
    array = np.zeros((4, 10, 3), dtype=np.uint8)
    array[:, :2] = 255  # white band on the left of a landscape image
    im = Image.fromarray(array)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    img = read_image(tmp_path / "rot.jpg")
    assert img.shape == (3, 10, 4)  # portrait once oriented
    assert img[:, :2].mean() > 0.9 and img[:, -2:].mean() < 0.1  # left band moved to the top


@pytest.mark.parametrize(
    "content,match",
    [(None, "no such image"), (b"not an image at all", "not an image"), ("truncated", "cannot decode"),
     (b"", r"bad.png: empty file \(0 bytes\)$")],  # a copy cut short: not "a file PIL cannot identify"
)
def test_bad_files_raise_image_read_error_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(_rgb(64, 64)).save(path)
        path.write_bytes(path.read_bytes()[:200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(path)
    assert "bad.png" in str(info.value) and isinstance(info.value, ValueError)


def test_list_images(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", "._b.png"):  # ._b.png: macOS' resource fork of b.png
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"x")
    (tmp_path / "sub" / "._c.png").write_bytes(b"\x00\x05\x16\x07")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.JPG", "b.png", "c.png"]
    assert list_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")


def test_decode_image_bytes_reads_as_read_image_does_and_limits_pixels(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: 8 wide, 6 high becomes 6 x 8
    Image.fromarray(_rgb()).save(tmp_path / "r.jpg", exif=exif)
    data = (tmp_path / "r.jpg").read_bytes()
    img = decode_image_bytes(data, name="r.jpg")
    assert img.shape == (3, 8, 6) and torch.equal(img, read_image(tmp_path / "r.jpg"))
    assert torch.equal(decode_image_bytes(data, max_pixels=48), img)  # the limit is inclusive
    with pytest.raises(ImageTooLargeError, match=r"r.jpg: image of 8x6 = 48 pixels is larger than the limit"):
        decode_image_bytes(data, name="r.jpg", max_pixels=47)
    with pytest.raises(ImageReadError, match="up.png: empty file"):
        decode_image_bytes(b"", name="up.png")
    with pytest.raises(ImageReadError, match="upload: not an image"):
        decode_image_bytes(b"plain text")
    with pytest.raises(ImageReadError, match="upload: cannot decode"):
        decode_image_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_annotation_converters_see_the_size_read_image_gives(tmp_path, suffix, orientation):
    """convert-data records each image's size from its header (``image_size``); a turned TIFF was turned
    twice there (recent Pillow turns TIFFs itself), so the dataset refused the image as mismatched."""
    from maskrcnn.data import images
    from maskrcnn.data.formats.common import image_size

    im = Image.fromarray(_rgb(4, 10))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / f"a{suffix}", exif=exif)
    read = tuple(read_image(tmp_path / f"a{suffix}").shape[1:])
    assert image_size(tmp_path / f"a{suffix}") == read
    assert images.image_size(tmp_path / f"a{suffix}") == read  # the COCO reader's (sizes left out)


def test_image_size_of_a_turned_tiff_is_read_images(tmp_path):
    """images.image_size (the COCO reader's, for images without a recorded size) turned a TIFF that
    recent Pillow had turned already: a 40x20 TIFF with orientation 6 gave (20, 40), not read_image's
    (40, 20). One definition now, which the converters' image_size wraps (a Skip when unreadable)."""
    from maskrcnn.data import images
    from maskrcnn.data.formats.common import Skip, image_size

    im = Image.fromarray(_rgb(20, 40))  # stored 20 rows x 40 columns
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "t.tif", exif=exif)
    assert tuple(read_image(tmp_path / "t.tif").shape[1:]) == (40, 20)
    assert images.image_size(tmp_path / "t.tif") == (40, 20)
    assert image_size(tmp_path / "t.tif") == (40, 20)
    (tmp_path / "bad.tif").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"bad.tif: not an image file PIL can identify$"):
        images.image_size(tmp_path / "bad.tif")
    with pytest.raises(Skip, match=r"image .*bad.tif cannot be read: not an image file PIL") as e:
        image_size(tmp_path / "bad.tif")
    assert e.value.reason == "unreadable_image"
    with pytest.raises(Skip, match=r"image .*gone.tif not found"):
        image_size(tmp_path / "gone.tif")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_undo_orientation_gives_the_stored_pixels(tmp_path, orientation):
    from maskrcnn.data.images import image_header, turned_size, undo_orientation

    pixels = np.random.RandomState(0).randint(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "p.png", exif=exif.tobytes())  # lossless: pixels compared exactly
    shown = read_image(tmp_path / "p.png")
    stored = read_image(tmp_path / "p.png", orient=False)
    assert image_header(tmp_path / "p.png") == ((5, 7), orientation)
    assert turned_size((5, 7), orientation) == tuple(shown.shape[-2:])
    assert torch.equal(stored, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert torch.equal(undo_orientation(shown, orientation), stored)


def test_a_file_pil_cannot_identify_is_worded_the_same_from_its_header_as_when_read(tmp_path):
    """``show-data`` (which reads the header) said "cannot read the image size (cannot identify image
    file ...)" where predict, train and serve say "not an image file PIL can identify"."""
    from maskrcnn.data.images import ImageReadError, image_header, image_size, read_image

    path = tmp_path / "x.jpg"
    path.write_bytes(b"plain text, not a picture")
    for read in (image_header, image_size, read_image):
        with pytest.raises(ImageReadError) as e:
            read(path)
        assert str(e.value) == f"{path}: not an image file PIL can identify", read.__name__
