"""What a prediction says, in words: one rule for the study page, the API, FHIR and webhooks.

The primary finding is binary: "Abnormal, likely pneumonia" when p(abnormal) reaches the
version's threshold. The most probable abnormal class (bacterial, viral, COVID-19) is a
*suggested cause*, shown as the headline only for a patient group whose training data
held every cause; the model card records that per group (``cause_validation``). No
public source has adult bacterial or viral pneumonia, so for adults the model cannot
tell COVID-19 from other pneumonia and the cause is a labelled suggestion. A patient of
unknown age is treated as a group the cause is not validated for.

Pure functions, no Django; ``prediction_finding`` is called with plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

NORMAL = "NORMAL"
CAUSES = ("PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19")
CAUSE_NAMES = {
    "PNEUMONIA_BACTERIAL": "bacterial pneumonia",
    "PNEUMONIA_VIRAL": "viral pneumonia",
    "COVID19": "COVID-19",
}
ADULT_AGE = 18
ABNORMAL_HEADLINE = "Abnormal, likely pneumonia"
# What every result says it is, on every path (page, API, FHIR, webhook, DICOM SR/SC, CLI).
NOTICE = "decision support, not a diagnosis"


@dataclass(frozen=True)
class Finding:
    """The words of one prediction. ``cause_status`` is validated, unvalidated or None (no cause)."""

    headline: str
    flagged: bool | None
    p_abnormal: float | None
    suggested_cause: str | None
    suggested_cause_name: str | None
    cause_status: str | None
    patient_group: str
    cause_note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def patient_group(birth_date: date | None, on: date | None) -> str:
    """ "pediatric" under 18 on ``on``, "adult" from 18, "unknown" without both dates."""
    if birth_date is None or on is None or on < birth_date:
        return "unknown"
    age = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    return "pediatric" if age < ADULT_AGE else "adult"


def cause_validation(counts: Mapping[str, Mapping[str, int]], groups: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per patient group: validated when its training images carried every cause.

    ``counts`` is a data snapshot's {split: {"source/label": n}}; ``groups`` maps a source
    to its patient group. Returns {group: {"status", "causes_never_seen"}}.
    """
    seen: dict[str, set[str]] = {}
    for key, n in (counts.get("train") or {}).items():
        source, _, label = key.partition("/")
        if n:
            seen.setdefault(groups.get(source, "other"), set()).add(label)
    out = {}
    for group, labels in sorted(seen.items()):
        missing = [cause for cause in CAUSES if cause not in labels]
        out[group] = {"status": "unvalidated" if missing else "validated", "causes_never_seen": missing}
    return out


def prediction_finding(
    *,
    probabilities: Mapping[str, float] | None,
    flag: bool | None,
    p_abnormal: float | None,
    validation: Mapping[str, Mapping[str, Any]] | None,
    group: str,
) -> Finding:
    """The finding of a prediction with these outputs, for a patient of ``group``."""
    if flag is None or p_abnormal is None or not probabilities:
        return Finding("No AI result", None, None, None, None, None, group, "")
    causes = {label: float(p) for label, p in probabilities.items() if label in CAUSES}
    cause = max(causes, key=lambda label: causes[label]) if causes else None
    status = ((validation or {}).get(group) or {}).get("status", "unvalidated") if cause else None
    name = CAUSE_NAMES.get(cause or "")
    if not flag:
        return Finding("Not flagged", False, p_abnormal, cause, name, status, group, "")
    headline = f"Abnormal, likely {name}" if status == "validated" and name else ABNORMAL_HEADLINE
    if not name:
        note = ""
    elif status == "validated":
        note = f"Most likely cause: {name} (validated for {group} patients)."
    else:
        who = {"unknown": "a patient of unknown age", "adult": "adults", "pediatric": "children"}.get(group, group)
        note = (
            f"Suggested cause: {name}, not validated for {who}: the training data did not hold every "
            "cause of pneumonia for this group, so the model cannot tell them apart."
        )
    return Finding(headline, True, p_abnormal, cause, name, status, group, note)
