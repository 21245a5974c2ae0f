"""The worker's prediction service in-process (no broker): batching, claims, study state.

The end-to-end paths through a real broker and worker are in test_inference_flow.py;
these pin down what one task does with the rows it finds waiting.
"""

from __future__ import annotations

import pytest

from classifier import claims
from classifier.models import Prediction, Review, Study
from classifier.services.predictions import prediction_run
from classifier.services.studies import StudyFields, study_refresh
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_png

pytestmark = pytest.mark.django_db


def _upload(user, n: int, data: bytes | None = None):
    outcome = image_upload(
        data=data or synthetic_png(96, seed=n),
        filename=f"{n}.png",
        uploaded_by=user,
        fields=StudyFields(mrn=f"MRN{n}", accession_number=f"ACC{n}"),
    )
    assert outcome.ok, outcome.error_message
    return outcome.prediction


@pytest.fixture
def batch_of(settings):
    def set_size(size: int) -> None:
        settings.CXR = {**settings.CXR, "INFERENCE_BATCH_SIZE": size}

    return set_size


def test_one_task_runs_the_waiting_rows_as_a_batch_and_later_tasks_are_no_ops(
    active_tiny_model, role_users, batch_of
) -> None:
    batch_of(4)
    pending = [_upload(role_users["Clinician"], n) for n in range(6)]
    first = prediction_run(prediction_id=pending[0].pk)
    assert len(first) == 4 and first[0] == pending[0].pk  # its own row, then the oldest waiting
    assert prediction_run(prediction_id=pending[1].pk) == []  # already done by the first task
    rest = prediction_run(prediction_id=pending[5].pk)
    assert sorted(first + rest) == sorted(p.pk for p in pending)
    for prediction in Prediction.objects.filter(pk__in=[p.pk for p in pending]).select_related("image__study"):
        assert prediction.status == "done" and prediction.attempts == 1
        assert prediction.model_version_id == active_tiny_model.pk
        assert {"decode", "preprocess", "model", "heatmap", "encode", "store", "total"} <= set(prediction.timings_ms)
        assert prediction.heatmap and prediction.heatmap_raw and prediction.display
        study = prediction.image.study
        assert study.status == "done"
        assert study.priority == pytest.approx((1.0 if prediction.flag else 0.0) + prediction.p_abnormal, abs=0.01)


def test_a_corrupt_file_fails_alone_and_its_batch_mates_complete(active_tiny_model, role_users, batch_of) -> None:
    batch_of(8)
    good = [_upload(role_users["Clinician"], n) for n in range(3)]
    cut = _upload(role_users["Clinician"], 9, data=synthetic_png(96, seed=9)[:60])
    done = prediction_run(prediction_id=good[0].pk)
    assert sorted(done) == sorted([p.pk for p in good] + [cut.pk])
    statuses = dict(Prediction.objects.filter(pk__in=done).values_list("pk", "status"))
    assert statuses[cut.pk] == "failed" and all(statuses[p.pk] == "done" for p in good)
    assert Study.objects.get(pk=cut.image.study_id).status == "failed"


def test_claim_many_takes_only_rows_still_waiting(active_tiny_model, role_users) -> None:
    rows = [_upload(role_users["Clinician"], n) for n in range(3)]
    kwargs = {"pending": Prediction.Status.PENDING, "running": Prediction.Status.RUNNING, "lease_seconds": 60}
    mine = claims.claim(Prediction, rows[0].pk, **kwargs)
    assert mine is not None
    token, claimed = claims.claim_many(Prediction, [r.pk for r in rows], **kwargs)
    assert claimed == sorted(r.pk for r in rows[1:])
    assert set(Prediction.objects.filter(claim_token=token).values_list("pk", flat=True)) == set(claimed)
    assert Prediction.objects.get(pk=rows[0].pk).claim_token == mine  # not taken over
    assert claims.claim_many(Prediction, [r.pk for r in rows], **kwargs)[1] == []


def test_study_refresh_of_several_studies_sets_each_state(active_tiny_model, role_users, batch_of) -> None:
    batch_of(8)
    a, b, c = (_upload(role_users["Clinician"], n) for n in range(3))
    prediction_run(prediction_id=a.pk)  # runs all three
    Prediction.objects.filter(pk=c.pk).update(status="failed", error_code="x", error_message="x.")
    b_done = Prediction.objects.get(pk=b.pk)
    Review.objects.create(
        image=b_done.image,
        prediction=b_done,
        radiologist=role_users["Radiologist"],
        decision="confirm",
        label=b_done.label,
    )
    study_refresh(a.image.study_id, b.image.study_id, c.image.study_id)
    state = dict(
        Study.objects.filter(pk__in=[a.image.study_id, b.image.study_id, c.image.study_id]).values_list("pk", "status")
    )
    assert state == {a.image.study_id: "done", b.image.study_id: "reviewed", c.image.study_id: "failed"}
    assert Study.objects.get(pk=b.image.study_id).priority == 0.0


def test_the_batch_uses_the_configured_threads_and_gives_the_same_answers(
    active_tiny_model, role_users, batch_of, settings
) -> None:
    from classifier.inference.pipeline import InferencePipeline

    data = [synthetic_png(96, seed=n) for n in range(4)]
    one = InferencePipeline(active_tiny_model.artifact_dir, threads=1).run_many(data, batch_size=4)
    two = InferencePipeline(active_tiny_model.artifact_dir, threads=2).run_many(data, batch_size=4)
    for a, b in zip(one, two, strict=False):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
        assert a.heatmap_png == b.heatmap_png and a.display_png == b.display_png
    assert settings.CXR["INFERENCE_THREADS"] >= 1


def test_a_study_created_by_an_upload_starts_in_the_state_a_refresh_gives_it(role_users) -> None:
    first = _upload(role_users["Clinician"], 1)
    study = Study.objects.get(pk=first.image.study_id)
    as_created = (study.status, study.priority)
    stored = ("current_flag", "current_p_abnormal", "triage_base", "has_images")
    stored_as_created = [getattr(study, name) for name in stored]
    study_refresh(study.pk)
    study.refresh_from_db()
    assert as_created[0] == study.status == "queued"
    assert as_created[1] == pytest.approx(study.priority, abs=1e-3)
    # On the worklist from the upload's commit, with what the refresh stores.
    assert stored_as_created == [getattr(study, name) for name in stored] == [None, None, 0.5, True]
    second = image_upload(
        data=synthetic_png(96, seed=2),
        filename="2.png",
        uploaded_by=role_users["Clinician"],
        fields=StudyFields(mrn="MRN1", accession_number="ACC1"),
    )
    assert second.ok and second.image.study_id == study.pk  # an existing study is refreshed on commit


def test_the_first_analysis_keeps_the_film_and_every_result_its_geometry(active_tiny_model, role_users) -> None:
    """The viewer windows the original DICOM values and registers the heatmap onto them."""
    import zlib

    import numpy as np

    from classifier.services.predictions import prediction_rerun
    from tests.conftest import synthetic_dicom

    outcome = image_upload(
        data=synthetic_dicom(size=200, mrn="MRN-FILM", accession="ACC-FILM"),
        filename="f.dcm",
        uploaded_by=role_users["Clinician"],
    )
    prediction_run(prediction_id=outcome.prediction.pk)
    image = outcome.image.__class__.objects.get(pk=outcome.image.pk)
    meta = image.film_meta
    with image.film.open("rb") as handle:
        values = np.frombuffer(zlib.decompress(handle.read()), "<u2").reshape(meta["height"], meta["width"])
    assert (meta["width"], meta["height"]) == (200, 200) and meta["scale"] == 1.0
    # The stored values are the DICOM's own (modality LUT applied), not the 8-bit display.
    assert values.max() + meta["offset"] > 255 and not meta["invert"]
    assert {w["name"] for w in meta["windows"]} >= {"Auto (0.5-99.5 %)", "Full range"}
    geometry = Prediction.objects.get(pk=outcome.prediction.pk).geometry
    assert geometry["source_size"] == [200, 200] and geometry["input_size"] == 32
    assert len(geometry["crop_box"]) == 4 and len(geometry["content_box"]) == 4
    film = image.film.name
    rerun = prediction_rerun(image=image, requested_by=role_users["Clinician"])
    prediction_run(prediction_id=rerun.pk)
    image.refresh_from_db()
    assert image.film.name == film  # decoded again, but the film is kept from the first run
    assert Prediction.objects.get(pk=rerun.pk).geometry == geometry


def test_blank_and_non_radiograph_images_fail_with_a_reason_instead_of_a_result(
    active_tiny_model, role_users, batch_of
) -> None:
    from tests.classifier.imaging.negatives import negatives

    batch_of(8)
    bad = negatives()
    names = ["all_white", "all_black", "uniform_noise", "photo"]
    pending = {name: _upload(role_users["Clinician"], n, bad[name][0]) for n, name in enumerate(names)}
    chest = _upload(role_users["Clinician"], 99)
    prediction_run(prediction_id=chest.pk)
    assert Prediction.objects.get(pk=chest.pk).status == "done"
    for name, prediction in pending.items():
        prediction.refresh_from_db()
        assert prediction.status == "failed", name
        assert prediction.error_code == bad[name][1] and "not analysed" in prediction.error_message
        assert prediction.label == "" and prediction.p_abnormal is None


def test_the_sweeper_escalates_a_long_waiting_study_behind_more_than_2000_others(role_users, settings) -> None:
    """Every unreviewed study is refreshed each run, not the first 2,000 by priority: the
    one that waited past CXR_TRIAGE_MAX_WAIT_MINUTES ends above all 2,100 fresh ones."""
    from datetime import timedelta

    from django.utils import timezone

    from classifier.models import Image, Patient
    from classifier.selectors.studies import worklist
    from classifier.services.predictions import prediction_sweep
    from classifier.triage import ESCALATED

    n = 2101
    patients = Patient.objects.bulk_create(Patient(mrn=f"BULK-{i}") for i in range(n))
    studies = Study.objects.bulk_create(
        Study(patient=p, accession_number=f"BULK-{i}", status=Study.Status.DONE, priority=1.5)
        for i, p in enumerate(patients)
    )
    images = Image.objects.bulk_create(
        Image(study=s, file=f"images/bulk-{i}.png", sha256=f"{i:064x}", size_bytes=1, format="PNG", width=1, height=1)
        for i, s in enumerate(studies)
    )
    Prediction.objects.bulk_create(
        Prediction(image=image, status=Prediction.Status.DONE, p_abnormal=0.5, flag=True) for image in images
    )
    waiting = studies[-1]  # the last by id and the lowest by priority: what a capped sweep skipped
    Prediction.objects.filter(image__study=waiting).update(p_abnormal=0.0002, flag=False)
    max_wait = settings.CXR["TRIAGE_MAX_WAIT_MINUTES"]
    Study.objects.filter(pk=waiting.pk).update(
        priority=0.0002, created_at=timezone.now() - timedelta(minutes=max_wait + 27)
    )
    result = prediction_sweep()
    waiting.refresh_from_db()
    assert waiting.priority >= ESCALATED
    assert worklist().first() == waiting
    assert result["refreshed"] == n
