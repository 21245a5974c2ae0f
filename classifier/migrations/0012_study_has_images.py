"""Study.has_images, and the backfill of every stored column of 0010 and 0012.

The backfill runs the service's refresh (``study_refresh_all``), not a copy of its rule
on the historical model: the stored values must be exactly what every later write
stores. It reads and writes only named columns, all of which exist from here on.
"""

from django.db import migrations, models


def backfill(apps, schema_editor) -> None:
    from classifier.services.studies import study_refresh_all

    study_refresh_all()


class Migration(migrations.Migration):
    dependencies = [
        ("classifier", "0011_search_trigram_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="has_images",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
