"""Round-trip a probe through broker, worker and database and print the latency."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from classifier.models import QueueProbe
from classifier.tasks.probe import queue_probe_task


class Command(BaseCommand):
    help = "Send a probe task to the inference queue and wait for a worker to complete it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        probe = QueueProbe.objects.create()
        started = time.monotonic()
        queue_probe_task.delay(probe.pk)
        while time.monotonic() - started < timeout:
            probe.refresh_from_db()
            if probe.status == QueueProbe.Status.DONE:
                self.stdout.write(f"queue ok: round trip {1000 * (time.monotonic() - started):.0f} ms")
                return
            time.sleep(0.1)
        raise CommandError(f"no worker completed the probe within {timeout:.0f} s (is a worker running?)")
