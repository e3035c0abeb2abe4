"""The client's logic without a node: resume rules, error mapping, request building."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import lightkeeper
from lightkeeper.client import _req_cutout, _req_lightcurve, _req_stats, _time_param
from lightkeeper.errors import error_from_body
from lightkeeper.subscription import SubscriptionState, _Reconnect


def frame(**msg: object) -> str:
    return json.dumps(msg)


def upd(version: int, key: str = "ztf:A", sub: str = "s1") -> str:
    return frame(type="update", sub=sub, key=key, version=version, object={}, new_points=[])


def test_object_updates_in_order_once() -> None:
    s = SubscriptionState(objects=["ztf:A"])
    assert s.subscribe_ops() == [{"op": "subscribe", "sub": "s1", "objects": ["ztf:A"]}]
    msg, ops = s.handle(frame(type="snapshot", sub="s1", key="ztf:A", version=3, object={}))
    assert msg and msg["version"] == 3 and ops == []
    assert s.handle(upd(4))[0]["version"] == 4
    assert s.handle(upd(4)) == (None, [])  # duplicate
    assert s.handle(upd(2)) == (None, [])  # stale
    assert s.versions == {"ztf:A": 4}


def test_gap_resubscribes_from_last_version_and_retries_after_5s() -> None:
    s = SubscriptionState(objects=["ztf:A"])
    s.handle(frame(type="snapshot", sub="s1", key="ztf:A", version=3, object={}), now=0)
    msg, ops = s.handle(upd(6), now=10)
    assert msg is None
    assert ops == [{"op": "subscribe", "sub": "s1", "objects": ["ztf:A"], "from_version": 3}]
    assert s.handle(upd(7), now=12) == (None, [])  # asked already, less than 5 s ago
    assert s.handle(upd(7), now=16)[1] == ops  # still open after 5 s: asked again
    # The resumed stream fills the gap in order.
    assert [s.handle(upd(v), now=17)[0]["version"] for v in (4, 5, 6, 7)] == [4, 5, 6, 7]
    assert s.resync == {}


def test_snapshot_is_the_servers_word() -> None:
    s = SubscriptionState(objects=["ztf:A"], from_version=10)
    msg, _ = s.handle(frame(type="snapshot", sub="s1", key="ztf:A", version=2, object={}))
    assert msg and s.versions == {"ztf:A": 2}


def test_resume_ops_group_by_version() -> None:
    s = SubscriptionState(objects=["ztf:A", "ztf:B", "ztf:C", "ztf:A"], from_version={"ztf:A": 5, "ztf:B": 5})
    assert s.objects == ["ztf:A", "ztf:B", "ztf:C"]
    assert s.subscribe_ops() == [
        {"op": "subscribe", "sub": "s1", "objects": ["ztf:A", "ztf:B"], "from_version": 5},
        {"op": "subscribe", "sub": "s1", "objects": ["ztf:C"]},
    ]


def test_filter_keeps_cursor_and_resumes_from_it() -> None:
    s = SubscriptionState(filter="mag_g < 18", snapshot=True)
    assert s.subscribe_ops() == [{"op": "subscribe", "sub": "s1", "filter": "mag_g < 18", "snapshot": True}]
    s.handle(frame(type="subscribed", sub="s1", cursor="0:1:1"))
    msg, _ = s.handle(frame(type="leave", sub="s1", key="ztf:A", version=9, cursor="0:2:1"))
    assert msg and msg["type"] == "leave"
    assert s.cursor == "0:2:1"
    assert s.subscribe_ops() == [{"op": "subscribe", "sub": "s1", "filter": "mag_g < 18", "from": "0:2:1"}]


def test_errors_raise_or_reconnect() -> None:
    s = SubscriptionState(filter="x")
    with pytest.raises(lightkeeper.BadFilter) as e:
        s.handle(frame(type="error", sub="s1", error={"code": "bad_filter", "message": "at position 0"}))
    assert e.value.status == 400
    with pytest.raises(_Reconnect):
        s.handle(frame(type="error", sub=None, error={"code": "slow_consumer", "message": "too slow"}))
    assert s.handle(frame(type="error", sub="other", error={"code": "bad_filter", "message": ""})) == (None, [])
    # News about a stream that goes on is delivered, not raised.
    for code in ("snapshot_truncated", "unavailable"):
        msg, _ = s.handle(frame(type="error", sub="s1", error={"code": code, "message": "still trying"}))
        assert msg and msg["error"]["code"] == code
    with pytest.raises(lightkeeper.ProtocolError):
        s.handle("not json")


def test_subscription_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        SubscriptionState()
    with pytest.raises(ValueError):
        SubscriptionState(objects=["ztf:A"], filter="x")
    with pytest.raises(ValueError):
        SubscriptionState(filter="x", from_version=3)
    with pytest.raises(ValueError):
        SubscriptionState(objects=["ztf:A"], from_="0:1:1")
    with pytest.raises(ValueError):
        lightkeeper.Client([])


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (400, "invalid_key", lightkeeper.BadRequest),
        (400, "bad_filter", lightkeeper.BadFilter),
        (401, "unauthorized", lightkeeper.Unauthorized),
        (403, "forbidden", lightkeeper.Forbidden),
        (404, "object_not_found", lightkeeper.NotFound),
        (408, "timeout", lightkeeper.RequestTimeout),
        (410, "packet_expired", lightkeeper.Gone),
        (413, "payload_too_large", lightkeeper.PayloadTooLarge),
        (429, "rate_limited", lightkeeper.RateLimited),
        (500, "internal", lightkeeper.ServerError),
        (503, "unavailable", lightkeeper.Unavailable),
    ],
)
def test_error_classes(status: int, code: str, cls: type) -> None:
    e = error_from_body(status, {"error": {"code": code, "message": "m"}}, retry_after=2)
    assert type(e) is cls and e.code == code and e.message == "m" and e.status == status
    assert isinstance(e, lightkeeper.LightkeeperError)
    if cls is lightkeeper.RateLimited:
        assert e.retry_after == 2


def test_error_without_api_body() -> None:
    e = error_from_body(502, None, "Bad Gateway")
    assert isinstance(e, lightkeeper.ServerError) and e.code == "http_502" and e.message == "Bad Gateway"


def test_request_building() -> None:
    r = _req_lightcurve("ztf:ZTF21abiuvdk", 59000.5, None, ["g", "r"], "detection")
    assert r.path == "/v1/objects/ztf%3AZTF21abiuvdk/lightcurve"
    assert r.params == [("since_mjd", "59000.5"), ("band", "g"), ("band", "r"), ("kind", "detection")]
    c = _req_cutout("lsst:170028058296664081", 25409136044802067, "science", "png")
    assert c.path == "/v1/objects/lsst%3A170028058296664081/cutouts/25409136044802067/science"
    assert c.params == [("format", "png")]
    with pytest.raises(ValueError):
        _req_cutout("ztf:A", "12x", "science", "fits")
    with pytest.raises(ValueError):
        _req_cutout("ztf:A", 1, "science", "jpeg")
    s = _req_stats(dt.datetime(2024, 5, 19, 12, 0), 1716163200000, "hour")
    assert s.params == [("step", "hour"), ("since", "2024-05-19T12:00:00Z"), ("until", "1716163200000")]
    assert _time_param(dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))), "since") == "2024-01-01T00:00:00Z"
    with pytest.raises(ValueError):
        _req_stats(None, None, "week")


# --------------------------------------------------------------------------- a mocked node
# The cutout, packet and stats routes are checked against a real node in
# test_cutouts_stats.py; these pin the client's side of the spec with httpx.MockTransport.

STATS_BODY = {
    "step": "minute",
    "since": "2024-05-19T00:00:00Z",
    "until": "2024-05-19T00:02:00Z",
    "rows": [
        {"start": "2024-05-19T00:00:00Z", "survey": "ztf", "band": "g", "alerts": 3, "new_objects": 2, "detections": 3, "dead_letters": 0},
        {"start": "2024-05-19T00:01:00Z", "survey": None, "band": None, "alerts": 0, "new_objects": 0, "detections": 0, "dead_letters": 1},
    ],
}


def _fits_bytes() -> bytes:
    fits = pytest.importorskip("astropy.io.fits")
    np = pytest.importorskip("numpy")
    import io

    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(63 * 63, dtype="float32").reshape(63, 63)).writeto(buf)
    return buf.getvalue()


def _mock_node(fits_data: bytes = b"SIMPLE  = T") -> "object":
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]
        if path == "/v1/objects/ztf%3AZTF1/cutouts":
            return httpx.Response(200, json={"key": "ztf:ZTF1", "version": 2, "alerts": [{"alert_id": "123", "mjd": 60449.3, "kinds": ["science", "template", "difference"]}]})
        if path == "/v1/objects/ztf%3AZTF1/cutouts/123/science":
            if request.url.params.get("format") == "png":
                return httpx.Response(200, content=b"\x89PNG\r\n\x1a\n", headers={"content-type": "image/png"})
            return httpx.Response(200, content=fits_data, headers={"content-type": "application/fits"})
        if path == "/v1/objects/ztf%3AZTF1/cutouts/124/science":
            return httpx.Response(410, json={"error": {"code": "packet_expired", "message": "past retention"}})
        if path == "/v1/objects/ztf%3AZTF1/alerts/123/packet":
            return httpx.Response(200, content=b"Obj\x01packet")
        if path == "/v1/stats":
            assert request.url.params["step"] in ("minute", "hour", "night")
            return httpx.Response(200, json=STATS_BODY)
        return httpx.Response(404, json={"error": {"code": "alert_not_found", "message": f"nothing at {path}"}})

    return httpx.MockTransport(handler)


def test_cutouts_against_spec() -> None:
    c = lightkeeper.Client("http://node.invalid", transport=_mock_node())
    assert c.cutouts("ztf:ZTF1") == [{"alert_id": "123", "mjd": 60449.3, "kinds": ["science", "template", "difference"]}]
    assert c.cutout("ztf:ZTF1", 123, "science") == b"SIMPLE  = T"
    assert c.cutout("ztf:ZTF1", "123", "science", format="png").startswith(b"\x89PNG")
    assert c.packet("ztf:ZTF1", 123) == b"Obj\x01packet"
    with pytest.raises(lightkeeper.Gone) as e:
        c.cutout("ztf:ZTF1", 124, "science")
    assert e.value.code == "packet_expired" and e.value.status == 410
    with pytest.raises(lightkeeper.NotFound) as e2:
        c.packet("ztf:ZTF1", 999)
    assert e2.value.code == "alert_not_found"


def test_cutout_as_hdu_against_spec() -> None:
    c = lightkeeper.Client("http://node.invalid", transport=_mock_node(_fits_bytes()))
    hdu = c.cutout("ztf:ZTF1", 123, "science", as_hdu=True)
    assert hdu.data.shape == (63, 63) and float(hdu.data[1, 0]) == 63.0


def test_stats_against_spec() -> None:
    c = lightkeeper.Client("http://node.invalid", transport=_mock_node())
    assert c.stats() == STATS_BODY["rows"]
    pd = pytest.importorskip("pandas")
    df = c.stats(step="hour", as_="pandas")
    assert list(df["alerts"]) == [3, 0] and df.attrs["step"] == "minute"
    assert str(df["start"].dt.tz) == "UTC"
    t = c.stats(as_="astropy") if _has_astropy() else None
    if t is not None:
        assert len(t) == 2 and bool(t["survey"].mask[1])
    assert pd is not None


def _has_astropy() -> bool:
    try:
        import astropy.table  # noqa: F401
    except ImportError:
        return False
    return True


def test_missing_optional_dependency_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas → ImportError
    monkeypatch.setitem(sys.modules, "astropy.table", None)
    c = lightkeeper.Client("http://node.invalid", transport=_mock_node())
    with pytest.raises(ImportError, match=r"pip install 'lightkeeper\[pandas\]'"):
        c.stats(as_="pandas")
    with pytest.raises(ImportError, match=r"pip install 'lightkeeper\[astropy\]'"):
        c.stats(as_="astropy")


# --------------------------------------------------------------------------- a scripted WebSocket node


class ScriptedNode:
    """A WebSocket server playing connections from a script: ``script[i](conn, ops)`` serves the
    i-th connection (``ops`` are the first operations it received); the ops of every
    connection are kept in ``seen``."""

    def __init__(self, script: list) -> None:
        import threading

        from websockets.sync.server import serve

        self.script = script
        self.seen: list = []
        #: The headers of every connection's opening handshake.
        self.handshakes: list = []
        self.connections = 0
        self._lock = threading.Lock()

        def handler(conn: object) -> None:
            with self._lock:
                i = self.connections
                self.connections += 1
                self.handshakes.append(conn.request.headers)  # type: ignore[attr-defined]
            ops = [json.loads(conn.recv(timeout=5))]  # type: ignore[attr-defined]
            self.seen.append(ops)
            step = self.script[min(i, len(self.script) - 1)]
            step(conn, ops)

        self.server = serve(handler, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def _snapshot(version: int) -> str:
    return frame(type="snapshot", sub="s1", key="ztf:A", version=version, object={})


def test_slow_consumer_reconnects_and_resumes_from_version() -> None:
    def first(conn: object, ops: list) -> None:
        conn.send(_snapshot(3))  # type: ignore[attr-defined]
        conn.send(upd(4))  # type: ignore[attr-defined]
        conn.send(frame(type="error", sub=None, error={"code": "slow_consumer", "message": "too slow"}))  # type: ignore[attr-defined]
        conn.close(4008, "slow consumer")  # type: ignore[attr-defined]

    def second(conn: object, ops: list) -> None:
        conn.send(upd(4))  # type: ignore[attr-defined]  # already delivered: dropped
        conn.send(upd(6))  # type: ignore[attr-defined]  # a gap: dropped, and 5 asked for
        asked = json.loads(conn.recv(timeout=5))  # type: ignore[attr-defined]
        assert asked == {"op": "subscribe", "sub": "s1", "objects": ["ztf:A"], "from_version": 4}
        conn.send(upd(5))  # type: ignore[attr-defined]
        conn.send(upd(6))  # type: ignore[attr-defined]
        conn.recv(timeout=5)  # type: ignore[attr-defined]  # until the client goes

    node = ScriptedNode([first, second])
    try:
        sub = lightkeeper.Client(node.url).subscribe("ztf:A")
        got = [sub.recv(timeout=5) for _ in range(4)]
        sub.close()
        assert [(m["type"], m["version"]) for m in got] == [("snapshot", 3), ("update", 4), ("update", 5), ("update", 6)]
        assert node.seen[0] == [{"op": "subscribe", "sub": "s1", "objects": ["ztf:A"]}]
        assert node.seen[1] == [{"op": "subscribe", "sub": "s1", "objects": ["ztf:A"], "from_version": 4}]
        assert sub.reconnects == 1
    finally:
        node.close()


def test_a_node_that_drops_at_once_is_not_hammered() -> None:
    import time

    def drop(conn: object, ops: list) -> None:
        conn.close()  # type: ignore[attr-defined]

    def snapshot_once(conn: object, ops: list) -> None:
        conn.send(_snapshot(1))  # type: ignore[attr-defined]
        conn.close()  # type: ignore[attr-defined]

    node = ScriptedNode([snapshot_once, drop])
    try:
        sub = lightkeeper.Client(node.url).subscribe("ztf:A")
        assert sub.recv(timeout=5)["version"] == 1
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            sub.recv(timeout=1.0)
        assert time.monotonic() - started < 2.5
        # Backing off from 250 ms doubling: a handful of tries in a second, not hundreds.
        assert 2 <= node.connections <= 6, node.connections
        sub.close()
    finally:
        node.close()


def test_async_gap_and_reconnect_against_scripted_node() -> None:
    import asyncio

    def first(conn: object, ops: list) -> None:
        conn.send(_snapshot(7))  # type: ignore[attr-defined]
        conn.close(1001, "going away")  # type: ignore[attr-defined]

    def second(conn: object, ops: list) -> None:
        conn.send(upd(9))  # type: ignore[attr-defined]  # a gap after 7
        asked = json.loads(conn.recv(timeout=5))  # type: ignore[attr-defined]
        assert asked["from_version"] == 7
        conn.send(upd(8))  # type: ignore[attr-defined]
        conn.send(upd(9))  # type: ignore[attr-defined]
        conn.recv(timeout=5)  # type: ignore[attr-defined]

    node = ScriptedNode([first, second])

    async def main() -> list:
        async with lightkeeper.Client(node.url).asubscribe(["ztf:A"]) as sub:
            got = [await sub.recv(timeout=5) for _ in range(3)]
            assert sub.reconnects == 1 and sub.versions == {"ztf:A": 9}
            return got

    try:
        got = asyncio.run(main())
        assert [m["version"] for m in got] == [7, 8, 9]
        assert node.seen[1] == [{"op": "subscribe", "sub": "s1", "objects": ["ztf:A"], "from_version": 7}]
    finally:
        node.close()


# --------------------------------------------------------------------------- access tokens
# API.md, "Access": a token goes as `Authorization: Bearer <token>` on REST requests and on the
# WebSocket's opening handshake; refusals are 401, 403 and 429 (with `Retry-After`).


def _recording_node(seen: list, answers: "dict | None" = None) -> "object":
    """A mocked node that keeps every request and answers ``answers[path]`` (status, body,
    headers) or 200 with an empty object (sync and async clients alike)."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body, headers = (answers or {}).get(request.url.path, (200, {}, {}))
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handler)


def test_token_is_sent_as_a_bearer_header_with_every_request() -> None:
    seen: list = []
    c = lightkeeper.Client(
        "http://node.invalid", token="lk_s3cret", headers={"x-trace": "7"}, transport=_recording_node(seen)
    )
    c.object("ztf:A")
    c.cone(1.0, 2.0, 3.0)
    c.ingest(b"packet")
    assert c.ready()
    assert [r.url.path for r in seen] == ["/v1/objects/ztf:A", "/v1/cone", "/v1/alerts", "/readyz"]
    for r in seen:
        assert r.headers["authorization"] == "Bearer lk_s3cret"
        assert r.headers["x-trace"] == "7" and r.headers["accept"].startswith("application/json")
    assert seen[2].headers["content-type"] == "application/octet-stream"


def test_async_client_sends_the_token_too() -> None:
    import asyncio

    seen: list = []

    async def main() -> None:
        async with lightkeeper.AsyncClient("http://node.invalid", token="lk_async", transport=_recording_node(seen)) as c:
            await c.object("ztf:A")
            await c.fields()

    asyncio.run(main())
    assert [r.headers["authorization"] for r in seen] == ["Bearer lk_async", "Bearer lk_async"]


def test_no_token_no_authorization_header() -> None:
    seen: list = []
    lightkeeper.Client("http://node.invalid", transport=_recording_node(seen)).object("ztf:A")
    lightkeeper.Client("http://node.invalid", token="", transport=_recording_node(seen)).object("ztf:A")
    assert len(seen) == 2 and all("authorization" not in r.headers for r in seen)


def test_access_refusals_are_typed_and_not_sent_to_another_node() -> None:
    seen: list = []
    answers = {
        "/v1/objects/ztf:a": (401, {"error": {"code": "unauthorized", "message": "missing or unknown token"}}, {}),
        "/v1/objects/ztf:b": (403, {"error": {"code": "forbidden", "message": "token 'ci' lacks the scope read"}}, {}),
        "/v1/objects/ztf:c": (429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"retry-after": "2"}),
    }
    c = lightkeeper.Client(["http://a.invalid", "http://b.invalid"], token="wrong", transport=_recording_node(seen, answers))
    with pytest.raises(lightkeeper.Unauthorized) as e401:
        c.object("ztf:a")
    assert (e401.value.status, e401.value.code, e401.value.message) == (401, "unauthorized", "missing or unknown token")
    with pytest.raises(lightkeeper.Forbidden) as e403:
        c.object("ztf:b")
    assert (e403.value.status, e403.value.code) == (403, "forbidden") and "lacks the scope" in e403.value.message
    with pytest.raises(lightkeeper.RateLimited) as e429:
        c.object("ztf:c")
    assert (e429.value.status, e429.value.retry_after) == (429, 2.0)
    assert [r.url.host for r in seen] == ["a.invalid"] * 3


def _serve_one_snapshot(conn: object, ops: list) -> None:
    conn.send(_snapshot(1))  # type: ignore[attr-defined]
    try:
        conn.recv(timeout=5)  # type: ignore[attr-defined]  # until the client goes
    except Exception:  # noqa: BLE001
        pass


def test_subscriptions_send_the_token_in_the_handshake() -> None:
    import asyncio

    node = ScriptedNode([_serve_one_snapshot])

    async def main() -> None:
        async with lightkeeper.AsyncClient(node.url, token="lk_ws async").asubscribe(["ztf:A"]) as sub:
            assert (await sub.recv(timeout=5))["version"] == 1

    try:
        with lightkeeper.Client(node.url, token="lk_ws").subscribe("ztf:A") as sub:
            assert sub.recv(timeout=5)["version"] == 1
        asyncio.run(main())
        with lightkeeper.Client(node.url).subscribe("ztf:A") as sub:
            assert sub.recv(timeout=5)["version"] == 1
        got = [h.get("Authorization") for h in node.handshakes]
        assert got == ["Bearer lk_ws", "Bearer lk_ws async", None], got
    finally:
        node.close()
