"""python manage.py evaluate_model [--version V] DIR [--json]"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from classifier.artifact_store import artifact_local_dir
from classifier.findings import NOTICE
from classifier.models import Label
from training import registry
from training.models import Evaluation, ModelVersion
from training.services.evaluate import evaluate_files, files_from_label_folders, labels_outside_schema


class Command(BaseCommand):
    help = (
        "Evaluate a model version (default: the active one) on DIR/<LABEL>/files through the served "
        "inference path; print and store binary, per-class, calibration and per-source figures. A label "
        "folder outside the model's label schema (plus PNEUMONIA, cause unknown) is refused, by name."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # Our --version selects a model version; it replaces Django's "print version and exit".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--version", type=int, help="Version number (default: active).")
        parser.add_argument("--name", default=registry.DEFAULT_NAME)
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the AUC CI.")
        parser.add_argument(
            "--no-lung-mass",
            action="store_true",
            help="Skip the share of Grad-CAM mass inside the lung field on abnormal images (a heatmap pass).",
        )

    def handle(
        self,
        *args: Any,
        directory: Path,
        version: int | None,
        name: str,
        json: bool,
        bootstrap: int,
        no_lung_mass: bool = False,
        **options: Any,
    ) -> None:
        chosen = (
            ModelVersion.objects.filter(name=name, version=version).first()
            if version
            else registry.active_version(name)
        )
        if chosen is None:
            raise CommandError("no such model version" if version else "no active model version")
        files = files_from_label_folders(directory)
        if not files:
            raise CommandError(f"no images found under {directory}/<LABEL>/")
        # The model's classes plus the ground-truth-only PNEUMONIA (cause unknown).
        schema = sorted(set(chosen.labels) | {Label.PNEUMONIA.value})
        unknown = labels_outside_schema(files, schema)
        if unknown:
            named = ", ".join(f"{label}/ ({n} files)" for label, n in unknown.items())
            raise CommandError(
                f"label folders outside the label schema: {named}; expected one of {', '.join(schema)}. "
                "Rename or move them: a folder's name is its files' ground truth."
            )
        report = evaluate_files(
            artifact_local_dir(chosen),
            files,
            threshold=float(chosen.thresholds["abnormal"]),
            labels=list(chosen.labels),
            runtime=settings.CXR["INFERENCE_RUNTIME"],
            n_bootstrap=bootstrap,
            lung_mass=not no_lung_mass,
        )
        report["model"] = {
            "name": chosen.name,
            "version": chosen.version,
            "sha256": chosen.artifact_sha256.get("model.tflite", ""),
        }
        Evaluation.objects.create(model_version=chosen, directory=str(directory.resolve())[-500:], report=report)
        if json:
            self.stdout.write(_json_dumps(report))
        else:
            self._print(report)

    def _print(self, report: dict[str, Any]) -> None:
        b, ci = report["binary"], report["binary"].get("ci", {})

        def fig(key: str) -> str:
            value, interval = b.get(key), ci.get(key)
            if value is None:
                return f"{key:<12} n/a"
            text = f"{key:<12} {value:.3f}"
            return text + (f"  (95% CI {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")

        model = report["model"]
        self.stdout.write(
            f"{model['name']} v{model['version']} on {report['n']} images (threshold {b['threshold']:.4f}); {NOTICE}"
        )
        for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "auc"):
            self.stdout.write("  " + fig(key))
        lung = report.get("gradcam_lung_mass")
        if lung and lung.get("n"):
            self.stdout.write(
                f"  Grad-CAM mass inside the lung field (abnormal images): median {lung['median']:.3f}, "
                f"mean {lung['mean']:.3f}, {lung['at_or_above_target']:.0%} at or above {lung['target']:.0%} "
                f"(n={lung['n']})"
            )
        mc = report["multiclass"]
        self.stdout.write(f"  4-class accuracy {mc['accuracy']}")
        for label, figures in mc["per_class"].items():
            self.stdout.write(
                f"    {label:<20} precision {figures['precision']} recall {figures['recall']} "
                f"f1 {figures['f1']} auc {figures['auc_ovr']} (n={figures['support']})"
            )
        self.stdout.write("  confusion (rows true, columns predicted: " + ", ".join(mc["col_labels"]) + ")")
        for row_label, row in zip(mc["row_labels"], mc["confusion_matrix"], strict=False):
            self.stdout.write(f"    {row_label:<20} {row}")
        self.stdout.write(f"  calibration ECE {report['calibration']['ece']}")
        for source, figures in (report.get("per_source") or {}).items():
            self.stdout.write(
                f"  source {source:<10} n={figures['n']} sensitivity {figures['sensitivity']} "
                f"specificity {figures['specificity']}"
            )
        for failure in report["failed_files"]:
            self.stdout.write(f"  could not read {failure['file']}: {failure['reason']}")


def _json_dumps(report: dict[str, Any]) -> str:
    """One object: binary figures at the top level (from evaluate_predictions) plus per-class."""
    return json.dumps(
        {
            **report,
            "multiclass_accuracy": report["multiclass"]["accuracy"],
            "per_class": report["multiclass"]["per_class"],
        },
        default=float,
    )
