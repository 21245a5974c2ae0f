"""End to end in a real browser: upload -> worker -> heatmaps, review, training, refusals.

Runs Debian's chromium (scripts/browser.sh installs it) through Playwright against
pytest-django's live server and a real Celery worker (inference + training queues).
Screenshots of every page go to artifacts/screenshots/ for a human to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from classifier.models import Image, Prediction, Review, Study
from tests.conftest import synthetic_dicom, synthetic_png, wait_for

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-for-tests-1"  # tests.conftest.role_users

pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing: run scripts/browser.sh"),
]


@pytest.fixture
def browser(monkeypatch) -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield instance
        instance.close()


# Console messages of every page about something the Content-Security-Policy blocked.
CSP_VIOLATIONS: list[str] = []


def _login(browser, base: str, username: str):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: CSP_VIOLATIONS.append(m.text) if "Content Security Policy" in m.text else None)
    page.set_default_timeout(20_000)
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    return page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _training_dataset() -> object:
    """A small labelled dataset with recorded train/val splits, as import_dataset would make.

    Each split stays under 8 images: PreprocessedCache then preprocesses in-process. With
    more it opens a process pool, which a daemonic Celery prefork child may not do
    ("daemonic processes are not allowed to have children").
    """
    from training.models import Dataset, DatasetImage

    labels = ["NORMAL", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "COVID19"]
    dataset = Dataset.objects.create(name="synthetic-browser", layout="folders", source_dir="/synthetic")
    for i in range(12):
        data = synthetic_png(64, seed=100 + i)
        name = default_storage.save(f"datasets/synthetic/{i}.png", ContentFile(data))
        DatasetImage.objects.create(
            dataset=dataset,
            file=name,
            sha256=f"{i:064d}",
            original_path=f"{i}.png",
            label=labels[i % 4],
            patient_key=f"p{i}",
            source="synthetic",
            split="val" if i < 6 else "train",
            format="PNG",
            width=64,
            height=64,
        )
    return dataset


def test_clinician_radiologist_admin_journey(
    browser, live_server, role_users, active_tiny_model, celery_worker_proc
) -> None:
    worker = celery_worker_proc()  # inference and training queues
    base = live_server.url

    # --- clinician: two DICOMs of two patients in one drop, nothing typed: each is filed
    # under the patient and study of its own header (the first header is no prefill for all)
    clinician = _login(browser, base, "u-clinician")
    _shot(clinician, "01-worklist-empty")
    clinician.goto(f"{base}/studies/upload/")
    first = SHOTS.parent / "patient-a.dcm"
    first.write_bytes(synthetic_dicom(mrn="MRN-B1", accession="ACC-B1", size=160, seed=3, patient_name="Doe^Jane"))
    second = SHOTS.parent / "patient-b.dcm"
    second.write_bytes(synthetic_dicom(mrn="MRN-B2", accession="ACC-B2", size=160, seed=4, patient_name="Roe^Rick"))
    clinician.set_input_files("#id_files", [str(first), str(second)])
    clinician.wait_for_function(  # functions, not strings: the CSP forbids eval in the page
        "() => [...document.querySelectorAll('#file-list .who')].every(n => n.textContent.startsWith('From its header'))"
    )
    assert clinician.input_value("#id_mrn") == "" and clinician.input_value("#id_accession_number") == ""
    assert "2 different patients" in clinician.inner_text("#probe-note")
    clinician.fill("#id_clinical_notes", "Fever and cough for 3 days; pneumonia?")
    _shot(clinician, "02-upload-two-patients")
    clinician.click("#upload-submit")
    clinician.wait_for_function("() => document.querySelectorAll('#file-list .file.ok').length === 2")
    assert Study.objects.get(accession_number="ACC-B1").patient.mrn == "MRN-B1"
    assert Study.objects.get(accession_number="ACC-B2").patient.mrn == "MRN-B2"
    # The batch is over: every field is clear, so the next drop cannot join this batch's study.
    assert clinician.input_value("#id_clinical_notes") == "" and clinician.input_value("#id_mrn") == ""
    _shot(clinician, "03-upload-done-fields-cleared")

    # --- a PNG needs typed details: it joins patient A's study; the batch starts clean
    png_path = SHOTS.parent / "chest.png"
    png_path.write_bytes(synthetic_png(128, seed=11))
    clinician.set_input_files("#id_files", [str(png_path)])
    assert clinician.locator("#file-list .file").count() == 1  # the last batch's rows are gone
    clinician.fill("#id_mrn", "MRN-B1")
    clinician.fill("#id_accession_number", "ACC-B1")
    clinician.click("#upload-submit")
    clinician.wait_for_function("() => document.querySelectorAll('#file-list .file.ok').length === 1")
    assert Study.objects.get(accession_number="ACC-B1").images.count() == 2

    # --- the same DICOM again: "already uploaded", nothing new
    studies = Study.objects.count()
    clinician.set_input_files("#id_files", [str(first)])
    clinician.click("#upload-submit")
    clinician.wait_for_selector("#file-list .file.ok >> text=Already uploaded")
    assert Study.objects.count() == studies and Image.objects.count() == 3
    _shot(clinician, "03b-upload-repeated")

    clinician.goto(f"{base}/")
    row = clinician.locator("table.worklist tbody tr").first
    row.get_by_text("AI result ready").wait_for(timeout=180_000)  # the row updates itself by polling
    _shot(clinician, "04-worklist-done")
    wait_for(lambda: Prediction.objects.filter(status="done").count() == 3, 90, message=worker.output)
    two_images = Study.objects.get(accession_number="ACC-B1")
    clinician.goto(f"{base}/studies/{two_images.pk}/")
    # The radiograph itself, windowed from the DICOM's own values, with the heatmap registered onto it.
    clinician.wait_for_selector("[data-viewer][data-film-loaded='1']", timeout=30_000)
    registered = clinician.locator("img[alt*='registered onto the radiograph']")
    assert registered.count() == 2
    for img in registered.all():  # really loaded, through the role-checked view
        # wait for the download (slow on a loaded machine), then check it decoded as an image
        img.evaluate("i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })")
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    assert clinician.locator("[data-thumb]").count() == 2  # thumbnails of a multi-image study
    assert "patient-a.dcm" in clinician.locator("[data-image-name]").first.inner_text()
    film = clinician.locator("[data-film-canvas]").first
    lit = (
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let s = 0;"
        " for (let i = 0; i < d.length; i += 4) s += d[i]; return s / (d.length / 4); }"
    )
    before = film.evaluate(lit)
    clinician.locator("[data-invert]").first.check()
    assert abs(film.evaluate(lit) - (255 - before)) < 2  # invert, on the original values
    clinician.locator("[data-window-preset]").first.select_option(index=1)
    assert "Window" in clinician.locator("[data-window-readout]").first.inner_text()
    clinician.locator("[data-invert]").first.uncheck()
    _shot(clinician, "04b-study-radiograph")
    # Keys act on the viewer in use (the second), also after one of its sliders was touched.
    second_viewer = clinician.locator("[data-viewer]").nth(1)
    second_viewer.scroll_into_view_if_needed()
    second_viewer.click()
    clinician.keyboard.press("+")
    scale = "v => v.querySelector('[data-stage]').style.transform"
    assert "scale(1.25)" in second_viewer.evaluate(scale)
    assert "scale(1)" in clinician.locator("[data-viewer]").first.evaluate(scale)
    clinician.locator("[data-opacity]").nth(1).focus()
    clinician.keyboard.press("+")
    assert "scale(1.5625)" in second_viewer.evaluate(scale)
    clinician.locator("[data-show=input]").nth(1).click()  # the model's input, as a second view
    assert clinician.locator("[data-layer=input]").nth(1).is_visible()
    assert clinician.locator("text=Decision support, not a diagnosis").count() == 1
    _shot(clinician, "05-study-clinician")
    clinician.set_viewport_size({"width": 800, "height": 1100})  # tablet portrait
    _shot(clinician, "05b-study-tablet")
    clinician.goto(f"{base}/")
    _shot(clinician, "05c-worklist-tablet")
    clinician.set_viewport_size({"width": 1366, "height": 900})

    # --- clinician is refused the review and model pages
    for path, name in (("/review/stats/", "06-clinician-review-403"), ("/models/", "07-clinician-models-403")):
        response = clinician.goto(f"{base}{path}")
        assert response.status == 403
        assert clinician.locator("h1", has_text="Not allowed").count() == 1
        _shot(clinician, name)

    # --- radiologist: the review queue, keyboard help; keys act on the image in view
    radiologist = _login(browser, base, "u-radiologist")
    radiologist.goto(f"{base}/review/next/")
    radiologist.wait_for_selector("form[data-review-form]")
    radiologist.keyboard.press("?")
    radiologist.wait_for_selector("#help-dialog:not([hidden])")
    _shot(radiologist, "08-review-help")
    radiologist.keyboard.press("Escape")
    radiologist.goto(f"{base}/studies/{two_images.pk}/")
    panels = [f"image-{pk}" for pk in two_images.images.order_by("created_at", "id").values_list("pk", flat=True)]
    in_view = (
        "id => { const p = document.getElementById(id), r = p.getBoundingClientRect();"
        " return document.activeElement.closest('.image-panel') === p && r.top >= -1 && r.top < innerHeight / 2; }"
    )
    radiologist.wait_for_function(in_view, arg=panels[0])  # the first unreviewed image, in view and focused
    radiologist.keyboard.press("c")
    radiologist.wait_for_selector("text=Review saved.")
    # After the reload the next unreviewed image is the one in view and focused, so the
    # next key acts on what the radiologist sees, never on an image off screen.
    radiologist.wait_for_function(in_view, arg=panels[1])
    _shot(radiologist, "09-review-next-image-in-view")
    radiologist.keyboard.press("4")  # COVID-19
    assert radiologist.locator("form.review-form.current [data-label-select]").input_value() == "COVID19"
    radiologist.keyboard.press("Enter")
    radiologist.wait_for_selector("text=Review saved.")
    reviews = list(Review.objects.order_by("created_at"))
    assert (reviews[0].image.pk, reviews[0].decision) == (int(panels[0].split("-")[1]), "confirm")
    assert reviews[1].image.pk == int(panels[1].split("-")[1]) and reviews[1].label == "COVID19"
    assert radiologist.locator("text=current label").count() == 2
    _shot(radiologist, "10-study-reviewed")
    radiologist.goto(f"{base}/review/stats/")
    _shot(radiologist, "11-review-stats")

    # --- admin: reviewed-image count, start a tiny training run, watch it finish
    dataset = _training_dataset()
    admin = _login(browser, base, "u-admin")
    admin.goto(f"{base}/models/")
    assert admin.locator("#reviewed-waiting").inner_text().strip() == "2"
    admin.select_option("#id_architecture", "s0_cnn")
    admin.fill("#id_epochs", "2")
    admin.fill("#id_batch_size", "8")
    admin.select_option("#id_input_size", "32")
    admin.uncheck("#id_lung_crop")
    admin.check(f"#training-form input[name=datasets][value='{dataset.pk}']")
    _shot(admin, "12-models")
    admin.click("#training-form button[type=submit]")
    admin.wait_for_url(re.compile(r".*/training/\d+/$"))
    admin.wait_for_selector("#run-status.status-running, #run-status.status-succeeded", timeout=120_000)
    admin.wait_for_selector("#run-status.status-succeeded, #run-status.status-failed", timeout=400_000)
    _shot(admin, "13-training-run")
    assert "status-succeeded" in admin.get_attribute("#run-status", "class"), worker.output()[-3000:]
    assert admin.get_attribute("#loss-train", "points").count(",") == 2  # two epochs on the curve
    admin.click("#run-outcome a")
    admin.wait_for_selector("figure img")
    _shot(admin, "14-model-version")
    admin.goto(f"{base}/audit/?action=view_image")
    assert admin.locator("table.audit tbody tr").count() >= 2
    _shot(admin, "15-audit")
    assert CSP_VIOLATIONS == []  # every page worked under its Content-Security-Policy


def test_admin_promotes_a_gate_failing_version_only_with_an_override(
    browser, live_server, role_users, active_tiny_model, tiny_artifacts
) -> None:
    """The journey's promotion: the confirm page shows the candidate beside the active model and
    the gate's reasons; a version that failed the gate goes live only with a written override,
    shown on its page; rolling back names its target and returns to the champion."""
    from training import registry
    from training.models import ModelVersion

    def val(auc: float, sensitivity: float) -> dict:
        binary = {"threshold": 0.3, "sensitivity": sensitivity, "specificity": 0.8, "auc": auc, "n": 60}
        return {"val": {"binary": {**binary, "n_pos": 30, "n_neg": 30, "ci": {"auc": [auc - 0.02, auc + 0.02]}}}}

    champion = active_tiny_model
    ModelVersion.objects.filter(pk=champion.pk).update(metrics=val(0.97, 0.95))
    weak = registry.version_register(source_dir=tiny_artifacts[1])
    ModelVersion.objects.filter(pk=weak.pk).update(metrics=val(0.46, 0.50))
    base = live_server.url
    admin = _login(browser, base, "u-admin")
    admin.goto(f"{base}/models/{weak.pk}/promote/")
    comparison = admin.inner_text("#promote-comparison")
    assert "0.460" in comparison and "0.970" in comparison and f"{champion} (active)" in comparison
    assert "FAILED the promotion gate" in admin.inner_text("#gate-result")
    assert "is below the champion" in admin.inner_text("#gate-result")
    _shot(admin, "16-promote-gate-failed")
    admin.click("#promote-form button[type=submit]")  # no override: refused, still the candidate
    admin.wait_for_selector("text=tick the override")
    assert registry.active_version() == champion
    admin.check("#id_override")
    admin.fill("#id_override_reason", "Validated on 400 local radiographs; see ticket CXR-12")
    admin.click("#promote-form button[type=submit]")
    admin.wait_for_url(re.compile(r".*/models/$"))
    assert registry.active_version() == weak
    admin.goto(f"{base}/models/{weak.pk}/")
    assert "Validated on 400 local radiographs" in admin.inner_text(".gate-override")
    _shot(admin, "17-version-promoted-over-gate")
    admin.goto(f"{base}/models/rollback/")
    assert str(champion) in admin.inner_text("#rollback-target")
    admin.click("form.buttons button[type=submit]")
    admin.wait_for_url(re.compile(r".*/models/$"))
    assert registry.active_version() == champion
    assert CSP_VIOLATIONS == []
