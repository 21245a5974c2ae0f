"""Thin Celery tasks of the clinical app: ids in, a service does the work.

Celery's autodiscovery imports this package; importing the modules here registers every
task and connects the inference pool's warm-up.
"""

from classifier.tasks import dicom_results, predictions, probe, warmup, webhooks

__all__ = ["dicom_results", "predictions", "probe", "warmup", "webhooks"]
