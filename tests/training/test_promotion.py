"""Going live: the gate is shown and enforced on manual promotion; rollback walks back the history."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from classifier.models import AuditEvent
from tests.classifier.api.helpers import registered_version
from training import registry
from training.models import ModelActivation, ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def web_admin(role_users) -> Client:
    """The admin's browser session (the pages), beside client_for's API token."""
    client = Client()
    client.force_login(role_users["Admin"])
    return client


def _val(*, auc: float, sensitivity: float, specificity: float) -> dict[str, Any]:
    """A recorded validation evaluation (evaluate_predictions' shape) on one 60-image set."""
    return {
        "binary": {
            "threshold": 0.3,
            "sensitivity": sensitivity,
            "specificity": specificity,
            "auc": auc,
            "ci": {"auc": [auc - 0.02, min(1.0, auc + 0.02)]},
            "n": 60,
            "n_pos": 30,
            "n_neg": 30,
        }
    }


@pytest.fixture
def champion_and_weak_candidate(tmp_path) -> tuple[ModelVersion, ModelVersion]:
    """The active champion (val AUC 0.97) and a candidate with val AUC 0.46 on the same set."""
    ModelVersion.objects.update(status=ModelVersion.Status.ARCHIVED)  # the shipped model
    champion, weak = registered_version(tmp_path, 0), registered_version(tmp_path, 1)
    ModelVersion.objects.filter(pk=champion.pk).update(
        metrics={"val": _val(auc=0.97, sensitivity=0.95, specificity=0.80)}
    )
    ModelVersion.objects.filter(pk=weak.pk).update(metrics={"val": _val(auc=0.46, sensitivity=0.50, specificity=0.40)})
    registry.version_activate(version=champion, reason="test")
    return champion, ModelVersion.objects.get(pk=weak.pk)


def test_promote_page_shows_the_candidate_beside_the_active_version_and_the_gate(
    web_admin, champion_and_weak_candidate
) -> None:
    champion, weak = champion_and_weak_candidate
    body = web_admin.get(f"/models/{weak.pk}/promote/").content.decode()
    assert f"{weak} (candidate)" in body and f"{champion} (active)" in body
    assert "0.460" in body and "0.970" in body  # both AUCs, side by side
    assert "FAILED the promotion gate" in body
    assert "Sensitivity 0.5000 at threshold 0.3000 is below the champion&#x27;s 0.9500" in body
    assert 'name="override_reason"' in body


def test_promoting_a_gate_failing_version_needs_an_override_with_a_reason(
    web_admin, champion_and_weak_candidate
) -> None:
    champion, weak = champion_and_weak_candidate
    admin = web_admin
    refused = admin.post(f"/models/{weak.pk}/promote/")
    assert refused.status_code == 400 and "tick the override" in refused.content.decode()
    refused = admin.post(f"/models/{weak.pk}/promote/", {"override": "on", "override_reason": "  "})
    assert refused.status_code == 400 and "Write why" in refused.content.decode()
    assert registry.active_version() == champion
    reason = "Site validation on 400 local images; vendor ticket 123"
    done = admin.post(f"/models/{weak.pk}/promote/", {"override": "on", "override_reason": reason})
    assert done.status_code == 302 and registry.active_version() == weak
    activation = ModelActivation.objects.get(version=weak)
    assert activation.override_reason == reason and activation.gate["promote"] is False
    assert activation.previous == champion
    event = AuditEvent.objects.filter(action="model_activate", object_id=str(weak.pk)).get()
    assert event.detail["gate_override_reason"] == reason and event.detail["gate"]["promote"] is False
    page = admin.get(f"/models/{weak.pk}/").content.decode()
    assert "Promoted over a failed gate" in page and reason in page


def test_api_shows_the_gate_and_refuses_a_failing_version_without_a_reason(
    client_for, champion_and_weak_candidate
) -> None:
    champion, weak = champion_and_weak_candidate
    admin = client_for("Admin")
    check = admin.get(f"/api/v1/models/{weak.pk}/activate/").json()
    assert check["gate"]["promote"] is False and check["gate"]["reasons"]
    assert check["candidate"]["id"] == weak.pk and check["active"]["id"] == champion.pk
    refused = admin.post(f"/api/v1/models/{weak.pk}/activate/", {}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "gate_failed"
    assert registry.active_version() == champion
    done = admin.post(f"/api/v1/models/{weak.pk}/activate/", {"override_reason": "urgent fix"}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "active"
    event = AuditEvent.objects.filter(action="model_activate", object_id=str(weak.pk)).get()
    assert event.detail["gate_override_reason"] == "urgent fix"


def test_a_version_passing_the_gate_is_promoted_without_an_override(
    web_admin, champion_and_weak_candidate, tmp_path
) -> None:
    better = registered_version(tmp_path, 2)
    ModelVersion.objects.filter(pk=better.pk).update(
        metrics={"val": _val(auc=0.98, sensitivity=0.97, specificity=0.85)}
    )
    assert "The gate passes" in web_admin.get(f"/models/{better.pk}/promote/").content.decode()
    assert web_admin.post(f"/models/{better.pk}/promote/").status_code == 302
    assert registry.active_version() == better
    assert ModelActivation.objects.get(version=better).override_reason == ""


def test_rollback_names_its_target_and_walks_back_the_activation_history(web_admin, client_for, tmp_path) -> None:
    ModelVersion.objects.update(status=ModelVersion.Status.ARCHIVED)  # the shipped model
    v1, v2, v3 = (registered_version(tmp_path, seed) for seed in range(3))
    for version in (v1, v2, v3):
        registry.version_activate(version=version, reason="test")
    admin = web_admin
    page = admin.get("/models/rollback/").content.decode()
    assert f"Roll back to {v2}?" in page and f"Roll back to {v2}</button>" in page
    assert client_for("Admin").get("/api/v1/models/rollback/").json()["target"]["id"] == v2.pk
    admin.post("/models/rollback/")
    assert registry.active_version() == v2
    # the second rollback goes further back (to v1), not forward to v3
    assert f"Roll back to {v1}?" in admin.get("/models/rollback/").content.decode()
    admin.post("/models/rollback/")
    assert registry.active_version() == v1
    with pytest.raises(registry.RegistryError, match="no earlier active version"):
        registry.version_rollback()
    assert "Nothing to roll back to" in admin.get("/models/rollback/").content.decode()
    assert registry.active_version() == v1


def test_rollback_after_promoting_an_older_version_returns_to_the_one_it_replaced(tmp_path) -> None:
    ModelVersion.objects.update(status=ModelVersion.Status.ARCHIVED)
    v1, v2 = registered_version(tmp_path, 0), registered_version(tmp_path, 1)
    registry.version_activate(version=v1, reason="test")
    registry.version_activate(version=v2, reason="test")
    registry.version_rollback()  # v2 -> v1
    registry.version_activate(version=v2, reason="again")  # v1 -> v2 once more
    assert registry.version_rollback() == v1
    with pytest.raises(registry.RegistryError):
        registry.version_rollback()  # v1's own promotion replaced nothing


def _legacy_history(tmp_path, steps: list[tuple[int, str]]) -> list[ModelVersion]:
    """Versions and the audit events the registry wrote before the activation history
    existed: (index of the version activated, its reason), in order."""
    import importlib
    from datetime import timedelta

    from django.apps import apps
    from django.utils import timezone

    ModelVersion.objects.update(status=ModelVersion.Status.ARCHIVED)
    AuditEvent.objects.filter(action="model_activate").delete()  # the shipped model's, from migrate
    versions = [registered_version(tmp_path, seed) for seed in range(1 + max(i for i, _ in steps))]
    start = timezone.now() - timedelta(hours=1)
    for minute, (index, reason) in enumerate(steps):
        event = AuditEvent.objects.create(
            action="model_activate",
            object_type="training.modelversion",
            object_id=str(versions[index].pk),
            detail={"reason": reason},
        )
        AuditEvent.objects.filter(pk=event.pk).update(created_at=start + timedelta(minutes=minute))
    ModelVersion.objects.filter(pk=versions[steps[-1][0]].pk).update(status=ModelVersion.Status.ACTIVE)
    ModelActivation.objects.all().delete()
    importlib.import_module("training.migrations.0005_activation_history_from_audit").seed(apps, None)
    return versions


def test_the_seeded_history_of_a_legacy_rollback_does_not_toggle_forward(tmp_path) -> None:
    v1, _v2 = _legacy_history(tmp_path, [(0, "manual"), (1, "manual"), (0, "rollback")])
    assert registry.active_version() == v1 and registry.rollback_target() is None


def test_the_seeded_history_rolls_back_to_the_previously_promoted_version(tmp_path) -> None:
    v1, v2, _v3 = _legacy_history(tmp_path, [(0, "manual"), (1, "api"), (2, "manual")])
    assert registry.rollback_target() == v2
    registry.version_rollback()
    assert registry.rollback_target() == v1


def _unseen_sources(*, auc: float, sensitivity: float) -> dict[str, Any]:
    """Recorded unseen-source figures (fold models on collections they never saw)."""
    pooled = _val(auc=auc, sensitivity=sensitivity, specificity=0.3)
    pooled["binary"].update(n=500, n_pos=300, n_neg=200, ci={"auc": [auc - 0.03, auc + 0.03]})
    return {"pooled": pooled, "per_source": {}}


@pytest.fixture
def flattered_champion_and_new_hospital_candidate(tmp_path) -> tuple[ModelVersion, ModelVersion]:
    """The shipped model's situation: the champion scores val AUC 0.97 on hospitals it trained
    on and has no unseen-source figures; the candidate scores 0.90 there but was selected on
    sources it never saw, where its figures clear the gate's floors."""
    ModelVersion.objects.update(status=ModelVersion.Status.ARCHIVED)  # the shipped model
    champion, candidate = registered_version(tmp_path, 0), registered_version(tmp_path, 1)
    ModelVersion.objects.filter(pk=champion.pk).update(
        metrics={"val": _val(auc=0.97, sensitivity=0.97, specificity=0.80)}
    )
    ModelVersion.objects.filter(pk=candidate.pk).update(
        metrics={
            "val": _val(auc=0.90, sensitivity=0.97, specificity=0.70),
            "unseen_sources": _unseen_sources(auc=0.85, sensitivity=0.95),
        }
    )
    registry.version_activate(version=champion, reason="test")
    return champion, ModelVersion.objects.get(pk=candidate.pk)


def test_the_gate_prefers_unseen_source_evidence_and_recomputes_an_older_rules_verdict(
    flattered_champion_and_new_hospital_candidate,
) -> None:
    """A training run's stored verdict taken under the old rule (validation split only:
    refused) is not reused; under today's rule the unseen-source floors decide."""
    from training.evaluation import GATE_RULE
    from training.services.promotion import promotion_gate

    champion, candidate = flattered_champion_and_new_hospital_candidate
    TrainingRun.objects.create(
        status=TrainingRun.Status.SUCCEEDED,
        model_version=candidate,
        promotion={"promote": False, "champion": champion.version, "reasons": ["AUC 0.90 is worse than 0.95."]},
    )
    gate = promotion_gate(candidate)
    assert gate["promote"] is True, gate["reasons"]
    assert gate["rule"] == GATE_RULE and gate["basis"] == "unseen-source floors"
    assert gate["source"] == "the versions' recorded evaluations"
    assert gate["validation_split"]["promote"] is False  # the flattering comparison, kept for the record


def test_promote_model_command_goes_through_the_gate(flattered_champion_and_new_hospital_candidate, tmp_path) -> None:
    champion, candidate = flattered_champion_and_new_hospital_candidate
    out = StringIO()
    call_command("promote_model", str(candidate.version), "--check", stdout=out)
    assert "unseen-source floors" in out.getvalue() and registry.active_version() == champion
    call_command("promote_model", str(candidate.version), stdout=out)
    assert registry.active_version() == candidate
    assert ModelActivation.objects.get(version=candidate).gate["basis"] == "unseen-source floors"
    weak = registered_version(tmp_path, 2)
    ModelVersion.objects.filter(pk=weak.pk).update(metrics={"val": _val(auc=0.99, sensitivity=0.99, specificity=0.9)})
    # The active model now has unseen-source figures; one without them cannot replace it.
    with pytest.raises(CommandError, match="did not pass the promotion gate"):
        call_command("promote_model", str(weak.version), stdout=out)
    assert registry.active_version() == candidate


def test_a_training_runs_gate_judges_a_candidate_on_its_unseen_source_figures(
    flattered_champion_and_new_hospital_candidate, monkeypatch
) -> None:
    """The run's own gate (served path on the run's validation files) takes the versions'
    unseen-source figures: the champion's better validation split does not decide."""
    from training.services import evaluate
    from training.services.runs import _gate

    champion, candidate = flattered_champion_and_new_hospital_candidate
    champion.refresh_from_db()
    served = {champion.pk: champion.metrics["val"], candidate.pk: candidate.metrics["val"]}
    artifact_dirs = {str(champion.artifact_dir): champion.pk, str(candidate.artifact_dir): candidate.pk}
    monkeypatch.setattr(
        evaluate, "evaluate_files", lambda directory, files, **kwargs: served[artifact_dirs[str(directory)]]
    )
    decision = _gate(candidate, champion, [])
    assert decision["promote"] is True and decision["basis"] == "unseen-source floors"
    assert decision["champion"] == champion.version and decision["validation_split"]["promote"] is False
