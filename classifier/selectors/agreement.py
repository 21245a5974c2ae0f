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
