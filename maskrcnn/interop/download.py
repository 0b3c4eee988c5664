"""Resolve a published checkpoint name or a URL to a verified file in the local cache.

Published names: torchvision's detection models (``maskrcnn_resnet50_fpn_coco``, ...) and ImageNet
classifiers (``resnet50``, ``resnext101_32x8d``, ..., also spelt as torchvision's weight enums,
``ResNet50_Weights.IMAGENET1K_V1``), detectron2's model zoo (``mask_rcnn_R_50_FPN_3x``, ...) and its
ImageNet backbones (``ImageNetPretrained/MSRA/R-50.pkl``, ...). detectron2's own ``detectron2://PATH``
spelling is understood too. For torchvision's files the hex part of the file name is the prefix of the
file's SHA-256, which is checked after the download; detectron2 publishes no hash, so its files are
only checked for completeness (callers record the SHA-256 they got). Downloads go to a temporary file
in the cache folder and are renamed into place only when complete and verified, so an interrupted
download never leaves a file that looks valid. Nothing here loads the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from maskrcnn.io_utils import create_temp_file

_TV = "https://download.pytorch.org/models/"
_D2 = "https://dl.fbaipublicfiles.com/detectron2/"
_D2_SCHEME = "detectron2://"
_D2_IS = _D2 + "COCO-InstanceSegmentation/"
_D2_KP = _D2 + "COCO-Keypoints/"
PUBLISHED = {
    # torchvision detection models (COCO)
    "maskrcnn_resnet50_fpn_coco": _TV + "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
    "maskrcnn_resnet50_fpn_v2_coco": _TV + "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
    "keypointrcnn_resnet50_fpn_coco": _TV + "keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
    "fasterrcnn_resnet50_fpn_coco": _TV + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    "fasterrcnn_resnet50_fpn_v2_coco": _TV + "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
    # torchvision ImageNet classifiers (IMAGENET1K_V1, what its detection models start from)
    "resnet18": _TV + "resnet18-f37072fd.pth",
    "resnet34": _TV + "resnet34-b627a593.pth",
    "resnet50": _TV + "resnet50-0676ba61.pth",
    "resnet101": _TV + "resnet101-63fe2227.pth",
    "resnet152": _TV + "resnet152-394f9c45.pth",
    "resnext50_32x4d": _TV + "resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": _TV + "resnext101_32x8d-8ba56ff5.pth",
    # detectron2's model zoo (COCO) and the ImageNet backbones its configs start from
    "mask_rcnn_R_50_FPN_1x": _D2_IS + "mask_rcnn_R_50_FPN_1x/137260431/model_final_a54504.pkl",
    "mask_rcnn_R_50_FPN_3x": _D2_IS + "mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl",
    "mask_rcnn_R_101_FPN_3x": _D2_IS + "mask_rcnn_R_101_FPN_3x/138205316/model_final_a3ec72.pkl",
    "mask_rcnn_X_101_32x8d_FPN_3x": _D2_IS + "mask_rcnn_X_101_32x8d_FPN_3x/139653917/model_final_2d9806.pkl",
    "keypoint_rcnn_R_50_FPN_3x": _D2_KP + "keypoint_rcnn_R_50_FPN_3x/137849621/model_final_a6e10b.pkl",
    "ImageNetPretrained/MSRA/R-50.pkl": _D2 + "ImageNetPretrained/MSRA/R-50.pkl",
    "ImageNetPretrained/MSRA/R-101.pkl": _D2 + "ImageNetPretrained/MSRA/R-101.pkl",
    "ImageNetPretrained/FAIR/X-101-32x8d.pkl": _D2 + "ImageNetPretrained/FAIR/X-101-32x8d.pkl",
}
# torchvision's weight enums name the same ImageNet files
_ALIASES = {
    "ResNet18_Weights.IMAGENET1K_V1": "resnet18", "ResNet34_Weights.IMAGENET1K_V1": "resnet34",
    "ResNet50_Weights.IMAGENET1K_V1": "resnet50", "ResNet101_Weights.IMAGENET1K_V1": "resnet101",
    "ResNet152_Weights.IMAGENET1K_V1": "resnet152",
    "ResNeXt50_32X4D_Weights.IMAGENET1K_V1": "resnext50_32x4d",
    "ResNeXt101_32X8D_Weights.IMAGENET1K_V1": "resnext101_32x8d",
}
_HASH = re.compile(r"-([a-f0-9]{6,64})\.[A-Za-z0-9]+$")


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message names the URL and the reason."""


def cache_dir() -> Path:
    """``$MASKRCNN_CACHE`` or ``~/.cache/maskrcnn/checkpoints``."""
    env = os.environ.get("MASKRCNN_CACHE")
    # lexists: a broken link passes exists() and mkdir then said only "file exists"
    if env and os.path.lexists(env) and not os.path.isdir(env):
        raise NotADirectoryError(f"$MASKRCNN_CACHE ({env}) is a file, not a folder: name a folder for the "
                                 f"downloaded checkpoints")
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


def is_published(name: str) -> bool:
    """Whether ``name`` is a published name, an alias of one, or a ``detectron2://`` path."""
    return name in PUBLISHED or name in _ALIASES or name.startswith(_D2_SCHEME)


def resolve(name_or_url: str) -> str:
    """A published name -> its URL; a URL stays as is; anything else is an error listing the names."""
    name = _ALIASES.get(name_or_url, name_or_url)
    if name in PUBLISHED:
        return PUBLISHED[name]
    if name.startswith(_D2_SCHEME):
        return _D2 + name[len(_D2_SCHEME):].lstrip("/")
    if re.match(r"^(https?|file)://", name):
        return name
    raise ValueError(f"{name_or_url!r} is neither a published checkpoint ({', '.join(PUBLISHED)}) nor a URL")


def cache_name(url: str) -> str:
    """The file name a download is cached under: the URL's own name when it carries a content hash
    (torchvision's ``name-<sha256 prefix>.pth``), else the name plus a digest of the whole URL, since
    such names repeat across folders (detectron2's ``MSRA/R-50.pkl`` and ``torchvision/R-50.pkl``)."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "checkpoint.pth"
    if expected_hash_prefix(url):
        return name
    stem, dot, suffix = name.rpartition(".")
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    return f"{stem}_u{digest}.{suffix}" if dot else f"{name}_u{digest}"


def _offline_hint(spec: str, target: Path, want: str) -> str:
    """What to do without a network: where a file downloaded by hand is picked up (the exact path
    ``download`` looks at first), or how to name a local file instead."""
    there = ""
    if target.is_file():  # there already but not the published file: say so, else it looks ignored
        there = f" (the file there now is not it: its sha256 does not start with {want})"
    check = f", checked against the sha256 prefix {want} in its name" if want else ""
    return (f"offline? download that URL on another machine and save it as {target}{there}: it is picked "
            f"up from there{check} ($MASKRCNN_CACHE sets the folder); or give the file's path in place of "
            f"{spec!r} (train --init FILE, convert FILE)")


def download(name_or_url: str, *, cache: Optional[Path] = None, sha256_prefix: Optional[str] = None,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Path of the cached, verified file, downloading it first when needed.

    ``sha256_prefix`` defaults to the hash in the file name (if it has one). A cached file that does
    not verify is downloaded again.
    """
    url = resolve(name_or_url)
    cache = Path(cache) if cache is not None else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    want = (sha256_prefix or expected_hash_prefix(url) or "").lower()
    filename = cache_name(url)
    target = cache / filename
    if target.is_file() and (not want or sha256_of(target).startswith(want)):
        return target
    fd, tmp = create_temp_file(cache, prefix=f".{filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except urllib.error.HTTPError as e:  # the server answered (404, 403...): not offline
                raise DownloadError(f"{url}: download failed ({e}); give the file's path in place of "
                                    f"{name_or_url!r} instead (train --init FILE, convert FILE)") from None
            except OSError as e:  # URLError (no network, name not resolved), a socket timeout
                hint = _offline_hint(name_or_url, target, want)
                raise DownloadError(f"{url}: download failed ({e}); {hint}") from None
            except Exception as e:  # ValueError (a malformed URL) and the like
                raise DownloadError(f"{url}: download failed ({e}); give the file's path in place of "
                                    f"{name_or_url!r} instead (train --init FILE, convert FILE)") from None
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
