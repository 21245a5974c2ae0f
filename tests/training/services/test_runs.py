"""Import -> patient-disjoint split -> train (2 epochs, tiny) -> evaluate -> register -> gate -> rollback."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from classifier.models import Label, Review
from tests.conftest import synthetic_png
from tests.factories import labelled_rows
from training import registry
from training.models import DatasetImage, ModelVersion, TrainingRun
from training.services.datasets import assign_splits, dataset_import, kermany_patient
from training.services.runs import retrain_check, split_items, training_items, training_run_execute, training_run_start

LABELS = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]
TINY = {
    "train": {"architecture": "s0_cnn", "epochs": 2, "batch_size": 8, "early_stopping_patience": 5},
    "preprocess": {"input_size": 32, "lung_crop": False},
}


def blob_png(label_index: int, seed: int, size: int = 80) -> bytes:
    """Synthetic radiograph whose class is a bright blob position (learnable, not realistic)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(PILImage.open(io.BytesIO(synthetic_png(size, seed=seed))), dtype=np.float32) / 255
    if label_index:
        cy, cx = [(0.5, 0.3), (0.5, 0.7), (0.3, 0.5)][label_index - 1]
        yy, xx = np.mgrid[0:size, 0:size] / size
        base = np.clip(base + 0.6 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)), 0, 1)
    base = np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1)
    buffer = io.BytesIO()
    PILImage.fromarray((base * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_folder_dataset(root: Path, *, per_class: int = 10, with_splits: bool = True) -> Path:
    """root/<split>/<LABEL>/files plus a manifest naming patients (2 images per patient)."""
    rows = []
    for label_index, label in enumerate(LABELS):
        for n in range(per_class):
            split = ("val" if n % 5 == 0 else "train") if with_splits else ""
            folder = root / split / label if split else root / label
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{label.lower()}-{n}.png"
            path.write_bytes(blob_png(label_index, seed=label_index * 1000 + n))
            rows.append(
                {
                    "file": path.relative_to(root).as_posix(),
                    "label": label,
                    "patient_id": f"synth:{label}-{n // 2}",
                    "view": "PA",
                }
            )
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "patient_id", "view"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def synthetic_dataset(tmp_path, db):
    root = make_folder_dataset(tmp_path / "synth")
    dataset, _counts = dataset_import(directory=root, layout="folders", name="synth")
    return dataset


@pytest.mark.django_db
def test_import_folders_keeps_patients_labels_and_rejects_bad_files(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "d", per_class=3)
    (root / "train" / "NORMAL" / "report.png").write_bytes(b"%PDF-1.4\n%fake\n")
    dataset, counts = dataset_import(directory=root, layout="folders", name="d")
    assert counts == {"added": 12, "duplicate": 0, "rejected": 1}
    image = DatasetImage.objects.get(dataset=dataset, original_path__endswith="normal-2.png")
    assert (image.label, image.patient_key, image.split, image.view_position, image.source) == (
        "NORMAL",
        "synth:NORMAL-1",
        "train",
        "PA",
        "synth",
    )
    assert dataset_import(directory=root, layout="folders", name="d")[1]["added"] == 0  # idempotent


@pytest.mark.django_db
def test_import_kermany_layout_reads_cause_and_patient_from_file_names(tmp_path: Path) -> None:
    for folder, name in [
        ("NORMAL", "IM-0011-0001.jpeg"),
        ("PNEUMONIA", "person12_bacteria_45.jpeg"),
        ("PNEUMONIA", "person12_virus_46.jpeg"),
    ]:
        path = tmp_path / "k" / "test" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.open(io.BytesIO(synthetic_png(80, seed=len(name)))).save(path, format="JPEG")
    dataset, _counts = dataset_import(directory=tmp_path / "k", layout="kermany", name="k")
    rows = {r.original_path.rsplit("/", 1)[1]: r for r in dataset.images.all()}
    assert rows["person12_bacteria_45.jpeg"].label == Label.PNEUMONIA_BACTERIAL
    assert rows["person12_virus_46.jpeg"].label == Label.PNEUMONIA_VIRAL
    assert rows["person12_virus_46.jpeg"].patient_key == "kermany:person12"
    assert {r.split for r in rows.values()} == {"test"}
    assert kermany_patient("NORMAL2-IM-0007-0001.jpeg") == "NORMAL2-IM-0007"


@pytest.mark.django_db
def test_import_covid_metadata_layout(tmp_path: Path) -> None:
    images = tmp_path / "c" / "images"
    images.mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        (images / name).write_bytes(synthetic_png(80, seed=len(name) + ord(name[0])))
    (tmp_path / "c" / "metadata.csv").write_text(
        "patientid,finding,view,filename,folder\n1,COVID-19,PA,a.png,images\n1,Pneumonia,AP Supine,b.png,images\n"
        "2,Tuberculosis,PA,c.png,images\n"
    )
    dataset, _counts = dataset_import(directory=tmp_path / "c", layout="covid-metadata", name="c")
    assert sorted(dataset.images.values_list("label", "view_position")) == [("COVID19", "PA"), ("PNEUMONIA", "AP")]


def test_assign_splits_is_patient_disjoint_seeded_and_respects_recorded_splits() -> None:
    patients = {f"p{i}": ("", LABELS[i % 4]) for i in range(200)} | {"t": ("test", "NORMAL")}
    first = assign_splits(patients, seed=7, val_fraction=0.2)
    assert first == assign_splits(patients, seed=7, val_fraction=0.2)
    assert first != assign_splits(patients, seed=8, val_fraction=0.2)
    assert first["t"] == "test"
    per_label_val = [sum(1 for k, s in first.items() if s == "val" and patients[k][1] == label) for label in LABELS]
    assert per_label_val == [10, 10, 10, 10]  # stratified


@pytest.fixture
def no_model_versions(transactional_db) -> None:
    """Start without any version: migrate (and every flush of a transactional test) registers
    the shipped model, so whether a champion existed used to depend on the tests run before."""
    ModelVersion.objects.all().delete()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_train_register_gate_and_rollback(no_model_versions, synthetic_dataset, role_users) -> None:
    assert registry.active_version() is None
    run = training_run_start(spec=TINY, datasets=[synthetic_dataset], enqueue=False, created_by=role_users["Admin"])
    splits = split_items(training_items(run), seed=run.spec["train"]["seed"], val_fraction=0.15)
    train_patients = {i.patient for i in splits["train"]}
    assert train_patients.isdisjoint({i.patient for i in splits["val"]})
    finished = training_run_execute(run_id=run.pk)
    assert finished.status == TrainingRun.Status.SUCCEEDED
    first = finished.model_version
    assert first.status == ModelVersion.Status.ACTIVE  # no champion: promoted
    assert finished.progress["epoch"] == 2 and "eta_seconds" in finished.progress
    assert set(first.metrics) >= {"val", "training", "threshold_selection"}
    assert first.metrics["val"]["binary"]["auc"] is not None
    artifact = Path(first.artifact_dir)
    registry.artifact_verify(artifact)
    assert (artifact / "plots" / "roc.png").is_file() and "Decision support" in first.model_card
    assert first.data_snapshot["sha256"] and first.preprocess_config["input_size"] == 32
    # a second candidate is compared with the champion on the same validation files
    second_run = training_run_execute(
        run_id=training_run_start(
            spec={**TINY, "train": {**TINY["train"], "seed": 99}}, datasets=[synthetic_dataset], enqueue=False
        ).pk
    )
    decision = second_run.promotion
    assert decision["champion"] == first.version and decision["reasons"]
    second = second_run.model_version
    assert second.parent_id == first.pk
    if not decision["promote"]:
        assert second.status == ModelVersion.Status.CANDIDATE
        registry.version_activate(version=second, actor=role_users["Admin"], reason="manual")
    assert registry.active_version() == second
    rolled = registry.version_rollback(actor=role_users["Admin"])
    assert rolled == first and registry.active_version() == first
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.ARCHIVED


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_crashed_run_resumes_from_its_checkpoint(synthetic_dataset, monkeypatch) -> None:
    import training.trainers.train as trainer

    real_train = trainer.train

    def crash_after_epoch_1(spec, **kwargs):
        inner = kwargs["progress"]

        def progress(record: dict) -> None:
            inner(record)
            if record["epoch"] == 1:
                raise RuntimeError("simulated power cut")

        return real_train(spec, **{**kwargs, "progress": progress})

    run = training_run_start(
        spec={**TINY, "train": {**TINY["train"], "epochs": 3}}, datasets=[synthetic_dataset], enqueue=False
    )
    monkeypatch.setattr(trainer, "train", crash_after_epoch_1)
    with pytest.raises(RuntimeError):
        training_run_execute(run_id=run.pk)
    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.Status.FAILED
    monkeypatch.setattr(trainer, "train", real_train)
    call_command("train_model", "--resume", str(run.pk))
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert len(run.history["loss"]) == 3  # epochs 2 and 3 ran after the crash, epoch 1 was not repeated
    assert run.model_version.metrics["training"]["epochs_run"] == 3


@pytest.mark.django_db
def test_schedule_starts_a_run_only_when_enough_reviews_arrived(
    settings, active_tiny_model, role_users, django_capture_on_commit_callbacks
) -> None:
    from django_celery_beat.models import PeriodicTask

    from classifier.models import Image, Patient, Prediction, Study

    assert PeriodicTask.objects.filter(task="training.tasks.retrain_check_task").exists()
    assert PeriodicTask.objects.filter(task="classifier.tasks.prediction_sweep_task").exists()
    settings.CXR = {**settings.CXR, "RETRAIN_MIN_REVIEWS": 2}
    labelled_rows()  # a run needs data that fills train and validation (else it is not started)
    study = Study.objects.create(patient=Patient.objects.create(mrn="R1"), accession_number="R1")

    def review(n: int) -> None:
        image = Image.objects.create(
            study=study, file=f"images/r{n}.png", sha256=f"{n:064d}", size_bytes=1, format="PNG", width=64, height=64
        )
        prediction = Prediction.objects.create(image=image, status="done", label="NORMAL", p_abnormal=0.1)
        Review.objects.create(
            prediction=prediction,
            image=image,
            radiologist=role_users["Radiologist"],
            decision="confirm",
            label="NORMAL",
        )

    review(1)
    assert retrain_check() is None
    review(2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = retrain_check()
    assert run is not None and run.trigger == TrainingRun.Trigger.SCHEDULE and len(callbacks) == 1
    assert retrain_check() is None  # one run at a time


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_evaluate_model_json_prints_binary_and_per_class_figures(tmp_path, active_tiny_model, capsys) -> None:
    root = tmp_path / "eval"
    for label_index, label in enumerate(LABELS):
        (root / label).mkdir(parents=True)
        for n in range(3):
            (root / label / f"{n}.png").write_bytes(blob_png(label_index, seed=50 + 10 * label_index + n))
    call_command("evaluate_model", str(root), "--json", "--bootstrap", "50")
    report = json.loads(capsys.readouterr().out)
    assert {"sensitivity", "specificity", "auc", "accuracy", "per_class"} <= set(report)
    assert report["n"] == 12 and set(report["per_class"]) == set(LABELS)
    assert report["model"]["version"] == active_tiny_model.version
    assert active_tiny_model.evaluations.count() == 1
    lung = report["gradcam_lung_mass"]  # where the heatmap falls on the 9 abnormal images
    assert lung["lung_model"] == "lungfield-v1" and lung["n"] <= 9 and lung["target"] == 0.7
    assert lung["median"] is None or 0.0 <= lung["median"] <= 1.0


def test_group_balance_equalises_normal_and_abnormal_within_each_group() -> None:
    from collections import Counter
    from types import SimpleNamespace

    from training.trainers.candidate import group_balance

    items = (
        [SimpleNamespace(source="nih", label="NORMAL")] * 2
        + [SimpleNamespace(source="hannover", label="COVID19")] * 7
        + [SimpleNamespace(source="kermany", label="NORMAL")] * 4
        + [SimpleNamespace(source="kermany", label="PNEUMONIA_VIRAL")] * 4
        + [SimpleNamespace(source="other", label="COVID19")] * 3
    )
    rows = group_balance(items, {"nih": "adult", "hannover": "adult", "kermany": "child"}, seed=0)
    counts = Counter((items[i].source, items[i].label) for i in rows)
    assert counts[("nih", "NORMAL")] == 7 and counts[("hannover", "COVID19")] == 7
    assert counts[("kermany", "NORMAL")] == 4 and counts[("kermany", "PNEUMONIA_VIRAL")] == 4
    assert counts[("other", "COVID19")] == 3  # a group with one binary class is left alone
