"""A fake OpenAI / Anthropic upstream: a real HTTP server with on-demand fault injection.

Many fake *providers* live in one aiohttp server; the first path segment names the provider
and the rest is the real API's path:

* OpenAI (``base_url`` ``http://127.0.0.1:PORT/{provider}/v1``): ``chat/completions``,
  ``responses`` (create, streamed with the real events; retrieve, delete, ``input_items``,
  ``cancel``, ``input_tokens``, ``compact``), ``completions``, ``embeddings``,
  ``moderations``, ``audio/speech`` / ``transcriptions`` / ``translations``,
  ``images/generations``, ``models``, ``files``, ``uploads``, ``batches``,
  ``vector_stores``, ``conversations``; any other path is the real 404 ``Invalid URL``.
* Anthropic (``base_url`` ``http://127.0.0.1:PORT/{provider}``): ``v1/messages``,
  ``v1/messages/count_tokens``, ``v1/messages/batches`` (with ``results``), ``v1/models``,
  ``v1/files``. ``models`` and ``files`` exist in both APIs: requests with an
  ``anthropic-version`` header get Anthropic's.

Each request, whatever its endpoint, consumes the next scripted behaviour of its provider
(:meth:`FakeUpstream.script`); when that queue is empty the provider's default behaviour
applies (:class:`Ok` unless changed with :meth:`FakeUpstream.set_default`); a script or
default given with ``operation="messages.count_tokens"`` (any name of
:attr:`RecordedRequest.operation`) applies to that endpoint only, before the provider's
queue. Behaviours are
frozen dataclasses: :class:`Ok`, :class:`Error`, :class:`Raw`, :class:`Hang`, :class:`Drop`
and :class:`Stream` (:func:`response_failed` scripts an in-band Responses failure). Every
request is recorded as a :class:`RecordedRequest` (raw body bytes included).

Stored responses, reasoning items (``encrypted_content``), files, uploads, batches, vector
stores, conversations and Anthropic batches and files belong to the provider's *account*
(its own name unless :meth:`FakeUpstream.set_account` groups providers into one): they are
found through every provider of that account and nowhere else, with the real APIs' errors.

Use :class:`FakeUpstream` from async code, :class:`FakeUpstreamThread` from synchronous tests,
the ``/_control/*`` HTTP API from another process (``reset``, ``script``, ``default``,
``account``, ``models``, ``requests``, ``objects``), or run the package as a script::

    python -m llm_api_router.fake_upstream --port 9000 --fail primary=429

Client disconnects are noticed through aiohttp's ``handler_cancellation=True``: when the peer
closes the socket, aiohttp cancels the handler task, even while it sleeps or stalls.
"""

from .accounts import OwnedObject
from .behaviours import (
    Behaviour,
    Drop,
    Error,
    Hang,
    Ok,
    Raw,
    Stream,
    behaviour_from_dict,
    behaviour_to_dict,
    context_too_long,
    error_for_status,
    insufficient_quota,
    overloaded,
    rate_limited,
    response_failed,
)
from .cli import main
from .recording import Family, RecordedRequest
from .server import FakeUpstream
from .thread import FakeUpstreamThread

__all__ = [
    "Behaviour",
    "Drop",
    "Error",
    "FakeUpstream",
    "FakeUpstreamThread",
    "Family",
    "Hang",
    "Ok",
    "OwnedObject",
    "Raw",
    "RecordedRequest",
    "Stream",
    "behaviour_from_dict",
    "behaviour_to_dict",
    "context_too_long",
    "error_for_status",
    "insufficient_quota",
    "main",
    "overloaded",
    "rate_limited",
    "response_failed",
]
