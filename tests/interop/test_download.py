"""Published-name resolution and the atomic, checksummed download (file:// URLs, no network)."""

import hashlib

import pytest

from maskrcnn.interop.download import PUBLISHED, DownloadError, download, expected_hash_prefix, resolve


def test_published_names_resolve_to_torchvision_urls():
    assert resolve("maskrcnn_resnet50_fpn_coco") == \
        "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    assert expected_hash_prefix(PUBLISHED["maskrcnn_resnet50_fpn_v2_coco"]) == "73cbd019"
    assert expected_hash_prefix(PUBLISHED["keypointrcnn_resnet50_fpn_coco"]) == "fc266e95"
    with pytest.raises(ValueError, match="maskrcnn_resnet50_fpn_coco"):
        resolve("maskrcnn_r50")


def _source(tmp_path, payload=b"weights" * 1000, good_hash=True):
    digest = hashlib.sha256(payload).hexdigest()
    prefix = digest[:8] if good_hash else ("0" * 8 if not digest.startswith("0" * 8) else "1" * 8)
    src = tmp_path / "src" / f"model-{prefix}.pth"
    src.parent.mkdir()
    src.write_bytes(payload)
    return src


def test_download_verifies_and_caches(tmp_path):
    src = _source(tmp_path)
    cache = tmp_path / "cache"
    path = download(src.as_uri(), cache=cache, progress=False)
    assert path == cache / src.name and path.read_bytes() == src.read_bytes()
    src.unlink()  # the verified cached copy is used from now on
    assert download(src.as_uri(), cache=cache, progress=False) == path
    assert sorted(p.name for p in cache.iterdir()) == [src.name]


def test_checksum_mismatch_leaves_nothing(tmp_path):
    src = _source(tmp_path, good_hash=False)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(src.as_uri(), cache=cache, progress=False)
    assert list(cache.iterdir()) == []
    with pytest.raises(DownloadError, match="download failed"):
        download((tmp_path / "absent-12345678.pth").as_uri(), cache=cache, progress=False)
    assert list(cache.iterdir()) == []


def test_offline_failure_says_where_a_file_downloaded_by_hand_is_picked_up(tmp_path, monkeypatch):
    """Offline, train's first fine-tuning step and ``convert maskrcnn_resnet50_fpn_coco`` said only
    "download failed (<urlopen error ...>)". The message now names the URL, the exact path the file is
    looked for at (and a file saved there is used), and ``--init FILE`` as the other way."""
    import re
    import urllib.error
    import urllib.request

    from maskrcnn.interop import download as download_module
    from maskrcnn.interop.weights import resolve_spec

    payload = b"weights" * 1000
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    url = f"https://example.invalid/models/maskrcnn_resnet50_fpn_coco-{prefix}.pth"
    monkeypatch.setitem(download_module.PUBLISHED, "maskrcnn_resnet50_fpn_coco", url)
    monkeypatch.setenv("MASKRCNN_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as info:
        resolve_spec("maskrcnn_resnet50_fpn_coco")  # what train --config finetune starts from
    message = str(info.value)
    assert message.startswith(f"{url}: download failed (") and "train --init FILE" in message
    target = tmp_path / "cache" / f"maskrcnn_resnet50_fpn_coco-{prefix}.pth"
    assert f"save it as {target}: it is picked up from there" in message and prefix in message
    assert not target.exists()
    target.write_bytes(b"a page of HTML")  # a wrong file there is said to be wrong, not silently ignored
    with pytest.raises(DownloadError, match=re.escape(f"{target} (the file there now is not it")):
        resolve_spec("maskrcnn_resnet50_fpn_coco")
    target.write_bytes(payload)  # the file downloaded by hand, where the message said: used, no network
    assert resolve_spec("maskrcnn_resnet50_fpn_coco")["path"] == str(target)


def test_http_error_is_no_offline_hint(tmp_path, monkeypatch):
    """A 404 is an answer from the server: no "offline?" and no cache path, only the file's path instead."""
    import urllib.error
    import urllib.request

    url = "https://example.invalid/models/gone-12345678.pth"

    def not_found(*args, **kwargs):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(DownloadError) as info:
        download(url, cache=tmp_path / "cache", progress=False)
    message = str(info.value)
    assert message.startswith(f"{url}: download failed (HTTP Error 404: Not Found); give the file's path")
    assert "offline?" not in message
