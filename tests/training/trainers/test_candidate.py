"""Selection on unseen sources: fold models never see the source they are scored on."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.training.services.test_runs import LABELS, blob_png
from training.trainers.candidate import Arrays, _calibrate, build_candidate

SPEC = {
    "train": {
        "architecture": "cxr_net",
        "input_size": 32,
        "channels": 1,
        "labels": LABELS,
        "epochs": 3,
        "batch_size": 8,
        "early_stopping_patience": 2,
        "balancing": "source_label",
        "epoch_samples": 32,
        "augment": None,
        "seed": 3,
    },
    "preprocess": {"input_size": 32, "lung_crop": False},
    "target_sensitivity": 0.9,
    "balance_groups": {"a": "adult", "b": "adult", "c": "pediatric"},
    "group_weights": {},
    "selection": {"holdout_folds": [["a"], ["b"]]},
    "export_quantization": "none",
}


def _items(root: Path) -> dict[str, list[SimpleNamespace]]:
    splits: dict[str, list[SimpleNamespace]] = {"train": [], "val": [], "test": []}
    for source, label_indices in (("a", (0, 3)), ("b", (0, 3)), ("c", (0, 1, 2))):
        for li in label_indices:
            for n in range(6):
                path = root / f"{source}-{li}-{n}.png"
                path.write_bytes(blob_png(li, seed=hash((source, li, n)) % 10_000))
                split = "val" if n == 0 else "train"
                splits[split].append(SimpleNamespace(key=path.name, path=path, label=LABELS[li], source=source))
    return splits


@pytest.mark.slow
def test_candidate_selected_on_unseen_sources(tmp_path: Path) -> None:
    seen: list[dict] = []
    build = build_candidate(
        spec=SPEC,
        splits=_items(tmp_path),
        workdir=tmp_path / "work",
        artifact_dir=tmp_path / "artifact",
        cache_dir=tmp_path / "cache",
        progress=seen.append,
    )
    unseen = build.metrics["unseen_sources"]
    assert [f["holdout"] for f in unseen["folds"]] == [["a"], ["b"]]
    assert set(unseen["per_source"]) == {"a", "b"}  # c is never held out: it is in no fold
    assert unseen["per_source"]["a"]["n"] == 12 and unseen["per_source"]["a"]["auc"] is not None
    assert all(f["n_train"] == 42 - 12 for f in unseen["folds"])  # train+val pool minus the fold
    assert all(0.0 <= f["auc"] <= 1.0 for f in unseen["folds"])
    assert 1 <= unseen["final_epochs"] <= 3
    assert build.metrics["threshold_selection"]["chosen_on"].startswith("unseen sources (fold models)")
    assert build.metrics["threshold_selection"]["weighting"] == "each source equally"
    assert build.metrics["training"]["epochs_run"] == unseen["final_epochs"]
    stages = {r.get("stage", "") for r in seen}
    assert {"fold 1 of 2 (without a)", "fold 2 of 2 (without b)", "final model (every source)", "export"} <= stages
    card = (tmp_path / "artifact" / "model_card.md").read_text()
    assert "On sources the model never saw" in card and "| a | 12 |" in card
    thresholds = json.loads((tmp_path / "artifact" / "thresholds.json").read_text())
    assert thresholds["abnormal"] == pytest.approx(build.metrics["threshold_selection"]["threshold"] - 1e-6)
    assert {"temperature", "abnormal_scale", "abnormal_bias"} <= set(thresholds)
    assert build.metrics["cause_validation"] == {
        "adult": {"status": "unvalidated", "causes_never_seen": ["PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL"]},
        "pediatric": {"status": "unvalidated", "causes_never_seen": ["COVID19"]},
    }
    lung = build.metrics["gradcam_lung_mass"]
    assert lung["lung_model"] == "lungfield-v1" and lung["n"] >= 0


def test_folds_naming_absent_sources_fall_back_to_the_validation_split(tmp_path: Path) -> None:
    spec = {**SPEC, "train": {**SPEC["train"], "epochs": 1}, "selection": {"holdout_folds": [["elsewhere"]]}}
    build = build_candidate(
        spec=spec,
        splits=_items(tmp_path),
        workdir=tmp_path / "work",
        artifact_dir=tmp_path / "artifact",
        cache_dir=tmp_path / "cache",
    )
    assert "unseen_sources" not in build.metrics
    assert build.metrics["threshold_selection"]["chosen_on"] == "validation split"
    assert np.isfinite(build.metrics["val"]["binary"]["auc"])


def test_the_operating_point_ranks_by_the_binary_logit_however_confused_the_causes() -> None:
    """Abnormal films whose cause the model gets wrong (as on adult sources, COVID-19 vs other
    pneumonia) push the temperature up. The flag must still rank films by the model's own
    odds of abnormal: a 4-class temperature reordered them (normals with three similar
    abnormal logits rose above pneumonias), so this fails on the temperature-only rule."""
    from classifier.inference.scores import binary_logit, served_probabilities
    from training.evaluation import roc_auc

    rng = np.random.default_rng(0)
    n = 300
    normals = rng.normal(0, 1, (n, 4))
    normals[:, 0] += rng.uniform(1, 6, n)
    ill = rng.normal(0, 1, (n, 4))
    ill[np.arange(n), rng.integers(1, 4, n)] += rng.uniform(1, 6, n)  # a confident cause, often the wrong one
    logits = np.concatenate([normals, ill])
    labels = ["NORMAL"] * n + [LABELS[i] for i in rng.integers(1, 4, n)]
    items = [
        SimpleNamespace(key=str(i), path=Path(f"{i}.png"), label=label, source="s") for i, label in enumerate(labels)
    ]
    arrays = Arrays(np.zeros((2 * n, 1, 1, 1), np.uint8), np.zeros((2 * n, 4)), items)
    calibration, chosen, threshold = _calibrate(logits, arrays, LABELS, 0.95)
    assert calibration["temperature"] > 1.5  # the causes are confused
    y = np.array(labels) != "NORMAL"
    p_abnormal = 1 - served_probabilities(logits, LABELS, calibration)[:, 0]
    assert roc_auc(y, p_abnormal) == pytest.approx(roc_auc(y, binary_logit(logits, LABELS)), abs=1e-12)
    assert (p_abnormal[y] >= threshold).mean() >= 0.95
    assert chosen["threshold"] == pytest.approx(threshold + 1e-6)


def test_the_final_model_runs_the_folds_epochs_and_keeps_the_last() -> None:
    from training.trainers.candidate import _final_spec
    from training.trainers.train import TrainSpec

    lite = TrainSpec(
        architecture="efficientnet_lite0",
        epochs=2,
        fine_tune_epochs=8,
        early_stopping_metric="val_auc",
        weight_averaging=True,
    )
    final = _final_spec(lite, 5)
    assert (final.epochs, final.fine_tune_epochs, final.restore_best_epoch) == (2, 3, False)
    assert final.weight_averaging and final.early_stopping_patience > final.total_epochs
    # Stopped before fine-tuning in the folds: no fine-tuning, so nothing to average.
    head_only = _final_spec(lite, 1)
    assert (head_only.epochs, head_only.fine_tune_epochs, head_only.weight_averaging) == (1, 0, False)
    assert not head_only.restore_best_epoch
