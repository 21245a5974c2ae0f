"""Run the DICOM listener (C-ECHO, C-STORE SCP) until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from classifier.dicomnet.listener import ListenerConfig, listener_start


class Command(BaseCommand):
    help = "Accept DICOM associations (C-ECHO, C-STORE of chest radiographs) from allow-listed peers."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=None, help="Overrides CXR_DICOM_PORT.")

    def handle(self, *args: Any, port: int | None, **options: Any) -> None:
        cxr = settings.CXR
        config = ListenerConfig(
            ae_title=cxr["DICOM_AE_TITLE"],
            host=cxr["DICOM_HOST"],
            port=port or cxr["DICOM_PORT"],
            max_associations=cxr["DICOM_MAX_ASSOCIATIONS"],
            timeout_seconds=cxr["DICOM_TIMEOUT_SECONDS"],
        )
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        server = listener_start(config)
        self.stdout.write(f"DICOM listener {config.ae_title} on {config.host}:{config.port}", ending="\n")
        self.stdout.flush()
        stop.wait()
        server.shutdown()  # in-flight associations end; an unanswered C-STORE is re-sent by the peer
        self.stdout.write("DICOM listener stopped")
