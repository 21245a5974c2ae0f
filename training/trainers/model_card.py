"""The model card written into every artifact, and the validation status it declares.

The machine-readable part is ``classifier.findings.cause_validation`` (re-exported here
for the candidate builder): for each patient group whether the suggested cause was
trained on every cause in that group. The product shows the cause as the headline only
where it is "validated" (classifier.findings). Django-free.
"""

from __future__ import annotations

from typing import Any

from classifier.findings import cause_validation
from classifier.inference.scores import has_binary_calibration

__all__ = ["cause_validation", "model_card"]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ci(values: Any) -> str:
    return f" ({values[0]:.3f}-{values[1]:.3f})" if values else ""


def model_card(
    *, spec: dict[str, Any], metrics: dict[str, Any], snap: dict[str, Any], thresholds: dict[str, Any]
) -> str:
    """A short, honest model card in Markdown."""
    lines = [
        "# Chest X-ray triage model",
        "",
        "**Decision support, not a diagnosis.** Every result must be read by a clinician.",
        "",
        "## Intended use",
        "Prioritise frontal chest radiographs (PA/AP) for reading and flag those likely to show pneumonia. "
        "The primary finding is *abnormal, likely pneumonia* with p(abnormal); the most likely cause "
        "(bacterial, viral, COVID-19) is a suggestion whose validation status per patient group is below. "
        "Not for lateral views, CT, or as a stand-alone diagnosis.",
        "",
        "## Data",
        f"Training snapshot sha256 `{snap['sha256'][:16]}`; images per split (source/label):",
        "",
    ]
    for split, counts in snap["counts"].items():
        lines.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    train = spec.get("train", {})
    lines += [
        "",
        "## Training",
        f"Architecture `{train.get('architecture')}`, input {train.get('input_size')} px, balancing "
        f"`{train.get('balancing')}`; preprocessing: lung field "
        f"{'by the network ' + repr(spec.get('preprocess', {}).get('lung_model')) if spec.get('preprocess', {}).get('lung_model') else 'by the intensity heuristic'}"
        f"{', masked outside the lungs' if spec.get('preprocess', {}).get('lung_mask') else ''}.",
        "",
    ]
    chosen = metrics.get("threshold_selection", {}).get("chosen_on", "validation split")
    lines += [
        "## Operating point",
        f"Abnormal if p(abnormal) >= {thresholds['abnormal']:.4f}, chosen on the {chosen} for sensitivity "
        f">= {thresholds['target_sensitivity']}; "
        + (
            f"p(abnormal) = sigmoid({thresholds['abnormal_scale']:.3f} x binary logit "
            f"{thresholds['abnormal_bias']:+.3f}) and the suggested cause at temperature "
            f"{thresholds['temperature']:.3f}, both fitted on the same predictions."
            if has_binary_calibration(thresholds)
            else f"temperature {thresholds['temperature']:.3f} fitted on the same predictions."
        ),
        "",
    ]
    unseen = metrics.get("unseen_sources")
    if unseen:
        pooled = unseen["pooled"]
        lines += [
            "## On sources the model never saw",
            "One model per fold was trained without the fold's sources; these figures are those models' "
            "predictions on the held-out sources, pooled (each image predicted by a model that never saw its "
            f"collection). Folds (each fold model's AUC on its held-out images): "
            f"{'; '.join(', '.join(f['holdout']) + ' ' + _fmt(f.get('auc')) for f in unseen['folds'])}. "
            f"The final model trained {unseen['final_epochs']} epochs (median best epoch of the folds).",
            "",
            f"Pooled: n={pooled['n']}, AUC {_fmt(pooled['auc'])}{_ci(pooled['binary']['ci'].get('auc'))}, "
            f"sensitivity {_fmt(pooled['sensitivity'])}, specificity {_fmt(pooled['specificity'])}, "
            f"4-class accuracy {_fmt(pooled['multiclass']['accuracy'])}, ECE 4-class "
            f"{_fmt(pooled['calibration']['ece'])} / p(abnormal) {_fmt(pooled['calibration']['ece_abnormal'])}.",
            "",
            "| held-out source | n | abnormal | AUC (95 % CI) | sensitivity | specificity | 4-class acc |",
            "|---|---|---|---|---|---|---|",
        ]
        for source, f in sorted(unseen["per_source"].items()):
            lines.append(
                f"| {source} | {f['n']} | {f['n_abnormal']} | {_fmt(f['auc'])}{_ci(f['auc_ci'])} | "
                f"{_fmt(f['sensitivity'])} | {_fmt(f['specificity'])} | {_fmt(f['accuracy_4class'])} |"
            )
        lines.append("")
    lines += [
        "## Metrics of the final model (binary: abnormal vs normal)",
        "",
        "| split | n | sensitivity | specificity | AUC | 4-class accuracy | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        if split in metrics:
            b, m = metrics[split]["binary"], metrics[split]["multiclass"]
            lines.append(
                f"| {split} | {metrics[split]['n']} | {_fmt(b['sensitivity'])} | {_fmt(b['specificity'])} | "
                f"{_fmt(b['auc'])} | {_fmt(m['accuracy'])} | {_fmt(metrics[split]['calibration']['ece'])} |"
            )
    lines += ["", "These splits hold other patients of the training collections; they flatter the model.", ""]
    lung = metrics.get("gradcam_lung_mass")
    if lung:
        lines += [
            "## Where the model looks",
            f"Share of Grad-CAM mass inside the lung field on abnormal validation images: median "
            f"{_fmt(lung['median'])}, mean {_fmt(lung['mean'])} (n={lung['n']}; target >= 0.70).",
            "",
        ]
    lines += ["## Suggested cause: validation status", ""]
    for group, status in sorted((metrics.get("cause_validation") or {}).items()):
        missing = ", ".join(status["causes_never_seen"]) or "none"
        lines.append(f"- {group}: **{status['status']}** (causes never seen in training: {missing})")
    lines += [
        "",
        "## Limits",
        "- Trained on public collections where source, age and view are confounded with the label; held-out, "
        "other-hospital performance is lower than on the sample's own splits.",
        "- No training source has adult bacterial or viral pneumonia: for adults the model cannot tell COVID-19 "
        "from other pneumonia, so the suggested cause is unvalidated there.",
        "- Adult normals come from NIH (USA) and JSRT (Japan, digitised film); adult non-COVID pneumonia only "
        "from NIH opacities and a few web cases.",
        "",
    ]
    return "\n".join(lines)
