"""The one rule for a study's flag: flagged when any image's current (latest) result is."""

from __future__ import annotations

import pytest

from classifier.models import Prediction
from classifier.selectors.worklist import WorklistFilters, worklist_rows
from tests.factories import ImageFactory, PredictionFactory, StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def studies() -> dict[str, int]:
    """Four studies whose flag the old readers got wrong one way or the other."""
    # Image A flagged, then image B unflagged: the newest prediction of the study is B's.
    two_images = StudyFactory()
    PredictionFactory(image=ImageFactory(study=two_images), p_abnormal=0.9)
    PredictionFactory(image=ImageFactory(study=two_images), p_abnormal=0.1)
    # Flagged once, then re-run with an unflagged result: the current result is not flagged.
    rerun = StudyFactory()
    image = ImageFactory(study=rerun)
    PredictionFactory(image=image, p_abnormal=0.8)
    PredictionFactory(image=image, p_abnormal=0.3)
    unflagged = StudyFactory()
    PredictionFactory(image=ImageFactory(study=unflagged), p_abnormal=0.2)
    pending = StudyFactory()
    PredictionFactory(image=ImageFactory(study=pending), status=Prediction.Status.PENDING, p_abnormal=None)
    return {"two_images": two_images.pk, "rerun": rerun.pk, "unflagged": unflagged.pk, "pending": pending.pk}


def test_worklist_flag_is_any_current_image_flagged(studies: dict[str, int]) -> None:
    rows = {row.pk: row for row in worklist_rows()}
    assert rows[studies["two_images"]].flagged is True
    assert rows[studies["two_images"]].current_p_abnormal == pytest.approx(0.9)
    assert rows[studies["rerun"]].flagged is False
    assert rows[studies["unflagged"]].flagged is False
    assert rows[studies["pending"]].flagged is None
    flagged = {row.pk for row in worklist_rows(WorklistFilters(flag=True))}
    not_flagged = {row.pk for row in worklist_rows(WorklistFilters(flag=False))}
    assert flagged == {studies["two_images"]}
    assert not_flagged == {studies["rerun"], studies["unflagged"]}


def test_api_flagged_filter_agrees_with_the_worklist(studies: dict[str, int], client_for) -> None:
    client = client_for("Clinician")

    def ids(value: str) -> set[int]:
        return {row["id"] for row in client.get(f"/api/v1/studies/?flagged={value}&page_size=200").json()["results"]}

    assert ids("true") == {row.pk for row in worklist_rows(WorklistFilters(flag=True))} == {studies["two_images"]}
    assert ids("false") == {row.pk for row in worklist_rows(WorklistFilters(flag=False))}
