"""How an unreachable broker is reported: one traceback per outage, one line per message.

A send that fails leaves its row for the sweeper (predictions, webhook deliveries), so
the failure is an operational signal, not an error of the request. Logging the full
traceback for every upload during an outage buried the log (170 lines per upload); the
first failure of an outage logs it, every later one a single line, and the first send
that works again says the broker is back. State is per process.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_down = False


def broker_send_failed(what: str, exc: BaseException) -> None:
    """Log that ``what`` (e.g. "prediction 12") could not be sent and waits for the sweeper."""
    global _down
    with _lock:
        first, _down = not _down, True
    if first:
        log.warning("broker unavailable; %s left for the sweeper (later failures: one line each)", what, exc_info=exc)
    else:
        log.warning("broker unavailable; %s left for the sweeper: %s", what, f"{type(exc).__name__}: {exc}"[:200])


def broker_send_succeeded() -> None:
    """Mark the outage over (the next failure logs its traceback again)."""
    global _down
    if _down:
        with _lock:
            was, _down = _down, False
        if was:
            log.warning("broker reachable again")
