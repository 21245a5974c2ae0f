"""This hospital's own operating threshold for a model version, adopted from its reviews.

A version's threshold was chosen on other hospitals' images for a target sensitivity,
and a model's score scale moves between hospitals (README, "Site thresholds"): the
agreement page shows whether the flag meets its target on this hospital's reviewed
studies and which threshold would have. An admin adopts that threshold here; the worker
then flags the version's new predictions at it (``training.registry.site_threshold_in_force``).

The threshold adopted is always the one recomputed from the reviews at the moment of
adoption (never a number typed in), with at least MIN_ABNORMAL_FOR_LOCAL_THRESHOLD
abnormal studies behind it, and the evidence is stored with it. Predictions already made
keep the flag and threshold that produced them; a re-run uses the threshold in force.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from classifier.selectors.agreement import MIN_ABNORMAL_FOR_LOCAL_THRESHOLD, flag_performance
from classifier.services.audit import AuditContext, audit_record
from classifier.services.errors import ServiceError
from training.models import ModelVersion, SiteThreshold
from training.registry import site_threshold_in_force


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("reason_required", "Write why this hospital's threshold changes (it is kept and audited).")
    return reason


@transaction.atomic
def site_threshold_adopt(
    *, version: ModelVersion, actor: User, reason: str, audit: AuditContext | None = None
) -> SiteThreshold:
    """Adopt, for ``version``, the threshold that met its target sensitivity on this
    hospital's reviewed studies; the row in force before (if any) is retired.

    Raises ServiceError ``reason_required`` without a reason, ``too_few_reviews`` below
    MIN_ABNORMAL_FOR_LOCAL_THRESHOLD reviewed abnormal studies of the version,
    ``no_artifact_threshold`` for a version without a threshold of its own, and
    ``unchanged`` (409) when the row in force was adopted from exactly these reviews.
    """
    reason = _reason(reason)
    # One adoption at a time per version: the partial unique constraint would refuse the
    # loser of a race anyway, but with an IntegrityError instead of a clear retirement.
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    artifact_threshold = (version.thresholds or {}).get("abnormal")
    if artifact_threshold is None:
        raise ServiceError("no_artifact_threshold", f"{version} has no threshold of its own to replace.")
    rows = flag_performance(version_id=version.pk)
    if not rows or rows[0].local_threshold is None:
        reviewed = rows[0].n_abnormal if rows else 0
        raise ServiceError(
            "too_few_reviews",
            f"{version} has {reviewed} reviewed abnormal studies here; a local threshold needs at least "
            f"{MIN_ABNORMAL_FOR_LOCAL_THRESHOLD}.",
            status=409,
        )
    evidence = rows[0]
    previous = site_threshold_in_force(version)
    if previous is not None and previous.evidence == evidence.evidence():
        # Same reviews, same threshold: another row would only repeat the history.
        raise ServiceError(
            "unchanged",
            f"The site threshold {previous.threshold:.4f} already in force for {version} was adopted from "
            "these same reviews; adopt again once more studies are reviewed.",
            status=409,
        )
    if previous is not None:
        _retire(previous, actor, f"replaced: {reason}")
    site = SiteThreshold.objects.create(
        version=version,
        threshold=float(evidence.local_threshold),  # type: ignore[arg-type]
        artifact_threshold=float(artifact_threshold),
        target_sensitivity=evidence.target,
        evidence=evidence.evidence(),
        reason=reason,
        adopted_by=actor,
    )
    audit_record(
        actor=actor,
        action="site_threshold_adopt",
        obj=site,
        audit=audit,
        detail={
            "version": str(version),
            "threshold": site.threshold,
            "artifact_threshold": site.artifact_threshold,
            "previous": previous.threshold if previous is not None else None,
            "n": evidence.n,
            "n_abnormal": evidence.n_abnormal,
        },
    )
    return site


def _retire(site: SiteThreshold, actor: User, reason: str) -> None:
    site.retired_at, site.retired_by, site.retire_reason = timezone.now(), actor, reason
    site.save(update_fields=["retired_at", "retired_by", "retire_reason"])


@transaction.atomic
def site_threshold_retire(
    *, version: ModelVersion, actor: User, reason: str, audit: AuditContext | None = None
) -> SiteThreshold:
    """Return ``version`` to its artifact's threshold: retire the site threshold in force.

    Raises ServiceError ``reason_required`` without a reason and ``no_site_threshold``
    (404) when none is in force."""
    reason = _reason(reason)
    ModelVersion.objects.select_for_update().get(pk=version.pk)
    site = site_threshold_in_force(version)
    if site is None:
        raise ServiceError("no_site_threshold", f"{version} has no site threshold in force.", status=404)
    _retire(site, actor, reason)
    audit_record(
        actor=actor,
        action="site_threshold_retire",
        obj=site,
        audit=audit,
        detail={"version": str(version), "threshold": site.threshold, "artifact_threshold": site.artifact_threshold},
    )
    return site
