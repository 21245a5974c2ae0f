"""python manage.py inspect_image FILE [--json] [--config CFG] [--save-stages DIR]"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from classifier.imaging import ImagingError, PreprocessConfig, inspect_bytes
from classifier.services.uploads import upload_limits


class Command(BaseCommand):
    help = (
        "Decode a DICOM/PNG/JPEG file with the upload limits, print its metadata, pixel statistics and "
        "what each preprocessing stage did; exit non-zero with the reason when it cannot be used."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--config", type=Path, help="PreprocessConfig as JSON (default: the active model's).")
        parser.add_argument("--save-stages", type=Path, metavar="DIR", help="Write each stage's image as PNG.")

    def handle(
        self, *args: Any, file: Path, json: bool, config: Path | None, save_stages: Path | None, **options: Any
    ) -> None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        try:
            report = inspect_bytes(
                data, config=self._config(config), limits=upload_limits(), save_stages_to=save_stages
            )
        except ImagingError as exc:
            raise CommandError(f"{file.name}: {exc.message} [{exc.code}]") from exc
        if json:
            self.stdout.write(_dumps(report))
            return
        self.stdout.write(
            f"{file.name}: {report['format']} {report['width']}x{report['height']}, "
            f"{report['bit_depth']}-bit, decoded in {report['decode_ms']:.1f} ms"
        )
        for key, value in report["metadata"].items():
            if value not in (None, ""):
                self.stdout.write(f"  {key}: {value}")
        self.stdout.write("  pixels: " + ", ".join(f"{k} {v}" for k, v in report["pixel_statistics"].items()))
        for stage in report["stages"]:
            summary = ", ".join(f"{k}={v}" for k, v in stage.get("summary", {}).items())
            self.stdout.write(f"  stage {stage['name']:<10} {stage['elapsed_ms']:7.1f} ms  {summary}")
        if save_stages:
            self.stdout.write(f"  stage images written to {save_stages}")

    def _config(self, path: Path | None) -> PreprocessConfig:
        if path is not None:
            try:
                return PreprocessConfig.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                raise CommandError(f"invalid --config {path}: {exc}") from exc
        from training.registry import active_version

        version = active_version()
        return PreprocessConfig.from_dict(version.preprocess_config) if version else PreprocessConfig()


def _dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, default=str)
