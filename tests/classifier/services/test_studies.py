"""DICOM header -> study fields, and recorded views -> the clinical view codes: one rule each."""

from __future__ import annotations

import pytest

from classifier.models import Study
from classifier.services.errors import ServiceError
from classifier.services.studies import StudyFields, fields_from_header, person_name


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("Doe^Jane", "Doe, Jane"), ("Doe^Jane^Q^Dr", "Doe, Jane Q"), ("Doe", "Doe"), ("Jane Doe", "Jane Doe"), ("", "")],
)
def test_person_name_reads_dicom_pn_components(raw: str, shown: str) -> None:
    assert person_name(raw) == shown


def test_header_names_the_patient_typed_details_complete_it_and_a_contradiction_is_a_conflict() -> None:
    header = {
        "patient_id": "M1",
        "patient_name": "Doe^Jane",
        "patient_sex": "female",
        "view_position": "ll",
        "patient_birth_date": "1970-01-02",
        "accession_number": "A1",
    }
    fields = fields_from_header(header, StudyFields())
    assert (fields.mrn, fields.patient_name, fields.sex, fields.view_position) == ("M1", "Doe, Jane", "F", "LL")
    assert fields.birth_date.isoformat() == "1970-01-02"
    typed = fields_from_header(header, StudyFields(patient_name="JANE DOE", view_position="PA", clinical_notes="n"))
    assert (typed.patient_name, typed.view_position, typed.clinical_notes) == ("JANE DOE", "PA", "n")
    for contradiction in (
        StudyFields(mrn="M2"),
        StudyFields(accession_number="A2"),
        StudyFields(patient_name="Roe^Rick"),
    ):
        with pytest.raises(ServiceError) as refused:
            fields_from_header(header, contradiction)
        assert refused.value.code == "header_conflict" and refused.value.status == 409


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("PA", "PA"),
        ("ap", "AP"),
        ("AP Supine", "AP"),
        ("L", "LL"),
        ("LL", "LL"),
        ("RL", "LL"),
        ("lateral", "LL"),
        ("", "unknown"),
        (None, "unknown"),
        ("OBLIQUE", "unknown"),
    ],
)
def test_view_code_is_the_one_mapping_for_uploads_and_datasets(raw: str | None, code: str) -> None:
    assert Study.view_code(raw) == code


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"mrn": "M\x00", "accession_number": "A-1"}, "patient MRN"),
        ({"mrn": "M" * 65, "accession_number": "A-1"}, "patient MRN"),
        ({"mrn": "M-1", "accession_number": "A" * 65}, "accession number"),
        ({"mrn": "M-1", "accession_number": "A-1", "patient_name": "Doe\x00"}, "patient name"),
        ({"mrn": "M-1", "accession_number": "A-1", "clinical_notes": "fever\x00"}, "clinical notes"),
    ],
)
def test_study_get_or_create_refuses_values_the_columns_cannot_hold(fields: dict, named: str) -> None:
    from classifier.services.studies import study_get_or_create

    with pytest.raises(ServiceError) as refused:
        study_get_or_create(fields=StudyFields(**fields), requested_by=None)
    assert refused.value.code == "invalid_field" and named in refused.value.message
