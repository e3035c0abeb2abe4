"""Fixtures: real Lightkeeper nodes (``$LIGHTKEEPER_BIN``, default /var/tmp/lk-bin/lightkeeper)
fed with real alerts through the client under test."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

BOOM_KEY = "ztf:ZTF18abudxnw"

# Test the package in this tree, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightkeeper import Client  # noqa: E402

from helpers import (  # noqa: E402
    DEFAULT_BIN,
    KEY,
    LSST_BOOM_DIR,
    NIGHT_DIR,
    ZTF_BOOM,
    Node,
    lightcurve_files,
    wait_until,
)


@pytest.fixture(scope="session")
def lk_bin() -> str:
    path = os.environ.get("LIGHTKEEPER_BIN")
    if path:
        if not os.access(path, os.X_OK):
            pytest.fail(f"LIGHTKEEPER_BIN={path} is not an executable file")
        return path
    if not os.access(DEFAULT_BIN, os.X_OK):
        pytest.skip(f"no lightkeeper binary: set LIGHTKEEPER_BIN (default {DEFAULT_BIN} is missing)")
    return DEFAULT_BIN


@pytest.fixture(scope="session")
def node(lk_bin: str) -> Iterator[Node]:
    """One node for the read tests, seeded by the `seeded` fixture."""
    n = Node(lk_bin)
    try:
        n.start()
        yield n
    finally:
        n.cleanup()


@pytest.fixture(scope="session")
def client(node: Node) -> Iterator[Client]:
    assert node.url
    with Client(node.url) as c:
        yield c


@pytest.fixture(scope="session")
def seeded(client: Client) -> Dict[str, Any]:
    """Ingests, through the client: ZTF21abiuvdk's 22 alerts, one night of 37 ZTF alerts (36
    objects), the ZTF 4.02 alert with forced photometry and the two Rubin packets; waits until
    every object is applied. Returns what was sent: keys, accepted answers, files."""
    files = lightcurve_files()
    assert len(files) == 22, f"expected ZTF21abiuvdk's 22 alerts in {files[0].parent if files else '?'}"
    night = sorted(NIGHT_DIR.glob("*.avro"))
    lsst = sorted(LSST_BOOM_DIR.glob("*.avro"))
    accepted: Dict[str, List[Dict[str, Any]]] = {}
    sent: Dict[str, List[Any]] = {}
    for path in [*files, *night, ZTF_BOOM, *lsst]:
        ans = client.ingest(path.read_bytes())
        accepted.setdefault(ans["key"], []).append(ans)
        sent.setdefault(ans["key"], []).append(path)
    keys = set(accepted)
    assert BOOM_KEY in keys, f"{ZTF_BOOM} was not accepted as {BOOM_KEY}: {sorted(keys)}"
    assert len(lsst) == 2 and len([k for k in keys if k.startswith("lsst:")]) == 2

    def applied() -> bool:
        page = client.query_page(limit=1000)
        counts = {o["key"]: o["n_alerts"] for o in page}
        return all(counts.get(k) == len(v) for k, v in accepted.items())

    wait_until(applied, timeout=30, what="every ingested alert to be applied")
    lsst_keys = sorted(k for k in keys if k.startswith("lsst:"))
    return {
        "keys": keys,
        "accepted": accepted,
        "files": sent,
        "lightcurve_files": files,
        "lsst_keys": lsst_keys,
        "boom_key": BOOM_KEY,
    }


@pytest.fixture(scope="module")
def live_node(lk_bin: str) -> Iterator[Node]:
    """A fresh node per test module, for subscriptions that watch alerts arrive."""
    n = Node(lk_bin)
    try:
        n.start()
        yield n
    finally:
        n.cleanup()


class Feed:
    """Hands out ZTF21abiuvdk's alerts one at a time, in time order."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.files = lightcurve_files()
        self.sent = 0

    def next(self) -> Dict[str, Any]:
        assert self.sent < len(self.files), "the feed of ZTF21abiuvdk alerts ran out"
        path = self.files[self.sent]
        self.sent += 1
        return self.client.ingest(path.read_bytes())

    def wait_applied(self) -> Dict[str, Any]:
        """Waits until the object has every alert sent so far; returns its summary."""
        return wait_until(
            lambda: (lambda o: o if o["n_alerts"] == self.sent else None)(self.client.object(KEY)),
            what=f"{KEY} to have {self.sent} alerts",
        )


@pytest.fixture(scope="module")
def live_client(live_node: Node) -> Iterator[Client]:
    assert live_node.url
    with Client(live_node.url) as c:
        yield c


@pytest.fixture(scope="module")
def feed(live_client: Client) -> Feed:
    return Feed(live_client)
