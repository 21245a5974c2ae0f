"""The Celery application: queues `inference` and `training`, settings from Django.

Workers are started per queue (see README): inference workers take many small tasks,
the training worker takes one run at a time (concurrency 1).
"""
from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxrsite.settings")

app = Celery("cxrsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("inference"), Queue("training"))
app.autodiscover_tasks()
