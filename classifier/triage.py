"""Worklist priority: disease probability, the AI flag and waiting time, with escalation.

Pure functions; :func:`classifier.services.studies.study_refresh` stores the result and
the periodic sweeper refreshes it, so waiting time keeps counting while nothing happens.

Scale (higher is read first):
- a flagged study scores 1 + p_abnormal (1..2); an unflagged one p_abnormal (0..1);
- a study without a result yet scores 0.5, a failed one 1.0 (a person must look at it);
- waiting adds up to 1.0 linearly over the maximum wait, so old studies rise steadily;
- past the maximum wait a study is escalated to ESCALATED + minutes over the limit, above
  every score, so nothing waits forever behind higher-scoring newcomers.
"""

from __future__ import annotations

ESCALATED = 10.0


def priority_score(
    *, p_abnormal: float | None, flag: bool | None, failed: bool, waited_minutes: float, max_wait_minutes: float
) -> float:
    """The priority of an unreviewed study. Reviewed studies are not prioritised (0)."""
    if waited_minutes >= max_wait_minutes:
        return ESCALATED + (waited_minutes - max_wait_minutes) / max_wait_minutes
    if failed:
        base = 1.0
    elif p_abnormal is None:
        base = 0.5
    else:
        base = (1.0 if flag else 0.0) + float(p_abnormal)
    return round(base + max(waited_minutes, 0.0) / max_wait_minutes, 6)
