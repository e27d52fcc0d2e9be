"""Structured logs: one JSON object per line (or plain text), never a secret.

Each line carries the request id and, on agent requests, the host (`host_id` and the
`host_identifier` it enrolled with) through a context variable the request middleware sets,
so even a log call deep in a service is tied to its request without passing it down.

Every line goes through `Redactor` before it is written: values of secret-named fields
(`node_key`, `enroll_secret`, `password`, `token`, `secret`, `authorization`), credentials in
`Authorization`-style strings and URLs, long random tokens (node keys, user tokens and
generated enroll secrets are 40+ URL-safe characters) and the exact secrets the server was
configured with are replaced by `***`.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import orjson

MASK = "***"


@dataclass(slots=True)
class RequestContext:
    """What log lines of one request share; the middleware creates one per request."""

    request_id: str
    host_id: int | None = None
    host_identifier: str | None = None


REQUEST: ContextVar[RequestContext | None] = ContextVar("fleetwatch_request", default=None)


def bind_host(host_id: int, host_identifier: str) -> None:
    """Tie the current request's log lines to an agent's host."""
    ctx = REQUEST.get()
    if ctx is not None:
        ctx.host_id = host_id
        ctx.host_identifier = host_identifier


_SECRET_KEY = (
    r"[\w-]*(?:node_?key|enroll_?secret|password|passwd|token|secret|authorization|api_?key)"
)
_KEY_VALUE = re.compile(
    rf"""(?ix)
    (?P<key>["']?{_SECRET_KEY}["']?\s*[:=]\s*)
    (?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,&;}}\]\)]+)
    """
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|nodekey|basic)(\s+)[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}(?![A-Za-z0-9_-])")


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ('"', "'") else ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


class Redactor:
    """Removes secrets from text: by field name, by shape, and the exact secrets it knows."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        """Always mask this exact string (ignored when too short to be a secret)."""
        if secret and len(secret) >= 4:
            with self._lock:
                self._known = self._known | {secret}

    def add_url(self, url: str | None) -> None:
        """Always mask the password of this URL."""
        if url:
            try:
                self.add(urlsplit(url).password)
            except ValueError:
                pass

    def redact(self, text: str) -> str:
        """`text` without any secret it can recognise."""
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, MASK)
        # Schemes first: in `Authorization: Bearer x` the field's "value" is only the scheme.
        text = _AUTH_SCHEME.sub(rf"\1\2{MASK}", text)
        text = _KEY_VALUE.sub(_mask_value, text)
        text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
        return _LONG_TOKEN.sub(MASK, text)


#: The process's redactor: log lines are process-wide, so the secrets it knows are too.
REDACTOR = Redactor()

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request/host, extras, exc."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self.redactor.redact(record.getMessage()),
        }
        ctx = REQUEST.get()
        if ctx is not None:
            line["request_id"] = ctx.request_id
            if ctx.host_id is not None:
                line["host_id"] = ctx.host_id
                line["host_identifier"] = self.redactor.redact(ctx.host_identifier or "")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = _safe(value, self.redactor)
        if record.exc_info:
            line["exc"] = self.redactor.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = self.redactor.redact(record.exc_text)
        text = orjson.dumps(line, default=str).decode()
        # orjson escapes C0 controls; these are valid raw in JSON strings (and appear only
        # inside strings), so escaping them keeps the line one line for every reader.
        if _JSON_BREAKS.search(text):
            text = _JSON_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return text


class TextFormatter(logging.Formatter):
    """`ts level logger [request host] msg key=value ...`, for a person at a terminal.

    Control characters (and Unicode line separators) in the message and values are escaped
    (`\\n`, `\\x1b`, ...): a newline in a host_identifier, a path or an email must not start
    a forged log line. A traceback keeps its lines, each indented, so none looks like a record.
    """

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        parts = [ts, f"{record.levelname.lower():<7}", escape_controls(record.name)]
        ctx = REQUEST.get()
        if ctx is not None:
            where = ctx.request_id
            if ctx.host_id is not None:
                where += f" host={ctx.host_id}"
            parts.append(f"[{where}]")
        parts.append(escape_controls(record.getMessage()))
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                parts.append(f"{escape_controls(key)}={escape_controls(str(value))}")
        text = " ".join(parts)
        trace = None
        if record.exc_info:
            trace = self.formatException(record.exc_info)
        elif record.exc_text:
            trace = record.exc_text
        if trace:
            text += "".join("\n    " + escape_controls(line) for line in trace.splitlines())
        return self.redactor.redact(text)


#: What may not appear raw in a text log line: C0 and C1 controls, DEL, and the Unicode line
#: and paragraph separators (str.splitlines and many viewers break lines at them).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape, on one line."""
    return _CONTROLS.sub(_escape, text) if _CONTROLS.search(text) else text


#: Characters JSON leaves raw but some readers take as line breaks: written as \u escapes.
_JSON_BREAKS = re.compile(r"[\x85\u2028\u2029]")


def _safe(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redactor.redact(value if isinstance(value, str) else str(value))


#: Loggers whose level follows --log-level (uvicorn's own propagate to the root).
_LOGGERS = ("fleetwatch", "uvicorn", "uvicorn.error")


def configure_logging(
    level: str = "info", fmt: str = "json", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log line to `stream` (stderr) as JSON lines or text, at `level`.

    `level` applies to fleetwatch's and uvicorn's loggers; other libraries log warnings and
    errors only. Replaces the root logger's handlers; returns the handler.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    # Libraries stay at warning whatever --log-level says: aiosqlite and SQLAlchemy log every
    # statement with its parameters (password hashes, secrets, tokens) at debug level.
    root.setLevel(max(numeric, logging.WARNING))
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(numeric)
    # uvicorn's access log is replaced by fleetwatch.access (request id, host, no query).
    logging.getLogger("uvicorn.access").disabled = True
    return handler
