"""The list of nodes a client talks to, and which one it uses now."""

from __future__ import annotations

import threading
from typing import Iterable, List, Sequence, Union


def normalize_urls(urls: Union[str, Iterable[str]]) -> List[str]:
    """``"http://a:8080/"`` or a list of them → base URLs without trailing slashes."""
    if isinstance(urls, str):
        items: Sequence[str] = [urls]
    else:
        items = list(urls)
    out = [str(u).strip().rstrip("/") for u in items if u and str(u).strip()]
    if not out:
        raise ValueError("a Lightkeeper client needs at least one node URL, e.g. 'http://127.0.0.1:8080'")
    for u in out:
        if not (u.startswith("http://") or u.startswith("https://")):
            raise ValueError(f"node URL {u!r} must start with http:// or https://")
    return out


class Nodes:
    """Node base URLs and the one in use. Any node answers any request; after a failure on the
    node in use, callers move on with :meth:`advance`. Thread-safe."""

    def __init__(self, urls: Union[str, Iterable[str]]) -> None:
        self.urls = normalize_urls(urls)
        self._index = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.urls)

    @property
    def index(self) -> int:
        return self._index

    def current(self) -> str:
        return self.urls[self._index]

    def advance(self, failed: str) -> None:
        """Moves past ``failed`` if it is still the node in use (two concurrent failures of the
        same node move on once, not twice)."""
        with self._lock:
            if self.urls[self._index] == failed:
                self._index = (self._index + 1) % len(self.urls)

    def set_current(self, url: str) -> None:
        with self._lock:
            if url in self.urls:
                self._index = self.urls.index(url)


def ws_url(base: str) -> str:
    """``http://host:port/prefix`` → ``ws://host:port/prefix/v1/ws`` (``https`` → ``wss``)."""
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + "/v1/ws"
    return "ws://" + base[len("http://") :] + "/v1/ws"
