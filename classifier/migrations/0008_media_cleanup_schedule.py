"""Data migration: the hourly orphan-media cleanup in the beat schedule (editable by admins)."""

from django.db import migrations

NAME = "media cleanup (remove files no row references, after the grace period)"


def create(apps, schema_editor):  # noqa: ANN001, ANN201
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    task = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = interval.objects.get_or_create(every=1, period="hours")
    task.objects.get_or_create(
        name=NAME, defaults={"task": "classifier.tasks.media_cleanup_task", "interval": hourly, "queue": "webhooks"}
    )


def remove(apps, schema_editor):  # noqa: ANN001, ANN201
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("classifier", "0007_shared_cache_table"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
