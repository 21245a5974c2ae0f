"""ASGI entry point."""

from cxrsite.boot import configure

configure()

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
