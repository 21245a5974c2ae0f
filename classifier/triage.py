"""Worklist priority: disease probability, the AI flag and waiting time, with escalation.

Pure functions; :func:`classifier.services.studies.study_refresh` stores the result (and
the time-independent part, the *triage base*) and the periodic sweeper recomputes the
priority from the stored base in SQL, so waiting time keeps counting while nothing happens.

Scale (higher is read first):
- a flagged study scores 1 + p_abnormal (1..2); an unflagged one p_abnormal (0..1);
- a study without a result yet scores 0.5, a failed one 1.0 (a person must look at it);
- waiting adds up to 1.0 linearly over the maximum wait, so old studies rise steadily;
- past the maximum wait a study is escalated to ESCALATED + minutes over the limit, above
  every score, so nothing waits forever behind higher-scoring newcomers.
"""

from __future__ import annotations

ESCALATED = 10.0


def triage_base(*, p_abnormal: float | None, flag: bool | None, failed: bool) -> float:
    """The part of the priority that does not depend on waiting time (stored on the study
    as ``Study.triage_base``, so the sweeper can add the waiting term in SQL)."""
    if failed:
        return 1.0
    if p_abnormal is None:
        return 0.5
    return (1.0 if flag else 0.0) + float(p_abnormal)


def priority_from_base(*, base: float, waited_minutes: float, max_wait_minutes: float) -> float:
    """The priority of an unreviewed study from its ``triage_base`` and its waiting time.

    ``classifier.services.studies.study_refresh_priorities`` computes exactly this in SQL
    (same operations in double precision, same rounding): keep the two in step."""
    if waited_minutes >= max_wait_minutes:
        return ESCALATED + (waited_minutes - max_wait_minutes) / max_wait_minutes
    return round(base + max(waited_minutes, 0.0) / max_wait_minutes, 6)


def priority_score(
    *, p_abnormal: float | None, flag: bool | None, failed: bool, waited_minutes: float, max_wait_minutes: float
) -> float:
    """The priority of an unreviewed study. Reviewed studies are not prioritised (0)."""
    return priority_from_base(
        base=triage_base(p_abnormal=p_abnormal, flag=flag, failed=failed),
        waited_minutes=waited_minutes,
        max_wait_minutes=max_wait_minutes,
    )
