"""Label Studio local files that are not regular files, and fetches that never end: a worker thread or a
request slot is never held by them for good."""

import asyncio
import functools
import os
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the server tests need the 'serve' extra (pip install maskrcnn[serve])")
anyio_to_thread = pytest.importorskip("anyio.to_thread")

from maskrcnn.serve.app import RequestError, _unless_disconnected  # noqa: E402
from maskrcnn.serve.labelstudio_backend import LabelConfig, predict_tasks  # noqa: E402
from maskrcnn.serve.labelstudio_fetch import FetchError, ImageFetcher  # noqa: E402


def _fetch_in_thread(fetcher, reference, wait_s=5.0):
    """-> the exception the fetch raised, or 'hung' when it did not return within wait_s."""
    outcome = []

    def run():
        try:
            outcome.append(fetcher.fetch(reference))
        except Exception as e:  # noqa: BLE001 - what the fetch raised is the result
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wait_s)
    return outcome[0] if outcome else "hung"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_under_the_local_root_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "sub").mkdir()
    fetcher = ImageFetcher(local_root=tmp_path, max_bytes=1000)
    got = _fetch_in_thread(fetcher, "/data/local-files/?d=pipe")
    if got == "hung":  # free the thread the old code left blocked in open()
        with open(tmp_path / "pipe", "wb"):
            pass
    assert isinstance(got, FetchError), got
    assert "pipe is a FIFO (named pipe), not a regular file" in str(got)
    assert "d=pipe" in str(got)
    got = _fetch_in_thread(fetcher, "/data/local-files/?d=sub")
    assert isinstance(got, FetchError) and "sub is a folder, not a regular file" in str(got)


def test_a_local_file_is_read_up_to_the_limit_only(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"y" * 10)
    fetcher = ImageFetcher(local_root=tmp_path, max_bytes=10)
    assert fetcher.fetch("/data/local-files/?d=ok.png") == (b"y" * 10, "ok.png")


def test_a_load_that_never_ends_is_given_up_at_the_deadline():
    release = threading.Event()

    def load(reference):
        release.wait(30)  # a file on a hung mount
        raise AssertionError("not reached in time")

    async def detect(image):
        raise AssertionError("no image to detect on")

    in_thread = functools.partial(anyio_to_thread.run_sync, abandon_on_cancel=True)
    config = LabelConfig(kind="RectangleLabels", from_name="label", to_name="image", data_key="image",
                         labels=("cat",))
    t0 = time.monotonic()
    try:
        results = asyncio.run(predict_tasks(
            [{"id": 7, "data": {"image": "/data/local-files/?d=x.png"}}], config=config,
            class_names=["__background__", "cat"], model_version="m", load=load, detect=detect,
            in_thread=in_thread, concurrency=2, load_timeout_s=0.5))
    finally:
        release.set()
    assert time.monotonic() - t0 < 5
    assert results[0]["result"] == []


def test_a_client_gone_ends_the_call_and_frees_its_slot():
    class Request:  # the ASGI server's next message once the body is read: the client hung up
        async def receive(self):
            return {"type": "http.disconnect"}

    cancelled = []

    async def never_ends():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        with pytest.raises(RequestError) as e:
            await asyncio.wait_for(_unless_disconnected(Request(), never_ends()), 5)
        await asyncio.sleep(0)
        return e.value

    error = asyncio.run(main())
    assert error.status == 499 and cancelled == [True]
