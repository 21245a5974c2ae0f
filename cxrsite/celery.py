"""The Celery application: queues `inference`, `training` and `webhooks`, settings from Django.

Workers are started per queue (see README): inference workers take many small tasks,
the training worker takes one run at a time (concurrency 1), webhook deliveries have
their own worker so a slow receiver never delays a prediction.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxrsite.settings")

app = Celery("cxrsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Explicit exchanges: a bare Queue("training") would bind to the default exchange with the
# default routing key and training messages would never arrive.
app.conf.task_queues = (
    Queue("inference", Exchange("inference"), routing_key="inference"),
    Queue("training", Exchange("training"), routing_key="training"),
    Queue("webhooks", Exchange("webhooks"), routing_key="webhooks"),
)
app.autodiscover_tasks()
