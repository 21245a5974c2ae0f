"""Reviews: what a radiologist says is stored as what it means."""

from __future__ import annotations

import pytest

from classifier.models import Review
from classifier.services.reviews import review_submit
from tests.factories import PredictionFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_correcting_to_the_ai_label_is_a_confirm() -> None:
    prediction = PredictionFactory(label="COVID19", p_abnormal=0.9, probabilities={"COVID19": 0.9, "NORMAL": 0.1})
    review = review_submit(prediction=prediction, radiologist=UserFactory(), decision="correct", label="COVID19")
    assert (review.decision, review.label) == (Review.Decision.CONFIRM, "COVID19")


def test_a_different_label_is_a_correction() -> None:
    prediction = PredictionFactory(label="COVID19", p_abnormal=0.9, probabilities={"COVID19": 0.9, "NORMAL": 0.1})
    review = review_submit(prediction=prediction, radiologist=UserFactory(), decision="correct", label="NORMAL")
    assert (review.decision, review.label) == (Review.Decision.CORRECT, "NORMAL")
