"""The JSON spec of a training run, stored on TrainingRun.spec and with each version.

    {"train": TrainSpec.to_dict(), "preprocess": PreprocessConfig.to_dict(),
     "val_fraction": 0.15, "target_sensitivity": 0.95, "views": ["PA", "AP"] or [],
     "balance_groups": {source: group} or {}}

``balance_groups`` balances normal vs abnormal within each group of sources (see
training.pipeline.group_balance); the default groups the public collections by age.

Partial specs (from the admin form, the API or ``train_model`` flags) are completed from
the default recipe, so every stored run is fully described. No TensorFlow import.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings


# Kermany is the only pediatric collection in the public data; everything else is adult.
DEFAULT_BALANCE_GROUPS = {"kermany": "pediatric", "nih": "adult", "hannover": "adult", "ieee8023": "adult",
                          "cxnet": "adult"}


def spec_with_defaults(partial: dict[str, Any] | None) -> dict[str, Any]:
    """A complete, validated run spec; unknown keys raise ValueError (via from_dict)."""
    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.recipes import DEFAULT_RECIPE
    from training.trainers.train import TrainSpec

    partial = dict(partial or {})
    unknown = set(partial) - {"train", "preprocess", "val_fraction", "target_sensitivity", "views", "balance_groups"}
    if unknown:
        raise ValueError(f"unknown spec keys: {', '.join(sorted(unknown))}")
    defaults = DEFAULT_RECIPE.spec.to_dict()
    train = {**defaults, **partial.get("train", {})}
    if isinstance(train.get("augment"), dict) and defaults.get("augment"):
        train["augment"] = {**defaults["augment"], **train["augment"]}  # override single knobs
    preprocess = {**DEFAULT_RECIPE.preprocess, **partial.get("preprocess", {})}
    train["input_size"] = preprocess["input_size"]  # one source of truth for the input size
    train["channels"] = preprocess.get("channels", train.get("channels", 1))
    spec = {
        "train": TrainSpec.from_dict(train).to_dict(),
        "preprocess": PreprocessConfig.from_dict(preprocess).to_dict(),
        "val_fraction": float(partial.get("val_fraction", 0.15)),
        "target_sensitivity": float(partial.get("target_sensitivity", settings.CXR["TARGET_SENSITIVITY"])),
        "views": [str(v).upper() for v in partial.get("views", [])],
        "balance_groups": dict(partial.get("balance_groups", DEFAULT_BALANCE_GROUPS)),
    }
    if not 0 < spec["val_fraction"] < 0.5:
        raise ValueError("val_fraction must be between 0 and 0.5")
    return spec
