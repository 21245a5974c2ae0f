"""The operating-point comparison of ``experiments points`` on fold models' scores."""

from __future__ import annotations

import numpy as np

from training.evaluation import roc_auc
from training.trainers.experiments import FoldScores, operating_point_rules

SCHEMA = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]


def _fold(rng: np.random.Generator, *, offset: float, sources: tuple[str, str], n: int = 200) -> FoldScores:
    """A fold model that ranks its held-out images well (normal logit higher for normals)
    but on its own scale: ``offset`` shifts every image towards "abnormal"."""
    labels = ["NORMAL"] * n + ["COVID19"] * n
    logits = rng.normal(size=(2 * n, 4))
    logits[:n, 0] += 2.0  # normals
    logits[n:, 3] += 2.0  # abnormal
    logits[:, 0] -= offset
    return FoldScores(logits, labels, [sources[0]] * n + [sources[1]] * n)


def test_each_rule_meets_the_target_sensitivity_and_fold_ranks_undo_the_scale_mismatch() -> None:
    rng = np.random.default_rng(3)
    folds = [
        _fold(rng, offset=0.0, sources=("a_normal", "a_ill")),
        _fold(rng, offset=3.0, sources=("b_normal", "b_ill")),
    ]
    rules = operating_point_rules(folds, SCHEMA, target=0.95)
    assert set(rules) == {"pooled", "binary_logit", "fold_temperature", "fold_threshold", "fold_ranks"}
    for name, rule in rules.items():
        # Each source counts equally, so the pooled sensitivity is at the target (ties aside).
        assert rule["pooled"]["sensitivity"] >= 0.94, name
        assert set(rule["per_source"]) == {"a_normal", "a_ill", "b_normal", "b_ill"}
    # Each fold ranks well on its own; pooling two scales ranks worse, and ranks repair it.
    within = [roc_auc(np.array(f.labels) != "NORMAL", -f.logits[:, 0]) for f in folds]
    assert min(within) > 0.9
    assert rules["fold_ranks"]["pooled_auc"] > rules["pooled"]["pooled_auc"] + 0.05
    # The shifted fold needs a much higher threshold of its own; one pooled threshold
    # then flags nearly all of that fold's normals.
    low, high = rules["fold_threshold"]["threshold"]
    assert high > low
    assert (
        rules["fold_threshold"]["per_source"]["b_normal"]["specificity"]
        > (rules["pooled"]["per_source"]["b_normal"]["specificity"])
    )
    assert len(rules["fold_temperature"]["temperature"]) == 2


def test_with_one_fold_the_rules_reduce_to_each_other() -> None:
    """One fold: its own threshold and its ranks flag the same images (ranks are a
    monotone map of its scores), and a per-fold temperature is the pooled one."""
    rng = np.random.default_rng(4)
    rules = operating_point_rules([_fold(rng, offset=1.0, sources=("x_normal", "x_ill"))], SCHEMA, target=0.9)
    assert rules["fold_ranks"]["pooled"] == rules["fold_threshold"]["pooled"]
    assert rules["fold_temperature"]["temperature"] == [rules["pooled"]["temperature"]]
    assert rules["fold_temperature"]["pooled"] == rules["pooled"]["pooled"]


def test_the_epoch_log_takes_runs_without_a_validation_loss(capsys) -> None:
    from training.trainers.experiments import _progress

    record = {"epoch": 2, "epochs": 10, "loss": 1.1, "val_loss": None, "val_accuracy": None, "val_auc": 0.81}
    _progress({**record, "seconds": 159.0, "eta_seconds": 636.0, "stage": "fold 1"})
    line = capsys.readouterr().out
    assert "loss=1.100 val_auc=0.810" in line and "val_loss" not in line
