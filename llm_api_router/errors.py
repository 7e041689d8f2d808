"""The router's exception tree, and the one place that maps HTTP-client errors to it.

::

    RouterError
     +-- ConfigError              bad configuration (start-up)
     +-- ClientRequestError       the client's request is unusable (rendered as a 4xx)
     +-- NoProviderError          no provider of the family serves the request (503 / 404)
     +-- AllProvidersFailed       every attempt failed (429 or 502, listing the attempts)
     +-- AccountUnavailable       the owning account's providers are all unavailable (429/503)
     +-- UpstreamTransportError   one attempt got no usable HTTP answer
          +-- UpstreamTimeout         silent past ``timeout`` (connect or read)
          +-- UpstreamConnectError    could not connect (refused, DNS, TLS handshake)
          +-- UpstreamDisconnected    connection reset/closed, truncated or malformed answer
          +-- LocalResourceError      the router is out of descriptors/memory (not the provider)

Internal errors carry typed attributes; they are rendered into the OpenAI or Anthropic
shape only at the edge (``families``).  Messages never contain secrets.
"""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass

import aiohttp

__all__ = [
    "AccountUnavailable",
    "AllProvidersFailed",
    "AttemptRecord",
    "ClientRequestError",
    "ConfigError",
    "LOCAL_RESOURCE_ERRNOS",
    "LocalResourceError",
    "NoProviderError",
    "RouterError",
    "UpstreamConnectError",
    "UpstreamDisconnected",
    "UpstreamTimeout",
    "UpstreamTransportError",
    "map_client_error",
]


class RouterError(Exception):
    """Base of every error the router raises on purpose."""


class ConfigError(RouterError):
    """The configuration is invalid: ``source: field: problem`` on one line."""

    def __init__(self, source: str, field: str | None, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")


class ClientRequestError(RouterError):
    """The client's request cannot be served as sent (bad JSON, missing field, too big...)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class NoProviderError(RouterError):
    """No configured provider of the family can take the request."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One upstream attempt, as reported to clients, logs and metrics (never a key)."""

    provider: str
    outcome: str  # "ok", "rate_limited", "server_error", "timeout", ...
    status: int | None = None
    latency: float = 0.0

    def describe(self) -> str:
        return f"{self.provider}: {self.status if self.status is not None else self.outcome}"


class AllProvidersFailed(RouterError):
    """Every attempt failed; ``retry_after`` is set when all failures were rate limits."""

    def __init__(self, attempts: list[AttemptRecord], retry_after: float | None) -> None:
        self.attempts = attempts
        self.retry_after = retry_after
        listed = "; ".join(a.describe() for a in attempts) or "no provider was available"
        if retry_after is not None:
            message = f"All providers are rate limited ({listed})"
        else:
            message = f"All providers failed ({listed})"
        super().__init__(message)
        self.message = message


class AccountUnavailable(RouterError):
    """Every provider of the account that owns what a request refers to is unavailable.

    No other account is asked: it would not find the object.  Rendered as 429 with
    ``Retry-After`` when they are rate limited, else 503.
    """

    def __init__(
        self,
        family: str,
        account: str,
        retry_after: float | None,
        attempts: list[AttemptRecord],
    ) -> None:
        self.account = account
        self.retry_after = retry_after
        self.attempts = attempts
        why = "rate limited" if retry_after is not None else "unavailable"
        message = (
            f"Every {family} provider of account '{account}', which owns an object this "
            f"request refers to, is {why}; no other account has it. Retry later."
        )
        super().__init__(message)
        self.message = message


class UpstreamTransportError(RouterError):
    """An attempt that produced no usable HTTP response; ``kind`` names what happened."""

    kind = "transport_error"


class UpstreamTimeout(UpstreamTransportError):
    kind = "timeout"


class UpstreamConnectError(UpstreamTransportError):
    kind = "connect_error"


class UpstreamDisconnected(UpstreamTransportError):
    kind = "disconnected"


class LocalResourceError(UpstreamTransportError):
    """The router itself ran out of something (file descriptors, memory, buffers).

    Never the provider's fault: it is no verdict on the provider's health.
    """

    kind = "local_resource_exhausted"


#: OS errors that mean this machine, not the network or the peer, is out of resources.
LOCAL_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


# Most specific first: the first matching row wins.  tests/test_errors.py walks every
# exception class aiohttp exports and fails if one falls through to the last resort.
_CLIENT_ERROR_MAP: tuple[
    tuple[tuple[type[BaseException], ...], type[UpstreamTransportError]], ...
] = (
    ((aiohttp.ServerTimeoutError, asyncio.TimeoutError, TimeoutError), UpstreamTimeout),
    (
        (
            aiohttp.ClientConnectorError,
            aiohttp.InvalidURL,
            aiohttp.NonHttpUrlClientError,
            ConnectionRefusedError,
        ),
        UpstreamConnectError,
    ),
    (
        (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientConnectionResetError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientResponseError,
            aiohttp.ClientConnectionError,
            aiohttp.ClientError,
            OSError,
        ),
        UpstreamDisconnected,
    ),
)


def map_client_error(exc: BaseException) -> UpstreamTransportError:
    """Map an aiohttp/asyncio/OS error of one attempt to ours, most specific first.

    The message is the error's class name only: aiohttp messages can include URLs and
    headers, and we never want a provider's details to travel to a client or a log.
    """
    # aiohttp's connection errors are OSErrors carrying the errno of the socket call.
    if isinstance(exc, OSError) and exc.errno in LOCAL_RESOURCE_ERRNOS:
        return LocalResourceError(errno.errorcode.get(exc.errno or 0, "OSError"))
    for classes, ours in _CLIENT_ERROR_MAP:
        if isinstance(exc, classes):
            return ours(type(exc).__name__)
    return UpstreamTransportError(type(exc).__name__)
