"""Resolve a published checkpoint name or a URL to a verified file in the local cache.

Published names map to torchvision's download URLs; the hex part of the file name is the prefix of
the file's SHA-256 (torchvision's convention), which is checked after the download. Downloads go to
a temporary file in the cache folder and are renamed into place only when complete and verified,
so an interrupted download never leaves a file that looks valid. Nothing here loads the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

_TV = "https://download.pytorch.org/models/"
PUBLISHED = {
    "maskrcnn_resnet50_fpn_coco": _TV + "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
    "maskrcnn_resnet50_fpn_v2_coco": _TV + "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
    "keypointrcnn_resnet50_fpn_coco": _TV + "keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
    "fasterrcnn_resnet50_fpn_coco": _TV + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "fasterrcnn_resnet50_fpn_v2_coco": _TV + "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
}
_HASH = re.compile(r"-([a-f0-9]{6,64})\.[A-Za-z0-9]+$")


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message names the URL and the reason."""


def cache_dir() -> Path:
    """``$MASKRCNN_CACHE`` or ``~/.cache/maskrcnn/checkpoints``."""
    env = os.environ.get("MASKRCNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "maskrcnn" / "checkpoints"


def expected_hash_prefix(url: str) -> Optional[str]:
    """The SHA-256 prefix encoded in a file name like ``name-bf2d0c1e.pth``, if any."""
    m = _HASH.search(urllib.parse.urlparse(url).path)
    return m.group(1) if m else None


def sha256_of(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def resolve(name_or_url: str) -> str:
    """A published name -> its URL; a URL stays as is; anything else is an error listing the names."""
    if name_or_url in PUBLISHED:
        return PUBLISHED[name_or_url]
    if re.match(r"^(https?|file)://", name_or_url):
        return name_or_url
    raise ValueError(f"{name_or_url!r} is neither a published checkpoint ({', '.join(PUBLISHED)}) nor a URL")


def download(name_or_url: str, *, cache: Optional[Path] = None, sha256_prefix: Optional[str] = None,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Path of the cached, verified file, downloading it first when needed.

    ``sha256_prefix`` defaults to the hash in the file name (if it has one). A cached file that does
    not verify is downloaded again.
    """
    url = resolve(name_or_url)
    cache = Path(cache) if cache is not None else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    filename = os.path.basename(urllib.parse.urlparse(url).path) or "checkpoint.pth"
    target = cache / filename
    want = (sha256_prefix or expected_hash_prefix(url) or "").lower()
    if target.is_file() and (not want or sha256_of(target).startswith(want)):
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=cache)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except Exception as e:  # URLError, HTTPError, ValueError, OSError: all a failed download
                raise DownloadError(f"{url}: download failed ({e})") from None
            with response:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if progress and sys.stderr.isatty():
                        pct = f" {100 * done / total:5.1f}%" if total else ""
                        print(f"\r{filename}: {done / 2**20:.1f} MiB{pct}", end="", file=sys.stderr)
                if progress and sys.stderr.isatty():
                    print(file=sys.stderr)
                if total and done != total:
                    raise DownloadError(f"{url}: truncated download ({done} of {total} bytes)")
            out.flush()
            os.fsync(out.fileno())
        got = sha256_of(tmp)
        if want and not got.startswith(want):
            raise DownloadError(f"{url}: checksum mismatch (sha256 {got[:16]}..., expected {want}...)")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target
