"""Radiologist review: submit, the "next unreviewed" queue, agreement statistics."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from classifier.forms import ReviewForm
from classifier.http import audit_context, request_user
from classifier.models import Prediction
from classifier.roles import action_required
from classifier.selectors.agreement import MIN_ABNORMAL_FOR_LOCAL_THRESHOLD, flag_performance, review_agreement
from classifier.selectors.reviews import review_next_study
from classifier.services.errors import ServiceError
from classifier.services.reviews import review_submit as review_submit_service
from training.models import SiteThreshold

SKIPPED_KEY = "review_skipped"  # session: studies passed over with "n" in this sitting
MAX_SKIPPED = 200


@action_required("review")
@require_POST
def review_submit(request: HttpRequest, study_id: int) -> HttpResponse:
    """Confirm or correct the latest prediction of one image of the study."""
    form = ReviewForm(request.POST)
    in_queue = request.POST.get("queue") == "1"
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect(reverse("study_detail", args=[study_id]) + ("?queue=1" if in_queue else ""))
    prediction = get_object_or_404(
        Prediction.objects.select_related("image"), pk=form.cleaned_data["prediction"], image__study_id=study_id
    )
    try:
        review_submit_service(
            prediction=prediction,
            radiologist=request_user(request),
            decision=form.cleaned_data["decision"],
            label=form.cleaned_data["label"],
            comment=form.cleaned_data["comment"],
            audit=audit_context(request),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("study_detail", study_id=study_id)
    messages.success(request, "Review saved.")
    if in_queue:
        return redirect("review_next")
    return redirect("study_detail", study_id=study_id)


@action_required("review")
def review_next(request: HttpRequest) -> HttpResponse:
    """Open the highest-priority study waiting for review. ``?skip=<id>`` passes one over."""
    skipped: list[int] = list(request.session.get(SKIPPED_KEY, []))
    skip = request.GET.get("skip", "")
    if skip.isdigit():
        skipped = ([*skipped, int(skip)])[-MAX_SKIPPED:]
    study = review_next_study(exclude=skipped)
    if study is None and skipped:
        skipped, study = [], review_next_study(exclude=[])  # everything was skipped once: start over
    request.session[SKIPPED_KEY] = skipped
    if study is None:
        messages.info(request, "No study is waiting for review.")
        return redirect(reverse("worklist") + "?status=done")
    return redirect(reverse("study_detail", args=[study.pk]) + "?queue=1")


@action_required("review")
def review_stats(request: HttpRequest) -> HttpResponse:
    """How often reviews confirm the AI, per radiologist and per model version, how each
    version's flag did against the radiologists' labels here, and (for admins) adopting
    the threshold that would have met the target as this hospital's own."""
    in_force: dict[int | None, SiteThreshold] = {
        site.version_id: site
        for site in SiteThreshold.objects.filter(retired_at__isnull=True).select_related("adopted_by")
    }
    return render(
        request,
        "classifier/review_stats.html",
        {
            "agreement": review_agreement(),
            "flags": [{"perf": row, "site": in_force.get(row.version_id)} for row in flag_performance()],
            "min_abnormal": MIN_ABNORMAL_FOR_LOCAL_THRESHOLD,
        },
    )
