"""Overlays: masks tinted with their instance's colour, untouched pixels elsewhere, thresholds honoured."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from maskrcnn.visualize import COCO_SKELETON, draw_instances, instance_colors, skeleton_for, to_uint8_hwc

H, W = 60, 80


def _det(n=2):
    boxes = torch.tensor([[10.0, 20.0, 30.0, 50.0], [40.0, 5.0, 75.0, 40.0]])[:n]
    masks = torch.zeros(n, H, W, dtype=torch.bool)
    masks[0, 25:45, 12:28] = True
    if n > 1:
        masks[1, 10:35, 45:70] = True
    return {
        "boxes": boxes,
        "scores": torch.tensor([0.9, 0.3])[:n],
        "labels": torch.tensor([1, 2])[:n],
        "masks": masks,
    }


def _image():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, H, W, generator=g) * 0.5 + 0.25


def test_masks_tinted_and_background_untouched():
    image = _image()
    det = _det()
    base = to_uint8_hwc(image).astype(np.int32)
    out = np.asarray(draw_instances(image, det, ["__background__", "a", "b"], mask_alpha=0.5)).astype(
        np.int32
    )
    assert out.shape == (H, W, 3)
    # Far from every box and label: identical.
    assert (out[55:, :8] == base[55:, :8]).all()
    # Mask interior (away from contour and label): the 50/50 blend with the instance colour.
    best = instance_colors(2)[0].astype(np.int32)  # the best instance gets the first palette colour
    expect = (base[35, 20] * 0.5 + best * 0.5 + 0.5).astype(np.int32)
    assert np.abs(out[35, 20] - expect).max() <= 1
    # The two instances get different colours.
    assert not np.array_equal(out[35, 20] - base[35, 20] // 2, out[25, 60] - base[25, 60] // 2)
    # Contour pixels of a mask are darker than its interior.
    assert out[25, 20].sum() < out[35, 20].sum() or out[44, 20].sum() < out[35, 20].sum()


def test_image_forms_agree():
    image = _image()
    det = _det()
    a = np.asarray(draw_instances(image, det))
    u8 = to_uint8_hwc(image)
    b = np.asarray(draw_instances(u8, det))
    c = np.asarray(draw_instances(Image.fromarray(u8), det))
    d = np.asarray(draw_instances(torch.from_numpy(u8).permute(2, 0, 1).contiguous(), det))
    assert np.array_equal(a, b) and np.array_equal(a, c) and np.array_equal(a, d)


def test_score_thresh_hides_instances_and_empty_is_identity():
    image = _image()
    base = to_uint8_hwc(image)
    out = np.asarray(draw_instances(image, _det(), score_thresh=0.5))
    assert np.array_equal(out[15:30, 50:65], base[15:30, 50:65])  # instance 2 (score 0.3) not drawn
    assert not np.array_equal(out[30:40, 15:25], base[30:40, 15:25])  # instance 1 drawn
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, H, W, dtype=torch.bool),
    }
    assert np.array_equal(np.asarray(draw_instances(image, empty)), base)


def test_keypoints_drawn_and_bad_shapes_rejected():
    image = _image()
    det = _det(1)
    del det["masks"]
    kp = torch.zeros(1, 17, 3)
    kp[0, :, 0] = torch.linspace(12, 28, 17)
    kp[0, :, 1] = 40.0
    kp[0, :, 2] = 1.0
    kp[0, 16, 2] = 0.0  # invisible: not drawn
    det["keypoints"] = kp
    base = to_uint8_hwc(image)
    out = np.asarray(draw_instances(image, det, show_boxes=False, show_labels=False))
    assert not np.array_equal(out[40, 12], base[40, 12])
    assert np.array_equal(out[50:, 40:], base[50:, 40:])
    assert all(0 <= a < 17 and 0 <= b < 17 for a, b in COCO_SKELETON) and len(COCO_SKELETON) == 19
    with pytest.raises(ValueError, match="masks have shape"):
        draw_instances(image, {**_det(), "masks": torch.zeros(2, H + 1, W, dtype=torch.bool)})
    with pytest.raises(ValueError, match="image"):
        draw_instances(torch.zeros(2, 3, H, W), _det())


def test_large_image_scales_lines_and_font():
    small = draw_instances(
        torch.full((3, 100, 100), 0.5),
        {
            "boxes": torch.tensor([[10.0, 30.0, 60.0, 90.0]]),
            "scores": torch.tensor([0.5]),
            "labels": torch.tensor([1]),
        },
        show_labels=False,
    )
    big = draw_instances(
        torch.full((3, 1000, 1000), 0.5),
        {
            "boxes": torch.tensor([[100.0, 300.0, 600.0, 900.0]]),
            "scores": torch.tensor([0.5]),
            "labels": torch.tensor([1]),
        },
        show_labels=False,
    )
    changed_small = (np.asarray(small) != 128).any(2)[60]  # one row through the box
    changed_big = (np.asarray(big) != 128).any(2)[600]
    assert changed_small.sum() == 2  # 1-pixel lines on a thumbnail
    assert changed_big.sum() >= 4  # thicker lines on a large image
    assert len(instance_colors(50)) == len({tuple(c) for c in instance_colors(50)})


def test_min_size_enlarges_small_images_by_an_integer_factor():
    image = _image()
    det = {**_det(), "keypoints": torch.tensor([[[20.0, 30.0, 2.0]], [[50.0, 20.0, 2.0]]])}
    big = np.asarray(draw_instances(image, det, min_size=300, show_labels=False)).astype(np.int32)
    assert big.shape == (H * 4, W * 4, 3)  # ceil(300 / 80) = 4
    base = to_uint8_hwc(image).astype(np.int32)
    # pixels repeated: a block far from every instance is the original pixel 4x4 times
    assert (big[55 * 4 : 55 * 4 + 4, 0:4] == base[55, 0]).all()
    # the best instance's mask interior is tinted at the scaled position, its box edge scaled too
    small = np.asarray(draw_instances(image, det, show_labels=False)).astype(np.int32)
    assert np.abs(big[35 * 4 + 1, 20 * 4 + 1] - small[35, 20]).max() <= 1
    best = instance_colors(2)[0].astype(np.int32)
    assert (big[100:180, 10 * 4] == best).all(axis=1).any()  # box x1 = 10 -> 40
    # already large enough: drawn at its own size
    assert np.asarray(draw_instances(image, det, min_size=50)).shape == (H, W, 3)


def test_skeleton_of_any_keypoint_set_joins_its_keypoints():
    """A 3-keypoint set: the edge the skeleton names is drawn (its midpoint coloured), the other
    pair is not joined; the config's 1-based COCO skeleton becomes 0-based edges."""
    from maskrcnn.config import load_config

    image = _image()
    det = {k: v[:1] for k, v in _det(1).items() if k != "masks"}
    det["keypoints"] = torch.tensor([[[10.0, 10.0, 1.0], [50.0, 10.0, 1.0], [10.0, 50.0, 1.0]]])
    base = to_uint8_hwc(image)
    cfg = load_config("demo_keypoints",
                      {"data.keypoint_skeleton": [[1, 2]], "model.roi_heads.num_keypoints": 3})
    assert skeleton_for(cfg) == ((0, 1),)
    kw = {"show_boxes": False, "show_labels": False}
    joined = np.asarray(draw_instances(image, det, skeleton=skeleton_for(cfg), **kw))
    assert not np.array_equal(joined[10, 30], base[10, 30])  # on the 0-1 edge
    assert np.array_equal(joined[30, 10], base[30, 10])  # between 0 and 2: no edge
    plain = np.asarray(draw_instances(image, det, **kw))  # 3 keypoints, no skeleton given: points only
    assert np.array_equal(plain[10, 30], base[10, 30])
    assert skeleton_for(load_config("demo_keypoints")) == COCO_SKELETON  # 17 unnamed: COCO's, as None drew
    with pytest.raises(ValueError, match="skeleton"):
        draw_instances(image, det, skeleton=[(0, 3)])


def test_non_latin_class_names_with_the_bitmap_font(monkeypatch):
    """With PIL's bitmap font (Pillow < 10.1, which the package allows, or no FreeType) a class named in
    Chinese or Japanese raised UnicodeEncodeError: predict and show-data died on their first overlay."""
    from PIL import ImageFont

    import maskrcnn.visualize as visualize

    bitmap = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    monkeypatch.setattr(visualize, "_font", lambda size, text="": bitmap)
    visualize._warn_undrawable.cache_clear()
    with pytest.warns(UserWarning, match="draws the class name '猫': its overlays show its index 1"):
        out = draw_instances(_image(), _det(), ["__background__", "猫", "chien noir"])
    assert out.size == (W, H)


@pytest.mark.filterwarnings("ignore:no font on this machine draws")  # the code point no font has
def test_class_names_beyond_ascii_are_drawn_not_boxed():
    """Pillow's scalable built-in font has ASCII glyphs only: 'Größe', 'собака', '猫' were drawn as
    'missing glyph' boxes in every overlay (predict, show-data). A system font that has the glyphs is
    used for such a label: the label 'ß' no longer looks like a code point no font draws."""
    from PIL import ImageFont

    from maskrcnn.visualize import _UNICODE_FONTS

    def draws(name):
        try:
            font = ImageFont.truetype(name, 12)
        except OSError:
            return False
        return font.getmask("ß").size != font.getmask("\U0010fffd").size or bytes(font.getmask("ß")) != bytes(
            font.getmask("\U0010fffd"))

    if not any(draws(name) for name in _UNICODE_FONTS):
        pytest.skip("no font with a German sharp s on this machine")
    det = _det(1)
    sharp_s = np.asarray(draw_instances(_image(), det, ["__background__", "ß"], min_size=240))
    no_glyph = np.asarray(draw_instances(_image(), det, ["__background__", "\U0010fffd"], min_size=240))
    ascii_label = np.asarray(draw_instances(_image(), det, ["__background__", "a"], min_size=240))
    assert (sharp_s != no_glyph).any() and (sharp_s != ascii_label).any()


@pytest.fixture
def fresh_font_lookups():
    """Fonts are looked up once per size and set of characters: a test that changes what this machine
    appears to have starts and ends with nothing remembered."""
    import maskrcnn.visualize as visualize

    caches = (visualize._font_for, visualize._font_drawing)  # as they are before any monkeypatching
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def test_a_label_no_font_draws_is_its_index_with_one_warning_per_class(monkeypatch, fresh_font_lookups):
    """A class named '猫' on a machine without a CJK font was drawn as 'missing glyph' boxes: it is now
    drawn as its index (the overlay equals one drawn without class names), with one warning naming it."""
    import warnings

    import maskrcnn.visualize as visualize

    monkeypatch.setattr(visualize, "_font_drawing", lambda chars: None)
    visualize._warn_undrawable.cache_clear()
    det = _det()
    names = ["__background__", "猫", "dog"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = np.asarray(draw_instances(_image(), det, names, min_size=240))
        again = np.asarray(draw_instances(_image(), det, names, min_size=240))
    as_index = np.asarray(draw_instances(_image(), det, None, min_size=240))
    unlabelled = np.asarray(draw_instances(_image(), det, names, min_size=240, show_labels=False))
    latin = np.asarray(draw_instances(_image(), det, ["__background__", "cat", "dog"], min_size=240))
    assert (first == again).all()
    # Instance 0 ('猫', label 1, box x 30..90 at this size: 240 x 180) is drawn as '1 0.90'; instance 1
    # keeps 'dog'.
    left, right = (slice(None), slice(0, 115)), (slice(None), slice(115, None))
    assert (first[left] == as_index[left]).all() and (first[left] != unlabelled[left]).any()
    assert (first[right] == latin[right]).all() and (first[right] != as_index[right]).any()
    said = [str(w.message).split(":")[0] for w in caught]
    assert said == ["no font on this machine draws the class name '猫'"]
    # With PIL's bitmap font (latin-1 only) too.
    bitmap = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    monkeypatch.setattr(ImageFont, "load_default", lambda size=None: bitmap)
    visualize._font_for.cache_clear()
    assert visualize._font(12, "猫 0.90") is None and visualize._font(12, "Größe") is bitmap


def test_a_cjk_label_is_drawn_with_a_font_that_has_its_glyphs_or_as_its_index():
    """Whatever fonts this machine has: '猫' is drawn with a font whose glyph for it is not the missing-
    glyph box, or (no such font) the label falls back to the index; never a crash."""
    from maskrcnn.visualize import _NO_GLYPH, _font, _warn_undrawable

    font = _font(20, "猫 0.90")
    _warn_undrawable.cache_clear()
    if font is not None:
        assert font.getmask("猫").getbbox() != font.getmask(_NO_GLYPH).getbbox() or bytes(
            font.getmask("猫")) != bytes(font.getmask(_NO_GLYPH))
    with pytest.warns(UserWarning, match="'猫猫'") if font is None else _no_warning():
        out = draw_instances(_image(), _det(1), ["__background__", "猫猫"], min_size=240)
    assert out.size == draw_instances(_image(), _det(1), None, min_size=240).size


def _no_warning():
    import contextlib
    import warnings

    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("error")
    return stack


def test_fontconfig_is_asked_for_a_font_with_the_label_characters(monkeypatch, fresh_font_lookups):
    """Fonts are found by fontconfig's charset query (not only by a list of file names): with the known
    names and the folders out of the way, a Cyrillic label still gets a font that draws it."""
    import shutil

    import maskrcnn.visualize as visualize

    if shutil.which("fc-list") is None or not visualize._fontconfig_fonts("д"):
        pytest.skip("no fontconfig font with Cyrillic here")
    monkeypatch.setattr(visualize, "_UNICODE_FONTS", ())
    monkeypatch.setattr(visualize, "_folder_fonts", lambda: ())
    font = visualize._font(20, "собака")
    assert font is not None and visualize._draws(font, "собака")
    assert font.path in visualize._fontconfig_fonts("адбкос")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert visualize._fontconfig_fonts("д") == []


def test_a_hundred_labels_look_their_font_up_once(monkeypatch, fresh_font_lookups):
    """The font for a label beyond ASCII was looked up for every detection (the built-in font loaded and
    probed glyph by glyph, ~1 ms each): labels of one class differing only in their scores now share one
    lookup, and the overlay is the one drawn with a lookup per label."""
    import warnings

    import maskrcnn.visualize as visualize

    D = 100
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(D, 2, generator=g) * 60
    det = {"boxes": torch.cat([xy, xy + 15], 1), "scores": torch.linspace(0.2, 0.99, D),
           "labels": torch.ones(D, dtype=torch.int64)}
    names = ["__background__", "Größe"]
    loads = []
    load_default = ImageFont.load_default
    monkeypatch.setattr(ImageFont, "load_default", lambda *a, **k: loads.append(1) or load_default(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without a font that has 'ö' here: drawn as the index, warned
        once = np.asarray(draw_instances(_image(), det, names, min_size=240))
        assert len(loads) == 2  # the label-less default and the one for 'ö', 'ß'; not 1 + 100
        monkeypatch.setattr(visualize, "_font_for", visualize._font_for.__wrapped__)
        per_label = np.asarray(draw_instances(_image(), det, names, min_size=240))
    assert len(loads) == 2 + 1 + D
    assert (once == per_label).all()


def test_label_cover_areas_in_one_broadcast_match_pairwise_overlaps():
    """Label placement summed each candidate's overlap with every placed label pair by pair in Python
    (3.3 s for 2000 detections); ``_covered`` does it in one broadcast with the same sums."""
    from maskrcnn.visualize import _covered

    def pairwise(a, b):
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (40, 2))
    placed = np.concatenate([xy, xy + rng.uniform(1, 30, (40, 2))], axis=1)  # (40, 4)
    placed[1] = placed[0] + [placed[0, 2] - placed[0, 0], 0, placed[0, 2] - placed[0, 0], 0]  # touching: 0
    candidates = np.array([[10.0, 10.0, 40.0, 25.0], [0.0, 0.0, 1000.0, 1000.0], [-50, -50, -10, -10],
                           placed[0]])  # (4, 4): partly covered, covering all, outside, one placed itself
    want = [sum(pairwise(c, p) for p in placed) for c in candidates]
    assert np.allclose(_covered(candidates, placed), want, rtol=1e-12, atol=0)
    assert _covered(candidates, placed)[2] == 0.0
    assert np.allclose(_covered(candidates, placed)[1], ((placed[:, 2:] - placed[:, :2]).prod(axis=1)).sum())
    assert _covered(candidates, np.zeros((0, 4))).tolist() == [0.0] * 4  # nothing placed yet


def test_draw_instances_takes_what_the_predictor_takes(tmp_path):
    """A path was read as a 0-d array ("got shape ()"), uint16 refused: the image forms the Predictor
    takes draw the same overlay as the uint8 array."""
    u8 = to_uint8_hwc(_image())
    det = _det()
    want = np.asarray(draw_instances(u8, det))
    path = tmp_path / "x.png"
    Image.fromarray(u8).save(path)
    forms = [str(path), path, path.read_bytes(), u8.astype(np.uint16) * 257,
             (u8.astype(np.uint16) * 257).astype(">u2"), np.ma.masked_array(u8)]
    for image in forms:
        assert np.array_equal(np.asarray(draw_instances(image, det)), want), type(image)
    with pytest.raises(TypeError, match=r"det is a list of results, one per image \(1 here\): pass one "
                                        r"image's result, e.g. results\[0\]"):
        draw_instances(u8, [det])
    with pytest.raises(TypeError, match="expected a file path.*got NoneType"):
        draw_instances(None, det)


def test_a_corrupt_exif_block_warns_once_at_the_callers_line(monkeypatch):
    im = Image.fromarray(np.full((H, W, 3), 128, np.uint8))

    def broken(self):
        raise SyntaxError("bad EXIF")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    with pytest.warns(UserWarning, match="^draw_instances: ignoring unreadable EXIF") as w:
        out = draw_instances(im, _det(), ["bg", "a", "b"])
    assert out.size == (W, H)
    exif = [x for x in w if "EXIF" in str(x.message)]
    assert len(exif) == 1 and exif[0].filename == __file__


def test_a_16_bit_pil_image_and_a_masked_array():
    u16 = np.full((H, W), 65535, np.uint16)
    u16[:10] = 0
    arr = to_uint8_hwc(Image.fromarray(u16))
    assert arr.shape == (H, W, 3) and arr[:10].max() == 0 and arr[10:].min() == 255
    masked = np.ma.masked_array(np.zeros((H, W, 3), np.uint8), mask=np.zeros((H, W, 3), bool))
    masked.mask[0, 0, 0] = True
    with pytest.raises(ValueError, match="masked values"):
        to_uint8_hwc(masked)


def test_enlarged_overlays_do_not_enlarge_every_mask_at_once():
    """``show-data`` on an image with 200,000 small polygons ran out of memory: ``draw_targets`` (and
    ``draw_instances``) repeated every mask's pixels at once (36 GiB). The masks are now laid into one
    instance map at their own size, enlarged once; the picture is the same as enlarging each mask."""
    import tracemalloc

    from maskrcnn.visualize import draw_targets

    M, h, w, factor = 3000, 20, 20, 20  # 3000 masks enlarged 20x: 1.2 GB as bools, 4.8 MB as one map
    masks = np.zeros((M, h, w), bool)
    masks[np.arange(M), np.arange(M) % h, (np.arange(M) // h) % w] = True
    boxes = np.zeros((M, 4), np.float32)
    target = {"boxes": boxes, "labels": np.ones(M, np.int64), "masks": masks,
              "iscrowd": np.arange(M) == 0}  # fmt: skip
    tracemalloc.start()
    try:
        out = draw_targets(np.zeros((h, w, 3), np.uint8), target, ["bg", "x"], min_size=h * factor)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.size == (w * factor, h * factor)
    assert peak < 100e6, f"{peak / 1e6:.0f} MB"
    # the same picture as enlarging the image and every mask first, for a few instances
    small = {"boxes": boxes[1:4], "labels": np.ones(3, np.int64), "masks": masks[1:4]}
    big = {"boxes": boxes[1:4] * 4, "labels": np.ones(3, np.int64),
           "masks": masks[1:4].repeat(4, axis=1).repeat(4, axis=2)}  # fmt: skip
    image = np.full((h, w, 3), 90, np.uint8)
    assert np.array_equal(np.asarray(draw_targets(image, small, ["bg", "x"], min_size=4 * h)),
                          np.asarray(draw_targets(image.repeat(4, 0).repeat(4, 1), big, ["bg", "x"])))
    det = dict(small, scores=np.array([0.9, 0.8, 0.7], np.float32))
    assert np.array_equal(np.asarray(draw_instances(image, det, ["bg", "x"], min_size=4 * h)),
                          np.asarray(draw_instances(image.repeat(4, 0).repeat(4, 1), dict(big, scores=det[
                              "scores"]), ["bg", "x"])))
