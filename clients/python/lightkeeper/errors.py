"""Typed exceptions for the API's ``{"error": {"code", "message"}}`` answers.

Every error a :class:`~lightkeeper.Client` raises is a :class:`LightkeeperError` carrying the
API's snake_case ``code``, its ``message`` and the HTTP ``status`` (``0`` when no response
arrived, e.g. no node could be reached). The subclass tells the kind of failure, so callers can
write ``except lightkeeper.NotFound:`` instead of comparing status codes.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

__all__ = [
    "LightkeeperError",
    "BadRequest",
    "BadFilter",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "RequestTimeout",
    "Conflict",
    "Gone",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "Unavailable",
    "ConnectionFailed",
    "ProtocolError",
    "error_from_body",
]


class LightkeeperError(Exception):
    """An error answered by the API, or met on the way to it.

    Attributes:
        code: the API's snake_case error code (``object_not_found``, ``bad_filter``, ...), or
            ``network_error`` / ``bad_response`` / ``http_<status>`` for failures that carry no
            API body.
        message: what was wrong, in words (the API's message).
        status: the HTTP status code, or ``0`` when no HTTP response was received (network
            failures). Errors sent over the WebSocket carry the status the same error has over
            HTTP (``bad_filter`` → 400).
    """

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        return f"{prefix}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status={self.status!r})"


class BadRequest(LightkeeperError):
    """400: the request was malformed (``invalid_key``, ``invalid_query``, ``bad_message`` ...)."""


class BadFilter(BadRequest):
    """400 ``bad_filter``: the filter expression is malformed or names an unknown field; the
    message says where."""


class Unauthorized(LightkeeperError):
    """401: a token is missing or wrong."""


class Forbidden(LightkeeperError):
    """403: the token lacks the scope this call needs."""


class NotFound(LightkeeperError):
    """404: ``object_not_found``, ``alert_not_found``, ``cutout_not_found``, ``no_such_route`` ..."""


class RequestTimeout(LightkeeperError):
    """408: the node took longer than its request timeout (reads are safe to retry)."""


class Conflict(LightkeeperError):
    """409: the request conflicts with the cluster's state (admin operations)."""


class Gone(LightkeeperError):
    """410: the thing existed but is no longer kept (``packet_expired``)."""


class PayloadTooLarge(LightkeeperError):
    """413: the request body is larger than the node's limit."""


class RateLimited(LightkeeperError):
    """429: the client is over its rate; ``retry_after`` (seconds) says when to try again."""

    def __init__(self, code: str, message: str, status: int = 429, retry_after: Optional[float] = None) -> None:
        super().__init__(code, message, status)
        self.retry_after = retry_after


class ServerError(LightkeeperError):
    """5xx other than 503: the node failed (``internal``); reads may be retried."""


class Unavailable(ServerError):
    """503: every node tried is draining, restoring or cannot reach the partition's master."""


class ConnectionFailed(Unavailable):
    """No node could be reached (status 0, code ``network_error``)."""


class ProtocolError(LightkeeperError):
    """The node answered something that is not what the API promises (``bad_response``)."""


_BY_STATUS: Dict[int, Type[LightkeeperError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    429: RateLimited,
    503: Unavailable,
}

_STATUS_OF: Dict[Type[LightkeeperError], int] = {cls: st for st, cls in _BY_STATUS.items()}
_STATUS_OF.update({BadFilter: 400, ServerError: 500})

# Codes that are sent without an HTTP status (WebSocket ``error`` messages).
_BY_CODE: Dict[str, Type[LightkeeperError]] = {
    "bad_filter": BadFilter,
    "object_not_found": NotFound,
    "alert_not_found": NotFound,
    "cutout_not_found": NotFound,
    "packet_expired": Gone,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "unavailable": Unavailable,
    "not_master": Unavailable,
    "timeout": RequestTimeout,
    "payload_too_large": PayloadTooLarge,
    "internal": ServerError,
}


def error_from_body(
    status: int,
    body: Any,
    fallback_text: str = "",
    retry_after: Optional[float] = None,
) -> LightkeeperError:
    """Builds the typed exception for an error answer.

    Args:
        status: the HTTP status (``0`` for a WebSocket error message).
        body: the decoded JSON body (``{"error": {"code", "message"}}``), or anything else when
            the body was not the API's error shape.
        fallback_text: the raw body, used as the message when ``body`` has none.
        retry_after: the ``Retry-After`` header, in seconds, if any.
    """
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or f"http_{status}")
        message = str(err.get("message") or fallback_text)
    else:
        code = f"http_{status}" if status else "unknown"
        message = fallback_text or "(no body)"
    cls: Type[LightkeeperError]
    if code == "bad_filter":
        cls = BadFilter
    elif status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif 400 <= status < 500:
        cls = BadRequest if status in (405, 415, 422) else LightkeeperError
    elif status >= 500:
        cls = ServerError
    else:
        # A WebSocket error message: no HTTP status.
        cls = _BY_CODE.get(code, BadRequest if status == 0 else LightkeeperError)
    if status == 0:
        # Over the WebSocket: the status the same error has over HTTP.
        status = _STATUS_OF.get(cls, 0)
    if cls is RateLimited:
        return RateLimited(code, message, status, retry_after)
    return cls(code, message, status)
