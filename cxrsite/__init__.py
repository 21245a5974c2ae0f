"""Project package; loads the Celery app so ``shared_task`` binds to our broker."""

from cxrsite.celery import app as celery_app

__all__ = ("celery_app",)
