"""python manage.py import_dataset DIR --layout folders|kermany|covid-metadata [--name N]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from training.services.datasets import SCANNERS, dataset_import


class Command(BaseCommand):
    help = "Validate, store and register the labelled images of a directory as a dataset."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--layout", choices=sorted(SCANNERS), default="folders")
        parser.add_argument("--name", help="Dataset name (default: the directory name).")
        parser.add_argument(
            "--default-split",
            choices=["", "train", "val", "test"],
            default="",
            help="Split for images whose layout names none (default: assigned by patient at training time).",
        )
        parser.add_argument("--limit", type=int, help="Import at most this many files (smoke tests).")

    def handle(
        self,
        *args: Any,
        directory: Path,
        layout: str,
        name: str | None,
        default_split: str,
        limit: int | None,
        **options: Any,
    ) -> None:
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory.")
        dataset, counts = dataset_import(
            directory=directory.resolve(),
            layout=layout,
            name=name or directory.resolve().name,
            default_split=default_split,
            limit=limit,
        )
        total = dataset.images.count()
        self.stdout.write(
            f"dataset {dataset.name}: added {counts['added']}, already present {counts['duplicate']}, "
            f"rejected {counts['rejected']}; {total} images in total"
        )
