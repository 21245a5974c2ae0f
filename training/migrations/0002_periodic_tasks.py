"""Data migration: the default beat schedule, kept in the database so admins can edit it."""

from django.db import migrations

SWEEP = "prediction sweeper (re-send lost work, reclaim dead workers, refresh priorities)"
RETRAIN = "retrain when enough radiologist reviews have arrived"


def create(apps, schema_editor):  # noqa: ANN001, ANN201
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    task = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = interval.objects.get_or_create(every=60, period="seconds")
    hourly, _ = interval.objects.get_or_create(every=1, period="hours")
    task.objects.get_or_create(
        name=SWEEP,
        defaults={"task": "classifier.tasks.prediction_sweep_task", "interval": every_minute, "queue": "inference"},
    )
    task.objects.get_or_create(
        name=RETRAIN, defaults={"task": "training.tasks.retrain_check_task", "interval": hourly, "queue": "training"}
    )


def remove(apps, schema_editor):  # noqa: ANN001, ANN201
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[SWEEP, RETRAIN]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
