"""Every read or write of patient data, by any path, is an AuditEvent (issue 14, item 7).

Two walks that fail when someone adds a path without audit: every route of the URLconf
(a GET by an authorised user writes at least one event, unless the route is in the
commented allow-lists below) and every model registered in the admin (its changelist,
change page and a saved change are exactly one event each, of the right action).
"""

from __future__ import annotations

import io
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
import pytest
from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import models
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from classifier.integrations import DicomDelivery, DicomDestination, Webhook, WebhookDelivery
from classifier.models import AuditEvent, Patient, Prediction, Study
from classifier.services.tokens import api_token_create
from classifier.services.uploads import image_upload
from tests.conftest import synthetic_dicom, synthetic_png
from tests.factories import ModelVersionFactory, ReviewFactory, labelled_rows
from training.models import DatasetImage, DatasetImport, TrainingRun

pytestmark = pytest.mark.django_db

# Routes that show no patient data, by name (or pattern when unnamed). Each says why.
NON_PATIENT_ROUTES = {
    "login": "the login form; logins and failed logins are audited by classifier.signals",
    "logout": "ends a session; audited by classifier.signals",
    "healthz": "dependency status only",
    "metrics": "aggregate counters, no rows",
    "api:schema": "the OpenAPI document",
    "api:docs": "the Swagger page",
    "api:fhir-metadata": "the FHIR CapabilityStatement",
    "api:webhook-detail": "a subscriber URL and its events (the list and deliveries are audited)",
    "upload": "the empty upload form; its POST is audited per file by services.uploads",
    "review_stats": "agreement rates per radiologist and model version: aggregates, no studies",
    # The model registry and training pages show versions, metrics and runs over the
    # labelled datasets, never a study or a patient; registry changes are audited.
    "model_list": "model registry",
    "model_detail": "model registry",
    "model_plot": "model registry (evaluation plots)",
    "model_promote": "model registry (promotion form)",
    "model_rollback": "model registry (rollback form)",
    "api:model-activate": "model registry",
    "api:model-rollback": "model registry",
    "training_start": "the training form",
    "training_detail": "a training run's progress",
    "training_progress": "a training run's progress",
    "dataset_import": "the dataset import form",
    "dataset_import_detail": "a dataset import's progress (counts)",
    "dataset_import_progress": "a dataset import's progress (counts)",
    r"^fhir/": "the FHIR 404 for unmatched paths: reads nothing",
    r"^(api/v1|dicomweb)/": "the API 404 for unmatched paths: reads nothing",
}
# Routes that answer GET with 405 and read nothing on it; their POST is audited by the
# service it calls, tested in the named module.
WRITE_ONLY_ROUTES = {
    "upload_file": "services.uploads (upload), tests/classifier/views/test_upload_review.py",
    "upload_probe": "upload_probe event, tests/classifier/views/test_page_audit.py",
    "review_submit": "services.reviews (review), tests/classifier/views/test_upload_review.py",
    "prediction_rerun": "services.predictions (prediction_rerun)",
    "api:prediction-rerun": "services.predictions (prediction_rerun)",
    "api:token-revoke": "services.tokens (api_token_revoke)",
    "site_threshold_adopt": "training.services.site_thresholds, tests/training/test_site_thresholds.py",
    "site_threshold_retire": "training.services.site_thresholds, tests/training/test_site_thresholds.py",
    "api:model-site-threshold-retire": "training.services.site_thresholds, tests/training/test_site_thresholds.py",
}
# Admin pages of models that hold no patient data; their writes are audited by the
# services the admin calls (tokens, webhooks, DICOM peers) or are user accounts.
NON_PATIENT_ADMINS = {
    "auth.user": "accounts; logins are audited by classifier.signals",
    "auth.group": "roles",
    "classifier.apitoken": "credentials; create and revoke audited by services.tokens",
    "classifier.webhook": "subscriber URLs; changes audited by services.webhooks",
    "classifier.dicompeer": "AE titles; changes audited by services.dicom",
    "classifier.dicomdestination": "PACS addresses",
    "training.modelversion": "model versions (read-only; status changes audited by training.registry)",
    "training.trainingrun": "training runs over the labelled datasets",
    "training.sitethreshold": "thresholds and review counts (read-only; changes audited by services.site_thresholds)",
    "training.dataset": "dataset names and folders",
    "axes.accessattempt": "login attempts (usernames, addresses): no patient data",
    "axes.accessfailurelog": "failed logins: no patient data",
    "axes.accesslog": "logins: no patient data",
    "django_celery_beat.clockedschedule": "task schedules",
    "django_celery_beat.crontabschedule": "task schedules",
    "django_celery_beat.intervalschedule": "task schedules",
    "django_celery_beat.periodictask": "task schedules (their arguments are ids at most)",
    "django_celery_beat.solarschedule": "task schedules",
}


def _routes(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, URLPattern]]:
    """(key, pattern) for every concrete route; key is ``namespace:name`` or the regex."""
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue  # the admin is walked model by model below
            inner = f"{namespace}:{entry.namespace}" if entry.namespace else namespace
            yield from _routes(entry, prefix + str(entry.pattern), inner)
        elif entry.name:
            yield (f"{namespace}:{entry.name}".lstrip(":"), entry)
        else:
            yield (str(entry.pattern), entry)


@pytest.fixture
def rows(role_users) -> dict[str, Any]:
    """One of every row a route or admin page can show, from a real DICOM upload."""
    model_version = ModelVersionFactory()
    data = synthetic_dicom(mrn="MRN-AUDIT", accession="ACC-AUDIT", patient_name="Audit^Walk")
    source = pydicom.dcmread(io.BytesIO(data))
    outcome = image_upload(data=data, filename="walk.dcm", uploaded_by=role_users["Clinician"])
    assert outcome.ok, outcome.error_message
    image, prediction = outcome.image, outcome.prediction
    film = np.zeros((8, 8), dtype="<u2").tobytes()
    image.film.save("walk.u16z", ContentFile(zlib.compress(film)), save=True)
    prediction.status, prediction.label, prediction.p_abnormal = Prediction.Status.DONE, "COVID19", 0.9
    prediction.probabilities = {"NORMAL": 0.1, "PNEUMONIA_BACTERIAL": 0.0, "PNEUMONIA_VIRAL": 0.0, "COVID19": 0.9}
    prediction.threshold, prediction.flag, prediction.model_version = 0.5, True, model_version
    prediction.heatmap.save("walk.png", ContentFile(synthetic_png(32)), save=False)
    prediction.save()
    review = ReviewFactory(prediction=prediction, radiologist=role_users["Radiologist"])
    webhook = Webhook.objects.create(url="https://93.184.216.34/hook", owner=role_users["Admin"], secret="s" * 32)
    destination = DicomDestination.objects.create(name="PACS", ae_title="PACS", host="127.0.0.1", port=11112)
    dataset = labelled_rows()
    run = TrainingRun.objects.create(created_by=role_users["Admin"])
    run.datasets.add(dataset)
    job = DatasetImport.objects.create(directory="/nowhere", layout="folders", name="walk", dataset=dataset)
    return {
        "patient": image.study.patient,
        "study": image.study,
        "image": image,
        "prediction": prediction,
        "review": review,
        "source": source,
        "model_version": model_version,
        "webhook": webhook,
        "run": run,
        "import": job,
        "token": api_token_create(name="walk", role="Clinician", created_by=role_users["Admin"])[0],
        "classifier.patient": image.study.patient,
        "classifier.study": image.study,
        "classifier.image": image,
        "classifier.prediction": prediction,
        "classifier.review": review,
        "classifier.auditevent": AuditEvent.objects.first(),
        "classifier.webhookdelivery": WebhookDelivery.objects.create(
            webhook=webhook, event="prediction.done", event_id=uuid.uuid4(), body='{"accession_number": "ACC-AUDIT"}'
        ),
        "classifier.dicomdelivery": DicomDelivery.objects.create(
            destination=destination,
            prediction=prediction,
            kind="sr",
            series_instance_uid="1.2.3",
            sop_instance_uid="1.2.3.4",
            series_number=99,
        ),
        "training.datasetimage": DatasetImage.objects.filter(dataset=dataset).first(),
    }


def _route_kwargs(key: str, rows: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a concrete request to route ``key``, from the rows."""
    source = rows["source"]
    pk_of = {
        "api:patient-detail": rows["patient"],
        "api:study-detail": rows["study"],
        "api:study-predictions": rows["study"],
        "api:image-detail": rows["image"],
        "api:prediction-detail": rows["prediction"],
        "api:prediction-heatmap": rows["prediction"],
        "api:prediction-reviews": rows["prediction"],
        "api:fhir-patient": rows["patient"],
        "api:fhir-imagingstudy": rows["study"],
        "api:fhir-diagnosticreport": rows["prediction"],
        "api:webhook-detail": rows["webhook"],
        "api:webhook-deliveries": rows["webhook"],
        "api:prediction-rerun": rows["prediction"],
        "api:model-detail": rows["model_version"],
        "api:model-site-threshold": rows["model_version"],
        "api:model-site-threshold-retire": rows["model_version"],
        "api:model-activate": rows["model_version"],
        "api:token-detail": rows["token"],
        "api:token-revoke": rows["token"],
        "api:training-run-detail": rows["run"],
    }
    values = {
        "study_id": rows["study"].pk,
        "image_id": rows["image"].pk,
        "prediction_id": rows["prediction"].pk,
        "kind": "heatmap",
        "study_uid": source.StudyInstanceUID,
        "series_uid": source.SeriesInstanceUID,
        "sop_uid": source.SOPInstanceUID,
        "frame": "1",
        "observation_id": f"{rows['prediction'].pk}-covid19",
        "version_id": rows["model_version"].pk,
        "name": "roc",
        "run_id": rows["run"].pk,
        "import_id": rows["import"].pk,
    }
    if key in pk_of:
        values["pk"] = pk_of[key].pk
    return values


def _get(client: Client, key: str, pattern: URLPattern, rows: dict[str, Any]) -> tuple[str, int]:
    arguments = _route_kwargs(key, rows)
    names = list(pattern.pattern.regex.groupindex)
    missing = [name for name in names if name not in arguments]
    assert not missing, f"{key}: give the route walk concrete values for {missing}"
    url = reverse(key, kwargs={name: arguments[name] for name in names})
    # Followed: a redirect (the next case to review) counts by the page it leads to.
    return url, client.get(url, HTTP_ACCEPT="*/*", follow=True).status_code


def test_every_route_that_shows_patient_data_writes_an_audit_event(role_users, rows) -> None:
    client = Client()
    client.force_login(role_users["Admin"])  # the Admin role may do every action but review
    radiologist = Client()
    radiologist.force_login(role_users["Radiologist"])
    unaudited, write_only_readable, walked = [], [], 0
    for key, pattern in _routes(get_resolver()):
        if key in NON_PATIENT_ROUTES:
            continue
        before = AuditEvent.objects.count()
        user = radiologist if key == "review_next" else client
        url, status = _get(user, key, pattern, rows)
        walked += 1
        if key in WRITE_ONLY_ROUTES:
            if status not in (403, 405) or AuditEvent.objects.count() != before:
                write_only_readable.append((key, url, status))
            continue
        if status >= 400 or AuditEvent.objects.count() == before:
            unaudited.append((key, url, status))
    assert not write_only_readable and not unaudited, (
        f"GET-able routes listed as write-only (audit them): {write_only_readable}; "
        f"routes read without an AuditEvent (or not reached: status): {unaudited}"
    )
    assert walked > 50


def _admin_client() -> Client:
    user = get_user_model().objects.create_superuser(username="root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client


def _change_data(response: Any) -> dict[str, Any]:
    """The change form's current values, as a browser would post them back unchanged."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {"_save": "Save"}
    for name, field in form.fields.items():
        if isinstance(field, forms.FileField):
            continue  # a stored file is kept when none is posted
        value = form[name].value()
        data[name] = "" if value is None else value
    return data


def _new_events(before: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("pk")[before:])


def _one_event(before: int, what: str) -> AuditEvent:
    events = _new_events(before)
    assert len(events) == 1, f"{what}: expected one AuditEvent, got {[e.action for e in events]}"
    return events[0]


def test_every_patient_data_admin_audits_its_list_its_pages_and_its_saves(rows) -> None:
    client = _admin_client()
    walked = []
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        if label in NON_PATIENT_ADMINS:
            continue
        obj = rows.get(label)
        assert isinstance(obj, models.Model), f"{label} is in the admin: give the walk a row (or allow-list it)"
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        walked.append(label)

        before = AuditEvent.objects.count()
        assert client.get(base).status_code == 200, label
        event = _one_event(before, f"{label} changelist")
        assert (event.action, event.object_type, event.actor_username) == ("admin_list", label, "root"), label
        assert obj.pk in event.detail["ids"] and event.detail["count"] >= 1

        before = AuditEvent.objects.count()
        page = client.get(f"{base}{obj.pk}/change/")
        assert page.status_code == 200, label
        event = _one_event(before, f"{label} change page")
        assert (event.action, event.object_type, event.object_id) == ("admin_view", label, str(obj.pk)), label

        before = AuditEvent.objects.count()
        saved = client.post(f"{base}{obj.pk}/change/", _change_data(page))
        if model_admin.has_change_permission(page.wsgi_request, obj):
            assert saved.status_code == 302, (label, saved.status_code)
            event = _one_event(before, f"{label} saved change")
            assert (event.action, event.object_id) == ("admin_change", str(obj.pk)), label
        else:
            assert saved.status_code == 403, label  # read-only: nothing written, nothing to audit
            assert not _new_events(before), label
    assert {"classifier.patient", "classifier.study", "classifier.image", "classifier.auditevent"} <= set(walked)


def test_an_admin_setting_a_study_to_reviewed_at_priority_minus_100_is_recorded(rows) -> None:
    client = _admin_client()
    study = rows["study"]
    old_status, old_priority = study.status, study.priority
    page = client.get(f"/admin/classifier/study/{study.pk}/change/")
    data = {**_change_data(page), "status": Study.Status.REVIEWED, "priority": "-100"}
    before = AuditEvent.objects.count()
    assert client.post(f"/admin/classifier/study/{study.pk}/change/", data).status_code == 302
    study.refresh_from_db()
    assert (study.status, study.priority) == (Study.Status.REVIEWED, -100.0)
    event = _one_event(before, "the study's change")
    assert event.action == "admin_change" and event.actor_username == "root"
    assert (event.object_type, event.object_id) == ("classifier.study", str(study.pk))
    assert event.detail["changes"] == {
        "status": {"old": old_status, "new": "reviewed"},
        "priority": {"old": old_priority, "new": -100.0},
    }
    assert set(event.detail["fields"]) == {"status", "priority"}


def test_admin_events_never_hold_patient_identifiers(rows) -> None:
    client = _admin_client()
    patient = rows["patient"]
    page = client.get(f"/admin/classifier/patient/{patient.pk}/change/")
    data = {**_change_data(page), "mrn": "MRN-RENAMED", "name": "Renamed^Patient", "sex": "M"}
    assert client.post(f"/admin/classifier/patient/{patient.pk}/change/", data).status_code == 302
    assert client.get("/admin/classifier/patient/", {"q": "MRN-RENAMED"}).status_code == 200
    change, listing = AuditEvent.objects.filter(action__in=["admin_change", "admin_list"]).order_by("pk")
    assert set(change.detail["fields"]) == {"mrn", "name", "sex"}
    assert change.detail["changes"] == {"sex": {"old": "F", "new": "M"}}
    assert listing.detail["search"] == "<redacted>"
    text = str([e.detail for e in AuditEvent.objects.filter(action__startswith="admin_")])
    for identifier in ("MRN-AUDIT", "MRN-RENAMED", "Audit^Walk", "Renamed^Patient"):
        assert identifier not in text


def test_admin_adds_and_deletes_one_and_in_bulk_are_audited(rows) -> None:
    client = _admin_client()
    added = client.post("/admin/classifier/patient/add/", {"mrn": "MRN-NEW", "name": "", "sex": "U", "_save": "Save"})
    assert added.status_code == 302
    patient = Patient.objects.get(mrn="MRN-NEW")
    (event,) = AuditEvent.objects.filter(action="admin_add")
    assert event.object_id == str(patient.pk) and event.detail["values"] == {"sex": "U"}
    before = AuditEvent.objects.count()
    assert client.get(f"/admin/classifier/patient/{patient.pk}/history/").status_code == 200
    event = _one_event(before, "the history page")
    assert (event.action, event.object_id, event.detail["page"]) == ("admin_view", str(patient.pk), "history")
    before = AuditEvent.objects.count()
    assert client.get(f"/admin/classifier/patient/{patient.pk}/delete/").status_code == 200
    assert client.post(f"/admin/classifier/patient/{patient.pk}/delete/", {"post": "yes"}).status_code == 302
    assert [(e.action, e.object_id) for e in _new_events(before)] == [
        ("admin_view", str(patient.pk)),
        ("admin_delete", str(patient.pk)),
    ]
    spare = [Patient.objects.create(mrn=f"MRN-BULK{i}") for i in range(2)]
    selected = {"action": "delete_selected", "_selected_action": [p.pk for p in spare]}
    before = AuditEvent.objects.count()
    assert client.post("/admin/classifier/patient/", selected).status_code == 200  # the confirmation page
    assert client.post("/admin/classifier/patient/", {**selected, "post": "yes"}).status_code == 302
    events = _new_events(before)
    assert [e.action for e in events] == ["admin_action", "admin_delete", "admin_delete"]
    assert {e.object_id for e in events[1:]} == {str(p.pk) for p in spare}
    assert not Patient.objects.filter(mrn__startswith="MRN-BULK").exists()


def test_an_admin_change_whose_audit_fails_is_rolled_back(rows, monkeypatch) -> None:
    import classifier.admin_audit

    client = _admin_client()
    study = rows["study"]
    page = client.get(f"/admin/classifier/study/{study.pk}/change/")

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(classifier.admin_audit, "audit_record", refuse)
    with pytest.raises(RuntimeError):
        client.post(f"/admin/classifier/study/{study.pk}/change/", {**_change_data(page), "priority": "-100"})
    study.refresh_from_db()
    assert study.priority != -100.0
