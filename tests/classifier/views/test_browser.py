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

from classifier.models import Prediction, Review
from tests.classifier.views.test_upload_review import dicom_bytes
from tests.conftest import synthetic_png, wait_for

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


def _login(browser, base: str, username: str):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
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

    # --- clinician: upload a DICOM (identifiers from its header) and a PNG into the same study
    clinician = _login(browser, base, "u-clinician")
    _shot(clinician, "01-worklist-empty")
    clinician.goto(f"{base}/studies/upload/")
    dicom_path = SHOTS.parent / "chest.dcm"
    dicom_path.write_bytes(dicom_bytes(mrn="MRN-B1", accession="ACC-B1", size=128))
    png_path = SHOTS.parent / "chest.png"
    png_path.write_bytes(synthetic_png(128, seed=11))
    clinician.set_input_files("#id_files", [str(dicom_path), str(png_path)])
    clinician.wait_for_function("document.getElementById('id_mrn').value === 'MRN-B1'")
    assert clinician.input_value("#id_accession_number") == "ACC-B1"
    clinician.fill("#id_clinical_notes", "Fever and cough for 3 days; pneumonia?")
    _shot(clinician, "02-upload-prefilled")
    clinician.click("#upload-submit")
    clinician.wait_for_function("document.querySelectorAll('#file-list .file.ok').length === 2")
    _shot(clinician, "03-upload-done")

    clinician.goto(f"{base}/")
    row = clinician.locator("table.worklist tbody tr").first
    row.get_by_text("AI result ready").wait_for(timeout=180_000)  # the row updates itself by polling
    _shot(clinician, "04-worklist-done")
    wait_for(lambda: Prediction.objects.filter(status="done").count() == 2, 60, message=worker.output)
    row.get_by_role("link").click()
    clinician.wait_for_selector("img[alt*='heatmap']")
    assert clinician.locator("img[alt*='heatmap']").count() == 2
    for img in clinician.locator("img[alt*='heatmap']").all():  # really loaded, through the role-checked view
        # wait for the download (slow on a loaded machine), then check it decoded as an image
        img.evaluate("i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })")
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
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

    # --- radiologist: the review queue, keyboard help, correct one image with the keyboard
    radiologist = _login(browser, base, "u-radiologist")
    radiologist.goto(f"{base}/review/next/")
    radiologist.wait_for_selector("form[data-review-form]")
    radiologist.keyboard.press("?")
    radiologist.wait_for_selector("#help-dialog:not([hidden])")
    _shot(radiologist, "08-review-help")
    radiologist.keyboard.press("Escape")
    radiologist.keyboard.press("4")  # COVID-19
    assert radiologist.locator("form.review-form.current [data-label-select]").input_value() == "COVID19"
    radiologist.keyboard.press("Enter")
    radiologist.wait_for_selector("text=Review saved.")
    review = Review.objects.get()
    assert review.decision == "correct" and review.label == "COVID19"
    _shot(radiologist, "09-review-next-after-correct")
    radiologist.goto(f"{base}/studies/{review.image.study_id}/")
    assert radiologist.locator("text=current label").count() == 1
    _shot(radiologist, "10-study-reviewed")
    radiologist.goto(f"{base}/review/stats/")
    _shot(radiologist, "11-review-stats")

    # --- admin: reviewed-image count, start a tiny training run, watch it finish
    dataset = _training_dataset()
    admin = _login(browser, base, "u-admin")
    admin.goto(f"{base}/models/")
    assert admin.locator("#reviewed-waiting").inner_text().strip() == "1"
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
