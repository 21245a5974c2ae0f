"""Health for load balancers and orchestrators: which dependency is down."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse

from classifier.http import RETRY_AFTER_SECONDS, is_database_outage

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        if not is_database_outage(exc):
            raise
        logger.warning("health: database down: %s", exc)
        connection.close()  # the next request reconnects instead of reusing a dead connection
        return False
    return True


def _broker_ok() -> bool:
    from cxrsite.celery import app

    with app.connection_for_write() as conn:
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        except Exception as exc:  # kombu raises its own and the transport's errors
            logger.warning("health: broker down: %s", exc)
            return False
    return True


def healthz(request: HttpRequest) -> JsonResponse:
    """200 ``ok``; 503 while the database is down (this process cannot answer anything);
    200 ``degraded`` while only the broker is down (uploads are kept and sent by the
    sweeper later). ``checks`` names each dependency. No patient data."""
    checks = {
        "database": "ok" if _database_ok() else "down",
        "broker": "ok" if _broker_ok() else "down",
    }
    if checks["database"] == "down":
        response = JsonResponse({"status": "unavailable", "checks": checks}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"status": "ok" if checks["broker"] == "ok" else "degraded", "checks": checks})
