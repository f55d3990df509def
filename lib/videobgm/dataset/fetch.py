"""Fetching catalogue audio: a local path as it is, a URL through a download cache.

Downloads go to ``data/raw/downloads/`` (one file per URL, named by the URL's hash, written
atomically), so a re-run or a second dataset never downloads a track twice. Transient failures
(timeouts, refused connections, HTTP 408/429/5xx) are retried with exponential back-off;
permanent ones (other HTTP 4xx, a missing local file) fail at once. Every failure raises
:class:`FetchError`, one sentence naming the location, which the curation stage records in its
failure log. Parallelism is bounded by the caller: curation fetches inside its worker
processes, so at most ``workers`` downloads run at a time.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from videobgm import __version__, paths
from videobgm.errors import VideobgmError

_URL_SCHEMES = ("http", "https", "ftp", "file")
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_COPY_BYTES = 1 << 20  # 1 MiB read size while downloading


class FetchError(VideobgmError, OSError):
    """A track's audio could not be fetched; the message names the location."""


@dataclass(frozen=True)
class FetchParams:
    """How audio is fetched; nothing here changes the dataset's content."""

    cache_dir: str | None = None  # download cache; None: data/raw/downloads
    timeout_s: float = 30.0  # per connection attempt and per read
    retries: int = 3  # further attempts after a transient failure
    backoff_s: float = 1.0  # wait before retry k: backoff_s * 2**k seconds

    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else paths.raw() / "downloads"


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (http, https, ftp or file) rather than a local path."""
    scheme = urllib.parse.urlsplit(location).scheme.lower()
    return scheme in _URL_SCHEMES and "://" in location


def cache_path(url: str, cache_dir: Path) -> Path:
    """Where ``url`` is cached: its SHA-256 (24 hex digits) plus the URL's file suffix."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:24]
    suffix = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).suffix.lower()
    ok = 1 < len(suffix) <= 6 and suffix[1:].isalnum()
    return cache_dir / f"{digest}{suffix if ok else ''}"


def fetch(location: str, params: FetchParams = FetchParams()) -> Path:
    """A local file holding the audio at ``location`` (a path, or a URL: cached download)."""
    if not is_url(location):
        return _local(Path(location), location)
    parts = urllib.parse.urlsplit(location)
    if parts.scheme.lower() == "file":
        return _local(Path(urllib.request.url2pathname(parts.path)), location)
    target = cache_path(location, params.cache())
    if target.is_file():
        return target
    return _download(location, target, params)


def _local(path: Path, location: str) -> Path:
    if not path.is_file():
        raise FetchError(f"{location}: no such file")
    return path


def _download(url: str, target: Path, params: FetchParams) -> Path:
    request = urllib.request.Request(url, headers={"User-Agent": f"videobgm/{__version__}"})
    problem = "no attempt made"
    for attempt in range(params.retries + 1):
        if attempt:
            time.sleep(params.backoff_s * 2 ** (attempt - 1))
        try:
            with (
                urllib.request.urlopen(request, timeout=params.timeout_s) as response,
                paths.atomic_output(target) as tmp,
                tmp.open("wb") as sink,
            ):
                shutil.copyfileobj(response, sink, _COPY_BYTES)
            return target
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if exc.code not in _TRANSIENT_HTTP:
                raise FetchError(f"{url}: {problem}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            problem = str(getattr(exc, "reason", exc)) or type(exc).__name__
        except (OSError, http.client.HTTPException) as exc:  # e.g. IncompleteRead: truncated
            problem = f"{type(exc).__name__}: {exc}"
    attempts = params.retries + 1
    raise FetchError(f"{url}: failed after {attempts} attempt(s) ({problem})")
