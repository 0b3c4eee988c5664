"""The images of Label Studio tasks, fetched for ``maskrcnn serve``'s Label Studio backend.

A task's image is a reference Label Studio wrote into its data (``data.image``): one of

- ``/data/local-files/?d=PATH``: a file of Label Studio's local storage, PATH relative to its document
  root (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``). With ``local_root`` (``--ls-local-root``, the same
  folder seen from this machine) it is read from disk; a PATH that leads outside that folder (``..``,
  an absolute path, a link pointing out) is refused. Without it, it is fetched from Label Studio as below.
- ``/data/upload/...`` (files uploaded through Label Studio) and other paths starting with ``/``: fetched
  from Label Studio at ``ls_url`` (``--ls-url``) + the path, with the header ``Authorization: Token
  <token>`` (``--ls-token``, or the environment variable ``LABEL_STUDIO_API_KEY``, which the
  ``maskrcnn serve`` command reads: library code does not read the environment). Without ``ls_url``,
  the ``hostname`` and ``access_token`` of Label Studio's ``/setup`` call are used (``adopt``); a given
  ``ls_url`` always wins, and a token goes only to the address it came with: a given token only to the
  given ``ls_url`` (never to an address from ``/setup``), ``/setup``'s ``access_token`` only to its
  ``hostname``. ``/setup`` is not authenticated: whoever can reach the server can name another host
  there, and the ``/data/...`` images of later tasks are then fetched from it (without any token, or with
  the one that ``/setup`` sent); give ``--ls-url`` where that matters.
- an absolute ``http://`` or ``https://`` URL: fetched as it is; the token is sent only when the URL is on
  Label Studio's own origin (scheme, host and port of ``ls_url``), never to another server, and never
  forwarded on a redirect.

- a ``data:`` URL (``data:image/png;base64,...``: Label Studio accepts tasks whose image is inline):
  decoded here, no network and no path; the decoded bytes have the download limit below, and text that
  is not base64 is a ``FetchError`` naming "data URL".

Anything else (``s3://``, ``gs://``, ``file:``, a relative path) is refused: the backend reads only local
storage, HTTP(S) and inline data. Downloads stop past ``max_bytes`` (``--max-upload-mb``, the limit of
uploads to ``/predict``) and past ``timeout_s`` seconds in all (a server that trickles bytes is cut off
too). A local file is read only when it is a regular file (a FIFO, a device or a socket is refused
without waiting on it), and at most ``max_bytes`` of it. Every refusal or failure is a ``FetchError``
whose message names the reference and the reason.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import unquote, unquote_to_bytes, urlsplit

__all__ = ["DEFAULT_FETCH_TIMEOUT_S", "FetchError", "ImageFetcher", "decode_data_url"]

DEFAULT_FETCH_TIMEOUT_S = 30.0
_CHUNK = 256 * 1024


class FetchError(Exception):
    """A task's image that cannot be had: the message says which and why."""


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "a special file"


def _short(reference: str, limit: int = 120) -> str:
    return reference if len(reference) <= limit else reference[:limit] + "..."


def decode_data_url(reference: str, *, max_bytes: int) -> bytes:
    """The bytes of a ``data:[<type>][;base64],<data>`` URL (base64, or percent-encoded without it);
    ``FetchError`` naming "data URL" for one that does not decode or is over ``max_bytes``."""
    head, sep, payload = reference.strip().partition(",")
    if not sep:
        raise FetchError(f"data URL {_short(reference, 60)}: no ',' before the data")
    is_base64 = head.lower().endswith(";base64")
    # refuse what cannot fit before decoding any of it: base64 takes 4 characters per 3 bytes, percent
    # encoding up to 3 per byte ("%89"); the slack is for whitespace. The exact check follows decoding.
    longest = 4 * (max_bytes // 3 + 1) + 4096 if is_base64 else 3 * max_bytes + 4096
    if len(payload) > longest:
        raise FetchError(f"data URL: more than the limit of {max_bytes} bytes")
    if is_base64:
        try:
            data = base64.b64decode("".join(unquote(payload).split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise FetchError(f"data URL {_short(reference, 60)}: not valid base64 ({e})") from None
    else:
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise FetchError(f"data URL: {len(data)} bytes, over the limit of {max_bytes}")
    return data


def _socket_of(response) -> Optional[socket.socket]:
    """The socket an ``http.client`` response reads from (its timeout is then set per read), or None
    where the response is not one (the stdlib keeps it as ``fp.raw._sock``)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only (urllib would follow one to ftp:// too)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise FetchError(f"{_short(req.full_url)} redirects to {_short(newurl)}: only http and https "
                             "are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class ImageFetcher:
    """``fetch(reference) -> (encoded image bytes, name for messages)``; see the module docstring.

    Args:
        ls_url: Label Studio's address as this machine reaches it (``http://localhost:8080``); None:
            references that need it are refused.
        token: Label Studio's API token (Account & Settings), sent to ``ls_url`` only (never to an
            address adopted from ``/setup``).
        local_root: the folder of Label Studio's local storage, or None.
        max_bytes: largest image file accepted.
        timeout_s: most seconds one download may take, from connecting to its last byte.
    """

    def __init__(self, *, ls_url: Optional[str] = None, token: Optional[str] = None,
                 local_root: Optional[Path] = None, max_bytes: int,
                 timeout_s: float = DEFAULT_FETCH_TIMEOUT_S):
        if ls_url is not None:
            parts = urlsplit(ls_url)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"the Label Studio URL must be http(s)://host[:port], got {ls_url!r}")
            ls_url = ls_url.rstrip("/")
        if max_bytes < 1 or not 0 < timeout_s < float("inf"):
            raise ValueError(f"max_bytes must be >= 1 and timeout_s finite and > 0: {max_bytes}, {timeout_s}")
        self.max_bytes, self.timeout_s = max_bytes, timeout_s
        # (Label Studio's address, its token): one value, so that a fetch never pairs one address with
        # another's token while /setup replaces them (adopt)
        self._home = (ls_url, token or None)
        self._given = (ls_url is not None, bool(token))  # from the command line: never replaced
        self.local_root = Path(local_root).resolve() if local_root is not None else None
        self._opener = urllib.request.build_opener(_HttpOnlyRedirects())

    @property
    def ls_url(self) -> Optional[str]:
        return self._home[0]

    @property
    def token(self) -> Optional[str]:
        return self._home[1]

    def adopt(self, hostname: str, token: Optional[str]) -> str:
        """Label Studio's address and token as its ``/setup`` call gives them (``hostname``,
        ``access_token``), used where the constructor was given no ``ls_url``. ``/setup`` is not
        authenticated, so an adopted address is only ever paired with ``/setup``'s own token, never with
        the constructor's (which would otherwise go to any host a caller of ``/setup`` names); with an
        explicit ``ls_url``, that address stays, with the given token, else with ``/setup``'s when
        ``hostname`` is the same origin. -> a line for the log saying which address and token are used."""
        url_given, token_given = self._given
        ls_url, current = self._home
        parts = urlsplit(hostname)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        if url_given:
            if not token_given and token and usable and _origin(hostname) == _origin(ls_url):
                current = token
        elif usable:
            ls_url, current = hostname.rstrip("/"), token or None
        self._home = (ls_url, current)
        if url_given:
            where = f"--ls-url {ls_url} (given; Label Studio's hostname {_short(hostname)} is not used)"
        elif usable:
            where = f"Label Studio's hostname {ls_url} from /setup"
        else:
            where = f"no Label Studio address (the hostname {_short(hostname)!r} from /setup is not http(s))"
        token_from = ("--ls-token" if token_given and url_given else "the access_token from /setup"
                      if current and current == token else "no token")
        unused = ("; --ls-token / LABEL_STUDIO_API_KEY is not sent to an address from /setup: pass --ls-url "
                  "to use it" if token_given and not url_given else "")
        return f"/data/... images are fetched from {where}, with {token_from}{unused}"

    def locate(self, reference: str, home: Optional[tuple] = None) -> Tuple[str, object, bool]:
        """-> ("file", Path, False) or ("url", URL, whether the token goes with it); ``FetchError`` for a
        reference that is refused. No I/O but the local path's resolution. ``home``: the (address,
        token) to use (default: the current ones)."""
        ls_url = (home or self._home)[0]
        if not isinstance(reference, str) or not reference.strip():
            raise FetchError("the task names no image")
        text = reference.strip()
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        on_ls = not scheme or (ls_url is not None and _origin(text) == _origin(ls_url))
        if on_ls and parts.path.startswith("/data/local-files") and self.local_root is not None:
            # unquote rather than parse_qs, which would read a '+' in a file name as a space
            given = [unquote(p[2:]) for p in parts.query.split("&") if p.startswith("d=")]
            if not given or not given[0].strip():
                raise FetchError(f"{_short(text)}: no d=PATH in the local-files URL")
            path = (self.local_root / given[0].lstrip("/")).resolve()
            if not path.is_relative_to(self.local_root):
                raise FetchError(f"{_short(text)}: the path leads outside --ls-local-root; refused")
            return "file", path, False
        if scheme in ("http", "https"):
            return "url", text, on_ls
        if not scheme and text.startswith("/"):
            if ls_url is None:
                raise FetchError(f"{_short(text)} is a path on Label Studio's server: give its address "
                                 "(--ls-url)")
            return "url", ls_url + text, True
        what = f"URL scheme {scheme!r}" if scheme else "a relative path"
        raise FetchError(f"{_short(text)}: {what} is not supported (only http(s) URLs, Label Studio's "
                         "/data/... paths and /data/local-files/ under --ls-local-root)")

    def fetch(self, reference: str) -> Tuple[bytes, str]:
        if isinstance(reference, str) and reference.strip()[:5].lower() == "data:":
            return decode_data_url(reference, max_bytes=self.max_bytes), "data URL"
        home = self._home  # one (address, token) for the whole fetch
        kind, where, send_token = self.locate(reference, home)
        if kind == "file":
            return self._read_file(where, reference), where.name
        # named by the whole URL, as every other fetch error is (a path's last part alone says little)
        return self._download(where, home[1] if send_token else None), _short(where)

    def _read_file(self, path: Path, reference: str) -> bytes:
        # Opened without blocking and checked before any read: a FIFO (or a device, a socket) under the
        # root would otherwise hold a worker thread in open() or read() forever, and with it a request slot.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise FetchError(f"{_short(reference)}: no such file under --ls-local-root") from None
        except OSError as e:
            raise FetchError(f"{_short(reference)}: cannot read {path.name}: {e.strerror or e}") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise FetchError(f"{_short(reference)}: {path.name} is {_file_kind(mode)}, not a regular "
                                 "file; refused")
            size = os.fstat(fd).st_size
            if size > self.max_bytes:
                raise FetchError(f"{_short(reference)}: {size} bytes, over the limit of {self.max_bytes}")
            # read to one byte past the limit, whatever the size said (a file may grow while it is read)
            body = bytearray()
            while len(body) <= self.max_bytes:
                chunk = os.read(fd, min(_CHUNK, self.max_bytes + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(f"{_short(reference)}: more than the limit of {self.max_bytes} bytes")
            return bytes(body)
        except OSError as e:
            raise FetchError(f"{_short(reference)}: cannot read {path.name}: {e.strerror or e}") from None
        finally:
            os.close(fd)

    def _download(self, url: str, token: Optional[str]) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "image/*,*/*;q=0.5"})
        if token:
            # unredirected: a redirect (to a bucket's signed URL, say) does not get the token
            request.add_unredirected_header("Authorization", f"Token {token}")
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise FetchError(f"{_short(url)}: {declared} bytes, over the limit of {self.max_bytes}")
                body = bytearray()
                sock = _socket_of(response)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise FetchError(f"{_short(url)}: not downloaded within {self.timeout_s:g} s")
                    if sock is not None:  # no single wait for bytes may outlast the whole download's time
                        sock.settimeout(remaining)
                    # read1: what has arrived (up to a chunk), not read(n), which waits for n bytes or the
                    # end: a server that trickles a body without Content-Length held it past the deadline
                    try:
                        chunk = response.read1(_CHUNK)
                    except (socket.timeout, TimeoutError):
                        raise FetchError(
                            f"{_short(url)}: not downloaded within {self.timeout_s:g} s") from None
                    if not chunk:
                        break
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise FetchError(f"{_short(url)}: more than the limit of {self.max_bytes} bytes")
                return bytes(body)
        except urllib.error.HTTPError as e:
            hint = " (check --ls-token / LABEL_STUDIO_API_KEY)" if e.code in (401, 403) else ""
            raise FetchError(f"{_short(url)}: HTTP {e.code} {e.reason}{hint}") from None
        except urllib.error.URLError as e:
            raise FetchError(f"{_short(url)}: cannot reach it: {e.reason}") from None
        except (socket.timeout, TimeoutError):
            raise FetchError(f"{_short(url)}: no answer within {self.timeout_s:g} s") from None
        except (OSError, ValueError) as e:  # connection reset mid-body, malformed URL, ...
            raise FetchError(f"{_short(url)}: {type(e).__name__}: {e}") from None
