"""Logging: JSON or text lines on stderr, with every secret redacted by one mechanism.

:class:`Redactor` knows the configured secrets (provider and router keys, matched by the
rule of :mod:`llm_api_router.redaction`) plus the shapes of credentials in general
(``Bearer ...``, ``sk-...``).  :class:`RedactingFilter` applies it to every record a
handler emits (message, arguments, traceback), so no code path has to remember to scrub
anything.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

import orjson

from llm_api_router.redaction import REDACTED, secret_pattern

__all__ = [
    "ACCESS_LOGGER",
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
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = _extra(record)
        if extra:
            pairs = " ".join(
                f"{k}={v if isinstance(v, str | int | float) else orjson.dumps(v).decode()}"
                for k, v in extra.items()
            )
            first, newline, rest = line.partition("\n")
            line = f"{first} {pairs}{newline}{rest}"
        return line


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
                "class": "logging.StreamHandler",
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
