"""errors.map_client_error: every exception class aiohttp exports is mapped on purpose."""

from __future__ import annotations

import errno
import inspect

import aiohttp
import pytest

from llm_api_router.errors import (
    AllProvidersFailed,
    AttemptRecord,
    ConfigError,
    LocalResourceError,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamTimeout,
    UpstreamTransportError,
    map_client_error,
)

# Exceptions aiohttp exports that an outgoing request can never raise (server-side,
# websocket or warning classes); everything else must map to a specific class of ours.
NOT_FROM_REQUESTS = {
    "BadContentDispositionHeader",
    "BadContentDispositionParam",
    "EofStream",
    "WSMessageTypeError",
    "WebSocketError",
    "WSServerHandshakeError",
}


def aiohttp_exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for name, obj in vars(aiohttp).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and name not in NOT_FROM_REQUESTS
    ]


def instantiate(cls: type[BaseException]) -> BaseException:
    exc = cls.__new__(cls)
    BaseException.__init__(exc)
    return exc


@pytest.mark.parametrize("cls", aiohttp_exception_classes(), ids=lambda c: c.__name__)
def test_every_aiohttp_error_maps_to_a_specific_class(cls: type[BaseException]) -> None:
    mapped = map_client_error(instantiate(cls))
    assert type(mapped) is not UpstreamTransportError, f"{cls.__name__} is unmapped"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (instantiate(aiohttp.SocketTimeoutError), UpstreamTimeout),
        (instantiate(aiohttp.ConnectionTimeoutError), UpstreamTimeout),
        (TimeoutError(), UpstreamTimeout),
        (instantiate(aiohttp.ClientConnectorError), UpstreamConnectError),
        (instantiate(aiohttp.ClientConnectorDNSError), UpstreamConnectError),
        (ConnectionRefusedError(), UpstreamConnectError),
        (instantiate(aiohttp.ServerDisconnectedError), UpstreamDisconnected),
        (instantiate(aiohttp.ClientPayloadError), UpstreamDisconnected),
        (ConnectionResetError(), UpstreamDisconnected),
    ],
)
def test_specific_mappings(exc: BaseException, expected: type[UpstreamTransportError]) -> None:
    assert type(map_client_error(exc)) is expected


def test_mapped_message_is_only_the_class_name() -> None:
    exc = aiohttp.ClientPayloadError("Response payload is not completed, url=http://key@host")
    assert str(map_client_error(exc)) == "ClientPayloadError"


def test_unknown_error_falls_back_to_base_class() -> None:
    assert type(map_client_error(ValueError("x"))) is UpstreamTransportError


def test_all_failed_message_lists_attempts() -> None:
    error = AllProvidersFailed(
        [AttemptRecord("a", "server_error", 500), AttemptRecord("b", "timeout")], None
    )
    assert str(error) == "All providers failed (a: 500; b: timeout)"
    limited = AllProvidersFailed([AttemptRecord("a", "rate_limited", 429)], 3.0)
    assert "rate limited" in str(limited)


def test_config_error_format() -> None:
    assert (
        str(ConfigError("c.json", "openai[0].timeout", "bad")) == "c.json: openai[0].timeout: bad"
    )
    assert str(ConfigError("c.json", None, "file not found")) == "c.json: file not found"


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_running_out_of_local_resources_is_the_routers_own_error(code: int) -> None:
    for exc in (OSError(code, "no"), _connector_error(code)):
        mapped = map_client_error(exc)
        assert isinstance(mapped, LocalResourceError), exc
        assert mapped.kind == "local_resource_exhausted"


def test_a_refused_connection_is_still_the_providers() -> None:
    assert type(map_client_error(_connector_error(errno.ECONNREFUSED))) is UpstreamConnectError


def _connector_error(code: int) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("h", 80, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(code, "no"))
