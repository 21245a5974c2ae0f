"""The shared sample data as records, for the Django-free experiment and lung-field CLIs.

Reads ``cxr/manifest.csv`` (recorded train/val/test splits), ``cxr-train/manifest.csv`` and
``cxr-adult/manifest.csv`` (training only) under :func:`classifier.imaging.datapaths.data_dir`.
The source of an image is the prefix of its ``patient_id`` (``kermany:``, ``nih:``,
``jsrt:``, ...), the same rule ``import_dataset`` applies.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

# (sub-folder, split for rows without one)
SUBSETS: tuple[tuple[str, str | None], ...] = (("cxr", None), ("cxr-train", "train"), ("cxr-adult", "train"))


@dataclass(frozen=True)
class Record:
    path: Path
    label: str
    split: str  # train | val | test
    source: str  # patient_id prefix
    patient: str
    width: int = 0
    height: int = 0

    @property
    def key(self) -> str:
        """Stable identity in a data snapshot: the file under the data directory."""
        return f"shared:{self.path.parent.parent.name}/{self.path.parent.name}/{self.path.name}"

    @property
    def squashed_copy(self) -> bool:
        """A 224 x 224 re-saved Kermany copy (aspect ratio changed by its source repository)."""
        return self.source == "kermany" and (self.width, self.height) == (224, 224)


def load_records(root: Path, *, with_sizes: bool = False) -> list[Record]:
    """Every row of the three manifests; ``with_sizes`` reads each image header for its size."""
    records = []
    for sub, default_split in SUBSETS:
        manifest = root / sub / "manifest.csv"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} is missing (set CXR_DATA_DIR to the shared data)")
        with manifest.open(newline="") as handle:
            for row in csv.DictReader(handle):
                path = root / sub / row["file"]
                width = height = 0
                if with_sizes:
                    from PIL import Image

                    with Image.open(path) as image:
                        width, height = image.size
                records.append(
                    Record(
                        path=path,
                        label=row["label"],
                        split=default_split or row["split"],
                        source=row["patient_id"].split(":", 1)[0],
                        patient=row["patient_id"],
                        width=width,
                        height=height,
                    )
                )
    return records
