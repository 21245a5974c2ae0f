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

:func:`gate_decision` is what training runs and hand promotions call. It chooses the
evidence: a model's figures on the sample's validation split come from hospitals it
trained on, which flatters a model that learnt the hospitals, so when the candidate was
selected on whole sources it never saw (``metrics["unseen_sources"]``) those decide:

* both have unseen-source evidence: :func:`promotion_decision` on the two pooled
  unseen-source evaluations (which must be on the same images);
* only the candidate has it: the champion's performance on a new hospital is unknown,
  so the champion/challenger comparison on the validation split is kept for the record
  but does not decide; the candidate must clear floors instead. On unseen sources: its
  AUC's 95 % CI lies above 0.5; its sensitivity at its threshold is not significantly
  below the target (the target is inside or below the Wilson 95 % interval); and the
  flag carries information there (Youden's J > 0 at the lower bounds: flagging every
  image meets any sensitivity target). On the validation split: its specificity is not
  significantly below the champion's (no flood of false alarms where both are known);
* only the champion has it: refused (nothing shows the candidate holds up as well on a
  new hospital);
* neither: :func:`promotion_decision` on the validation split, as before.

Whenever unseen-source figures decide, the candidate's sensitivity on the validation split
must not be significantly below the target either: a new-hospital model must still find the
pneumonias of the hospitals it knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .metrics import wilson_interval

__all__ = ["GATE_RULE", "gate_decision", "promotion_decision"]

# Recorded with every gate_decision(): a verdict taken under an older rule is not reused
# (training.services.promotion recomputes it from the versions' recorded figures).
GATE_RULE = "unseen-sources-1"


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


def _sensitivity_floor(evaluation: Mapping[str, Any], target: float, where: str) -> tuple[bool, str]:
    """Sensitivity at the model's own threshold not significantly below ``target``."""
    binary = evaluation["binary"]
    sensitivity, n_pos = binary.get("sensitivity"), int(binary.get("n_pos") or 0)
    interval = _interval(sensitivity, n_pos)
    if interval is None:
        return False, f"Sensitivity {where} is undefined (no abnormal images), so the target cannot be checked."
    ok = interval[1] >= target
    verdict = "is not significantly below" if ok else "is significantly below"
    return ok, (
        f"Sensitivity {where} {_fmt(sensitivity)} (95% CI {_fmt(interval[0])}-{_fmt(interval[1])}, "
        f"{n_pos} abnormal) at threshold {_fmt(binary.get('threshold'))} {verdict} the target {target:.2f}."
    )


def _interval(rate: float | None, total: int) -> list[float] | None:
    """Wilson 95 % interval of a recorded rate over ``total`` cases; None when undefined."""
    if rate is None or total <= 0:
        return None
    return wilson_interval(round(float(rate) * total), total)


def _flag_informative(evaluation: Mapping[str, Any], where: str) -> tuple[bool, str]:
    """At the model's own threshold the flag carries information: Youden's J (sensitivity +
    specificity - 1) is above 0 even at the lower 95 % bounds of both. A model that flags
    every image reaches any sensitivity target with J = 0, and fails here."""
    binary = evaluation["binary"]
    sens = _interval(binary.get("sensitivity"), int(binary.get("n_pos") or 0))
    spec = _interval(binary.get("specificity"), int(binary.get("n_neg") or 0))
    if sens is None or spec is None:
        return False, f"Sensitivity or specificity {where} is undefined, so the flag cannot be shown to inform."
    bound = sens[0] + spec[0] - 1.0
    ok = bound > 0.0
    verdict = "carries information" if ok else "carries no information that can be shown"
    return ok, (
        f"At threshold {_fmt(binary.get('threshold'))} {where} the flag {verdict}: sensitivity "
        f"{_fmt(binary.get('sensitivity'))}, specificity {_fmt(binary.get('specificity'))}, Youden's J at their "
        f"lower 95% bounds {bound:+.4f} (must be above 0)."
    )


def _specificity_not_below(cand: Mapping[str, Any], champ: Mapping[str, Any], where: str) -> tuple[bool, str]:
    """The candidate's specificity not significantly below the champion's: the champion's
    figure lies inside or below the candidate's Wilson 95 % interval."""
    c, k = cand["binary"], champ["binary"]
    interval = _interval(c.get("specificity"), int(c.get("n_neg") or 0))
    if interval is None or k.get("specificity") is None:
        return False, f"Specificity {where} is undefined, so it cannot be compared."
    ok = interval[1] >= float(k["specificity"])
    verdict = "is not significantly below" if ok else "is significantly below"
    return ok, (
        f"Specificity {where} {_fmt(c.get('specificity'))} (95% CI {_fmt(interval[0])}-{_fmt(interval[1])}) "
        f"{verdict} the champion's {_fmt(k['specificity'])}: false alarms on the hospitals both know."
    )


def _auc_above_chance(evaluation: Mapping[str, Any], where: str) -> tuple[bool, str]:
    binary = evaluation["binary"]
    auc, ci = binary.get("auc"), (binary.get("ci") or {}).get("auc")
    if auc is None or ci is None:
        return False, f"AUC {where} has no confidence interval, so it cannot be shown to beat chance."
    ok = float(ci[0]) > 0.5
    verdict = "is above" if ok else "is not above"
    return ok, f"AUC {where} {_fmt(auc)} (95% CI {_fmt(ci[0])}-{_fmt(ci[1])}) {verdict} chance (0.5)."


def gate_decision(
    candidate_val: Mapping[str, Any],
    champion_val: Mapping[str, Any] | None,
    *,
    candidate_unseen: Mapping[str, Any] | None = None,
    champion_unseen: Mapping[str, Any] | None = None,
    target_sensitivity: float = 0.95,
) -> dict[str, Any]:
    """Decide on the evidence the module docstring describes.

    ``*_val``: evaluate_predictions() results on the same validation files (the champion's
    None when there is no champion); ``*_unseen``: a version's ``metrics["unseen_sources"]``
    (``pooled`` is an evaluate_predictions() result on fold models' predictions for the
    sources they never saw) or None. Returns the :func:`promotion_decision` shape plus
    ``rule`` (GATE_RULE), ``basis`` ("no champion", "validation split", "unseen sources",
    "unseen-source floors") and, when the validation split did not decide,
    ``validation_split`` (its comparison, for the record).
    """
    decision = _decide(
        candidate_val,
        champion_val,
        candidate_unseen=candidate_unseen,
        champion_unseen=champion_unseen,
        target_sensitivity=target_sensitivity,
    )
    return {**decision, "rule": GATE_RULE}


def _decide(
    candidate_val: Mapping[str, Any],
    champion_val: Mapping[str, Any] | None,
    *,
    candidate_unseen: Mapping[str, Any] | None = None,
    champion_unseen: Mapping[str, Any] | None = None,
    target_sensitivity: float,
) -> dict[str, Any]:
    if champion_val is None:
        return {**promotion_decision(candidate_val, None), "basis": "no champion"}
    cand_pooled = (candidate_unseen or {}).get("pooled")
    champ_pooled = (champion_unseen or {}).get("pooled")
    if cand_pooled is None and champ_pooled is None:
        decision = promotion_decision(candidate_val, champion_val)
        return {**decision, "basis": "validation split"}
    if cand_pooled is None:
        return {
            "promote": False,
            "basis": "unseen sources",
            "reasons": [
                "The active model was selected on sources it never trained on and the candidate was not, so "
                "nothing shows the candidate does as well on a new hospital. The candidate is not promoted."
            ],
            "comparison": {"checks": {"comparable": False}},
        }
    on_val = promotion_decision(candidate_val, champion_val)  # validates both inputs
    val_ok, val_reason = _sensitivity_floor(candidate_val, target_sensitivity, "on the validation split")
    if champ_pooled is not None:
        decision = promotion_decision(cand_pooled, champ_pooled)
        checks = decision["comparison"].setdefault("checks", {})
        if checks.get("comparable") is False:
            return {**decision, "basis": "unseen sources", "validation_split": on_val}
        checks["validation_sensitivity"] = val_ok
        promote = bool(decision["promote"]) and val_ok
        reasons = [f"On sources each model never saw: {r}" for r in decision["reasons"][:-1]] + [val_reason]
        verdict = (
            "The candidate is promoted." if promote else "The candidate is not promoted; the champion stays active."
        )
        return {
            **decision,
            "promote": promote,
            "reasons": [*reasons, verdict],
            "basis": "unseen sources",
            "validation_split": on_val,
        }
    where = "on sources the candidate never saw"
    auc_ok, auc_reason = _auc_above_chance(cand_pooled, where)
    sens_ok, sens_reason = _sensitivity_floor(cand_pooled, target_sensitivity, where)
    flag_ok, flag_reason = _flag_informative(cand_pooled, where)
    spec_ok, spec_reason = _specificity_not_below(candidate_val, champion_val, "on the validation split")
    promote = auc_ok and sens_ok and flag_ok and val_ok and spec_ok
    reasons = [
        "The active model has no figures on sources it never trained on: its validation-split figures come from "
        "hospitals it learnt, so they cannot show which model does better on a new hospital and do not decide "
        "(the comparison is kept under validation_split). The candidate must clear the new-hospital floors.",
        auc_reason,
        sens_reason,
        flag_reason,
        val_reason,
        spec_reason,
        "The candidate is promoted." if promote else "The candidate is not promoted; the champion stays active.",
    ]
    return {
        "promote": promote,
        "basis": "unseen-source floors",
        "reasons": reasons,
        "comparison": {
            "candidate": _summary(cand_pooled, "candidate"),
            "champion": None,
            "checks": {
                "auc_above_chance": auc_ok,
                "unseen_sensitivity": sens_ok,
                "unseen_flag_informative": flag_ok,
                "validation_sensitivity": val_ok,
                "validation_specificity": spec_ok,
            },
        },
        "validation_split": on_val,
    }
