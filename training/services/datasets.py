"""Importing labelled datasets and assigning patient-disjoint splits.

Layouts (``import_dataset --layout``):
- ``folders``: DIR/<split>/<LABEL>/files or DIR/<LABEL>/files. A manifest.csv in DIR
  (columns file, label, patient_id, view[, split]) supplies patient identity and view.
- ``kermany``: DIR[/<split>]/{NORMAL,PNEUMONIA}/files, where pneumonia file names say
  ``bacteria`` or ``virus`` (person123_bacteria_456.jpeg -> patient person123).
- ``covid-metadata``: a metadata CSV (ieee8023 style: patientid, finding, view,
  filename[, folder]) next to the images.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from classifier.imaging import ImagingError
from classifier.imaging.probe import probe_bytes
from classifier.models import Label, Study
from classifier.storage import SUFFIXES, generated_name
from training.models import Dataset, DatasetImage

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
SPLITS = {"train", "val", "test"}
PROGRESS_EVERY = 10
_FINDINGS = {
    "covid-19": Label.COVID19,
    "covid-19, ards": Label.COVID19,
    "no finding": Label.NORMAL,
    "normal": Label.NORMAL,
    "pneumonia": Label.PNEUMONIA,
}


@dataclass(frozen=True)
class Candidate:
    """One labelled file found in a dataset directory."""

    path: Path
    label: str
    patient_key: str
    split: str = ""
    view: str = "unknown"
    source: str = ""


def kermany_patient(name: str) -> str:
    """person123_bacteria_456 -> person123; IM-0011-0001 -> IM-0011; NORMAL2-IM-0007-0001 -> NORMAL2-IM-0007."""
    stem = Path(name).stem
    if match := re.match(r"(person\d+)_", stem):
        return match.group(1)
    if match := re.match(r"((?:NORMAL2-)?IM-\d+)", stem):
        return match.group(1)
    return stem


def scan_folders(root: Path) -> Iterator[Candidate]:
    manifest = _read_manifest(root)
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        parts = path.relative_to(root).parts
        label, split = parts[-2], parts[-3] if len(parts) >= 3 and parts[-3] in SPLITS else ""
        if label not in Label.values:
            log.warning("skipping %s: folder %r is not a label", path.name, label)
            continue
        row = manifest.get(path.relative_to(root).as_posix(), {})
        patient = row.get("patient_id") or f"{root.name}:{kermany_patient(path.name)}"
        yield Candidate(
            path=path,
            label=label,
            patient_key=patient,
            split=row.get("split", split) or split,
            view=Study.view_code(row.get("view")),
            source=patient.split(":", 1)[0] if ":" in patient else root.name,
        )


def _read_manifest(root: Path) -> dict[str, dict[str, str]]:
    path = root / "manifest.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle) if row.get("file")}


def scan_kermany(root: Path) -> Iterator[Candidate]:
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        folder = path.parent.name.upper()
        split = path.parent.parent.name.lower() if path.parent.parent.name.lower() in SPLITS else ""
        name = path.name.lower()
        if folder == "NORMAL":
            label = Label.NORMAL
        elif "bacteria" in name:
            label = Label.PNEUMONIA_BACTERIAL
        elif "virus" in name:
            label = Label.PNEUMONIA_VIRAL
        else:
            continue
        yield Candidate(
            path=path,
            label=label,
            patient_key=f"kermany:{kermany_patient(path.name)}",
            split=split,
            view=Study.View.AP,
            source="kermany",
        )


def scan_covid_metadata(root: Path, csv_name: str = "metadata.csv") -> Iterator[Candidate]:
    with (root / csv_name).open(newline="") as handle:
        for row in csv.DictReader(handle):
            label = _FINDINGS.get((row.get("finding") or "").strip().lower())
            folder = root / (row.get("folder") or "images")
            path = folder / (row.get("filename") or "")
            if label is None or not path.is_file():
                continue
            yield Candidate(
                path=path,
                label=label,
                patient_key=f"covid:{row.get('patientid', path.stem)}",
                view=Study.view_code(row.get("view")),
                source="covid-metadata",
            )


SCANNERS = {"folders": scan_folders, "kermany": scan_kermany, "covid-metadata": scan_covid_metadata}


def dataset_import(
    *,
    directory: Path,
    layout: str,
    name: str,
    created_by: User | None = None,
    default_split: str = "",
    limit: int | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> tuple[Dataset, dict[str, int]]:
    """Validate and store every labelled image of ``directory``; return the dataset and counts.

    ``progress`` gets {done, total, added, duplicate, rejected} every few files.

    Re-importing the same name adds only files not yet stored (by sha256). Files that fail
    header validation are counted and skipped, not fatal.
    """
    if layout not in SCANNERS:
        raise ValueError(f"layout must be one of {', '.join(SCANNERS)}")
    dataset, _ = Dataset.objects.get_or_create(
        name=name, defaults={"layout": layout, "source_dir": str(directory), "created_by": created_by}
    )
    known = set(dataset.images.values_list("sha256", flat=True))
    counts = {"added": 0, "duplicate": 0, "rejected": 0}
    candidates = list(itertools.islice(SCANNERS[layout](directory), limit))
    for number, candidate in enumerate(candidates, start=1):
        counts[_import_one(dataset, candidate, known, default_split)] += 1
        if progress is not None and (number % PROGRESS_EVERY == 0 or number == len(candidates)):
            progress({"done": number, "total": len(candidates), **counts})
    return dataset, counts


def _import_one(dataset: Dataset, candidate: Candidate, known: set[str], default_split: str) -> str:
    data = candidate.path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha in known:
        return "duplicate"
    try:
        header = probe_bytes(data)
    except ImagingError as exc:
        log.warning("rejected %s: %s", candidate.path.name, exc.message)
        return "rejected"
    stored = default_storage.save(generated_name(f"datasets/{dataset.pk}", SUFFIXES[header.format]), ContentFile(data))
    with transaction.atomic():
        DatasetImage.objects.create(
            dataset=dataset,
            file=stored,
            sha256=sha,
            original_path=str(candidate.path)[-500:],
            label=candidate.label,
            patient_key=candidate.patient_key[:128],
            source=candidate.source[:64],
            split=candidate.split or default_split,
            view_position=candidate.view[:8],
            format=header.format,
            width=header.width,
            height=header.height,
        )
    known.add(sha)
    return "added"


def assign_splits(
    patients: dict[str, tuple[str, str]], *, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.0
) -> dict[str, str]:
    """Patient -> split. ``patients`` maps patient key -> (recorded split or "", label).

    A patient keeps a recorded split (test beats val beats train when images disagree, so
    evaluation sets are never contaminated). Unassigned patients are split by a seeded
    hash, stratified by label so each class reaches val in proportion.
    """
    result: dict[str, str] = {}
    by_label: dict[str, list[str]] = {}
    for key, (split, label) in patients.items():
        if split:
            result[key] = split
        else:
            by_label.setdefault(label, []).append(key)
    for _label, keys in sorted(by_label.items()):
        keys.sort(key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
        n_val, n_test = round(len(keys) * val_fraction), round(len(keys) * test_fraction)
        for index, key in enumerate(keys):
            result[key] = "val" if index < n_val else "test" if index < n_val + n_test else "train"
    return result
