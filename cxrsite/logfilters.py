"""Logging filters named in settings.LOGGING."""

from __future__ import annotations

import logging


class ClientErrorWithoutTraceback(logging.Filter):
    """On ``django.request`` and ``django.security``: a 4xx answer (a role refusal, a page
    not found, a malformed request) is an expected outcome, logged as its one line. Django
    attaches the exception that produced it, whose traceback says nothing an operator
    needs; 5xx records keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and status < 500:
            record.exc_info, record.exc_text = None, None
        return True
