"""schema/redact.py: credentials are cut out of log messages and exception texts."""

from __future__ import annotations

import io
import logging

from schema.redact import RedactingFilter, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyOmEifQ.c2lnbmF0dXJl"


def test_redact_cuts_headers_bearer_values_jwts_and_token_parameters() -> None:
    for text in (
        f"b'Authorization: Bearer {JWT}\\x01'",
        f"authorization={JWT}",
        f"sent Bearer {JWT} and Basic dXNlcjpwYXNz",
        f"url='http://h/ws?token={JWT}&x=1'",
        "url='http://h/ws?access_token=abc.def'",
        f"a bare {JWT} in a message",
    ):
        out = redact(text)
        for secret in (JWT, "dXNlcjpwYXNz", "abc.def", "Bearer ", "Authorization"):
            assert secret not in out, (text, out)
        assert "[redacted]" in out
    assert redact("GET /v1/me 200 1.0ms") == "GET /v1/me 200 1.0ms"


def test_the_filter_rewrites_message_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("link failed (%s)", f"url=/ws?token={JWT}")
        try:
            raise ValueError(f"Invalid header value char: b'Authorization: Bearer {JWT}'")
        except ValueError:
            log.exception("Error handling request from %s", "127.0.0.1")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "link failed" in text and "Invalid header value char" in text
    assert JWT not in text and "Bearer " not in text and "Authorization" not in text
