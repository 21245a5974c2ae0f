"""WSGI entry point. Importing it must never import TensorFlow (tested)."""

from cxrsite.boot import configure

configure()

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
