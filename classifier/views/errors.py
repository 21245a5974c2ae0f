"""The server-error view (``handler500``): answers in the path's error shape, never HTML
for the API, and 503 + Retry-After when the cause is an unreachable database."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse

from classifier.http import database_unavailable, error_response, is_database_outage


def server_error(request: HttpRequest) -> HttpResponse:
    """Django calls this inside the ``except`` block of the failed request, so the
    exception is ``sys.exc_info()``. Renders no template (it must work with no database)."""
    if is_database_outage(sys.exc_info()[1]):
        return database_unavailable(request)
    return error_response(request, 500, "server_error", "The server failed to answer this request.")
