"""The web page in headless Chromium: upload an image, wait for the answer, and read back what was drawn.

The canvas must show the detections (masks tinted, boxes and labels in the library's instance colours,
also in a screenshot of the page), and the score slider set above every score must leave exactly the
uploaded picture (so what was drawn was the detections, and the slider filters them live).

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and selenium (the
``dev`` extra); skipped, saying which is missing, otherwise.
"""

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image
from serve_helpers import RunningServer, png_bytes

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("uvicorn", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
pytest.importorskip("python_multipart", reason="the server tests need python-multipart (the 'serve' extra)")
pytest.importorskip("selenium", reason="the browser test needs selenium (the dev extra)")

from maskrcnn.data.images import decode_image_bytes  # noqa: E402
from maskrcnn.serve.app import create_app  # noqa: E402
from maskrcnn.visualize import LABEL_DARKEN, instance_colors  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "the browser test needs headless Chromium and chromedriver on PATH "
        "(Debian/Ubuntu: apt-get install -y chromium chromium-driver); "
        f"found chromium={CHROMIUM}, chromedriver={CHROMEDRIVER}",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

HEADLESS_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900", "--force-device-scale-factor=1",
)  # fmt: skip


def start_browser(profile_dir):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")  # a fresh profile: no state from earlier runs
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def show_image(driver, url, path, timeout=120):
    """Open the page (``url``; None: the page as it is), choose ``path`` in its file input, wait for the
    answer -> the page's state."""
    if url is not None:
        driver.get(url)
    else:  # the state the last file left must not be mistaken for this one's
        driver.execute_script("document.body.dataset.state = 'idle';")
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
    )
    return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def set_slider(driver, value):
    driver.execute_script(
        "const s = document.getElementById('score'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'));",
        str(value),
    )


def canvas_pixels(driver) -> np.ndarray:
    """(H, W, 3) uint8: the canvas at its own resolution (toDataURL is lossless PNG)."""
    url = driver.execute_script("return document.getElementById('canvas').toDataURL('image/png');")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def near(pixels, colour, tol=3) -> int:
    """How many pixels are within ``tol`` of ``colour`` in every channel."""
    return int((np.abs(pixels.astype(int) - np.asarray(colour, int)).max(axis=-1) <= tol).sum())


@pytest.fixture
def browser(tmp_path):
    driver = start_browser(tmp_path / "profile")
    yield driver
    driver.quit()


def test_page_draws_detections_and_the_slider_hides_them(serve_predictor, browser, tmp_path):
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    picture = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 96)], -1).astype(np.uint8)
    path = tmp_path / "gradient.png"
    path.write_bytes(png_bytes(picture))
    server = RunningServer(create_app(serve_predictor, weights_name="tiny.pth"))
    try:
        state = show_image(browser, server.url + "/", path)
        status = browser.find_element(By.ID, "status").text
        assert state == "done", status
        rows = browser.find_elements(By.CSS_SELECTOR, "#rows tr")
        n = len(rows)
        det = serve_predictor.predict_tensors([decode_image_bytes(path.read_bytes())])[0]
        scores = det["scores"].tolist()  # descending
        assert n == len(scores) > 2
        above = sum(sc >= 0.5 for sc in scores)  # the slider starts at 0.5
        assert f"{above} of {n} detections shown" in status, status
        assert sum(r.is_displayed() for r in rows) == above
        assert "tiny.pth" in browser.find_element(By.ID, "model").text
        # a slider position (its step is 0.01) that splits the detections, clear of every score
        t = next(t for t in np.arange(1, 100) / 100 if 0 < sum(sc >= t for sc in scores) < n
                 and min(abs(sc - t) for sc in scores) > 1e-3)  # fmt: skip
        k = sum(sc >= t for sc in scores)
        set_slider(browser, f"{t:.2f}")
        assert f"{k} of {n} detections shown" in browser.find_element(By.ID, "status").text
        assert [r.is_displayed() for r in rows] == [True] * k + [False] * (n - k)  # table rows: score order
        set_slider(browser, 0.0)  # all of them

        drawn = canvas_pixels(browser)
        k = int(browser.find_element(By.ID, "canvas").get_attribute("data-scale"))
        assert k == 480 // w  # a small picture is drawn enlarged by a whole factor
        shown = np.repeat(np.repeat(picture, k, axis=0), k, axis=1)  # (k H, k W, 3): the picture enlarged
        assert drawn.shape == shown.shape
        changed = np.abs(drawn.astype(int) - shown.astype(int)).max(axis=-1) > 8
        assert changed.mean() > 0.05  # masks, boxes and labels cover a good part of the picture
        # the masks, decoded from RLE in the browser, are tinted where the predictor put them
        union = det["masks"].any(0).numpy().repeat(k, axis=0).repeat(k, axis=1)  # (k H, k W)
        assert union.mean() > 0.05 and changed[union].mean() > 0.95
        # ... and not elsewhere: outside masks, boxes and label strips nothing changed
        allowed = union.copy()
        for x0, y0, x1, y1 in (det["boxes"] * k).round().int().tolist():
            allowed[max(y0 - 4, 0) : y1 + 5, max(x0 - 4, 0) : x1 + 5] = True  # box and its outline
            allowed[max(y0 - 20, 0) : y0 + 20, max(x0 - 4, 0) :] = True  # label above or inside the top
        assert not (changed & ~allowed).any()
        colours = instance_colors(n)
        dark = (colours.astype(np.float32) * LABEL_DARKEN).astype(np.uint8)  # draw_instances' label strips
        # the last detection is drawn on top: its label's background is its colour darkened, exactly, as
        # the PNG overlays have it (white text on it)
        assert near(drawn, dark[n - 1]) >= 20
        screenshot = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB"))
        (tmp_path / "page.png").write_bytes(browser.get_screenshot_as_png())
        assert near(screenshot, dark[n - 1]) >= 20  # and the screenshot shows it

        set_slider(browser, 1.0)  # above every score: nothing drawn, nothing listed
        assert np.abs(canvas_pixels(browser).astype(int) - shown.astype(int)).max() <= 2
        assert f"0 of {n} detections shown" in browser.find_element(By.ID, "status").text
        assert all(not r.is_displayed() for r in rows)
        set_slider(browser, 0.0)
        assert np.array_equal(canvas_pixels(browser), drawn)

        # an upload the server refuses is reported on the page, and the page stays usable; the previous
        # picture and its table are cleared, not left beside the error as if they were this file's
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"not an image at all")
        assert show_image(browser, None, bad) == "error"
        assert "400" in browser.find_element(By.ID, "status").text
        assert "not an image" in browser.find_element(By.ID, "status").text
        assert not browser.find_element(By.ID, "canvas").is_displayed()
        assert browser.find_elements(By.CSS_SELECTOR, "#rows tr") == []
        assert show_image(browser, None, path) == "done"  # and the next good file is drawn again
        assert len(browser.find_elements(By.CSS_SELECTOR, "#rows tr")) == n
    finally:
        server.stop()


def test_page_decodes_coco_rle_as_pycocotools_encodes_it(browser, serve_predictor, tmp_path):
    """The page's RLE decoder against the library's encoder (pycocotools) on masks with runs of every
    kind: long and short, across column boundaries, touching the borders, one pixel, empty."""
    import torch

    from maskrcnn.data.mask_codec import masks_to_rles

    rng = np.random.default_rng(0)
    h, w = 37, 53
    masks = np.zeros((5, h, w), bool)
    masks[0] = rng.random((h, w)) < 0.5  # short runs: small and negative count differences
    masks[1, 5:30, 7:40] = True  # one blob
    masks[1, 12:20, 15:22] = False  # with a hole
    masks[2, :, 50:] = True  # runs over column boundaries, touching the right, top and bottom border
    masks[3, 36, 0] = True  # one pixel in a corner
    # masks[4] stays empty
    rles = masks_to_rles(torch.from_numpy(masks))
    server = RunningServer(create_app(serve_predictor))
    try:
        browser.get(server.url + "/")
        for mask, rle in zip(masks, rles):
            got = browser.execute_script(
                "const m = decodeMask(arguments[0]);"
                "return m && {x0: m.x0, y0: m.y0, w: m.w, h: m.h, data: Array.from(m.data)};",
                rle,
            )
            if not mask.any():
                assert got is None
                continue
            ys, xs = np.nonzero(mask)
            assert (got["x0"], got["y0"]) == (xs.min(), ys.min())
            assert (got["w"], got["h"]) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            crop = np.asarray(got["data"], dtype=bool).reshape(got["h"], got["w"])
            assert np.array_equal(crop, mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    finally:
        server.stop()


class _RenamedPredictor:
    """``serve_predictor`` under other class names (what a checkpoint of the user's own classes has)."""

    def __init__(self, predictor, class_names):
        self.predictor, self.class_names = predictor, class_names
        self.label_to_category_id, self.batch_size = None, predictor.batch_size
        self.device = predictor.device

    def predict_tensors(self, images):
        return self.predictor.predict_tensors(images)


def test_page_shows_names_as_text_never_as_markup(serve_predictor, browser, tmp_path):
    # Class names, the weights' name and file names come from users: the page must show them, not run them.
    attack = '<img src=x onerror="document.body.dataset.pwned=1">'
    names = ["__background__", attack + ' "cat" & é', "<script>document.body.dataset.pwned=2</script>"]
    app = create_app(_RenamedPredictor(serve_predictor, names), weights_name="<b>w</b>.pth")
    server = RunningServer(app)
    picture = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    path = tmp_path / "<img src=x onerror=document.body.dataset.pwned=3>.png"
    path.write_bytes(png_bytes(picture))
    bad = tmp_path / "<i>bad.png"
    bad.write_bytes(b"not an image")
    try:
        state = show_image(browser, server.url + "/", path)
        assert state == "done", browser.find_element(By.ID, "status").text
        cells = {td.text for td in browser.find_elements(By.CSS_SELECTOR, "#rows td")}
        assert names[1] in cells  # the literal text, quotes and all
        assert path.name in browser.find_element(By.ID, "status").text
        WebDriverWait(browser, 60).until(lambda d: "<b>w</b>.pth" in d.find_element(By.ID, "model").text)
        assert show_image(browser, server.url + "/", bad) == "error"
        assert "<i>bad.png: not an image" in browser.find_element(By.ID, "status").text
        injected = browser.execute_script(
            "return [document.querySelectorAll('img, script:not([src]), b, i').length,"
            " document.body.dataset.pwned || null];"
        )
        assert injected == [0, None]
    finally:
        server.stop()


class _OneAtTheRightEdge:
    """One fixed detection whose box touches the picture's right edge, under a long class name."""

    class_names = ["__background__", "a rather long class name"]
    label_to_category_id, batch_size, device = None, 1, "cpu"

    def predict_tensors(self, images):
        import torch

        H, W = images[0].shape[-2:]
        return [{"boxes": torch.tensor([[W - 12.0, 30.0, W, 60.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1])}]


def test_page_labels_white_on_the_darkened_colour_inside_the_canvas(browser, tmp_path):
    """Labels were black on the detection's colour (2.1:1 for some colours) and ran off the canvas's
    right edge; now they are drawn as the overlays draw them: white on the colour darkened, moved left."""
    path = tmp_path / "grey.png"
    path.write_bytes(png_bytes(np.full((90, 120, 3), 128, np.uint8)))
    server = RunningServer(create_app(_OneAtTheRightEdge()))
    try:
        assert show_image(browser, server.url + "/", path) == "done"
        set_slider(browser, 0.0)
        drawn = canvas_pixels(browser)
        dark = (instance_colors(1)[0].astype(np.float32) * LABEL_DARKEN).astype(np.uint8)
        strip = np.argwhere(np.abs(drawn.astype(int) - dark.astype(int)).max(-1) <= 1)  # (P, 2) rows, cols
        assert len(strip) > 200
        k = int(browser.find_element(By.ID, "canvas").get_attribute("data-scale"))
        assert strip[:, 1].max() == drawn.shape[1] - 1  # up to the right edge, not cut by it
        width = strip[:, 1].max() - strip[:, 1].min()
        assert width > 3 * 12 * k, width  # far wider than the box: the label moved left to stay whole
        rows = slice(strip[:, 0].min(), strip[:, 0].max() + 1)
        cols = slice(strip[:, 1].min(), strip[:, 1].max() + 1)
        white = (drawn[rows, cols] >= 250).all(-1).sum()
        black = (drawn[rows, cols] <= 5).all(-1).sum()
        assert white > 20 and black == 0  # white text on it, no black
    finally:
        server.stop()


def test_an_answer_for_an_earlier_file_never_replaces_a_later_ones(serve_predictor, browser, tmp_path):
    """Choose a file whose answer is slow, then at once another: the second's answer comes first and is
    drawn; the first's, arriving later, is dropped (it replaced the second's picture, table and status
    while the file input named the second)."""
    import asyncio
    import threading
    import time

    big, small = tmp_path / "big.png", tmp_path / "small.png"
    big.write_bytes(png_bytes(np.random.default_rng(1).integers(0, 256, (150, 200, 3), np.uint8)))
    small.write_bytes(png_bytes(np.random.default_rng(2).integers(0, 256, (60, 80, 3), np.uint8)))
    app = create_app(serve_predictor, weights_name="tiny.pth")
    big_answered = threading.Event()

    @app.middleware("http")
    async def slow_first_prediction(request, call_next):  # as a large photo's upload and forward are
        first = request.url.path == "/predict" and int(request.headers.get("content-length", 0)) > 30_000
        if first:
            await asyncio.sleep(2.0)
        response = await call_next(request)
        if first:
            big_answered.set()
        return response

    server = RunningServer(app)
    try:
        browser.get(server.url + "/")
        browser.find_element(By.ID, "file").send_keys(str(big))
        time.sleep(0.3)  # the first request is on its way
        assert show_image(browser, None, small) == "done"
        assert "small.png" in browser.find_element(By.ID, "status").text
        assert big_answered.wait(timeout=30)
        time.sleep(1.0)  # the browser has had the big answer for a while: it must not be drawn
        status = browser.find_element(By.ID, "status").text
        assert "small.png" in status and "big.png" not in status, status
        scale = int(browser.find_element(By.ID, "canvas").get_attribute("data-scale"))
        assert int(browser.find_element(By.ID, "canvas").get_attribute("width")) == 80 * scale
    finally:
        server.stop()
