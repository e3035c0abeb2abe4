"""WebSocket subscriptions (blocking and asyncio) against a real node: snapshot then updates,
resume from a version or a cursor without duplicates, reconnects, and failover."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

import pytest

import lightkeeper
from conftest import Feed
from helpers import KEY, Answer503, Node, free_port, wait_until
from lightkeeper import Client

T = 10.0  # seconds any single expected message may take


def recv_type(sub: Any, kinds: List[str], timeout: float = T) -> Dict[str, Any]:
    """The next message of one of ``kinds``, skipping others (e.g. ``subscribed``)."""
    while True:
        msg = sub.recv(timeout=timeout)
        if msg["type"] in kinds:
            return msg


def test_object_snapshot_then_update(live_client: Client, feed: Feed) -> None:
    feed.next()
    before = feed.wait_applied()
    with live_client.subscribe([KEY]) as sub:
        snap = sub.recv(timeout=T)
        assert snap["type"] == "snapshot" and snap["key"] == KEY
        assert snap["version"] == before["version"]
        assert snap["object"]["n_alerts"] == feed.sent
        feed.next()
        upd = sub.recv(timeout=T)
        assert upd["type"] == "update" and upd["key"] == KEY
        assert upd["version"] == snap["version"] + 1
        assert upd["object"]["n_alerts"] == feed.sent
        assert upd["new_points"], "a new alert brings at least its own detection"
        assert sub.versions == {KEY: upd["version"]}


def test_unknown_object_snapshot_is_empty(live_client: Client) -> None:
    with live_client.subscribe("ztf:ZTF18aamyaaj") as sub:
        snap = sub.recv(timeout=T)
        assert snap["type"] == "snapshot" and snap["version"] == 0 and snap["object"] is None


def test_async_snapshot_then_update(live_client: Client, feed: Feed) -> None:
    async def main() -> None:
        async with live_client.asubscribe([KEY]) as sub:
            snap = await sub.recv(timeout=T)
            assert snap["type"] == "snapshot"
            await asyncio.get_running_loop().run_in_executor(None, feed.next)
            upd = await sub.recv(timeout=T)
            assert upd["type"] == "update" and upd["version"] == snap["version"] + 1
        # Plain `async for`, opened on the first message.
        sub2 = live_client.asubscribe(KEY)
        async for msg in sub2:
            assert msg["type"] == "snapshot" and msg["version"] == upd["version"]
            break
        await sub2.close()

    asyncio.run(main())


def test_resume_from_version_no_duplicates(live_client: Client, feed: Feed) -> None:
    with live_client.subscribe([KEY]) as sub:
        snap = sub.recv(timeout=T)
        feed.next()
        first = sub.recv(timeout=T)
        assert first["version"] == snap["version"] + 1
        seen = sub.versions
    # Two changes while no one listens.
    feed.next()
    feed.next()
    feed.wait_applied()
    with live_client.subscribe([KEY], from_version=seen) as sub:
        a = sub.recv(timeout=T)
        b = sub.recv(timeout=T)
        assert (a["type"], a["version"]) == ("update", first["version"] + 1)
        assert (b["type"], b["version"]) == ("update", first["version"] + 2)
        # Nothing else came in between: the next change is the very next version.
        feed.next()
        c = sub.recv(timeout=T)
        assert (c["type"], c["version"]) == ("update", first["version"] + 3)
    # A single version for every object works the same way.
    with live_client.subscribe(KEY, from_version=c["version"] - 1) as sub:
        again = sub.recv(timeout=T)
        assert (again["type"], again["version"]) == ("update", c["version"])


def test_filter_subscription_and_resume_from_cursor(live_client: Client, feed: Feed) -> None:
    where = "n_alerts >= 1 and survey = 'ztf'"
    with live_client.subscribe(filter=where, snapshot=True) as sub:
        got: List[Dict[str, Any]] = []
        while not any(m["type"] == "subscribed" for m in got) or not any(m["type"] == "snapshot" for m in got):
            got.append(sub.recv(timeout=T))
        snap = next(m for m in got if m["type"] == "snapshot")
        assert snap["key"] == KEY and snap["cursor"]
        feed.next()
        upd = recv_type(sub, ["update"])
        assert upd["key"] == KEY and upd["version"] > snap["version"] and upd["cursor"]
        cursor = sub.cursor
        assert cursor == upd["cursor"]
    feed.next()
    feed.next()
    feed.wait_applied()
    with live_client.subscribe(filter=where, from_=cursor) as sub:
        a = recv_type(sub, ["update", "snapshot"])
        b = recv_type(sub, ["update", "snapshot"])
        assert (a["type"], a["version"]) == ("update", upd["version"] + 1)
        assert (b["type"], b["version"]) == ("update", upd["version"] + 2)
        feed.next()
        c = recv_type(sub, ["update", "snapshot"])
        assert (c["type"], c["version"]) == ("update", upd["version"] + 3)


def test_async_filter_subscription(live_client: Client, feed: Feed) -> None:
    async def main() -> None:
        async with live_client.asubscribe(filter="n_alerts >= 1") as sub:
            first = await sub.recv(timeout=T)
            assert first["type"] == "subscribed" and first["cursor"]
            await asyncio.get_running_loop().run_in_executor(None, feed.next)
            while True:
                msg = await sub.recv(timeout=T)
                if msg["type"] == "update":
                    break
            assert msg["key"] == KEY and sub.cursor == msg["cursor"]

    asyncio.run(main())


def test_reconnects_and_resumes_after_drop(live_client: Client, feed: Feed) -> None:
    with live_client.subscribe([KEY]) as sub, live_client.subscribe(filter="n_alerts >= 1") as fsub:
        snap = sub.recv(timeout=T)
        assert recv_type(fsub, ["subscribed"])
        # The connections drop (as when a proxy or the network cuts them) ...
        sub._ws.close()
        fsub._ws.close()
        feed.next()
        # ... and both subscriptions reconnect and resume: the change arrives once.
        upd = sub.recv(timeout=T)
        assert (upd["type"], upd["version"]) == ("update", snap["version"] + 1)
        fupd = recv_type(fsub, ["update"])
        assert fupd["version"] == upd["version"]
        assert sub.reconnects == 1 and fsub.reconnects == 1
        feed.next()
        assert sub.recv(timeout=T)["version"] == upd["version"] + 1
        assert recv_type(fsub, ["update"])["version"] == upd["version"] + 1


def test_bad_filter_subscription_raises(live_client: Client) -> None:
    with live_client.subscribe(filter="mag_g <") as sub:
        with pytest.raises(lightkeeper.BadFilter) as e:
            sub.recv(timeout=T)
        assert e.value.code == "bad_filter" and e.value.status == 400
        assert sub.closed

    async def main() -> None:
        with pytest.raises(lightkeeper.BadFilter):
            async with live_client.asubscribe(filter="nope = 1") as asub:
                await asub.recv(timeout=T)

    asyncio.run(main())


def test_subscribe_failover(live_node: Node, feed: Feed) -> None:
    draining = Answer503()
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        with Client([dead, draining.url, live_node.url]) as c:
            with c.subscribe([KEY]) as sub:
                assert sub.recv(timeout=T)["type"] == "snapshot"
                assert sub.url == live_node.url

            async def main() -> None:
                async with c.asubscribe([KEY]) as asub:
                    assert (await asub.recv(timeout=T))["type"] == "snapshot"

            asyncio.run(main())
        with Client([dead, draining.url]) as nobody:
            with pytest.raises(lightkeeper.ConnectionFailed):
                nobody.subscribe([KEY])
    finally:
        draining.close()


def test_resume_across_node_restart(lk_bin: str) -> None:
    """The node dies and comes back on the same address: the subscription waits, reconnects,
    and resumes after the last version it delivered."""
    node = Node(lk_bin)
    try:
        node.start()
        assert node.url
        port = node.url.rsplit(":", 1)[1]
        c = Client(node.url)
        f = Feed(c)
        f.next()
        f.wait_applied()
        with c.subscribe([KEY]) as sub:
            snap = sub.recv(timeout=T)
            f.next()
            assert sub.recv(timeout=T)["version"] == snap["version"] + 1
            node.kill()
            # While it is down the subscription retries (with backoff) instead of failing.
            with pytest.raises(TimeoutError):
                sub.recv(timeout=0.5)
            node.restart()
            assert node.url == f"http://127.0.0.1:{port}"
            f.next()
            upd = sub.recv(timeout=20)
            assert (upd["type"], upd["version"]) == ("update", snap["version"] + 2)
            assert sub.reconnects >= 1
        c.close()
    finally:
        node.cleanup()
