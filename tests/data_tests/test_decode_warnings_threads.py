"""Decode warnings under concurrent decodes on threads (serve's thread pool): each is said, and the
process's warning machinery is left as it was found."""

import warnings
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from maskrcnn.data.images import MultiFrameWarning, decode_image_bytes, read_image


def _animated_gif(path):
    frames = [Image.new("RGB", (24, 16), c) for c in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:])


def test_every_decode_warning_is_said_and_the_hooks_are_put_back_after_concurrent_decodes(tmp_path):
    _animated_gif(tmp_path / "anim.gif")
    data = (tmp_path / "anim.gif").read_bytes()
    n = 400
    before = (warnings.showwarning, warnings.filters[:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: decode_image_bytes(data, name=f"up{i}"), range(n)))
        said = [w for w in caught if issubclass(w.category, MultiFrameWarning)]
        assert len(said) == n, f"{n - len(said)} of {n} decode warnings lost"
        assert sorted(str(w.message).split(":")[0] for w in said) == sorted(f"up{i}" for i in range(n))
        caught.clear()
        read_image(tmp_path / "anim.gif")  # a later decode on this thread is still said
        assert [w.category for w in caught] == [MultiFrameWarning]
    assert (warnings.showwarning, warnings.filters) == before
