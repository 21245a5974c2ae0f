"""python manage.py train_model [--dataset NAME ...] [--architecture A] [--epochs N] ... [--async]"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from training.models import Dataset, TrainingRun
from training.services.runs import RunResumeRefused, training_run_execute, training_run_resume, training_run_start


class Command(BaseCommand):
    help = (
        "Train a candidate model version on imported datasets and reviewed images, evaluate it, register "
        "it and promote it only if it passes the champion/challenger gate."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dataset", action="append", default=[], help="Dataset name (repeatable; default all).")
        parser.add_argument("--no-reviews", action="store_true", help="Leave radiologist-reviewed images out.")
        parser.add_argument("--architecture")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--learning-rate", type=float)
        parser.add_argument("--input-size", type=int)
        parser.add_argument(
            "--balancing", choices=["class_weights", "undersample", "oversample", "none", "source_label"]
        )
        parser.add_argument("--horizontal-flip", action="store_true", help="Augment with left-right flips.")
        parser.add_argument(
            "--weights",
            help="Backbone weights: a local file, or 'imagenet' (EfficientNet-Lite: the converted weights in "
            "training/pretrained, offline; other keras.applications backbones need --allow-download).",
        )
        parser.add_argument(
            "--allow-download", action="store_true", help="Let keras.applications download ImageNet weights."
        )
        parser.add_argument("--views", help="Comma-separated view positions to keep, e.g. PA,AP.")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--spec", type=Path, help="A JSON run spec (merged under the flags).")
        parser.add_argument("--async", dest="run_async", action="store_true", help="Queue it for a training worker.")
        parser.add_argument(
            "--resume", type=int, metavar="RUN_ID", help="Re-execute a crashed run from its checkpoint."
        )
        parser.add_argument(
            "--export-to", type=Path, help="Copy the new version's artifact here (e.g. training/shipped)."
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["resume"]:
            self.stdout.write(f"resuming training run {opts['resume']}")
            try:
                resumed = training_run_resume(run_id=opts["resume"])
            except RunResumeRefused as exc:
                raise CommandError(str(exc)) from None
            self._report(resumed, opts["export_to"])
            return
        datasets = list(Dataset.objects.filter(name__in=opts["dataset"]))
        if len(datasets) != len(set(opts["dataset"])):
            raise CommandError("unknown dataset name in --dataset")
        try:
            run = training_run_start(
                spec=self._spec(opts),
                datasets=datasets,
                include_reviews=not opts["no_reviews"],
                trigger=TrainingRun.Trigger.COMMAND,
                enqueue=opts["run_async"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if opts["run_async"]:
            self.stdout.write(f"training run {run.pk} queued")
            return
        self.stdout.write(f"training run {run.pk}: {json.dumps(run.spec['train'])}")
        finished = training_run_execute(run_id=run.pk)
        if finished is None:
            raise CommandError(f"run {run.pk} is being executed elsewhere")
        self._report(finished, opts["export_to"])

    def _spec(self, opts: dict[str, Any]) -> dict[str, Any]:
        spec = json.loads(opts["spec"].read_text()) if opts["spec"] else {}
        train, pre = spec.setdefault("train", {}), spec.setdefault("preprocess", {})
        for flag, key in (
            ("architecture", "architecture"),
            ("epochs", "epochs"),
            ("batch_size", "batch_size"),
            ("learning_rate", "learning_rate"),
            ("balancing", "balancing"),
            ("weights", "weights"),
            ("seed", "seed"),
        ):
            if opts[flag] is not None:
                train[key] = opts[flag]
        if opts["allow_download"]:
            train["allow_download"] = True
        if opts["horizontal_flip"]:
            train.setdefault("augment", {})["horizontal_flip"] = True
        if opts["input_size"]:
            pre["input_size"] = opts["input_size"]
        if opts["views"]:
            spec["views"] = [v.strip().upper() for v in opts["views"].split(",") if v.strip()]
        return spec

    def _report(self, run: TrainingRun, export_to: Path | None) -> None:
        version = run.model_version
        if version is None:
            raise CommandError(f"training run {run.pk} finished without a model version")
        val = version.metrics.get("val", {}).get("binary", {})
        self.stdout.write(
            f"registered {version} ({version.status}); val sensitivity {val.get('sensitivity')}, "
            f"specificity {val.get('specificity')}, AUC {val.get('auc')}; "
            f"training {version.metrics.get('training', {}).get('seconds')} s"
        )
        for reason in run.promotion.get("reasons", []):
            self.stdout.write(f"  gate: {reason}")
        if export_to is not None:
            if export_to.exists():
                shutil.rmtree(export_to)
            shutil.copytree(version.artifact_dir, export_to)
            for path in export_to.rglob("*"):
                path.chmod(0o644 if path.is_file() else 0o755)
            self.stdout.write(f"artifact copied to {export_to}")
