"""The worklist: sortable, the columns a reader triages by, the read replacing the AI flag."""

from __future__ import annotations

from datetime import date

import pytest

from classifier.services.tokens import api_token_create
from tests.factories import PatientFactory, PredictionFactory, ReviewFactory, StudyFactory

pytestmark = pytest.mark.django_db


def _row(body: str, accession: str) -> str:
    start = body.index(f">{accession}<")
    return body[body.rindex("<tr", 0, start) : body.index("</tr>", start)]


def test_columns_show_modality_view_age_and_dicom_names_formatted(clients) -> None:
    patient = PatientFactory(name="Doe^Jane", birth_date=date(2019, 5, 1), sex="F")
    study = StudyFactory(
        patient=patient,
        accession_number="ACC-W1",
        modality="DX",
        view_position="AP",
        study_date=date(2026, 5, 2),
        priority=0.7,
    )
    PredictionFactory(image__study=study, p_abnormal=0.7)
    row = _row(clients["Clinician"].get("/").content.decode(), "ACC-W1")
    assert "Doe, Jane" in row and "Doe^Jane" not in row
    assert "7 y" in row and "DX AP" in row


def test_a_reviewed_study_shows_the_read_not_the_ai_flag(clients) -> None:
    study = StudyFactory(accession_number="ACC-W2", priority=0.0)
    prediction = PredictionFactory(image__study=study, p_abnormal=0.9, label="COVID19")
    ReviewFactory(prediction=prediction, decision="correct", label="NORMAL")
    row = _row(clients["Clinician"].get("/").content.decode(), "ACC-W2")
    assert "Read: Normal" in row and ">Flagged<" not in row


def test_an_integrations_study_names_the_integration_not_its_service_user(clients, role_users) -> None:
    token, _ = api_token_create(name="PACS router", role="Clinician", created_by=role_users["Admin"])
    study = StudyFactory(accession_number="ACC-W3", requesting_clinician=token.user, priority=0.5)
    PredictionFactory(image__study=study)
    row = _row(clients["Clinician"].get("/").content.decode(), "ACC-W3")
    assert "PACS router (integration)" in row and token.user.username not in row


def test_columns_sort_both_ways_and_priority_is_the_default(clients) -> None:
    for accession, priority, name in (("ACC-S1", 0.2, "Adams"), ("ACC-S2", 0.9, "Brown"), ("ACC-S3", 0.5, "Clark")):
        study = StudyFactory(accession_number=accession, priority=priority, patient=PatientFactory(name=name))
        PredictionFactory(image__study=study)

    def order(query: str) -> list[str]:
        body = clients["Clinician"].get(f"/{query}").content.decode()
        return sorted(("ACC-S1", "ACC-S2", "ACC-S3"), key=body.index)

    assert order("") == ["ACC-S2", "ACC-S3", "ACC-S1"]
    assert order("?sort=patient") == ["ACC-S1", "ACC-S2", "ACC-S3"]
    assert order("?sort=-patient") == ["ACC-S3", "ACC-S2", "ACC-S1"]
    assert order("?sort=-priority") == ["ACC-S1", "ACC-S3", "ACC-S2"]
    body = clients["Clinician"].get("/?sort=patient").content.decode()
    assert 'aria-sort="ascending"' in body and "sort=-patient" in body
    assert clients["Clinician"].get("/?sort=nonsense").status_code == 200  # ignored, reading order


def test_priority_survives_a_narrow_screen() -> None:
    from pathlib import Path

    css = (Path(__file__).resolve().parents[3] / "static" / "css" / "app.css").read_text()
    narrow = css[css.index("@media (max-width: 820px)") :]
    narrow = narrow[: narrow.index("}\n}") if "}\n}" in narrow else len(narrow)]
    assert 'data-col="priority"' not in narrow and "nth-child(1)" not in narrow
