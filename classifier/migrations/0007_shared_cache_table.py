"""The database cache table of the embedded default's shared cache (API throttle counters).

A cache table is not a model, so ``migrate`` would not create it; this migration does
(``createcachetable`` is idempotent). With CXR_CACHE_URL pointing at Redis it stays empty.
"""

from django.core.management import call_command
from django.db import migrations

TABLE = "cxr_cache"


def create(apps, schema_editor):
    call_command("createcachetable", TABLE, database=schema_editor.connection.alias, verbosity=0)


def drop(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(TABLE)}")


class Migration(migrations.Migration):
    dependencies = [("classifier", "0006_dicom_results")]

    operations = [migrations.RunPython(create, drop)]
