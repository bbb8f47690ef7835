"""Credentials never reach a log line, whoever writes it.

Our own log calls name no token, password or header; libraries may: aiohttp's server
logs a request its parser refuses at ERROR with the offending header line in the
exception text (``Invalid header value char: b'Authorization: Bearer eyJ...'``), and
a client error names its URL (``?token=...``). :class:`RedactingFilter`, on every
handler of a service's root logger, rewrites message and exception text: an
``Authorization`` header line, a ``Bearer``/``Basic`` credential, a JWT and a
``token=`` query value become ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from typing import Final

REDACTED: Final = "[redacted]"
_PATTERNS: Final = (
    # A header line, as the parser quotes it (to the end of the line or the quote).
    re.compile(r"(?i)\bauthorization\s*[:=][^\n'\"]*"),
    re.compile(r"(?i)\b(?:bearer|basic)\s+[^\s'\",;]+"),
    re.compile(r"\beyJ[\w-]*\.[\w-]*\.[\w-]*"),  # a JWT (its header is base64 '{"')
    re.compile(r"(?i)\b((?:access_)?token)=[^&\s'\"]+"),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and exception text (attach it to handlers: a
    logger's own filters do not see its children's records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(level: str | int | None = None) -> None:
    """Log to stderr (unless a handler exists) with every root handler redacting."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level is not None:
        root.setLevel(level.upper() if isinstance(level, str) else level)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
