"""The finding in words: "abnormal, likely pneumonia" first; the cause only where it is validated."""

from __future__ import annotations

from datetime import date

import pytest

from classifier.findings import ABNORMAL_HEADLINE, cause_validation, patient_group, prediction_finding
from classifier.selectors.predictions import prediction_finding_of
from tests.factories import ModelVersionFactory, PatientFactory, PredictionFactory, StudyFactory

COVID_MOST_LIKELY = {"NORMAL": 0.1, "PNEUMONIA_BACTERIAL": 0.2, "PNEUMONIA_VIRAL": 0.1, "COVID19": 0.6}
# The shipped v2's snapshot: children had bacterial and viral pneumonia, adults COVID-19 only.
COUNTS = {
    "train": {
        "kermany/NORMAL": 10,
        "kermany/PNEUMONIA_BACTERIAL": 5,
        "kermany/PNEUMONIA_VIRAL": 5,
        "nih/NORMAL": 4,
        "nih/PNEUMONIA": 3,
        "hannover/COVID19": 6,
    }
}
GROUPS = {"kermany": "pediatric", "nih": "adult", "hannover": "adult"}


def test_age_group_on_the_study_date() -> None:
    assert patient_group(date(2010, 6, 2), date(2028, 6, 1)) == "pediatric"
    assert patient_group(date(2010, 6, 2), date(2028, 6, 2)) == "adult"
    assert patient_group(None, date(2028, 6, 2)) == patient_group(date(2030, 1, 1), date(2028, 1, 1)) == "unknown"


def test_no_group_had_every_cause_in_the_public_data() -> None:
    assert cause_validation(COUNTS, GROUPS) == {
        "adult": {"status": "unvalidated", "causes_never_seen": ["PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL"]},
        "pediatric": {"status": "unvalidated", "causes_never_seen": ["COVID19"]},
    }


@pytest.mark.parametrize("group", ["adult", "pediatric", "unknown"])
def test_an_unvalidated_cause_is_a_labelled_suggestion_never_the_headline(group: str) -> None:
    finding = prediction_finding(
        probabilities=COVID_MOST_LIKELY,
        flag=True,
        p_abnormal=0.9,
        validation=cause_validation(COUNTS, GROUPS),
        group=group,
    )
    assert finding.headline == ABNORMAL_HEADLINE
    assert finding.suggested_cause == "COVID19" and finding.cause_status == "unvalidated"
    assert finding.cause_note.startswith("Suggested cause: COVID-19, not validated for")


def test_a_validated_cause_may_lead() -> None:
    validation = {"adult": {"status": "validated", "causes_never_seen": []}}
    finding = prediction_finding(
        probabilities=COVID_MOST_LIKELY, flag=True, p_abnormal=0.9, validation=validation, group="adult"
    )
    assert finding.headline == "Abnormal, likely COVID-19" and finding.cause_status == "validated"


def test_not_flagged_and_no_result() -> None:
    assert (
        prediction_finding(
            probabilities=COVID_MOST_LIKELY, flag=False, p_abnormal=0.3, validation={}, group="adult"
        ).headline
        == "Not flagged"
    )
    assert (
        prediction_finding(probabilities={}, flag=None, p_abnormal=None, validation={}, group="adult").headline
        == "No AI result"
    )


@pytest.mark.django_db
def test_a_stored_prediction_reads_its_versions_snapshot_and_the_patients_age() -> None:
    version = ModelVersionFactory(
        data_snapshot={"counts": COUNTS}, hyperparameters={"run_spec": {"balance_groups": GROUPS}}
    )
    study = StudyFactory(patient=PatientFactory(birth_date=date(1970, 1, 1)), study_date=date(2026, 11, 30))
    prediction = PredictionFactory(
        image__study=study, model_version=version, probabilities=COVID_MOST_LIKELY, label="COVID19", p_abnormal=0.9
    )
    finding = prediction_finding_of(prediction)
    assert (finding.headline, finding.patient_group, finding.cause_status) == (
        ABNORMAL_HEADLINE,
        "adult",
        "unvalidated",
    )
    version.metrics = {"cause_validation": {"adult": {"status": "validated", "causes_never_seen": []}}}
    assert prediction_finding_of(prediction).headline == "Abnormal, likely COVID-19"  # the recorded status wins
