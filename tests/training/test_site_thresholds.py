"""This hospital's own threshold for a model version: adopted from its reviews (evidence
recomputed and stored, audited, admins only), used by the worker for new predictions and
recorded on them, retired back to the version's own."""

from __future__ import annotations

import pytest
from django.test import Client

from classifier.models import AuditEvent, Prediction, Review
from classifier.selectors.agreement import MIN_ABNORMAL_FOR_LOCAL_THRESHOLD
from classifier.services.errors import ServiceError
from tests.factories import ModelVersionFactory, PredictionFactory, ReviewFactory
from training import registry
from training.models import SiteThreshold
from training.services.site_thresholds import site_threshold_adopt, site_threshold_retire

pytestmark = pytest.mark.django_db


def reviewed(version, radiologist, abnormal: list[float], normal: list[float], threshold: float = 0.5) -> None:
    """Reviewed predictions of ``version``: radiologist's label PNEUMONIA for ``abnormal``
    scores, NORMAL for ``normal``; each flagged against ``threshold`` as served."""
    for label, scores in (("PNEUMONIA_BACTERIAL", abnormal), ("NORMAL", normal)):
        for score in scores:
            prediction = PredictionFactory(
                model_version=version,
                p_abnormal=score,
                threshold=threshold,
                thresholds={"abnormal": threshold, "target_sensitivity": 0.95},
                label="COVID19",
            )
            ReviewFactory(prediction=prediction, radiologist=radiologist, decision="correct", label=label)


@pytest.fixture
def version():
    return ModelVersionFactory(thresholds={"abnormal": 0.5, "target_sensitivity": 0.95})


# 20 abnormal films: 19 scored 0.30-0.48 (missed at 0.5 but for one) and one at 0.6; 95 % of 20 is 19 flagged,
# so the local threshold is the 19th highest abnormal score, 0.30 + 1 * 0.01.
ABNORMAL = [0.6] + [0.30 + i * 0.01 for i in range(19)]
NORMAL = [0.05, 0.1, 0.2, 0.25, 0.3, 0.35]


def test_adopt_stores_the_recomputed_threshold_and_its_evidence(version, role_users) -> None:
    reviewed(version, role_users["Radiologist"], ABNORMAL, NORMAL)
    site = site_threshold_adopt(version=version, actor=role_users["Admin"], reason="misses pneumonias here")
    assert site.threshold == pytest.approx(0.31) and site.artifact_threshold == 0.5
    assert site.target_sensitivity == 0.95 and site.in_force
    evidence = site.evidence
    assert (evidence["n"], evidence["n_abnormal"]) == (26, 20)
    assert evidence["served"]["sensitivity"] == pytest.approx(1 / 20)
    assert evidence["local"]["sensitivity"] == pytest.approx(19 / 20)
    # normals at or above 0.31 would be flagged: 0.35 only (0.3 is below), so 5 of 6 cleared
    assert evidence["local"]["specificity"] == pytest.approx(5 / 6)
    low, high = evidence["local"]["sensitivity_ci"]
    assert low < 19 / 20 < high and evidence["latest_review_id"] == max(r.pk for r in Review.objects.all())
    assert registry.site_threshold_in_force(version) == site
    event = AuditEvent.objects.get(action="site_threshold_adopt")
    assert event.actor == role_users["Admin"] and event.detail["threshold"] == pytest.approx(0.31)


def test_adopt_refuses_without_enough_reviews_or_a_reason(version, role_users) -> None:
    reviewed(version, role_users["Radiologist"], ABNORMAL[: MIN_ABNORMAL_FOR_LOCAL_THRESHOLD - 1], NORMAL)
    with pytest.raises(ServiceError) as refused:
        site_threshold_adopt(version=version, actor=role_users["Admin"], reason="why")
    assert refused.value.code == "too_few_reviews" and refused.value.status == 409
    assert "19 reviewed abnormal" in refused.value.message
    with pytest.raises(ServiceError) as blank:
        site_threshold_adopt(version=version, actor=role_users["Admin"], reason="   ")
    assert blank.value.code == "reason_required"
    other = ModelVersionFactory()  # no reviews at all
    with pytest.raises(ServiceError, match="0 reviewed abnormal"):
        site_threshold_adopt(version=other, actor=role_users["Admin"], reason="why")
    assert not SiteThreshold.objects.exists()


def test_adopting_again_retires_the_previous_and_retire_returns_to_the_model(version, role_users) -> None:
    admin = role_users["Admin"]
    reviewed(version, role_users["Radiologist"], ABNORMAL, NORMAL)
    first = site_threshold_adopt(version=version, actor=admin, reason="first")
    reviewed(version, role_users["Radiologist"], [0.2] * 20, [])  # lower-scored pneumonias reviewed since
    second = site_threshold_adopt(version=version, actor=admin, reason="more reviews")
    first.refresh_from_db()
    assert not first.in_force and first.retire_reason == "replaced: more reviews"
    assert second.in_force and second.threshold < first.threshold
    assert second.evidence["n_abnormal"] == 40
    retired = site_threshold_retire(version=version, actor=admin, reason="back to the model's own")
    assert retired == second and registry.site_threshold_in_force(version) is None
    assert SiteThreshold.objects.filter(version=version).count() == 2  # history kept
    with pytest.raises(ServiceError) as none:
        site_threshold_retire(version=version, actor=admin, reason="again")
    assert none.value.code == "no_site_threshold" and none.value.status == 404
    assert AuditEvent.objects.filter(action="site_threshold_retire").count() == 1


def test_adopting_again_without_new_reviews_is_refused(version, role_users) -> None:
    """The same reviews give the same threshold: a second adoption would only add an
    identical row to the history (and retire the first for nothing)."""
    admin = role_users["Admin"]
    reviewed(version, role_users["Radiologist"], ABNORMAL, NORMAL)
    first = site_threshold_adopt(version=version, actor=admin, reason="first")
    with pytest.raises(ServiceError) as unchanged:
        site_threshold_adopt(version=version, actor=admin, reason="clicked twice")
    assert unchanged.value.code == "unchanged" and unchanged.value.status == 409
    assert "already in force" in unchanged.value.message
    first.refresh_from_db()
    assert first.in_force and SiteThreshold.objects.count() == 1
    assert AuditEvent.objects.filter(action="site_threshold_adopt").count() == 1
    # Once it is retired, the same evidence may be adopted again.
    site_threshold_retire(version=version, actor=admin, reason="back to the model's own")
    assert site_threshold_adopt(version=version, actor=admin, reason="again").in_force


def test_only_admins_adopt_from_the_pages(version, role_users, client_for) -> None:
    reviewed(version, role_users["Radiologist"], ABNORMAL, NORMAL)
    clients = {}
    for role in ("Clinician", "Radiologist", "Admin"):
        clients[role] = Client()
        clients[role].force_login(role_users[role])
    url = f"/models/{version.pk}/site-threshold/"
    for role in ("Clinician", "Radiologist"):
        assert clients[role].post(url, {"reason": "x"}).status_code == 403
        assert clients[role].post(url + "retire/", {"reason": "x"}).status_code == 403
    stats = clients["Radiologist"].get("/review/stats/").content.decode()
    assert "site-threshold-form" not in stats and "the model's own" in stats
    assert clients["Admin"].get(url).status_code == 405  # POST only
    admin_stats = clients["Admin"].get("/review/stats/").content.decode()
    assert f'action="{url}"' in admin_stats
    # without a reason nothing is adopted
    refused = clients["Admin"].post(url, {"reason": "", "return_to": "stats"}, follow=True)
    assert refused.redirect_chain[-1][0] == "/review/stats/"
    assert "Write why this hospital" in refused.content.decode()
    assert not SiteThreshold.objects.exists()
    response = clients["Admin"].post(url, {"reason": "sensitivity below target here", "return_to": "stats"})
    assert response.status_code == 302 and response["Location"] == "/review/stats/"
    site = SiteThreshold.objects.get()
    assert site.threshold == pytest.approx(0.31) and site.adopted_by == role_users["Admin"]
    stats = clients["Radiologist"].get("/review/stats/").content.decode()
    assert "<strong>0.3100</strong>" in stats
    page = clients["Admin"].get(f"/models/{version.pk}/").content.decode()
    assert "flagged at <strong>0.3100</strong> here" in page and "sensitivity below target here" in page
    assert f'action="{url}retire/"' in page
    response = clients["Admin"].post(url + "retire/", {"reason": "audit asked", "return_to": "model"})
    assert response["Location"] == f"/models/{version.pk}/"
    assert registry.site_threshold_in_force(version) is None
    page = clients["Admin"].get(f"/models/{version.pk}/").content.decode()
    assert "flags at its own threshold" in page and "audit asked" in page


def test_api_reads_adopts_and_retires(version, role_users, client_for) -> None:
    url = f"/api/v1/models/{version.pk}/site-threshold/"
    admin = client_for("Admin")
    for role in ("Clinician", "Radiologist"):
        assert client_for(role).get(url).status_code == 403
        assert client_for(role).post(url, {"reason": "x"}, format="json").status_code == 403
    empty = admin.get(url).json()
    assert empty == {"in_force": None, "local": None, "history": []}
    missing = admin.post(url, {}, format="json")
    assert missing.status_code == 400 and "reason" in str(missing.json())
    assert admin.post(url, {"reason": "x"}, format="json").json()["error"]["code"] == "too_few_reviews"
    reviewed(version, role_users["Radiologist"], ABNORMAL, NORMAL)
    state = admin.get(url).json()
    assert state["local"]["local"]["threshold"] == pytest.approx(0.31) and state["in_force"] is None
    adopted = admin.post(url, {"reason": "from the API"}, format="json")
    assert adopted.status_code == 201, adopted.content
    body = adopted.json()
    assert body["threshold"] == pytest.approx(0.31) and body["in_force"]
    # the token's own user adopted it, and the audit trail says so
    event = AuditEvent.objects.get(action="site_threshold_adopt")
    assert body["adopted_by"] == event.actor.username and event.actor.username.startswith("api-")
    detail = admin.get(f"/api/v1/models/{version.pk}/").json()
    assert detail["site_threshold"]["id"] == body["id"]
    assert admin.post(url + "retire/", {"reason": "done"}, format="json").json()["in_force"] is False
    assert admin.get(f"/api/v1/models/{version.pk}/").json()["site_threshold"] is None
    assert admin.post(url + "retire/", {"reason": "done"}, format="json").status_code == 404
    assert len(admin.get(url).json()["history"]) == 1


def test_prediction_serialises_whose_threshold_flagged_it(version, role_users, client_for) -> None:
    reviewed(version, role_users["Radiologist"], ABNORMAL, NORMAL)
    site = site_threshold_adopt(version=version, actor=role_users["Admin"], reason="x")
    ours = PredictionFactory(model_version=version, p_abnormal=0.4, threshold=site.threshold, site_threshold=site)
    theirs = Prediction.objects.filter(model_version=version, site_threshold=None).first()
    api = client_for("Clinician")
    assert api.get(f"/api/v1/predictions/{ours.pk}/").json()["threshold_source"] == "site"
    assert api.get(f"/api/v1/predictions/{theirs.pk}/").json()["threshold_source"] == "model"


def test_webhook_and_fhir_say_this_hospitals_threshold_flagged_it(version, role_users) -> None:
    from classifier.api.fhir import diagnostic_report_resource
    from classifier.services.webhooks import _prediction_data

    reviewed(version, role_users["Radiologist"], ABNORMAL, NORMAL)
    site = site_threshold_adopt(version=version, actor=role_users["Admin"], reason="x")
    ours = PredictionFactory(model_version=version, p_abnormal=0.4, threshold=site.threshold, site_threshold=site)
    theirs = Prediction.objects.filter(model_version=version, site_threshold=None).first()
    assert _prediction_data(ours)["prediction"]["threshold_source"] == "site"
    assert _prediction_data(theirs)["prediction"]["threshold_source"] == "model"
    text = str(diagnostic_report_resource(ours))
    assert "flagged at this hospital's threshold 0.310" in text
    assert "this hospital" not in str(diagnostic_report_resource(theirs))
