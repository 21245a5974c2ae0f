"""Reads about one prediction: its finding in words (see ``classifier.findings``)."""

from __future__ import annotations

from classifier.findings import Finding, patient_group, prediction_finding
from classifier.models import Prediction


def prediction_finding_of(prediction: Prediction) -> Finding:
    """The finding of ``prediction`` for its patient (age on the study date, else the upload date),
    with the suggested cause's validation status from the version that produced it."""
    study = prediction.image.study
    on = study.study_date or study.created_at.date()
    version = prediction.model_version
    return prediction_finding(
        probabilities=prediction.probabilities if prediction.status == Prediction.Status.DONE else None,
        flag=prediction.flag,
        p_abnormal=prediction.p_abnormal,
        validation=version.cause_validation() if version is not None else None,
        group=patient_group(study.patient.birth_date, on),
    )
