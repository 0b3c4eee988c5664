"""What the pictures probe (p_pictures) found in image reading, one test each: 10/12-bit data in a 16-bit
PNG read on the 16-bit scale (almost black, 0 detections) without a word; PIL's "Corrupt EXIF data" said
twice for one file (its header read, then its pixels); .tga and .ico left out of folder listings though
read when named; a float TIFF's skip message giving advice for Python arrays to a file."""

import warnings

import numpy as np
import pytest
from corrupt_exif import corrupt_exif_jpeg_bytes  # tests/ is on the path
from PIL import Image

from maskrcnn.data.images import ImageReadError, image_size, list_images, read_image


def _gray(h=12, w=16):
    return np.random.default_rng(0).integers(0, 256, (h, w)).astype(np.uint16)


def _warnings_of(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught]


@pytest.mark.parametrize("factor, bits", [(1, 8), (4, 10), (16, 12)])  # 8: the darkest, unsaid before
def test_10_or_12_bit_data_in_a_16_bit_png_is_said_to_look_dark(tmp_path, factor, bits):
    values = _gray() * factor
    path = tmp_path / f"gray{bits}.png"
    Image.fromarray(values).save(path)
    image, said = _warnings_of(lambda: read_image(path))
    # still the 16-bit scale (a dark 16-bit picture is not brightened by a guess), now said
    np.testing.assert_allclose(image[0].numpy(), values / 65535.0, atol=1e-6)
    dark = [m for m in said if "looks dark" in m]
    assert len(dark) == 1, said
    assert f"gray{bits}.png: image file of mode I" in dark[0]
    assert f"with values 0..{values.max()} read as 16-bit (0..65535)" in dark[0]
    assert ("save it as 8-bit" if bits == 8 else "multiply by 64 or 16") in dark[0]


def test_a_full_range_16_bit_png_reads_without_a_warning(tmp_path):
    path = tmp_path / "gray16.png"
    Image.fromarray(_gray() * 257).save(path)
    _, said = _warnings_of(lambda: read_image(path))
    assert not [m for m in said if "looks dark" in m], said


def _corrupt_exif_jpeg(path):
    path.write_bytes(corrupt_exif_jpeg_bytes(_gray()))


def test_corrupt_exif_is_said_once_per_file_for_header_then_pixels(tmp_path):
    path = tmp_path / "exbroken.jpg"
    _corrupt_exif_jpeg(path)

    def header_then_pixels():  # what predict and show-data do
        image_size(path)
        return read_image(path)

    image, said = _warnings_of(header_then_pixels)
    assert image.shape[-2:] == (12, 16)  # read as stored
    exif = [m for m in said if "Corrupt EXIF" in m]
    assert len(exif) == 1, said
    assert exif[0].startswith(f"{path}: ")


def test_tga_and_ico_are_listed_from_a_folder_as_they_are_read_by_name(tmp_path):
    picture = Image.fromarray(_gray().astype(np.uint8))
    for name in ("a.tga", "b.ico", "c.png"):
        picture.save(tmp_path / name)
    listed = sorted(p.name for p in list_images(tmp_path))
    assert listed == ["a.tga", "b.ico", "c.png"]
    for name in listed:
        assert read_image(tmp_path / name).shape[0] == 3


def test_a_float_tiff_off_0_1_is_skipped_with_advice_for_a_file(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(_gray().astype(np.float32) + 44, mode="F").save(path)
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: float image values span [44, ")
    assert "save it as 8-bit" in message and "scale its values to 0..1" in message
    assert "uint8" not in message and "normalises itself" not in message
