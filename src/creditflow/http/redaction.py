"""Secrets never reach the logs: API keys (``cf_<id>_<secret>``), page sessions (``cfs_...``), and the
values of credentials wherever they appear as ``name: value`` or ``name=value`` (Authorization, X-API-Key,
Cookie, X-CSRF-Token, password, passphrase, secret, api_key, token), including ``Bearer <token>``.

Nothing in creditflow logs a credential on purpose (tests/integration/test_api_hardening.py captures the
logs of authenticated requests through a real server to check it); this is the net under mistakes to
come: an exception message that quotes a header, a URL with a token in its query, a library that logs
a request. `install()` wraps the process's log-record factory, so every record from every logger
(uvicorn's access and error logs included) is redacted when it is made, whatever handler later writes
it; `RedactingFilter` does the same as a ``logging.Filter`` for handlers configured by hand.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"

_PATTERNS = [
    # API keys and page-session tokens, wherever they appear
    (re.compile(r"\bcf_[0-9a-f]{16}_[A-Za-z0-9_-]+"), "cf_" + REDACTED),
    (re.compile(r"\bcfs_[A-Za-z0-9_-]{16,}"), "cfs_" + REDACTED),
    # credentials by name: "Authorization: Bearer x", "password=x", '"secret": "x"', "X-API-Key: x"
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (
        re.compile(
            r"""(?ix)
            \b(authorization|x-api-key|api[_-]?key|cookie|set-cookie|x-csrf-token|csrf[_-]?token
               |password|passphrase|secret|token|session)
            (["']?\s*[:=]\s*["']?)
            (?!\[redacted\])(?:(?:bearer|basic)\s+)?[^\s"',;&}]+"""
        ),
        r"\1\2" + REDACTED,
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact(arg)
    if arg is None or isinstance(arg, int | float):
        return arg  # keeps %d and %.2f working
    text = str(arg)
    cleaned = redact(text)
    return arg if cleaned == text else cleaned


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record in place: its message, each argument (kept apart: uvicorn's access formatter
    unpacks them), and its exception text."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _redact_arg(v) for k, v in record.args.items()}
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_MARK = "_creditflow_redacting"


def install() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, _MARK, False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        redact_record(record)
        return record

    setattr(redacting_factory, _MARK, True)
    logging.setLogRecordFactory(redacting_factory)
