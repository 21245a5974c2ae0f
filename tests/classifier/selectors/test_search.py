"""The worklist's MRN / accession search: any-case substring of either, each study once,
served by the trigram indexes of migration 0011 on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection

from classifier.models import Patient, Study
from classifier.selectors.worklist import WorklistFilters, worklist_rows
from tests.factories import ImageFactory

pytestmark = pytest.mark.django_db


def _study(mrn: str, accession: str) -> Study:
    patient, _ = Patient.objects.get_or_create(mrn=mrn)
    study = Study.objects.create(patient=patient, accession_number=accession)
    ImageFactory(study=study)
    return study


def test_search_matches_mrn_or_accession_in_any_case_and_lists_each_study_once() -> None:
    both = _study("xk-77", "XK-77-ACC")  # matches on both sides of the union
    by_mrn = _study("MRN-XK-12", "A-1")
    by_accession = _study("M-2", "acc-xk-9")
    _study("M-3", "A-3")

    def found(q: str) -> list[int]:
        return sorted(row.pk for row in worklist_rows(WorklistFilters(q=q)))

    assert found("XK") == sorted([both.pk, by_mrn.pk, by_accession.pk])
    assert found("xk-77") == [both.pk]
    assert found("A-3") == found("a-3") and len(found("a-3")) == 1
    assert found("nothing") == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_trgm exists on PostgreSQL only")
def test_the_search_plan_uses_both_trigram_indexes() -> None:
    patients = Patient.objects.bulk_create(Patient(mrn=f"MRN{i:07d}") for i in range(3000))
    Study.objects.bulk_create(
        Study(patient=p, accession_number=f"ACC{i:07d}", status="done") for i, p in enumerate(patients)
    )
    with connection.cursor() as cursor:
        # Rows inserted after the index was built wait in GIN's pending list, which the
        # planner costs as a scan of the whole list: merge them as autovacuum would.
        cursor.execute("SELECT gin_clean_pending_list('classifier_patient_mrn_trgm')")
        cursor.execute("SELECT gin_clean_pending_list('classifier_study_accession_trgm')")
        cursor.execute("ANALYZE classifier_patient")
        cursor.execute("ANALYZE classifier_study")
        # A small table is cheaper to scan: make the planner show which index serves the
        # search (this transaction only).
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = worklist_rows(WorklistFilters(q="0001234")).explain()
    assert "classifier_patient_mrn_trgm" in plan, plan
    assert "classifier_study_accession_trgm" in plan, plan
