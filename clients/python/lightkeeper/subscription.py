"""Live subscriptions over ``GET /v1/ws``: a blocking iterator and an asyncio async iterator.

Both share :class:`SubscriptionState`, which holds the resume logic of the JavaScript client
(``js/lightkeeper.js``):

* object subscriptions remember, per object, the last version delivered. A ``snapshot`` sets it
  (the server's word). An ``update`` is delivered only if its version is ``last + 1``; an older
  one is a duplicate and is dropped; a newer one is a gap: it is dropped too and the object is
  resubscribed with ``from_version = last``, so the server sends the missing changes in order
  (or a fresh snapshot when that history is gone). A gap still open after 5 s is asked again.
* filter subscriptions remember the ``cursor`` of the last message; after a reconnect they
  resubscribe with ``"from": cursor`` and the server replays exactly what came after it.
* when the socket drops, the subscription reconnects — to the next node when several were
  given — with a jittered backoff (250 ms doubling up to 10 s after every node failed), and
  resumes as above, so nothing is missed or delivered twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ._nodes import Nodes, ws_url
from .errors import ConnectionFailed, LightkeeperError, ProtocolError, error_from_body

__all__ = ["Subscription", "AsyncSubscription", "SubscriptionState", "SubscriptionClosed"]

Message = Dict[str, Any]

BACKOFF_START = 0.25
BACKOFF_MAX = 10.0
RESYNC_RETRY = 5.0
# The largest message accepted from the server (an update carrying a long history of points).
MAX_MESSAGE_BYTES = 16 << 20

# What the client does with an `error` message, by code:
# - the server refused the subscription: raised as the typed exception, and the subscription ends;
REFUSAL_CODES = frozenset(
    {"bad_filter", "invalid_cursor", "invalid_key", "bad_message", "too_many_subscriptions", "unauthorized", "forbidden"}
)
# - the stream broke, and a new connection (to the next node, if several) resumes it exactly:
#   the client reconnects (the server closes a slow consumer's connection itself);
RECOVERABLE_CODES = frozenset({"slow_consumer", "internal", "not_master", "partition_not_hosted", "timeout"})
# - anything else is news about a stream that goes on (`snapshot_truncated`: the snapshot was
#   cut but updates are complete; `unavailable`: a partition's upstream is gone and the server is
#   still trying): it is delivered as a message like any other.


class SubscriptionClosed(Exception):
    """Raised by ``recv()`` once the subscription has been closed."""


class _Reconnect(Exception):
    """Internal: the connection must be replaced (its node failed or asked us to go)."""


class SubscriptionState:
    """What a subscription remembers to resume, and the rules for what it delivers. No I/O:
    the sync and asyncio drivers feed it frames and send the operations it returns."""

    def __init__(
        self,
        sub: str = "s1",
        objects: Optional[Sequence[str]] = None,
        from_version: Union[None, int, Mapping[str, int]] = None,
        filter: Optional[str] = None,
        snapshot: bool = False,
        from_: Optional[str] = None,
    ) -> None:
        if filter is not None:
            if not isinstance(filter, str) or not filter.strip():
                raise ValueError("a filter subscription needs a non-empty filter expression")
            if objects:
                raise ValueError("subscribe to objects or to a filter, not both")
            if from_version is not None:
                raise ValueError("from_version belongs to object subscriptions; filters resume with from_=cursor")
        else:
            if isinstance(objects, str):
                objects = [objects]
            if not objects:
                raise ValueError("subscribe needs objects=[keys...] or filter='...'")
            if from_ is not None or snapshot:
                raise ValueError("from_ and snapshot belong to filter subscriptions; objects resume with from_version")
        self.sub = sub
        self.filter = filter
        self.snapshot = bool(snapshot)
        self.cursor: Optional[str] = from_
        # Unique keys, in the order given.
        self.objects: List[str] = list(dict.fromkeys(objects or []))
        self.versions: Dict[str, int] = {}
        if isinstance(from_version, Mapping):
            for k, v in from_version.items():
                if k in self.objects and v is not None:
                    self.versions[k] = int(v)
        elif from_version is not None:
            if isinstance(from_version, bool) or int(from_version) < 0:
                raise ValueError("from_version must be a version number >= 0")
            self.versions = {k: int(from_version) for k in self.objects}
        # key → when a gap resubscription was sent (monotonic seconds)
        self.resync: Dict[str, float] = {}

    @property
    def is_filter(self) -> bool:
        return self.filter is not None

    def subscribe_ops(self) -> List[Message]:
        """The operations that start (or resume) the subscription on a fresh connection."""
        self.resync.clear()
        if self.filter is not None:
            op: Message = {"op": "subscribe", "sub": self.sub, "filter": self.filter}
            if self.cursor:
                op["from"] = self.cursor  # resume: everything after the last message seen
            elif self.snapshot:
                op["snapshot"] = True
            return [op]
        ops: List[Message] = []
        fresh = [k for k in self.objects if k not in self.versions]
        # Objects resumed from the same version share one operation.
        by_version: Dict[int, List[str]] = {}
        for k in self.objects:
            if k in self.versions:
                by_version.setdefault(self.versions[k], []).append(k)
        for v, keys in by_version.items():
            ops.append({"op": "subscribe", "sub": self.sub, "objects": keys, "from_version": v})
        if fresh:
            ops.append({"op": "subscribe", "sub": self.sub, "objects": fresh})
        return ops

    def handle(self, text: Union[str, bytes], now: Optional[float] = None) -> Tuple[Optional[Message], List[Message]]:
        """Takes one frame. Returns the message to deliver (or ``None``) and the operations to
        send. Raises :class:`LightkeeperError` for an error that ends the subscription and
        ``_Reconnect`` for one that a new connection cures."""
        now = time.monotonic() if now is None else now
        try:
            msg = json.loads(text)
        except (ValueError, TypeError) as e:
            raise ProtocolError("bad_response", f"the server sent a frame that is not JSON: {e}") from e
        if not isinstance(msg, dict):
            raise ProtocolError("bad_response", "the server sent a frame that is not a JSON object")
        kind = msg.get("type")
        if kind == "error":
            err = msg.get("error") or {}
            code = err.get("code") if isinstance(err, dict) else None
            if msg.get("sub") not in (None, self.sub):
                return None, []
            if code in RECOVERABLE_CODES:
                raise _Reconnect(f"{code}: {err.get('message', '')}")
            if code in REFUSAL_CODES:
                raise error_from_body(0, msg)
            return msg, []
        if msg.get("sub") != self.sub:
            return None, []  # an ended subscription's leftovers
        if self.filter is not None:
            # The server orders a filter subscription's messages; its cursor makes a resume exact.
            cursor = msg.get("cursor")
            if isinstance(cursor, str):
                self.cursor = cursor
            return msg, []
        key = msg.get("key")
        version = msg.get("version")
        if kind == "snapshot" and isinstance(key, str) and isinstance(version, int):
            self.versions[key] = version
            self.resync.pop(key, None)
            return msg, []
        if kind == "update" and isinstance(key, str) and isinstance(version, int):
            last = self.versions.get(key)
            if last is None or version == last + 1:
                self.versions[key] = version
                self.resync.pop(key, None)
                return msg, []
            if version <= last:
                return None, []  # a duplicate, or older than what was delivered
            asked = self.resync.get(key)
            if asked is None or now - asked > RESYNC_RETRY:
                self.resync[key] = now
                return None, [{"op": "subscribe", "sub": self.sub, "objects": [key], "from_version": last}]
            return None, []  # the resumed stream sends it again, in order
        return msg, []


_LEGACY: Optional[bool] = None


def _sync_connect_has_legacy() -> bool:
    """Whether ``websockets.sync.client.connect`` takes ``legacy`` (websockets >= 16)."""
    global _LEGACY
    if _LEGACY is None:
        import inspect

        from websockets.sync.client import connect

        _LEGACY = "legacy" in inspect.signature(connect).parameters
    return _LEGACY


def _backoff(attempt: int) -> float:
    cap = min(BACKOFF_MAX, BACKOFF_START * (2.0 ** min(attempt, 16)))
    return cap / 2 + random.random() * cap / 2


def _headers(token: Optional[str]) -> Optional[Dict[str, str]]:
    return {"Authorization": f"Bearer {token}"} if token else None


def _remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class _Base:
    def __init__(
        self,
        nodes: Sequence[str],
        state: SubscriptionState,
        *,
        token: Optional[str] = None,
        open_timeout: float = 10.0,
        reconnect: bool = True,
    ) -> None:
        self._nodes = Nodes(nodes)
        self._state = state
        self._token = token
        self._open_timeout = open_timeout
        self._reconnect = reconnect
        self._closed = False
        self._ever_connected = False
        self._attempt = 0
        # Whether the connection in use has delivered a frame (a connection that drops before
        # that does not reset the backoff, so a node that accepts and drops at once is not
        # hammered), and the wait owed before the next connection attempt.
        self._healthy = False
        self._owed_wait = 0.0
        #: How many times the subscription has reconnected after a dropped connection.
        self.reconnects = 0

    @property
    def url(self) -> str:
        """The node base URL in use (or to be tried next)."""
        return self._nodes.current()

    @property
    def cursor(self) -> Optional[str]:
        """Filter subscriptions: the cursor of the last message received; pass it as ``from_``
        to a new subscription to resume right after it."""
        return self._state.cursor

    @property
    def versions(self) -> Dict[str, int]:
        """Object subscriptions: the last version delivered per object; pass it as
        ``from_version`` to a new subscription to resume right after it."""
        return dict(self._state.versions)

    @property
    def closed(self) -> bool:
        return self._closed

    def _after_drop(self) -> None:
        """Bookkeeping after a connection was lost: the next node, and the wait owed."""
        if not self._reconnect:
            self._closed = True
            raise ConnectionFailed("network_error", "the WebSocket closed and reconnect=False")
        self._nodes.advance(self._nodes.current())
        self.reconnects += 1
        if self._healthy:
            self._attempt = 0
            self._owed_wait = 0.0
        else:
            self._owed_wait = _backoff(self._attempt)
            self._attempt += 1

    def _describe_failure(self, errors: List[str]) -> ConnectionFailed:
        return ConnectionFailed("network_error", "could not open a WebSocket to any node: " + "; ".join(errors))


class Subscription(_Base):
    """A blocking iterator over a subscription's messages (``snapshot``, ``update``, and for
    filters ``subscribed`` and ``leave``), each a ``dict`` as the server sent it.

    Made by :meth:`lightkeeper.Client.subscribe`, which opens the connection (or raises
    :class:`~lightkeeper.ConnectionFailed` if no node accepts it). Iterate with ``for msg in
    sub``, or call :meth:`recv` with a timeout. Close it with :meth:`close` or by using it as a
    context manager. An ``error`` message refusing the subscription (a bad filter, an invalid
    key) is raised as the matching :class:`~lightkeeper.LightkeeperError` subclass.
    """

    def __init__(self, nodes: Sequence[str], state: SubscriptionState, **kwargs: Any) -> None:
        super().__init__(nodes, state, **kwargs)
        self._ws: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        try:
            return self.recv()
        except SubscriptionClosed:
            raise StopIteration from None

    def connect(self, timeout: Optional[float] = None) -> None:
        """Opens the connection now if it is not open (done by ``Client.subscribe``)."""
        if self._ws is None and not self._closed:
            deadline = None if timeout is None else time.monotonic() + timeout
            self._connect(deadline)

    def _open_one(self, base: str, timeout: Optional[float]) -> Any:
        from websockets.sync.client import connect

        open_timeout = self._open_timeout if timeout is None else max(0.05, min(self._open_timeout, timeout))
        kwargs: Dict[str, Any] = {}
        if _sync_connect_has_legacy():
            kwargs["legacy"] = True  # websockets >= 16: the connection itself, without a warning
        return connect(
            ws_url(base),
            open_timeout=open_timeout,
            additional_headers=_headers(self._token),
            max_size=MAX_MESSAGE_BYTES,
            **kwargs,
        )

    def _connect(self, deadline: Optional[float]) -> None:
        errors: List[str] = []
        tried = 0
        if self._owed_wait:
            rem = _remaining(deadline)
            if rem is not None and rem < self._owed_wait:
                time.sleep(rem)
                self._owed_wait -= rem
                raise TimeoutError("waiting to reconnect")
            time.sleep(self._owed_wait)
            self._owed_wait = 0.0
        while not self._closed:
            base = self._nodes.current()
            try:
                ws = self._open_one(base, _remaining(deadline))
                try:
                    for op in self._state.subscribe_ops():
                        ws.send(json.dumps(op))
                except BaseException:
                    ws.close()
                    raise
            except Exception as e:  # noqa: BLE001 - any failure to open moves on to the next node
                errors.append(f"{base}: {e}")
                self._nodes.advance(base)
                tried += 1
                if not self._ever_connected and tried >= len(self._nodes):
                    raise self._describe_failure(errors) from e
                if tried % len(self._nodes) == 0:
                    # Every node failed once: wait before the next round.
                    wait = _backoff(self._attempt)
                    self._attempt += 1
                    rem = _remaining(deadline)
                    if rem is not None and rem <= wait:
                        time.sleep(rem)
                        raise TimeoutError("no node accepted the WebSocket before the timeout") from e
                    time.sleep(wait)
                elif deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("no node accepted the WebSocket before the timeout") from e
                continue
            self._ws = ws
            self._ever_connected = True
            self._healthy = False
            return
        raise SubscriptionClosed()

    def _drop(self) -> None:
        """The connection failed: forget it and move on to the next node."""
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass
        self._after_drop()

    def recv(self, timeout: Optional[float] = None) -> Message:
        """The next message. Raises ``TimeoutError`` if none arrives within ``timeout`` seconds
        (``None``: wait as long as it takes), :class:`SubscriptionClosed` after :meth:`close`,
        and :class:`~lightkeeper.LightkeeperError` when the server refuses the subscription."""
        from websockets.exceptions import ConnectionClosed

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self._closed:
                    raise SubscriptionClosed()
                if self._ws is None:
                    self._connect(deadline)
                try:
                    text = self._ws.recv(timeout=_remaining(deadline))
                except TimeoutError:
                    raise
                except (ConnectionClosed, OSError):
                    if self._closed:
                        raise SubscriptionClosed() from None
                    self._drop()
                    continue
                try:
                    msg, ops = self._state.handle(text)
                except _Reconnect:
                    self._drop()
                    continue
                except LightkeeperError:
                    self.close()
                    raise
                self._healthy = True
                for op in ops:
                    try:
                        self._ws.send(json.dumps(op))
                    except Exception:  # noqa: BLE001 - the next recv sees the drop
                        pass
                if msg is not None:
                    return msg

    def close(self) -> None:
        """Closes the connection for good; iteration ends."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass


class AsyncSubscription(_Base):
    """An asyncio async iterator over a subscription's messages; the same messages, resume and
    failover as :class:`Subscription`.

    ``async with client.asubscribe(...) as sub:`` opens the connection on entry (raising
    :class:`~lightkeeper.ConnectionFailed` if no node accepts it); plain ``async for msg in
    client.asubscribe(...)`` opens it on the first message. :meth:`recv` takes a timeout.
    """

    def __init__(self, nodes: Sequence[str], state: SubscriptionState, **kwargs: Any) -> None:
        super().__init__(nodes, state, **kwargs)
        self._ws: Any = None
        self._lock: Optional[asyncio.Lock] = None

    async def __aenter__(self) -> "AsyncSubscription":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def _open_one(self, base: str, timeout: Optional[float]) -> Any:
        open_timeout = self._open_timeout if timeout is None else max(0.05, min(self._open_timeout, timeout))
        headers = _headers(self._token)
        try:
            from websockets.asyncio.client import connect  # websockets >= 13
        except ImportError:  # pragma: no cover - websockets 12's legacy asyncio client
            from websockets.client import connect as legacy_connect  # type: ignore[attr-defined,unused-ignore]

            return await legacy_connect(
                ws_url(base), open_timeout=open_timeout, extra_headers=headers, max_size=MAX_MESSAGE_BYTES
            )
        return await connect(ws_url(base), open_timeout=open_timeout, additional_headers=headers, max_size=MAX_MESSAGE_BYTES)

    async def connect(self, timeout: Optional[float] = None) -> None:
        """Opens the connection now if it is not open."""
        if self._ws is None and not self._closed:
            deadline = None if timeout is None else time.monotonic() + timeout
            await self._connect(deadline)

    async def _connect(self, deadline: Optional[float]) -> None:
        errors: List[str] = []
        tried = 0
        if self._owed_wait:
            # A cancellation (the caller's timeout) keeps the rest of the wait owed.
            started = time.monotonic()
            try:
                await asyncio.sleep(self._owed_wait)
            finally:
                self._owed_wait = max(0.0, self._owed_wait - (time.monotonic() - started))
        while not self._closed:
            base = self._nodes.current()
            try:
                ws = await self._open_one(base, _remaining(deadline))
                try:
                    for op in self._state.subscribe_ops():
                        await ws.send(json.dumps(op))
                except asyncio.CancelledError:
                    asyncio.ensure_future(ws.close())  # cancelled (a timeout): leave no socket open
                    raise
                except BaseException:
                    await ws.close()
                    raise
            except Exception as e:  # noqa: BLE001 - any failure to open moves on to the next node
                errors.append(f"{base}: {e}")
                self._nodes.advance(base)
                tried += 1
                if not self._ever_connected and tried >= len(self._nodes):
                    raise self._describe_failure(errors) from e
                if tried % len(self._nodes) == 0:
                    wait = _backoff(self._attempt)
                    self._attempt += 1
                    rem = _remaining(deadline)
                    if rem is not None and rem <= wait:
                        await asyncio.sleep(rem)
                        raise asyncio.TimeoutError("no node accepted the WebSocket before the timeout") from e
                    await asyncio.sleep(wait)
                elif deadline is not None and time.monotonic() >= deadline:
                    raise asyncio.TimeoutError("no node accepted the WebSocket before the timeout") from e
                continue
            self._ws = ws
            self._ever_connected = True
            self._healthy = False
            return
        raise SubscriptionClosed()

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await ws.close()
            except Exception:  # noqa: BLE001
                pass
        self._after_drop()

    async def recv(self, timeout: Optional[float] = None) -> Message:
        """The next message. Raises ``asyncio.TimeoutError`` (``TimeoutError`` on Python ≥ 3.11)
        if none arrives within ``timeout`` seconds, :class:`SubscriptionClosed` after
        :meth:`close`, and :class:`~lightkeeper.LightkeeperError` when the server refuses the
        subscription."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if timeout is None:
                return await self._recv(None)
            return await asyncio.wait_for(self._recv(time.monotonic() + timeout), timeout)

    async def _recv(self, deadline: Optional[float]) -> Message:
        from websockets.exceptions import ConnectionClosed

        while True:
            if self._closed:
                raise SubscriptionClosed()
            if self._ws is None:
                await self._connect(deadline)
            try:
                text = await self._ws.recv()
            except (ConnectionClosed, OSError):
                if self._closed:
                    raise SubscriptionClosed() from None
                await self._drop()
                continue
            try:
                msg, ops = self._state.handle(text)
            except _Reconnect:
                await self._drop()
                continue
            except LightkeeperError:
                await self.close()
                raise
            self._healthy = True
            for op in ops:
                try:
                    await self._ws.send(json.dumps(op))
                except Exception:  # noqa: BLE001 - the next recv sees the drop
                    pass
            if msg is not None:
                return msg

    async def close(self) -> None:
        """Closes the connection for good; iteration ends."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await ws.close()
            except Exception:  # noqa: BLE001
                pass
