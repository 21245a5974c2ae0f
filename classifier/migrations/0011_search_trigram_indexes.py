"""Trigram indexes for the worklist's MRN / accession search (PostgreSQL only).

``icontains`` on PostgreSQL is ``UPPER(col::text) LIKE UPPER(%s)``: a b-tree cannot serve
a pattern with a leading wildcard, a GIN trigram index on the same expression can. The
embedded default database (SQLite) has neither pg_trgm nor GIN: nothing is done there.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = (
    ("classifier_patient_mrn_trgm", "classifier_patient", "mrn"),
    ("classifier_study_accession_trgm", "classifier_study", "accession_number"),
)


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, column in INDEXES:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("classifier", "0010_study_current_result")]

    operations = [
        TrigramExtension(),  # a no-op on other databases
        migrations.RunPython(create, drop),
    ]
