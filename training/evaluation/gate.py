"""Champion/challenger promotion gate for the triage model.

Rule (both inputs are :func:`metrics.evaluate_predictions` outputs computed on the SAME
frozen validation set, each at its own chosen operating threshold):

1. No champion: promote.
2. Otherwise refuse if the two evaluations are not comparable: binary ``n``, ``n_pos``
   or ``n_neg`` differ (a different validation set), or the candidate's sensitivity or
   AUC is undefined.
3. Sensitivity: require ``candidate.sensitivity >= champion.sensitivity`` exactly, each
   measured at its own threshold. Missing a pneumonia is the costly error, so no
   tolerance is granted here.
4. AUC: require ``candidate.auc >= champion.auc - margin`` where ``margin`` is the
   half-width ``(hi - lo) / 2`` of the champion's 95 % AUC CI (``binary.ci.auc``), i.e.
   the candidate may be lower only by less than the champion's own measurement
   uncertainty. If the champion has no AUC CI (evaluated with ``n_bootstrap=0``) the
   margin is 0, which is the strict reading.

Promote iff every applicable check passes. Comparisons are exact float comparisons;
both evaluations use identical arithmetic on the same samples, so equal performance
compares equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["promotion_decision"]


def _summary(evaluation: Mapping[str, Any], role: str) -> dict[str, Any]:
    """Pull the figures the gate needs out of an evaluate_predictions() result."""
    try:
        binary = evaluation["binary"]
        ci = binary.get("ci") or {}
        return {
            "threshold": binary["threshold"],
            "sensitivity": binary["sensitivity"],
            "specificity": binary["specificity"],
            "auc": binary["auc"],
            "auc_ci": ci.get("auc"),
            "n": binary["n"],
            "n_pos": binary["n_pos"],
            "n_neg": binary["n_neg"],
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{role} is not an evaluate_predictions() result: missing {exc}") from exc


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _comparability_problems(cand: dict[str, Any], champ: dict[str, Any]) -> list[str]:
    problems = []
    counts = ("n", "n_pos", "n_neg")
    if any(cand[k] != champ[k] for k in counts):
        problems.append(
            "The evaluations are not on the same validation set (candidate n/positives/negatives "
            f"{cand['n']}/{cand['n_pos']}/{cand['n_neg']}, champion "
            f"{champ['n']}/{champ['n_pos']}/{champ['n_neg']}), so they cannot be compared."
        )
    for key, name in (("sensitivity", "sensitivity"), ("auc", "AUC")):
        if cand[key] is None:
            problems.append(f"The candidate's {name} is undefined on this validation set.")
        elif champ[key] is None:
            problems.append(f"The champion's {name} is undefined, so it cannot be compared.")
    return problems


def _sensitivity_check(cand: dict[str, Any], champ: dict[str, Any]) -> tuple[bool, str]:
    ok = cand["sensitivity"] >= champ["sensitivity"]
    verdict = "is at least" if ok else "is below"
    return ok, (
        f"Sensitivity {_fmt(cand['sensitivity'])} at threshold {_fmt(cand['threshold'])} "
        f"{verdict} the champion's {_fmt(champ['sensitivity'])} at threshold "
        f"{_fmt(champ['threshold'])}."
    )


def _auc_margin(champ: dict[str, Any]) -> float:
    ci = champ["auc_ci"]
    return 0.0 if ci is None else (float(ci[1]) - float(ci[0])) / 2.0


def _auc_check(cand: dict[str, Any], champ: dict[str, Any], margin: float) -> tuple[bool, str]:
    floor = champ["auc"] - margin
    ok = cand["auc"] >= floor
    if champ["auc_ci"] is None:
        basis = "the champion has no AUC confidence interval, so no margin is allowed"
    else:
        basis = f"the champion's AUC {_fmt(champ['auc'])} minus its 95% CI half-width {_fmt(margin)}"
    verdict = "is not worse than" if ok else "is worse than"
    return ok, f"AUC {_fmt(cand['auc'])} {verdict} the floor {_fmt(floor)} ({basis})."


def promotion_decision(candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> dict[str, Any]:
    """Decide whether ``candidate`` replaces ``champion`` (see the module docstring).

    Returns a JSON-serialisable dict: ``promote`` (bool), ``reasons`` (one readable
    sentence per check, in the order applied; all of them, pass or fail, so the record
    explains itself) and ``comparison`` with both summaries (threshold, sensitivity,
    specificity, auc, auc_ci, n, n_pos, n_neg), the deltas (candidate - champion),
    ``auc_margin``, ``auc_floor`` and per-check booleans under ``checks``. Raises
    ValueError if either input lacks the ``binary`` section.
    """
    cand = _summary(candidate, "candidate")
    if champion is None:
        return {
            "promote": True,
            "reasons": ["There is no champion model, so the candidate is promoted."],
            "comparison": {"candidate": cand, "champion": None, "checks": {}},
        }
    champ = _summary(champion, "champion")
    comparison: dict[str, Any] = {"candidate": cand, "champion": champ}
    problems = _comparability_problems(cand, champ)
    if problems:
        comparison["checks"] = {"comparable": False}
        return {"promote": False, "reasons": problems, "comparison": comparison}

    margin = _auc_margin(champ)
    sens_ok, sens_reason = _sensitivity_check(cand, champ)
    auc_ok, auc_reason = _auc_check(cand, champ, margin)
    comparison.update(
        {
            "sensitivity_delta": cand["sensitivity"] - champ["sensitivity"],
            "auc_delta": cand["auc"] - champ["auc"],
            "auc_margin": margin,
            "auc_floor": champ["auc"] - margin,
            "checks": {"comparable": True, "sensitivity": sens_ok, "auc": auc_ok},
        }
    )
    promote = sens_ok and auc_ok
    verdict = "The candidate is promoted." if promote else "The candidate is not promoted; the champion stays active."
    return {"promote": promote, "reasons": [sens_reason, auc_reason, verdict], "comparison": comparison}
