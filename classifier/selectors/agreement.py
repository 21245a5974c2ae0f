"""Agreement between radiologists and the AI: how often reviews confirm, and Cohen's kappa.

Read-only selectors over Review rows. Each review is compared with the prediction it
reviewed (``Review.prediction.label``), so a re-run on a newer model is judged on its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from classifier.models import Review


@dataclass(frozen=True)
class Agreement:
    """Agreement of one group of reviews (one radiologist, or one model version)."""

    key: str
    reviews: int
    confirmed: int
    kappa: float | None

    @property
    def confirm_fraction(self) -> float | None:
        return self.confirmed / self.reviews if self.reviews else None


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa of (rater A, rater B) label pairs; None when undefined (no pairs, or
    both raters used a single identical label, where chance agreement is already 1)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    count_a, count_b = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(count_a[label] * count_b.get(label, 0) for label in count_a) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _group(rows: list[dict[str, Any]], key: str) -> list[Agreement]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    out = []
    for name, items in groups.items():
        pairs = [(item["ai_label"], item["label"]) for item in items if item["ai_label"]]
        out.append(
            Agreement(
                key=name,
                reviews=len(items),
                confirmed=sum(1 for item in items if item["decision"] == Review.Decision.CONFIRM),
                kappa=cohen_kappa(pairs),
            )
        )
    return sorted(out, key=lambda agreement: (-agreement.reviews, agreement.key))


def review_agreement() -> dict[str, list[Agreement]]:
    """Agreement per radiologist (username) and per model version ("name vN").

    Every review counts, including superseded ones: each is one independent judgement of
    one prediction. Reads all reviews; fine for a site's volume (thousands), not millions.
    """
    rows = []
    for review in Review.objects.select_related("radiologist", "prediction__model_version"):
        version = review.prediction.model_version
        rows.append(
            {
                "radiologist": review.radiologist.username,
                "version": str(version) if version else "unknown version",
                "decision": review.decision,
                "label": review.label,
                "ai_label": review.prediction.label,
            }
        )
    return {
        "by_radiologist": _group(rows, "radiologist"),
        "by_version": _group(rows, "version"),
        "overall": _group([{**row, "all": "all"} for row in rows], "all"),
    }


# Fewer confirmed abnormal studies than this and a local threshold "for 95 % sensitivity"
# is a guess: with 20, one missed case moves sensitivity by 0.05.
MIN_ABNORMAL_FOR_LOCAL_THRESHOLD = 20


@dataclass(frozen=True)
class FlagPerformance:
    """How one model version's flag did on this hospital's reviewed studies.

    Truth is the radiologist's label of each prediction's latest review (abnormal = any
    label but NORMAL). ``local_threshold`` is the highest threshold on the version's own
    p(abnormal) that would have flagged ``target`` of these abnormal studies, with the
    sensitivity and specificity it would have had (counts and Wilson CIs); None below
    MIN_ABNORMAL_FOR_LOCAL_THRESHOLD abnormal. ``latest_review_id`` is the newest review
    counted, so stored evidence says exactly which reviews it rests on.
    """

    key: str
    version_id: int | None
    n: int
    n_abnormal: int
    sensitivity: float | None
    sensitivity_ci: list[float] | None
    specificity: float | None
    specificity_ci: list[float] | None
    served_thresholds: list[float]
    target: float
    local_threshold: float | None
    local_sensitivity: float | None
    local_sensitivity_ci: list[float] | None
    local_specificity: float | None
    local_specificity_ci: list[float] | None
    latest_review_id: int

    @property
    def below_target(self) -> bool:
        """The flag's sensitivity here is significantly below the target (upper CI bound under it)."""
        return self.sensitivity_ci is not None and self.sensitivity_ci[1] < self.target

    def evidence(self) -> dict[str, Any]:
        """The figures as a JSON-serialisable dict (what an adopted site threshold stores)."""
        return {
            "n": self.n,
            "n_abnormal": self.n_abnormal,
            "target": self.target,
            "served": {
                "thresholds": self.served_thresholds,
                "sensitivity": self.sensitivity,
                "sensitivity_ci": self.sensitivity_ci,
                "specificity": self.specificity,
                "specificity_ci": self.specificity_ci,
            },
            "local": {
                "threshold": self.local_threshold,
                "sensitivity": self.local_sensitivity,
                "sensitivity_ci": self.local_sensitivity_ci,
                "specificity": self.local_specificity,
                "specificity_ci": self.local_specificity_ci,
            },
            "latest_review_id": self.latest_review_id,
        }


def _rate(hits: int, n: int) -> tuple[float | None, list[float] | None]:
    from training.evaluation.metrics import wilson_interval

    return (hits / n if n else None), wilson_interval(hits, n)


def _performance(key: str, version_id: int | None, items: list[Review]) -> FlagPerformance:
    from training.evaluation.thresholds import threshold_for_sensitivity

    truth = [review.label != "NORMAL" for review in items]
    flags = [bool(review.prediction.flag) for review in items]
    scores = [float(review.prediction.p_abnormal) for review in items]  # type: ignore[arg-type]
    n_abnormal = sum(truth)
    n_normal = len(items) - n_abnormal
    sensitivity, sensitivity_ci = _rate(sum(f for f, t in zip(flags, truth, strict=True) if t), n_abnormal)
    specificity, specificity_ci = _rate(sum(not f for f, t in zip(flags, truth, strict=True) if not t), n_normal)
    target = float((items[0].prediction.thresholds or {}).get("target_sensitivity", 0.95))
    local = None
    local_sens = local_spec = None
    local_sens_ci = local_spec_ci = None
    if n_abnormal >= MIN_ABNORMAL_FOR_LOCAL_THRESHOLD:
        local = float(threshold_for_sensitivity(truth, scores, target=target)["threshold"])
        local_sens, local_sens_ci = _rate(sum(s >= local for s, t in zip(scores, truth, strict=True) if t), n_abnormal)
        local_spec, local_spec_ci = _rate(sum(s < local for s, t in zip(scores, truth, strict=True) if not t), n_normal)
    return FlagPerformance(
        key=key,
        version_id=version_id,
        n=len(items),
        n_abnormal=n_abnormal,
        sensitivity=sensitivity,
        sensitivity_ci=sensitivity_ci,
        specificity=specificity,
        specificity_ci=specificity_ci,
        served_thresholds=sorted(
            {round(float(r.prediction.threshold), 4) for r in items if r.prediction.threshold is not None}
        ),
        target=target,
        local_threshold=local,
        local_sensitivity=local_sens,
        local_sensitivity_ci=local_sens_ci,
        local_specificity=local_spec,
        local_specificity_ci=local_spec_ci,
        latest_review_id=max(review.pk for review in items),
    )


def flag_performance(*, version_id: int | None = None) -> list[FlagPerformance]:
    """The flag's sensitivity and specificity (Wilson 95 % CIs) per model version on the
    reviewed predictions of this deployment, and the threshold that would have met the
    version's target sensitivity here: the evidence a hospital needs before trusting an
    operating point chosen on other hospitals (README, "Site thresholds"). ``version_id``
    limits it to one version.

    One judgement per prediction (its latest review); predictions without p(abnormal)
    or flag are skipped. Reads every review, like :func:`review_agreement`.
    """
    latest: dict[int, Review] = {}
    reviews = Review.objects.select_related("prediction__model_version").order_by("prediction_id", "created_at", "id")
    if version_id is not None:
        reviews = reviews.filter(prediction__model_version_id=version_id)
    for review in reviews:
        latest[review.prediction_id] = review
    groups: dict[int | None, list[Review]] = defaultdict(list)
    for review in latest.values():
        prediction = review.prediction
        if prediction.p_abnormal is None or prediction.flag is None:
            continue
        groups[prediction.model_version_id].append(review)
    out = []
    for key, items in groups.items():
        version = items[0].prediction.model_version
        out.append(_performance(str(version) if version else "unknown version", key, items))
    return sorted(out, key=lambda row: (-row.n, row.key))
