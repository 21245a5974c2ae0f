"""Start-up helpers shared by manage.py, WSGI and Celery."""

from __future__ import annotations

import os
import sys


def configure() -> None:
    """Point Django at our settings and load them, exiting with a one-line reason on error.

    Settings raise ImproperlyConfigured for a missing SECRET_KEY outside debug or a
    malformed variable; a deployer should see that sentence, not a traceback.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxrsite.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - forces the lazy settings to load
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        raise SystemExit(2) from None
