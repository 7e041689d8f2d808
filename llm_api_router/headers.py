"""Which headers cross the router, in each direction (SPEC section 4)."""

from __future__ import annotations

from collections.abc import Mapping

from llm_api_router.errors import ClientRequestError

__all__ = [
    "MAX_FORWARDED_HEADERS",
    "MAX_FORWARDED_HEADER_BYTES",
    "forward_request_headers",
    "pass_back_headers",
]

#: At most this many client headers go upstream (the router's own come on top).
MAX_FORWARDED_HEADERS = 64
#: A client header whose name and value are longer than this is not sent upstream.
MAX_FORWARDED_HEADER_BYTES = 8 * 1024

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Never sent upstream: credentials (ours are set per provider), transport framing that
# the HTTP client recomputes, and cookies.
_NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "accept-encoding",
    "expect",
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
}

_PASSED_BACK = frozenset(
    {
        "request-id",
        "x-request-id",
        "retry-after",
        "retry-after-ms",
        "openai-processing-ms",
        "openai-version",
        "x-should-retry",
    }
)
_PASSED_BACK_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


def forward_request_headers(client: Mapping[str, str], private: frozenset[str]) -> dict[str, str]:
    """The client's headers (lower-case names, as ASGI gives them) that go upstream.

    ``private`` adds the family's own never-forwarded names (e.g. OpenAI-Organization).
    Headers named by the client's ``Connection`` header are hop-by-hop too.  More than
    :data:`MAX_FORWARDED_HEADERS` headers, or one over :data:`MAX_FORWARDED_HEADER_BYTES`,
    is the client's error (431): no upstream should pay for them.
    """
    headers = {
        name: value
        for name, value in client.items()
        if name not in _NOT_FORWARDED
        and name not in private
        and not name.startswith(("x-router-", "proxy-"))
    }
    connection = client.get("connection")
    if connection:
        for token in connection.split(","):
            headers.pop(token.strip().lower(), None)
    if len(headers) > MAX_FORWARDED_HEADERS:
        raise ClientRequestError(
            431,
            f"The request has {len(headers)} headers to forward; at most "
            f"{MAX_FORWARDED_HEADERS} are accepted.",
            code="request_header_fields_too_large",
        )
    for name, value in headers.items():
        if len(name) + len(value) > MAX_FORWARDED_HEADER_BYTES:
            raise ClientRequestError(
                431,
                f"The request header '{name[:64]}' is longer than "
                f"{MAX_FORWARDED_HEADER_BYTES} bytes.",
                code="request_header_fields_too_large",
            )
    return headers


def pass_back_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """The upstream's response headers the client sees: request ids and rate-limit state."""
    return {
        name.lower(): value
        for name, value in upstream.items()
        if name.lower() in _PASSED_BACK or name.lower().startswith(_PASSED_BACK_PREFIXES)
    }
