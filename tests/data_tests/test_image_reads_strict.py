"""Image reads under strict warning filters (PIL's DecompressionBombWarning never escalates) and a TIFF's
EXIF orientation, which Pillow applies itself at load, read the same by the header and the decode."""

import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.images import image_header, open_image, read_image, read_image_and_orientation


@pytest.fixture
def low_pil_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # warning above 5000 px, refusal above 10000


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_an_image_between_pils_warning_and_error_limits_is_read_under_an_error_filter(tmp_path, suffix,
                                                                                     low_pil_limit):
    path = tmp_path / f"big{suffix}"
    Image.fromarray(np.zeros((60, 100, 3), np.uint8)).save(path)  # 6000 px: PIL warns, does not refuse
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # -W error, a test suite's filterwarnings = error
        assert tuple(read_image(path).shape) == (3, 60, 100)
        assert image_header(path) == ((60, 100), 1)
        with open_image(path, str(path)) as img:
            assert img.size == (100, 60)
        assert tuple(read_image(path.read_bytes()).shape) == (3, 60, 100)


def test_a_tiffs_exif_orientation_is_the_same_from_its_header_and_its_decode(tmp_path):
    rgb = np.zeros((50, 80, 3), np.uint8)
    rgb[:10, :10] = (255, 0, 0)  # the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(rgb).save(tmp_path / "t3.tif", exif=exif)
    image, orientation = read_image_and_orientation(tmp_path / "t3.tif")
    assert orientation == image_header(tmp_path / "t3.tif")[1] == 3
    assert image[0, -1, -1] == 1.0 and image[0, 0, 0] == 0.0  # turned 180 degrees: the corner moved
    stored = read_image(tmp_path / "t3.tif", orient=False)  # the stored pixels, as for a JPEG
    assert stored[0, 0, 0] == 1.0 and stored[0, -1, -1] == 0.0
