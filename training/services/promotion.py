"""Promoting a version by hand: the gate's verdict first, and an override only with a reason.

A training run promotes its candidate only when the champion/challenger gate passes.
Promoting by hand applies the same gate: a version that fails it (or that the gate
cannot compare) goes live only with an explicit override and a written reason, which
the activation history stores and the audit log records.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from classifier.services.audit import Actor, AuditContext
from training import registry
from training.models import ModelVersion, TrainingRun

KEY_METRICS = ("sensitivity", "specificity", "auc", "n")


class PromotionRefused(registry.RegistryError):
    """The version failed the gate and no override reason was given."""

    code = "gate_failed"

    def __init__(self, version: ModelVersion, gate: dict[str, Any]) -> None:
        self.gate = gate
        reasons = " ".join(gate.get("reasons") or [])
        super().__init__(
            f"{version} did not pass the promotion gate: {reasons} Promoting it anyway needs an override "
            "with a written reason."
        )


def _val_binary(version: ModelVersion | None) -> dict[str, Any]:
    return (((version.metrics or {}).get("val") or {}).get("binary") or {}) if version is not None else {}


def promotion_gate(version: ModelVersion) -> dict[str, Any]:
    """The gate's verdict on making ``version`` active now, against the version active now.

    The training run's own decision when it was taken against today's champion under
    today's rule (the served path on the run's frozen validation files); otherwise the
    gate's rule applied to the two versions' recorded evaluations (validation split and
    unseen sources), which fails when they are not on the same images, or when either has
    no validation evaluation (nothing shows the candidate is safe).
    Keys: promote, reasons, candidate, champion (version numbers), source.
    """
    from training.evaluation import GATE_RULE, gate_decision

    champion = registry.active_version(version.name)
    champion_number = champion.version if champion is not None else None
    run = TrainingRun.objects.filter(model_version=version).first()
    stored = (run.promotion or {}) if run is not None else {}
    if "promote" in stored and stored.get("champion") == champion_number and stored.get("rule") == GATE_RULE:
        return {**stored, "source": f"training run #{run.pk} (on the run's validation files)"}  # type: ignore[union-attr]
    source = "the versions' recorded evaluations"
    if champion is None:
        decision: dict[str, Any] = {
            "promote": True,
            "reasons": [f"No version of {version.name} is active, so there is no champion to compare with."],
        }
    elif not _val_binary(version):
        decision = {
            "promote": False,
            "reasons": [
                f"{version} has no recorded validation evaluation, so the gate cannot compare it with {champion}."
            ],
        }
    elif not _val_binary(champion):
        decision = {
            "promote": False,
            "reasons": [f"The active {champion} has no recorded validation evaluation to compare {version} with."],
        }
    else:
        try:
            decision = gate_decision(
                version.metrics["val"],
                champion.metrics["val"],
                candidate_unseen=version.metrics.get("unseen_sources"),
                champion_unseen=champion.metrics.get("unseen_sources"),
                target_sensitivity=float((version.thresholds or {}).get("target_sensitivity", 0.95)),
            )
        except ValueError as exc:
            decision = {"promote": False, "reasons": [f"The gate cannot compare the two versions: {exc}."]}
    return {**decision, "candidate": version.version, "champion": champion_number, "source": source}


def promotion_summary(version: ModelVersion) -> dict[str, Any]:
    """What the confirm pages show: the candidate beside the active version, and the gate."""
    active = registry.active_version(version.name)
    return {
        "candidate": version,
        "active": active,
        "rows": [
            (key, _val_binary(version).get(key), _val_binary(active).get(key) if active is not None else None)
            for key in KEY_METRICS
        ]
        + [
            (
                "threshold",
                version.thresholds.get("abnormal"),
                (active.thresholds or {}).get("abnormal") if active else None,
            )
        ],
        "gate": promotion_gate(version),
    }


@transaction.atomic
def version_promote(
    *,
    version: ModelVersion,
    actor: Actor,
    audit: AuditContext | None = None,
    reason: str,
    override_reason: str = "",
) -> ModelVersion:
    """Activate ``version`` if it passes the gate, or with ``override_reason`` if it does not.

    The active row is locked first, so the verdict is on the champion this promotion
    replaces. Raises PromotionRefused (no reason for a failed gate) or RegistryError.
    """
    list(ModelVersion.objects.select_for_update().filter(name=version.name, status=ModelVersion.Status.ACTIVE))
    gate = promotion_gate(version)
    override_reason = override_reason.strip()
    if not gate.get("promote") and not override_reason:
        raise PromotionRefused(version, gate)
    return registry.version_activate(
        version=version,
        actor=actor,
        audit=audit,
        reason=reason,
        gate=gate,
        override_reason="" if gate.get("promote") else override_reason,
    )
