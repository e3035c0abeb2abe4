"""The REST client: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both take one node URL or several (any node of a cluster answers any request). A request that
cannot reach a node, or that a node answers with 503 (draining, restoring, no master reachable),
goes to the next node; the error is raised only when every node failed. API errors are raised as
the typed exceptions of :mod:`lightkeeper.errors`.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
from typing import (
    Any,
    AsyncIterator,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import quote

import httpx

from . import _tables
from ._nodes import Nodes
from .errors import ConnectionFailed, LightkeeperError, ProtocolError, error_from_body
from .subscription import AsyncSubscription, Subscription, SubscriptionState

__all__ = ["Client", "AsyncClient", "Page", "ObjectList", "Query", "AsyncQuery"]

Json = Dict[str, Any]
Packet = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]
TimeArg = Union[None, str, int, float, _dt.datetime, _dt.date]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
CUTOUT_KINDS = ("science", "template", "difference")
STATS_STEPS = ("minute", "hour", "night")


class ObjectList(List[Json]):
    """A list of object summaries, plus ``missing_partitions``: the partitions that did not
    answer (non-empty only when the query was made with ``partial=True``)."""

    missing_partitions: List[int]

    def __init__(self, items: Iterable[Json] = (), missing_partitions: Optional[List[int]] = None) -> None:
        super().__init__(items)
        self.missing_partitions = list(missing_partitions or [])


class Page(ObjectList):
    """One page of ``GET /v1/objects``: the summaries, and ``next_cursor`` (``None`` on the last
    page) to pass as ``cursor`` for the next one."""

    next_cursor: Optional[str]

    def __init__(
        self,
        items: Iterable[Json] = (),
        next_cursor: Optional[str] = None,
        missing_partitions: Optional[List[int]] = None,
    ) -> None:
        super().__init__(items, missing_partitions)
        self.next_cursor = next_cursor


class _Req(NamedTuple):
    method: str
    path: str
    params: Optional[List[Tuple[str, Any]]] = None
    content: Optional[bytes] = None
    headers: Optional[Dict[str, str]] = None


# --------------------------------------------------------------------------- request building


def _seg(value: Union[str, int]) -> str:
    """One percent-encoded path segment (object keys contain ':')."""
    return quote(str(value), safe="")


def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"an object key is a non-empty string such as 'ztf:ZTF21abiuvdk', not {key!r}")
    return _seg(key)


def _alert_id(alert_id: Union[int, str]) -> str:
    if isinstance(alert_id, bool) or not isinstance(alert_id, (int, str)):
        raise TypeError(f"alert_id is an int or a decimal string, not {alert_id!r}")
    text = str(alert_id).strip()
    if not text.lstrip("-").isdigit():
        raise ValueError(f"alert_id must be a decimal integer, not {alert_id!r}")
    return text


def _many(value: Union[None, str, Iterable[str]]) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _num(x: Union[int, float]) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


def _time_param(value: TimeArg, name: str) -> Optional[str]:
    """A stats bound: ISO-8601 UTC (str or datetime; a naive datetime is taken as UTC) or unix
    milliseconds (int)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an ISO-8601 string, a datetime or unix milliseconds")
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, (int, float)):
        return str(int(value))
    if isinstance(value, str):
        return value
    raise TypeError(f"{name} must be an ISO-8601 string, a datetime or unix milliseconds, not {value!r}")


def _read_packet(packet: Packet) -> bytes:
    if isinstance(packet, (bytes, bytearray, memoryview)):
        return bytes(packet)
    if isinstance(packet, (str, os.PathLike)):
        with open(packet, "rb") as f:
            return f.read()
    raise TypeError("ingest takes the packet's bytes (or the path of a file holding them)")


def _req_object(key: str) -> _Req:
    return _Req("GET", f"/v1/objects/{_key(key)}")


def _req_lightcurve(
    key: str,
    since_mjd: Optional[float],
    until_mjd: Optional[float],
    bands: Union[None, str, Iterable[str]],
    kinds: Union[None, str, Iterable[str]],
) -> _Req:
    params: List[Tuple[str, Any]] = []
    if since_mjd is not None:
        params.append(("since_mjd", _num(since_mjd)))
    if until_mjd is not None:
        params.append(("until_mjd", _num(until_mjd)))
    params += [("band", b) for b in _many(bands)]
    params += [("kind", k) for k in _many(kinds)]
    return _Req("GET", f"/v1/objects/{_key(key)}/lightcurve", params or None)


def _req_cone(
    ra: float, dec: float, radius_arcsec: float, where: Optional[str], limit: Optional[int], partial: bool
) -> _Req:
    params: List[Tuple[str, Any]] = [("ra", _num(ra)), ("dec", _num(dec)), ("radius_arcsec", _num(radius_arcsec))]
    if where is not None:
        params.append(("where", where))
    if limit is not None:
        params.append(("limit", str(int(limit))))
    if partial:
        params.append(("partial", "true"))
    return _Req("GET", "/v1/cone", params)


def _req_objects(
    where: Optional[str], order: Optional[str], limit: Optional[int], cursor: Optional[str], partial: bool
) -> _Req:
    params: List[Tuple[str, Any]] = []
    if where is not None:
        params.append(("where", where))
    if order is not None:
        params.append(("order", order))
    if limit is not None:
        params.append(("limit", str(int(limit))))
    if cursor is not None:
        params.append(("cursor", cursor))
    if partial:
        params.append(("partial", "true"))
    return _Req("GET", "/v1/objects", params or None)


def _req_stats(since: TimeArg, until: TimeArg, step: str) -> _Req:
    if step not in STATS_STEPS:
        raise ValueError(f"step must be one of {', '.join(STATS_STEPS)}, not {step!r}")
    params: List[Tuple[str, Any]] = [("step", step)]
    s, u = _time_param(since, "since"), _time_param(until, "until")
    if s is not None:
        params.append(("since", s))
    if u is not None:
        params.append(("until", u))
    return _Req("GET", "/v1/stats", params)


def _req_cutout(key: str, alert_id: Union[int, str], kind: str, format: str) -> _Req:
    if format not in ("fits", "png"):
        raise ValueError(f"format must be 'fits' or 'png', not {format!r}")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be one of {', '.join(CUTOUT_KINDS)}")
    path = f"/v1/objects/{_key(key)}/cutouts/{_seg(_alert_id(alert_id))}/{_seg(kind)}"
    return _Req("GET", path, [("format", format)])


def _req_packet(key: str, alert_id: Union[int, str]) -> _Req:
    return _Req("GET", f"/v1/objects/{_key(key)}/alerts/{_seg(_alert_id(alert_id))}/packet")


def _req_ingest(packet: Packet) -> _Req:
    return _Req("POST", "/v1/alerts", content=_read_packet(packet), headers={"content-type": "application/octet-stream"})


# --------------------------------------------------------------------------- answer shaping


def _lightcurve_result(body: Json, as_: Optional[str]) -> Any:
    points = list(body.get("points") or [])
    meta = {"key": body.get("key"), "version": body.get("version")}
    return _tables.convert(points, as_, _tables.POINT_COLUMNS, _tables.POINT_UNITS, meta)


def _stats_result(body: Json, as_: Optional[str]) -> Any:
    rows = list(body.get("rows") or [])
    meta = {k: body.get(k) for k in ("step", "since", "until")}
    return _tables.convert(rows, as_, _tables.STATS_COLUMNS, None, meta, datetime_columns=("start",))


def _page(body: Json) -> Page:
    return Page(body.get("objects") or [], body.get("next_cursor"), body.get("missing_partitions"))


def _cone(body: Json) -> ObjectList:
    return ObjectList(body.get("objects") or [], body.get("missing_partitions"))


def _hdu(data: bytes) -> Any:
    try:
        from astropy.io import fits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "as_hdu=True needs astropy, which is not installed: pip install 'lightkeeper[astropy]' (or pip install astropy)"
        ) from e
    hdus = fits.open(io.BytesIO(data), lazy_load_hdus=False)
    for hdu in hdus:
        if hdu.data is not None:
            return hdu
    return hdus[0]


def _subscription_state(
    objects: Union[None, str, Sequence[str]],
    from_version: Union[None, int, Mapping[str, int]],
    filter: Optional[str],
    snapshot: bool,
    from_: Optional[str],
) -> SubscriptionState:
    if isinstance(objects, str):
        objects = [objects]
    return SubscriptionState("s1", objects, from_version, filter, snapshot, from_)


def _decode_json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError as e:
        raise ProtocolError("bad_response", f"expected JSON from {resp.request.url.path}: {e}", resp.status_code) from e


def _expect_object(body: Any, what: str) -> Json:
    """``body`` if it is a JSON object, else a :class:`ProtocolError`."""
    if not isinstance(body, dict):
        raise ProtocolError("bad_response", f"expected a JSON object from {what}, got {type(body).__name__}")
    return body


def _raise_for(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    text = resp.text
    try:
        body = resp.json()
    except ValueError:
        body = None
    retry_after: Optional[float] = None
    if "retry-after" in resp.headers:
        try:
            retry_after = float(resp.headers["retry-after"])
        except ValueError:
            retry_after = None
    raise error_from_body(resp.status_code, body, text, retry_after)


def _retryable(req: _Req, e: httpx.TransportError) -> bool:
    """Whether another node may be asked after ``e``. A read always; a write only when it
    surely did not reach the node (connecting failed), so an alert is never sent twice."""
    return req.method == "GET" or isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))


def _headers(token: Optional[str], headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    out = {"accept": "application/json, */*;q=0.5", "user-agent": "lightkeeper-python"}
    if headers:
        out.update(headers)
    if token:
        out["authorization"] = f"Bearer {token}"
    return out


class _Common:
    """What the sync and async clients share: the nodes, the token and the subscriptions."""

    def __init__(
        self,
        urls: Union[str, Iterable[str]],
        token: Optional[str],
    ) -> None:
        self._nodes = Nodes(urls)
        self._token = token

    @property
    def urls(self) -> List[str]:
        """Every node's base URL, as given."""
        return list(self._nodes.urls)

    @property
    def url(self) -> str:
        """The node in use now (the next request goes there first)."""
        return self._nodes.current()

    def _ordered_urls(self) -> List[str]:
        """The node list starting at the node in use (where a subscription tries first)."""
        i = self._nodes.index
        return self._nodes.urls[i:] + self._nodes.urls[:i]

    def _connection_failed(self, errors: List[str]) -> ConnectionFailed:
        return ConnectionFailed("network_error", f"could not reach {', '.join(self._nodes.urls)}: {'; '.join(errors)}")

    def asubscribe(
        self,
        objects: Union[None, str, Sequence[str]] = None,
        *,
        from_version: Union[None, int, Mapping[str, int]] = None,
        filter: Optional[str] = None,
        snapshot: bool = False,
        from_: Optional[str] = None,
        reconnect: bool = True,
        open_timeout: float = 10.0,
    ) -> AsyncSubscription:
        """An asyncio subscription; see :meth:`Client.subscribe` for the arguments.

        Use ``async with client.asubscribe(...) as sub: async for msg in sub: ...`` (the
        connection opens on entry), or iterate it directly (it opens on the first message).
        """
        state = _subscription_state(objects, from_version, filter, snapshot, from_)
        return AsyncSubscription(
            self._ordered_urls(), state, token=self._token, open_timeout=open_timeout, reconnect=reconnect
        )


class Client(_Common):
    """A blocking client of one Lightkeeper node or several.

    Args:
        urls: a node's base URL (``"http://127.0.0.1:8080"``) or a list of them; requests go
            to the first, and move to the next when one cannot be reached or answers 503.
        token: an access token, when the nodes require one (API.md, "Access"): sent as
            ``Authorization: Bearer <token>`` with every REST request and in the opening
            handshake of every WebSocket subscription. ``None`` (the default) sends none, for
            anonymous reads. A refusal raises :class:`~lightkeeper.Unauthorized` (401: no token
            or a wrong one), :class:`~lightkeeper.Forbidden` (403: the token lacks the scope)
            or :class:`~lightkeeper.RateLimited` (429, with ``retry_after`` in seconds); none
            of them is retried or sent to another node.
        timeout: seconds (or an ``httpx.Timeout``) per request.
        headers: extra headers for every request.
        transport: an ``httpx`` transport for REST requests (e.g. ``httpx.MockTransport`` in
            tests); WebSocket subscriptions do not use it.

    Example::

        from lightkeeper import Client
        lk = Client("http://127.0.0.1:8080")
        lk.object("ztf:ZTF21abiuvdk")["n_detections"]
        df = lk.lightcurve("ztf:ZTF21abiuvdk", bands=["g"], as_="pandas")
    """

    def __init__(
        self,
        urls: Union[str, Iterable[str]],
        *,
        token: Optional[str] = None,
        timeout: Union[float, httpx.Timeout, None] = DEFAULT_TIMEOUT,
        headers: Optional[Mapping[str, str]] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(urls, token)
        self._http = httpx.Client(timeout=timeout, headers=_headers(token, headers), transport=transport)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the HTTP connection pool (subscriptions are closed on their own)."""
        self._http.close()

    # ------------------------------------------------------------------ transport

    def _send(self, req: _Req) -> httpx.Response:
        errors: List[str] = []
        n = len(self._nodes)
        for tried in range(1, n + 1):
            base = self._nodes.current()
            try:
                resp = self._http.request(req.method, base + req.path, params=req.params, content=req.content, headers=req.headers)
            except httpx.TransportError as e:
                errors.append(f"{base}: {type(e).__name__}: {e}")
                if not _retryable(req, e):
                    raise ConnectionFailed("network_error", f"{req.method} {base}{req.path} failed: {e}") from e
                self._nodes.advance(base)
                if tried == n:
                    raise self._connection_failed(errors) from e
                continue
            if resp.status_code == 503 and tried < n:
                # Draining, restoring or cut off from the master: another node may serve it.
                self._nodes.advance(base)
                continue
            _raise_for(resp)
            return resp
        raise self._connection_failed(errors)  # pragma: no cover - the loop always returns or raises

    def _json(self, req: _Req) -> Json:
        return _expect_object(_decode_json(self._send(req)), req.path)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Any other route (``path`` starts with ``/``), with the same failover and typed
        errors; ``kwargs`` are ``params``, ``content`` and ``headers``."""
        return self._send(_Req(method.upper(), path, kwargs.get("params"), kwargs.get("content"), kwargs.get("headers")))

    # ------------------------------------------------------------------ reads

    def object(self, key: str) -> Json:
        """The object's summary (``GET /v1/objects/{key}``): ``key``, ``survey``, ``ra``,
        ``dec``, ``first_mjd``, ``last_mjd``, ``n_detections``, ``n_upper_limits``,
        ``n_forced``, ``n_alerts``, ``bands``, ``latest_alert_id``, ``solar_system``,
        ``attributes``, ``version``, ``updated_at``.

        Raises:
            NotFound: ``object_not_found`` when the key is unknown.
        """
        return self._json(_req_object(key))

    def lightcurve(
        self,
        key: str,
        since_mjd: Optional[float] = None,
        until_mjd: Optional[float] = None,
        bands: Union[None, str, Iterable[str]] = None,
        kinds: Union[None, str, Iterable[str]] = None,
        as_: Optional[str] = None,
    ) -> Any:
        """The light curve's points, sorted by time: a list of dicts (``mjd``, ``time_scale``,
        ``band``, ``kind``, ``flux_njy``, ``flux_err_njy``, ``mag``, ``mag_err``,
        ``limiting_mag``, ``source_id``, ``is_negative``, ``reliability``, ``alert_id``).

        Args:
            since_mjd, until_mjd: only points in this time range (inclusive).
            bands: e.g. ``["g", "r"]``; kinds: any of ``detection``, ``upper_limit``, ``forced``.
            as_: ``"pandas"`` for a DataFrame, ``"astropy"`` for a Table (null values masked,
                units attached); the object's ``key`` and ``version`` go to ``attrs`` / ``meta``.
        """
        _tables.check_format(as_)
        return _lightcurve_result(self._json(_req_lightcurve(key, since_mjd, until_mjd, bands, kinds)), as_)

    def alerts(self, key: str) -> List[Json]:
        """The alerts that built the object: ``alert_id`` (a string), ``mjd``, ``time_scale``,
        ``schema_version`` and ``source`` (topic, partition, offset)."""
        return list(self._json(_Req("GET", f"/v1/objects/{_key(key)}/alerts")).get("alerts") or [])

    def cone(
        self,
        ra: float,
        dec: float,
        radius_arcsec: float,
        where: Optional[str] = None,
        limit: Optional[int] = None,
        partial: bool = False,
    ) -> ObjectList:
        """Objects within ``radius_arcsec`` (at most 3600) of (``ra``, ``dec``) in degrees,
        nearest first, each a summary with ``distance_arcsec``; ``where`` narrows them (the
        filter language)."""
        return _cone(self._json(_req_cone(ra, dec, radius_arcsec, where, limit, partial)))

    def query_page(
        self,
        where: Optional[str] = None,
        order: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        partial: bool = False,
    ) -> Page:
        """One page of the objects matching ``where`` (``GET /v1/objects``); pass its
        ``next_cursor`` as ``cursor`` for the next page.

        Raises:
            BadFilter: a malformed filter (the message says where).
        """
        return _page(self._json(_req_objects(where, order, limit, cursor, partial)))

    def query(
        self,
        where: Optional[str] = None,
        order: Optional[str] = None,
        limit: Optional[int] = None,
        *,
        max_results: Optional[int] = None,
        cursor: Optional[str] = None,
        partial: bool = False,
    ) -> "Query":
        """Every object matching ``where``, in ``order`` (a field, optionally followed by
        ``desc``; key order by default), fetched page by page.

        Iterate the result for the objects (``for obj in lk.query("n_detections >= 3")``), or
        its :meth:`Query.pages` for the pages. ``limit`` is the page size asked of the server;
        ``max_results`` stops after that many objects. Pages are fetched as iteration needs
        them, so a bad filter raises :class:`~lightkeeper.BadFilter` on the first ``next()``.
        """
        return Query(self, where, order, limit, max_results, cursor, partial)

    def fields(self) -> List[Json]:
        """Every field of the filter language: ``name``, ``type`` and ``description``."""
        return list(self._json(_Req("GET", "/v1/fields")).get("fields") or [])

    def cluster(self) -> Json:
        """The cluster as the node in use sees it (``GET /v1/cluster``)."""
        return self._json(_Req("GET", "/v1/cluster"))

    def stats(
        self,
        since: TimeArg = None,
        until: TimeArg = None,
        step: str = "minute",
        as_: Optional[str] = None,
    ) -> Any:
        """Ingest counts per time step (``GET /v1/stats``): rows of ``start`` (ISO-8601),
        ``survey``, ``band``, ``alerts``, ``new_objects``, ``detections``, ``dead_letters``.

        Args:
            since, until: ISO-8601 UTC strings, datetimes (naive ones are UTC) or unix
                milliseconds (int).
            step: ``minute``, ``hour`` or ``night``.
            as_: ``"pandas"`` (``start`` parsed as UTC datetimes) or ``"astropy"``.
        """
        _tables.check_format(as_)
        return _stats_result(self._json(_req_stats(since, until, step)), as_)

    def openapi(self) -> Json:
        """The node's OpenAPI document (``/openapi.json``): which routes it serves."""
        return self._json(_Req("GET", "/openapi.json"))

    def ready(self) -> bool:
        """Whether the node in use answers ``/readyz`` with 200 (caught up and routable)."""
        try:
            return self._http.get(self._nodes.current() + "/readyz").status_code == 200
        except httpx.TransportError:
            return False

    # ------------------------------------------------------------------ cutouts and packets

    def cutouts(self, key: str) -> List[Json]:
        """The stamps kept for the object: per alert, ``alert_id``, ``mjd`` and the ``kinds``
        available (``science``, ``template``, ``difference``)."""
        return list(self._json(_Req("GET", f"/v1/objects/{_key(key)}/cutouts")).get("alerts") or [])

    def cutout(
        self,
        key: str,
        alert_id: Union[int, str],
        kind: str,
        format: str = "fits",
        as_hdu: bool = False,
    ) -> Any:
        """One stamp of one alert: ``kind`` is ``science``, ``template`` or ``difference``;
        ``format`` ``fits`` (the packet's image, decompressed) or ``png``. Returns the bytes,
        or with ``as_hdu=True`` (FITS only; needs astropy) the image HDU.

        Raises:
            NotFound: ``alert_not_found`` / ``cutout_not_found``.
            Gone: ``packet_expired`` (the packet is past the node's retention).
        """
        if as_hdu and format != "fits":
            raise ValueError("as_hdu=True needs format='fits'")
        data = self._send(_req_cutout(key, alert_id, kind, format)).content
        return _hdu(data) if as_hdu else data

    def packet(self, key: str, alert_id: Union[int, str]) -> bytes:
        """The original alert packet as it arrived (an Avro container or a Confluent
        wire-format message)."""
        return self._send(_req_packet(key, alert_id)).content

    # ------------------------------------------------------------------ writes

    def ingest(self, packet: Packet) -> Json:
        """Sends one alert packet (``POST /v1/alerts``): the bytes of one Avro object container
        file (ZTF) or one Confluent wire-format message (LSST), or the path of a file holding
        them. Returns where it was written: ``key``, ``alert_id``, ``topic``, ``partition``,
        ``offset``. The object reflects it once the partition has applied it (shortly after).

        Raises:
            BadRequest: the packet cannot be decoded (the message says why).
        """
        return self._json(_req_ingest(packet))

    # ------------------------------------------------------------------ live

    def subscribe(
        self,
        objects: Union[None, str, Sequence[str]] = None,
        *,
        from_version: Union[None, int, Mapping[str, int]] = None,
        filter: Optional[str] = None,
        snapshot: bool = False,
        from_: Optional[str] = None,
        reconnect: bool = True,
        open_timeout: float = 10.0,
    ) -> Subscription:
        """Subscribes over the WebSocket (``/v1/ws``) and returns a blocking iterator of the
        server's messages (dicts).

        Objects: ``subscribe(["ztf:ZTF21abiuvdk"])`` gets a ``snapshot`` per object, then an
        ``update`` per change, each version exactly once and in order. ``from_version`` (one
        version for all objects, or ``{key: version}`` such as an earlier subscription's
        ``versions``) starts after that version instead.

        Filters: ``subscribe(filter="mag_g < 18")`` gets ``subscribed``, then an ``update`` for
        every change after which an object matches and a ``leave`` when one stops matching;
        ``snapshot=True`` first sends the objects matching now; ``from_`` (an earlier
        subscription's ``cursor``) resumes right after it.

        The connection is opened before this returns (:class:`~lightkeeper.ConnectionFailed`
        if no node accepts it). If it drops later, the subscription reconnects — to the next
        node when several were given — and resumes, missing nothing and repeating nothing.
        Each subscription has a connection of its own.

        ``error`` messages: a refusal (``bad_filter``, ``invalid_key``, ``invalid_cursor`` ...)
        is raised as the typed exception and ends the subscription; ``slow_consumer`` and other
        broken streams make it reconnect and resume; any other (``snapshot_truncated``,
        ``unavailable`` while the server retries a partition) is delivered as a message.
        """
        state = _subscription_state(objects, from_version, filter, snapshot, from_)
        sub = Subscription(self._ordered_urls(), state, token=self._token, open_timeout=open_timeout, reconnect=reconnect)
        sub.connect()
        return sub


class Query:
    """The objects matching a query, fetched page by page as iteration needs them."""

    def __init__(
        self,
        client: Client,
        where: Optional[str],
        order: Optional[str],
        limit: Optional[int],
        max_results: Optional[int],
        cursor: Optional[str],
        partial: bool,
    ) -> None:
        self._client = client
        self._args = (where, order, limit, partial)
        self._max = max_results
        #: The cursor of the next page to fetch (``None`` once the last page was fetched).
        self.next_cursor: Optional[str] = cursor

    def pages(self) -> Iterator[Page]:
        """Every page, in order."""
        where, order, limit, partial = self._args
        seen = 0
        cursor = self.next_cursor
        while True:
            page = self._client.query_page(where, order, limit, cursor, partial)
            self.next_cursor = cursor = page.next_cursor
            if self._max is not None and seen + len(page) >= self._max:
                del page[self._max - seen :]
                yield page
                return
            seen += len(page)
            yield page
            if not cursor:
                return

    def __iter__(self) -> Iterator[Json]:
        for page in self.pages():
            yield from page

    def all(self) -> List[Json]:
        """Every matching object, as a list."""
        return list(self)


# =========================================================================== asyncio


class AsyncClient(_Common):
    """The asyncio twin of :class:`Client`: the same methods, as coroutines (``query`` returns
    an async iterator; ``subscribe`` and ``asubscribe`` an :class:`AsyncSubscription`), and the
    same arguments (``token`` included: REST requests and WebSocket handshakes carry it).

    Use it as ``async with AsyncClient(url) as lk:`` or call :meth:`aclose` when done.
    """

    def __init__(
        self,
        urls: Union[str, Iterable[str]],
        *,
        token: Optional[str] = None,
        timeout: Union[float, httpx.Timeout, None] = DEFAULT_TIMEOUT,
        headers: Optional[Mapping[str, str]] = None,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        super().__init__(urls, token)
        self._http = httpx.AsyncClient(timeout=timeout, headers=_headers(token, headers), transport=transport)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the HTTP connection pool."""
        await self._http.aclose()

    async def _send(self, req: _Req) -> httpx.Response:
        errors: List[str] = []
        n = len(self._nodes)
        for tried in range(1, n + 1):
            base = self._nodes.current()
            try:
                resp = await self._http.request(
                    req.method, base + req.path, params=req.params, content=req.content, headers=req.headers
                )
            except httpx.TransportError as e:
                errors.append(f"{base}: {type(e).__name__}: {e}")
                if not _retryable(req, e):
                    raise ConnectionFailed("network_error", f"{req.method} {base}{req.path} failed: {e}") from e
                self._nodes.advance(base)
                if tried == n:
                    raise self._connection_failed(errors) from e
                continue
            if resp.status_code == 503 and tried < n:
                self._nodes.advance(base)
                continue
            _raise_for(resp)
            return resp
        raise self._connection_failed(errors)  # pragma: no cover

    async def _json(self, req: _Req) -> Json:
        return _expect_object(_decode_json(await self._send(req)), req.path)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """See :meth:`Client.request`."""
        return await self._send(
            _Req(method.upper(), path, kwargs.get("params"), kwargs.get("content"), kwargs.get("headers"))
        )

    async def object(self, key: str) -> Json:
        """See :meth:`Client.object`."""
        return await self._json(_req_object(key))

    async def lightcurve(
        self,
        key: str,
        since_mjd: Optional[float] = None,
        until_mjd: Optional[float] = None,
        bands: Union[None, str, Iterable[str]] = None,
        kinds: Union[None, str, Iterable[str]] = None,
        as_: Optional[str] = None,
    ) -> Any:
        """See :meth:`Client.lightcurve`."""
        _tables.check_format(as_)
        return _lightcurve_result(await self._json(_req_lightcurve(key, since_mjd, until_mjd, bands, kinds)), as_)

    async def alerts(self, key: str) -> List[Json]:
        """See :meth:`Client.alerts`."""
        return list((await self._json(_Req("GET", f"/v1/objects/{_key(key)}/alerts"))).get("alerts") or [])

    async def cone(
        self,
        ra: float,
        dec: float,
        radius_arcsec: float,
        where: Optional[str] = None,
        limit: Optional[int] = None,
        partial: bool = False,
    ) -> ObjectList:
        """See :meth:`Client.cone`."""
        return _cone(await self._json(_req_cone(ra, dec, radius_arcsec, where, limit, partial)))

    async def query_page(
        self,
        where: Optional[str] = None,
        order: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        partial: bool = False,
    ) -> Page:
        """See :meth:`Client.query_page`."""
        return _page(await self._json(_req_objects(where, order, limit, cursor, partial)))

    def query(
        self,
        where: Optional[str] = None,
        order: Optional[str] = None,
        limit: Optional[int] = None,
        *,
        max_results: Optional[int] = None,
        cursor: Optional[str] = None,
        partial: bool = False,
    ) -> "AsyncQuery":
        """See :meth:`Client.query`; iterate with ``async for``."""
        return AsyncQuery(self, where, order, limit, max_results, cursor, partial)

    async def fields(self) -> List[Json]:
        """See :meth:`Client.fields`."""
        return list((await self._json(_Req("GET", "/v1/fields"))).get("fields") or [])

    async def cluster(self) -> Json:
        """See :meth:`Client.cluster`."""
        return await self._json(_Req("GET", "/v1/cluster"))

    async def stats(
        self, since: TimeArg = None, until: TimeArg = None, step: str = "minute", as_: Optional[str] = None
    ) -> Any:
        """See :meth:`Client.stats`."""
        _tables.check_format(as_)
        return _stats_result(await self._json(_req_stats(since, until, step)), as_)

    async def openapi(self) -> Json:
        """See :meth:`Client.openapi`."""
        return await self._json(_Req("GET", "/openapi.json"))

    async def ready(self) -> bool:
        """See :meth:`Client.ready`."""
        try:
            return (await self._http.get(self._nodes.current() + "/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def cutouts(self, key: str) -> List[Json]:
        """See :meth:`Client.cutouts`."""
        return list((await self._json(_Req("GET", f"/v1/objects/{_key(key)}/cutouts"))).get("alerts") or [])

    async def cutout(
        self, key: str, alert_id: Union[int, str], kind: str, format: str = "fits", as_hdu: bool = False
    ) -> Any:
        """See :meth:`Client.cutout`."""
        if as_hdu and format != "fits":
            raise ValueError("as_hdu=True needs format='fits'")
        data = (await self._send(_req_cutout(key, alert_id, kind, format))).content
        return _hdu(data) if as_hdu else data

    async def packet(self, key: str, alert_id: Union[int, str]) -> bytes:
        """See :meth:`Client.packet`."""
        return (await self._send(_req_packet(key, alert_id))).content

    async def ingest(self, packet: Packet) -> Json:
        """See :meth:`Client.ingest`."""
        return await self._json(_req_ingest(packet))

    def subscribe(
        self,
        objects: Union[None, str, Sequence[str]] = None,
        *,
        from_version: Union[None, int, Mapping[str, int]] = None,
        filter: Optional[str] = None,
        snapshot: bool = False,
        from_: Optional[str] = None,
        reconnect: bool = True,
        open_timeout: float = 10.0,
    ) -> AsyncSubscription:
        """The same as :meth:`asubscribe` (see :meth:`Client.subscribe` for the arguments)."""
        return self.asubscribe(
            objects,
            from_version=from_version,
            filter=filter,
            snapshot=snapshot,
            from_=from_,
            reconnect=reconnect,
            open_timeout=open_timeout,
        )


class AsyncQuery:
    """The objects matching a query, fetched page by page (``async for``)."""

    def __init__(
        self,
        client: AsyncClient,
        where: Optional[str],
        order: Optional[str],
        limit: Optional[int],
        max_results: Optional[int],
        cursor: Optional[str],
        partial: bool,
    ) -> None:
        self._client = client
        self._args = (where, order, limit, partial)
        self._max = max_results
        self.next_cursor: Optional[str] = cursor

    async def pages(self) -> AsyncIterator[Page]:
        """Every page, in order."""
        where, order, limit, partial = self._args
        seen = 0
        cursor = self.next_cursor
        while True:
            page = await self._client.query_page(where, order, limit, cursor, partial)
            self.next_cursor = cursor = page.next_cursor
            if self._max is not None and seen + len(page) >= self._max:
                del page[self._max - seen :]
                yield page
                return
            seen += len(page)
            yield page
            if not cursor:
                return

    async def __aiter__(self) -> AsyncIterator[Json]:
        async for page in self.pages():
            for obj in page:
                yield obj

    async def all(self) -> List[Json]:
        """Every matching object, as a list."""
        return [obj async for obj in self]
