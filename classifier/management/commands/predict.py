"""python manage.py predict FILE... [--json] [--out DIR] [--version V] [--runtime tflite|keras]

The same pipeline the workers run (decode -> the version's preprocessing -> model ->
Grad-CAM), on files, without the database rows. Decision support, not a diagnosis.
With --json the output is one JSON array with one object per file, in the order given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from classifier.artifact_store import artifact_local_dir
from classifier.findings import NOTICE
from classifier.imaging import ImagingError
from training import registry
from training.models import ModelVersion, SiteThreshold


class Command(BaseCommand):
    help = (
        "Predict files with the active (or given) model version; --json prints one JSON array "
        "with one object per file, in the order given (a file that cannot be read has 'error' and 'code')."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # Our --version selects a model version; it replaces Django's "print version and exit".
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON array: one object per file, in the order given."
        )
        parser.add_argument("--out", type=Path, default=None, help="Heatmap folder (default: var/predictions).")
        parser.add_argument("--version", type=int)
        parser.add_argument("--runtime", choices=["tflite", "keras"], default=None)
        parser.add_argument("--no-heatmap", action="store_true")

    def handle(
        self,
        *args: Any,
        files: list[Path],
        json: bool,
        out: Path | None,
        version: int | None,
        runtime: str | None,
        no_heatmap: bool,
        **options: Any,
    ) -> None:
        from classifier.inference.pipeline import InferencePipeline

        chosen = (
            ModelVersion.objects.filter(name=registry.DEFAULT_NAME, version=version).first()
            if version
            else registry.active_version()
        )
        if chosen is None:
            raise CommandError("no such model version" if version else "no active model version")
        out = out or Path(settings.VAR_DIR) / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        pipeline = InferencePipeline(
            artifact_local_dir(chosen),
            runtime=runtime or settings.CXR["INFERENCE_RUNTIME"],
            heatmap=not no_heatmap,
            threads=settings.CXR["INFERENCE_THREADS"],
        )
        site = registry.site_threshold_in_force(chosen)  # the threshold the workers flag at
        records = []
        for path in _progress(files):
            record = self._one(pipeline, path, out, chosen, site)
            records.append(record)
            if not json:
                self.stdout.write(_line(record))
        if json:
            self.stdout.write(_dumps(records))
        failures = sum("error" in record for record in records)
        if failures:
            raise CommandError(f"{failures} of {len(files)} files could not be analysed")

    def _one(
        self, pipeline: Any, path: Path, out: Path, version: ModelVersion, site: SiteThreshold | None
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"file": str(path), "model": f"{version.name} v{version.version}"}
        try:
            result = pipeline.run(path.read_bytes())
        except OSError as exc:
            return {**record, "error": f"cannot read the file: {exc.strerror}", "code": "unreadable"}
        except ImagingError as exc:
            return {**record, "error": exc.message, "code": exc.code}
        heatmap = None
        if result.heatmap_png:
            heatmap = out / f"{path.stem}.v{version.version}.heatmap.png"
            heatmap.write_bytes(result.heatmap_png)
        return {
            **record,
            "probabilities": result.probabilities,
            "label": result.label,
            "p_abnormal": result.p_abnormal,
            "flag": result.flag if site is None else result.p_abnormal >= site.threshold,
            "threshold": result.threshold if site is None else site.threshold,
            "site_threshold": site is not None,
            "heatmap": str(heatmap) if heatmap else None,
            "timings_ms": result.timings_ms,
            "notice": NOTICE,
        }


def _progress(files: list[Path]) -> Any:
    if len(files) < 5 or not sys.stderr.isatty():
        return files
    from tqdm import tqdm

    return tqdm(files, unit="image", file=sys.stderr)


def _dumps(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, default=float)


def _line(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['file']}: ERROR {record['error']}"
    flag = "FLAGGED" if record["flag"] else "not flagged"
    probs = ", ".join(f"{k} {v:.2f}" for k, v in record["probabilities"].items())
    return f"{record['file']}: {record['label']} ({flag}, p_abnormal {record['p_abnormal']:.3f}) [{probs}]"
