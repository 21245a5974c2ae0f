"""The study page, its status poll, role-checked image files and the re-run action.

Images are never served from MEDIA_URL: every file goes through :func:`prediction_image`,
which checks the role and writes a ``view_image`` audit event.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from classifier.forms import ReviewForm
from classifier.http import audit_context, request_user
from classifier.models import Image, Label, Prediction, Study
from classifier.roles import action_required, user_can
from classifier.selectors.dicom import dicom_deliveries_by_image
from classifier.selectors.studies import study_detail as study_detail_query
from classifier.selectors.studies import study_pending
from classifier.services.audit import audit_record
from classifier.services.predictions import prediction_rerun as prediction_rerun_service

# Which stored file each image kind is; "display" exists once the worker stores it.
IMAGE_KINDS = ("heatmap", "display", "heatmap_rgba")


@action_required("view_studies")
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    """Everything about one study; writes a ``view_study`` audit event."""
    try:
        study, panels, previous = study_detail_query(study_id)
    except Study.DoesNotExist:
        raise Http404("No such study.") from None
    audit_record(actor=request.user, action="view_study", obj=study, audit=audit_context(request))
    can_review = user_can(request.user, "review")
    deliveries = dicom_deliveries_by_image(study.pk)
    for panel in panels:
        panel.dicom_deliveries = deliveries.get(panel.image.pk, [])
        reviewable = panel.latest is not None and panel.reviewable and can_review
        panel.form = ReviewForm(initial={"prediction": panel.latest.pk}) if reviewable and panel.latest else None
    current = next((p for p in panels if p.reviewable and not p.reviews), None)
    return render(
        request,
        "classifier/study.html",
        {
            "study": study,
            "panels": panels,
            "previous": previous,
            "labels": Label.choices,
            "current_panel": current,
            "queue": request.GET.get("queue") == "1",
            "pending": any(p.latest and p.latest.status in ("pending", "running") for p in panels),
        },
    )


@action_required("view_studies")
def study_status(request: HttpRequest, study_id: int) -> JsonResponse:
    """Polled by the study page while a prediction is pending. Statuses only, but of one
    patient's study: audited like the worklist poll."""
    try:
        state = study_pending(study_id)
    except Study.DoesNotExist:
        raise Http404("No such study.") from None
    audit_record(
        actor=request.user,
        action="study_poll",
        object_type="classifier.study",
        audit=audit_context(request),
        detail={"study": study_id},
    )
    return JsonResponse(state)


@action_required("view_studies")
def prediction_image(request: HttpRequest, prediction_id: int, kind: str) -> FileResponse:
    """A prediction's heatmap overlay or display PNG, role-checked and audited."""
    if kind not in IMAGE_KINDS:
        raise Http404("Unknown image kind.")
    prediction = get_object_or_404(Prediction.objects.select_related("image"), pk=prediction_id)
    stored = getattr(prediction, kind, None)
    if not stored:
        raise Http404("This image is not available.")
    try:
        handle = stored.open("rb")
    except FileNotFoundError:
        raise Http404("The stored image file is missing.") from None
    audit_record(
        actor=request.user,
        action="view_image",
        obj=prediction.image,
        audit=audit_context(request),
        detail={"prediction": prediction.pk, "kind": kind},
    )
    response = FileResponse(handle, content_type="image/png")
    # Patient images must not linger in shared caches or the browser's disk cache.
    response["Cache-Control"] = "private, no-store"
    return response


@action_required("view_studies")
def image_film(request: HttpRequest, image_id: int) -> FileResponse:
    """The image's film (original values, zlib uint16) for the viewer; role-checked and audited."""
    image = get_object_or_404(Image, pk=image_id)
    if not image.film:
        raise Http404("This image has no film yet.")
    try:
        handle = image.film.open("rb")
    except FileNotFoundError:
        raise Http404("The stored film is missing.") from None
    audit_record(
        actor=request.user, action="view_image", obj=image, audit=audit_context(request), detail={"kind": "film"}
    )
    response = FileResponse(handle, content_type="application/octet-stream")
    response["Cache-Control"] = "private, no-store"
    return response


@action_required("upload")
@require_POST
def prediction_rerun(request: HttpRequest, image_id: int) -> HttpResponse:
    """Queue a new prediction on the active model; the earlier ones stay in the history."""
    image = get_object_or_404(Image, pk=image_id)
    prediction_rerun_service(image=image, requested_by=request_user(request), audit=audit_context(request))
    messages.success(request, "A new analysis on the active model was queued; the earlier result is kept.")
    return redirect("study_detail", study_id=image.study_id)
