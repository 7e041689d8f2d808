"""Logging: JSON or text lines on stderr, with every secret redacted by one mechanism.

:class:`Redactor` knows the configured secrets (provider and router keys, matched by the
rule of :mod:`llm_api_router.redaction`) plus the shapes of credentials in general
(``Bearer ...``, ``sk-...``).  :class:`RedactingFilter` applies it to every record a
handler emits (message, arguments, traceback), so no code path has to remember to scrub
anything.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import orjson

from llm_api_router.redaction import REDACTED, secret_pattern

__all__ = [
    "ACCESS_LOGGER",
    "DEFAULT_LOG_QUEUE_SIZE",
    "FLUSH_TIMEOUT",
    "TEXT_FIELD_LIMIT",
    "BackgroundStreamHandler",
    "REDACTED",
    "JsonFormatter",
    "LogFormat",
    "RedactingFilter",
    "Redactor",
    "TextFormatter",
    "install_redaction",
    "logging_config",
]

LogFormat = Literal["json", "text"]
ACCESS_LOGGER = "llm_api_router.access"

#: Loggers whose handlers get the redacting filter.
_OWNED_LOGGERS = ("", "llm_api_router", "uvicorn", "uvicorn.error", "uvicorn.access")

# Credential shapes redacted even when they are not configured secrets (a client's wrong key).
_GENERIC = (
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}",
    r"\bsk-[A-Za-z0-9_-]{8,}",
)

# Standard LogRecord attributes: everything else on a record came in through ``extra``
# (uvicorn's ``color_message`` is a terminal-coloured duplicate of the message).
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


class Redactor:
    """Replaces every configured secret (by :func:`~llm_api_router.redaction.secret_pattern`'s
    rule: long ones anywhere, short ones as whole tokens) and every credential-shaped token
    with [REDACTED]."""

    __slots__ = ("_bytes", "_pattern")

    def __init__(self, secrets: Iterable[str]) -> None:
        configured = secret_pattern(secrets)
        alternatives = ([configured] if configured else []) + list(_GENERIC)
        self._pattern = re.compile("|".join(alternatives))
        self._bytes = re.compile("|".join(alternatives).encode("utf-8", "surrogatepass"))

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)

    def scrub_bytes(self, data: bytes) -> bytes:
        """``data`` with secrets and credential shapes replaced, as :meth:`__call__` does text.

        To scrub what the router relays from upstreams (model output may quote ``sk-...``
        examples), use :class:`~llm_api_router.redaction.SecretRedactor`: configured keys only.
        """
        return self._bytes.sub(REDACTED.encode(), data)

    def scrub(self, value: Any) -> Any:
        """Redact strings inside a JSON-like value."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so that no handler can print a secret."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not turn a log call into a crash
            message = f"{record.msg} (arguments not formatted: {record.args!r})"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS:
                setattr(record, name, redact.scrub(value))
        return True


def install_redaction(redactor: Redactor) -> None:
    """Put one redacting filter on every handler of the loggers the router writes to."""
    for name in _OWNED_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(old)
            handler.addFilter(RedactingFilter(redactor))


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal.

    One record is one line, whatever it carries: control characters (CR, LF, ANSI escapes,
    Unicode line separators and bidi overrides) are shown escaped, so a client's model name
    can neither forge a log line nor drive the terminal; each field is cut at
    :data:`TEXT_FIELD_LIMIT` characters.  A traceback follows on indented lines.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = f"{record.asctime} {record.levelname} {record.name}: {_clean(record.message)}"
        extra = _extra(record)
        if extra:
            line += " " + " ".join(f"{_clean(k)}={_text_value(v)}" for k, v in extra.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, record.stack_info):
            if block:
                line += "".join(f"\n  {_clean(part)}" for part in block.splitlines())
        return line


#: Characters longer than this in one text-format field are cut.
TEXT_FIELD_LIMIT = 2048

# C0 and C1 controls, DEL, Unicode line / paragraph separators, bidi embeddings and isolates.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BARE_VALUE = re.compile(r"[^\s\"'=\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def _clean(text: str) -> str:
    """``text`` on one line, control characters escaped, at most TEXT_FIELD_LIMIT long."""
    if len(text) > TEXT_FIELD_LIMIT:
        text = f"{text[:TEXT_FIELD_LIMIT]}...[{len(text) - TEXT_FIELD_LIMIT} more characters]"
    return _UNSAFE.sub(_escape_char, text)


def _text_value(value: Any) -> str:
    """A ``key=value`` value: bare when unambiguous, else JSON-quoted; always cleaned."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value and _BARE_VALUE.fullmatch(value):
        return _clean(value)
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if len(text) > TEXT_FIELD_LIMIT:
        text = f"{text[:TEXT_FIELD_LIMIT]}...[{len(text) - TEXT_FIELD_LIMIT} more characters]"
    return _clean(orjson.dumps(text).decode() if isinstance(value, str) else text)


#: Records waiting for the writer thread; past this many, new records are dropped (counted).
DEFAULT_LOG_QUEUE_SIZE = 10_000
#: Seconds a flush or close waits for the writer (a blocked stream must not hold the exit).
FLUSH_TIMEOUT = 2.0


class BackgroundStreamHandler(logging.Handler):
    """Writes records to a stream (stderr) from its own thread, never from the caller's.

    Logging from the event loop only puts the record on a bounded queue.  A slow or blocked
    stream (a full pipe that nobody reads) then blocks only the writer thread: requests and
    ``/health`` go on, and records past ``capacity`` are dropped and counted
    (:attr:`dropped`); a line reports the count once the stream moves again.  Formatting
    happens in the writer thread; filters (redaction) run in the caller's, before queueing.
    :meth:`flush` and :meth:`close` wait at most :data:`FLUSH_TIMEOUT` seconds.
    """

    def __init__(
        self, stream: TextIO | None = None, capacity: int = DEFAULT_LOG_QUEUE_SIZE
    ) -> None:
        super().__init__()
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.dropped = 0
        self._reported = 0
        self._queue: queue.Queue[logging.LogRecord | None] = queue.Queue(capacity)
        self._writer = threading.Thread(
            target=self._write_all, name="llm-router-log-writer", daemon=True
        )
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        # Called with this handler's lock held (Handler.handle), so the count is exact.
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        """Wait (at most FLUSH_TIMEOUT) until every queued record has been written."""
        pending = self._queue
        if not self._writer.is_alive():
            return
        with pending.all_tasks_done:
            pending.all_tasks_done.wait_for(lambda: not pending.unfinished_tasks, FLUSH_TIMEOUT)

    def close(self) -> None:
        """Write what is queued (within FLUSH_TIMEOUT), then stop the writer thread."""
        if self._writer.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=FLUSH_TIMEOUT)
            self._writer.join(FLUSH_TIMEOUT)
        super().close()

    def _write_all(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is None:
                    return
                self._write(record)
            finally:
                self._queue.task_done()

    def _write(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
            dropped = self.dropped
            if dropped > self._reported:
                notice = logging.makeLogRecord(
                    {
                        "name": __name__,
                        "levelno": logging.WARNING,
                        "levelname": "WARNING",
                        "msg": "%d log records dropped: the log stream was not read fast enough",
                        "args": (dropped - self._reported,),
                        "log_records_dropped": dropped - self._reported,
                    }
                )
                text += self.format(notice) + "\n"
                self._reported = dropped
            self.stream.write(text)
            if self._queue.empty():
                self.stream.flush()
        except Exception:
            self.handleError(record)


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server process (uvicorn's ``log_config``)."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"router": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": f"{__name__}.BackgroundStreamHandler",
                "formatter": "router",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "llm_api_router": {"handlers": ["stderr"], "level": upper, "propagate": False},
        },
    }
