"""Python client of Lightkeeper, a stateful data API for astronomical alert streams (ZTF,
Rubin/LSST).

* :class:`Client` — blocking REST reads (objects, light curves, cone searches, filter queries,
  cutouts, packets, stats), ingest, and live WebSocket subscriptions (:meth:`Client.subscribe`,
  and the asyncio :meth:`Client.asubscribe`);
* :class:`AsyncClient` — the same API with coroutines;
* typed errors: :class:`LightkeeperError` and its subclasses (:class:`NotFound`,
  :class:`BadRequest`, :class:`BadFilter`, :class:`Unavailable`, :class:`Gone`, ...).

Given several node URLs, the clients move to the next node when one cannot be reached or
answers 503, and subscriptions reconnect and resume without a gap or a duplicate.
"""

from .client import AsyncClient, AsyncQuery, Client, ObjectList, Page, Query
from .errors import (
    BadFilter,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Gone,
    LightkeeperError,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    ServerError,
    Unauthorized,
    Unavailable,
)
from .subscription import AsyncSubscription, Subscription, SubscriptionClosed, SubscriptionState

__version__ = "0.1.0"

__all__ = [
    "Client",
    "AsyncClient",
    "Query",
    "AsyncQuery",
    "Page",
    "ObjectList",
    "Subscription",
    "AsyncSubscription",
    "SubscriptionState",
    "SubscriptionClosed",
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
    "__version__",
]
