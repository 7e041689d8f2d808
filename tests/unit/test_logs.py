"""logs.py: the Redactor, the redacting filter, the JSON / text formatters, install_redaction."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from llm_api_router.logs import (
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    Redactor,
    TextFormatter,
    install_redaction,
)

PROVIDER_KEY = "sk-SENTINEL-provider-a-0123456789"
ROUTER_KEY = "rk-SENTINEL-router-9876543210"
ODD_KEY = "key.with*regex+chars?(x)[y]{2}|$^"
SECRETS = (PROVIDER_KEY, ROUTER_KEY, ODD_KEY)


def make_logger(
    name: str, formatter: logging.Formatter, secrets: tuple[str, ...] = SECRETS
) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    logger = logging.getLogger(f"tests.unit.test_logs.{name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream, handler


@pytest.fixture
def json_logger(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger, stream, handler = make_logger(request.node.name, JsonFormatter())
    yield logger, stream
    logger.removeHandler(handler)


@pytest.fixture
def text_logger(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger, stream, handler = make_logger(request.node.name, TextFormatter())
    yield logger, stream
    logger.removeHandler(handler)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    # Not even a recognisable piece of a key.
    assert "SENTINEL" not in text


# -- Redactor ------------------------------------------------------------------------------


def test_redactor_replaces_configured_secrets() -> None:
    redact = Redactor([ROUTER_KEY, "plain-secret-value"])
    out = redact(f"router key {ROUTER_KEY} and plain-secret-value, twice {ROUTER_KEY}")
    assert out == f"router key {REDACTED} and {REDACTED}, twice {REDACTED}"


def test_redactor_longest_secret_first() -> None:
    redact = Redactor(["abcd1234", "abcd1234-extended-part"])
    assert redact("x abcd1234-extended-part y") == f"x {REDACTED} y"
    assert "extended" not in redact("abcd1234-extended-part")


def test_redactor_escapes_regex_characters() -> None:
    redact = Redactor([ODD_KEY])
    assert redact(f"k={ODD_KEY}.") == f"k={REDACTED}."
    # The secret is matched literally, not as a pattern.
    assert redact("keyXwith") == "keyXwith"


def test_redactor_ignores_empty_secrets() -> None:
    redact = Redactor(["", ROUTER_KEY, ""])
    assert redact("nothing secret here") == "nothing secret here"
    assert redact("") == ""
    assert redact(ROUTER_KEY) == REDACTED


def test_redactor_without_secrets_still_redacts_credential_shapes() -> None:
    redact = Redactor([])
    assert redact("plain text") == "plain text"
    out = redact("Authorization: Bearer abcdefgh12345678 and sk-proj-abcdefghijkl")
    assert "abcdefgh12345678" not in out
    assert "sk-proj-abcdefghijkl" not in out
    assert out.count(REDACTED) == 2
    assert redact("authorization: bearer lower.case_token-123") == (f"authorization: {REDACTED}")


def test_redactor_leaves_ordinary_words_alone() -> None:
    redact = Redactor([ROUTER_KEY])
    text = "openai gpt-4o-mini -> 200 via primary (task-management, desk-top)"
    assert redact(text) == text


def test_redactor_scrub_walks_json_like_values() -> None:
    redact = Redactor([PROVIDER_KEY, ROUTER_KEY])
    value = {
        "a": PROVIDER_KEY,
        "nested": {"list": [1, f"x {ROUTER_KEY}", {"deep": (PROVIDER_KEY, 2.5)}]},
        "number": 3,
        "none": None,
        "flag": True,
    }
    scrubbed = redact.scrub(value)
    assert scrubbed == {
        "a": REDACTED,
        "nested": {"list": [1, f"x {REDACTED}", {"deep": [REDACTED, 2.5]}]},
        "number": 3,
        "none": None,
        "flag": True,
    }
    assert_clean(json.dumps(scrubbed))
    # The input is not modified.
    assert value["a"] == PROVIDER_KEY


# -- RedactingFilter -----------------------------------------------------------------------


def test_filter_redacts_message_and_arguments() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "key %s and %r", (PROVIDER_KEY, ROUTER_KEY), None
    )
    assert RedactingFilter(Redactor(SECRETS)).filter(record) is True
    assert_clean(record.getMessage())
    assert REDACTED in record.getMessage()


def test_filter_redacts_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "msg": "hello",
            "key": ROUTER_KEY,
            "headers": {"authorization": f"Bearer {PROVIDER_KEY}"},
            "attempts": [{"provider": "a", "note": PROVIDER_KEY}],
        }
    )
    RedactingFilter(Redactor(SECRETS)).filter(record)
    assert record.key == REDACTED
    assert_clean(json.dumps(record.headers))
    assert_clean(json.dumps(record.attempts))
    assert record.attempts[0]["provider"] == "a"


def test_filter_redacts_traceback_of_exception_with_key(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger

    def fails() -> None:
        key = PROVIDER_KEY  # a local that shows up in the traceback's source line
        raise RuntimeError(f"upstream refused key {key} / router key {ROUTER_KEY}")

    try:
        fails()
    except RuntimeError:
        logger.exception("request failed for %s", ROUTER_KEY)
    output = stream.getvalue()
    assert_clean(output)
    entry = json.loads(output)
    assert "RuntimeError" in entry["exception"]
    assert "Traceback" in entry["exception"]
    assert REDACTED in entry["exception"]
    assert entry["message"] == f"request failed for {REDACTED}"


def test_filter_redacts_chained_exceptions_and_text_output(
    text_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = text_logger
    try:
        try:
            raise ValueError(f"inner {PROVIDER_KEY}")
        except ValueError as inner:
            raise KeyError(f"outer {ROUTER_KEY}") from inner
    except KeyError:
        logger.error("boom", exc_info=True)
    output = stream.getvalue()
    assert_clean(output)
    assert "ValueError" in output
    assert "KeyError" in output
    assert "direct cause" in output


def test_filter_redacts_exc_text_already_formatted() -> None:
    try:
        raise RuntimeError(PROVIDER_KEY)
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m", None, sys.exc_info())
    record.exc_text = logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
    assert PROVIDER_KEY in record.exc_text
    RedactingFilter(Redactor(SECRETS)).filter(record)
    assert_clean(record.exc_text)
    # A formatter reuses exc_text instead of formatting the exception again.
    assert_clean(logging.Formatter().format(record))
    assert_clean(JsonFormatter().format(record))


def test_filter_redacts_stack_info() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.stack_info = f'Stack (most recent call last):\n  key = "{PROVIDER_KEY}"'
    RedactingFilter(Redactor(SECRETS)).filter(record)
    assert record.stack_info is not None
    assert_clean(record.stack_info)
    assert record.stack_info.startswith("Stack (most recent call last):")
    assert_clean(JsonFormatter().format(record))


def test_filter_never_makes_a_log_call_raise(
    json_logger: tuple[logging.Logger, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    """The logging module never lets a malformed call raise into the caller (it reports the
    problem on stderr instead); a redacting filter must not change that, or a mistake in
    one log call becomes a failed request."""
    logger, _ = json_logger
    logger.warning("two placeholders %s %s, one argument", PROVIDER_KEY)
    logger.info("%d", "not a number")
    assert_clean(capsys.readouterr().err)


def test_filter_is_idempotent() -> None:
    redacting = RedactingFilter(Redactor(SECRETS))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (PROVIDER_KEY,), None)
    redacting.filter(record)
    first = record.getMessage()
    redacting.filter(record)
    assert record.getMessage() == first == REDACTED


def test_filter_with_non_string_message() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, {"key": PROVIDER_KEY}, None, None)
    RedactingFilter(Redactor(SECRETS)).filter(record)
    assert_clean(record.getMessage())


def test_filter_with_secret_key_exception_as_message(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger
    logger.warning(ConnectionError(f"could not use {PROVIDER_KEY}"))
    assert_clean(stream.getvalue())


def test_filter_keeps_secret_free_records_intact(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger
    logger.info("%s %s -> %s", "openai", "gpt-4o", 200, extra={"status": 200, "stream": False})
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "openai gpt-4o -> 200"
    assert entry["status"] == 200
    assert entry["stream"] is False


# -- JsonFormatter -------------------------------------------------------------------------


def test_json_formatter_fields_and_extras() -> None:
    record = logging.LogRecord(
        "llm_api_router.access", logging.INFO, __file__, 1, "%s -> %d", ("gpt", 200), None
    )
    record.request_id = "abc"
    record.attempts = [{"provider": "a", "outcome": "ok", "status": 200, "latency_ms": 1.5}]
    record.stream = True
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "llm_api_router.access"
    assert entry["message"] == "gpt -> 200"
    assert entry["request_id"] == "abc"
    assert entry["attempts"] == [
        {"provider": "a", "outcome": "ok", "status": 200, "latency_ms": 1.5}
    ]
    assert entry["stream"] is True
    assert entry["ts"].endswith("Z")
    assert "T" in entry["ts"]
    # No standard LogRecord plumbing leaks into the entry.
    for plumbing in ("args", "msg", "levelno", "pathname", "exc_info", "thread"):
        assert plumbing not in entry


def test_json_formatter_one_line_with_exception_and_newlines() -> None:
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "multi\nline", None, sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "multi\nline"
    assert "ValueError: line one" in entry["exception"]
    assert entry["level"] == "error"


def test_json_formatter_non_serialisable_extra() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    record = logging.makeLogRecord({"msg": "m", "thing": Thing(), "count": 2})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["thing"] == "a thing"
    assert entry["count"] == 2


# -- TextFormatter -------------------------------------------------------------------------


def test_text_formatter_line_and_extras() -> None:
    record = logging.LogRecord(
        "llm_api_router.access", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    record.status = 429
    record.provider = "primary"
    record.attempts = [{"provider": "a", "outcome": "rate_limited"}]
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert " WARNING llm_api_router.access: hello you" in line
    assert "status=429" in line
    assert "provider=primary" in line
    assert 'attempts=[{"provider":"a","outcome":"rate_limited"}]' in line


def test_text_formatter_extras_stay_on_the_first_line_with_a_traceback() -> None:
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    record.family = "openai"
    text = TextFormatter().format(record)
    first, _, rest = text.partition("\n")
    assert first.endswith("x: failed family=openai")
    assert rest.startswith("  Traceback")
    assert "RuntimeError: bad" in rest


def test_text_formatter_without_extras() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    assert TextFormatter().format(record).endswith(" INFO x: plain")


# -- install_redaction ---------------------------------------------------------------------


@pytest.fixture
def owned_handlers() -> Iterator[dict[str, logging.Handler]]:
    """A fresh handler on each logger the router writes to; everything restored afterwards."""
    names = ("llm_api_router", "uvicorn", "uvicorn.error")
    added: dict[str, logging.Handler] = {}
    for name in names:
        handler = logging.StreamHandler(io.StringIO())
        logging.getLogger(name).addHandler(handler)
        added[name] = handler
    root_before = {h: list(h.filters) for h in logging.getLogger().handlers}
    yield added
    for name, handler in added.items():
        logging.getLogger(name).removeHandler(handler)
    for handler, filters in root_before.items():
        handler.filters = filters


def _redacting(handler: logging.Handler) -> list[RedactingFilter]:
    return [f for f in handler.filters if isinstance(f, RedactingFilter)]


def test_install_redaction_filters_every_owned_handler(
    owned_handlers: dict[str, logging.Handler],
) -> None:
    install_redaction(Redactor(SECRETS))
    for handler in owned_handlers.values():
        assert len(_redacting(handler)) == 1
    for handler in logging.getLogger().handlers:
        assert len(_redacting(handler)) == 1


def test_install_redaction_replaces_instead_of_stacking(
    owned_handlers: dict[str, logging.Handler],
) -> None:
    install_redaction(Redactor(["old-secret-value"]))
    install_redaction(Redactor([ROUTER_KEY]))
    handler = owned_handlers["llm_api_router"]
    filters = _redacting(handler)
    assert len(filters) == 1
    assert filters[0].redactor(ROUTER_KEY) == REDACTED
    assert filters[0].redactor("old-secret-value") == "old-secret-value"


def test_install_redaction_keeps_other_filters(
    owned_handlers: dict[str, logging.Handler],
) -> None:
    handler = owned_handlers["uvicorn"]
    other = logging.Filter("uvicorn")
    handler.addFilter(other)
    install_redaction(Redactor(SECRETS))
    assert other in handler.filters
    assert len(_redacting(handler)) == 1


def test_installed_filter_redacts_child_logger_output(
    owned_handlers: dict[str, logging.Handler],
) -> None:
    handler = owned_handlers["llm_api_router"]
    assert isinstance(handler, logging.StreamHandler)
    handler.setFormatter(JsonFormatter())
    install_redaction(Redactor(SECRETS))
    child = logging.getLogger("llm_api_router.some.module")
    old_level = logging.getLogger("llm_api_router").level
    logging.getLogger("llm_api_router").setLevel(logging.DEBUG)
    try:
        child.debug("key %s", PROVIDER_KEY, extra={"router_key": ROUTER_KEY})
        try:
            raise OSError(f"connect failed with {PROVIDER_KEY}")
        except OSError:
            child.exception("oops")
    finally:
        logging.getLogger("llm_api_router").setLevel(old_level)
    output = handler.stream.getvalue()
    assert output.count("\n") == 2
    assert_clean(output)
    assert REDACTED in output


def test_install_redaction_leaves_unowned_loggers_alone() -> None:
    handler = logging.StreamHandler(io.StringIO())
    other = logging.getLogger("tests.unit.test_logs.unowned")
    other.addHandler(handler)
    root_before = {h: list(h.filters) for h in logging.getLogger().handlers}
    try:
        install_redaction(Redactor(SECRETS))
        assert _redacting(handler) == []
    finally:
        other.removeHandler(handler)
        for h, filters in root_before.items():
            h.filters = filters
