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


def test_the_worklist_page_count_reads_no_image_rows() -> None:
    """Which studies have images is a stored column: counting the worklist's rows (every
    page does) semi-joined every image of every study (~180 ms at 100,000 studies)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import StudyFactory

    with_image = ImageFactory().study
    order_only = StudyFactory()
    with CaptureQueriesContext(connection) as captured:
        assert worklist_rows().count() == 1
    assert "classifier_image" not in captured[0]["sql"]
    assert [row.pk for row in worklist_rows()] == [with_image.pk] != [order_only.pk]


def test_the_worklist_reads_reviews_once_per_row_and_lists_clinicians_without_a_join() -> None:
    """PostgreSQL planned a second EXISTS over the reviews (``has_review``) as a hash of
    every reviewed image, built for each page (~220 ms at 60,000 reviews); the
    clinician choices were a DISTINCT over a join with every study (~100 ms)."""
    from classifier.forms import WorklistFilterForm
    from tests.factories import ReviewFactory

    review = ReviewFactory()
    sql = str(worklist_rows().query)
    # has_review follows from the latest label's scalar subquery (never hashed), no EXISTS.
    assert 'EXISTS(SELECT 1 AS "a" FROM "classifier_review"' not in sql and '"classifier_review"' in sql
    row = worklist_rows().get(pk=review.image.study_id)
    assert row.has_review is True and row.review_label == review.label
    assert {r.pk for r in worklist_rows(WorklistFilters(reviewed=True))} == {review.image.study_id}
    choices = str(WorklistFilterForm().fields["clinician"].queryset.query)
    assert "DISTINCT" not in choices and "JOIN" not in choices
