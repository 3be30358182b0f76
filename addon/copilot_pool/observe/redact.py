"""Mask anything token-shaped in the addon's log records, whatever code produced the message.

A defence in depth: no code path should put a token into a message, but an exception text or a future
log call might. GitHub tokens keep their prefix (`gho_***`) so a reader still sees which kind it was;
Copilot tokens (`tid=...;exp=...:hmac`) are masked whole.
"""

from __future__ import annotations

import logging
import re

from .. import LOGGER_NAME

_TOKEN = re.compile(r"\b(gho_|ghu_|ghp_|ghs_|ghr_|github_pat_)[A-Za-z0-9_]+|\btid=[^\s\"'<>,]+")


def redact(text: str) -> str:
    return _TOKEN.sub(lambda m: (m.group(1) or "tid=") + "***", text)


class RedactFilter(logging.Filter):
    """Rewrite each record's final message, exception included, with tokens masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # mitmproxy's formatter formats exc_info itself (ignoring exc_text): fold it in here, masked
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.exc_text = None
        record.msg, record.args = redact(message), None
        return True


def install(logger: logging.Logger | None = None) -> RedactFilter:
    """Add the filter once to the addon's logger (idempotent: scripts are reloaded in place)."""
    logger = logger or logging.getLogger(LOGGER_NAME)
    for existing in logger.filters:
        if isinstance(existing, RedactFilter):
            return existing
    redact_filter = RedactFilter()
    logger.addFilter(redact_filter)
    return redact_filter
