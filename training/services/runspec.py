"""The JSON spec of a training run, stored on TrainingRun.spec and with each version.

    {"train": TrainSpec.to_dict(), "preprocess": PreprocessConfig.to_dict(),
     "val_fraction": 0.15, "target_sensitivity": 0.95, "views": ["PA", "AP"] or [],
     "balance_groups": {source: group} or {}, "group_weights": {group: weight} or {},
     "selection": {"holdout_folds": [[source, ...], ...]}, "export_quantization": "none"}

``balance_groups`` names the patient group of each source (the default groups the public
collections by age); balancing uses it (``training.trainers.balance``), and so does the
model card's validation status of the suggested cause. ``selection.holdout_folds``
chooses stopping, temperature and threshold on sources held out of training (see
training.trainers.candidate); an empty list chooses them on the validation split.

Partial specs (from the admin form, the API or ``train_model`` flags) are completed from
the default recipe, so every stored run is fully described. No TensorFlow import.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from training.trainers.recipes import DEFAULT_BALANCE_GROUPS

BACKBONE_KEYS = (
    "weights",
    "allow_download",
    "freeze_backbone",
    "fine_tune_epochs",
    "fine_tune_layers",
    "fine_tune_learning_rate",
)
SPEC_KEYS = {
    "train",
    "preprocess",
    "val_fraction",
    "target_sensitivity",
    "views",
    "balance_groups",
    "group_weights",
    "selection",
    "export_quantization",
}


def spec_with_defaults(partial: dict[str, Any] | None) -> dict[str, Any]:
    """A complete, validated run spec; unknown keys raise ValueError (via from_dict)."""
    from classifier.imaging.preprocess import PreprocessConfig
    from training.trainers.recipes import DEFAULT_RECIPE
    from training.trainers.train import TrainSpec

    partial = dict(partial or {})
    unknown = set(partial) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown spec keys: {', '.join(sorted(unknown))}")
    defaults = DEFAULT_RECIPE.spec.to_dict()
    if partial.get("train", {}).get("architecture", defaults["architecture"]) != defaults["architecture"]:
        # Weights and fine-tuning belong to the recipe's backbone, not to another architecture.
        plain = TrainSpec().to_dict()
        defaults.update({k: plain[k] for k in BACKBONE_KEYS})
    train = {**defaults, **partial.get("train", {})}
    if isinstance(train.get("augment"), dict) and defaults.get("augment"):
        train["augment"] = {**defaults["augment"], **train["augment"]}  # override single knobs
    preprocess = {**DEFAULT_RECIPE.preprocess, **partial.get("preprocess", {})}
    if not preprocess.get("lung_crop", True) and "lung_mask" not in partial.get("preprocess", {}):
        preprocess["lung_mask"] = False  # no crop, no lung field to mask with
    train["input_size"] = preprocess["input_size"]  # one source of truth for the input size
    train["channels"] = preprocess.get("channels", train.get("channels", 1))
    spec: dict[str, Any] = {
        "train": TrainSpec.from_dict(train).to_dict(),
        "preprocess": PreprocessConfig.from_dict(preprocess).to_dict(),
        "val_fraction": float(partial.get("val_fraction", 0.15)),
        "target_sensitivity": float(partial.get("target_sensitivity", settings.CXR["TARGET_SENSITIVITY"])),
        "views": [str(v).upper() for v in partial.get("views", [])],
        "balance_groups": dict(partial.get("balance_groups", DEFAULT_BALANCE_GROUPS)),
        "group_weights": {str(k): float(v) for k, v in dict(partial.get("group_weights", {})).items()},
        "selection": {
            "holdout_folds": [
                [str(s) for s in fold]
                for fold in dict(partial.get("selection", DEFAULT_RECIPE.selection)).get("holdout_folds", [])
            ]
        },
        "export_quantization": str(partial.get("export_quantization", DEFAULT_RECIPE.export_quantization)),
    }
    if spec["export_quantization"] not in ("none", "dynamic"):
        raise ValueError("export_quantization must be none or dynamic")
    if not 0 < spec["val_fraction"] < 0.5:
        raise ValueError("val_fraction must be between 0 and 0.5")
    return spec
