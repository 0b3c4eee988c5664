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
