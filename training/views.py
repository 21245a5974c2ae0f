"""Model registry and training pages (admins). Thin: forms -> registry/services -> render.

Promotion and rollback are POSTs behind a confirmation page; the registry audits them.
Plots are served from the version's artifact directory through a role-checked view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from classifier.http import audit_context, request_user
from classifier.roles import action_required
from training import registry
from training.models import Dataset, ModelVersion, TrainingRun
from training.services.runs import architecture_names, reviewed_images_waiting, training_run_start

PLOTS = {
    "roc": "ROC curve (validation)",
    "confusion_matrix": "Confusion matrix (validation)",
    "training_curves": "Training curves",
    "reliability": "Reliability (calibration)",
}
SCHEDULED_TASKS = ("training.tasks.retrain_check_task", "classifier.tasks.prediction_sweep_task")


class TrainingStartForm(forms.Form):
    """The few knobs an administrator sets; everything else comes from the default recipe."""

    # A callable: the names come from the trainers when the form is built, not imported here.
    architecture = forms.ChoiceField(choices=lambda: [(a, a) for a in architecture_names()], initial="cxr_net")
    epochs = forms.IntegerField(min_value=1, max_value=200, initial=20)
    batch_size = forms.IntegerField(min_value=1, max_value=256, initial=32)
    input_size = forms.TypedChoiceField(
        coerce=int, initial=224, choices=[(s, f"{s} px") for s in (32, 64, 128, 224, 256, 320)]
    )
    lung_crop = forms.BooleanField(required=False, initial=True, label="Crop to the lungs")
    include_reviews = forms.BooleanField(required=False, initial=True, label="Include radiologist-reviewed images")
    datasets = forms.ModelMultipleChoiceField(
        queryset=Dataset.objects.order_by("name"),
        required=False,
        help_text="None selected = all datasets.",
        widget=forms.CheckboxSelectMultiple,
    )

    def spec(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "train": {"architecture": data["architecture"], "epochs": data["epochs"], "batch_size": data["batch_size"]},
            "preprocess": {"input_size": data["input_size"], "lung_crop": data["lung_crop"]},
        }


def _binary(version: ModelVersion, split: str = "val") -> dict[str, Any]:
    return ((version.metrics or {}).get(split) or {}).get("binary") or {}


def _schedule() -> list[Any]:
    from django_celery_beat.models import PeriodicTask

    return list(
        PeriodicTask.objects.filter(task__in=SCHEDULED_TASKS).select_related("interval", "crontab").order_by("name")
    )


@action_required("manage_models")
def model_list(request: HttpRequest) -> HttpResponse:
    """Versions with key metrics, training runs, the schedule and the review backlog."""
    versions = list(ModelVersion.objects.select_related("parent").order_by("name", "-version"))
    for version in versions:
        version.val_binary = _binary(version)  # type: ignore[attr-defined]  # for the template
    return render(
        request,
        "training/model_list.html",
        {
            "versions": versions,
            "active": registry.active_version(),
            "runs": TrainingRun.objects.select_related("model_version", "created_by").order_by("-created_at")[:20],
            "schedule": _schedule(),
            "waiting": reviewed_images_waiting(),
            "form": TrainingStartForm(),
        },
    )


@action_required("manage_models")
def model_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    """One version: metrics, plots, model card, thresholds, data snapshot."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    plots_dir = Path(version.artifact_dir) / "plots"
    plots = [(name, title) for name, title in PLOTS.items() if (plots_dir / f"{name}.png").is_file()]
    snapshot = version.data_snapshot or {}
    return render(
        request,
        "training/model_detail.html",
        {
            "version": version,
            "val": _binary(version, "val"),
            "test": _binary(version, "test"),
            "plots": plots,
            "counts": snapshot.get("counts") or {},
            "run": TrainingRun.objects.filter(model_version=version).first(),
        },
    )


@action_required("manage_models")
def model_plot(request: HttpRequest, version_id: int, name: str) -> FileResponse:
    """A plot PNG from the version's artifact directory (allow-listed names only)."""
    if name not in PLOTS:
        raise Http404("Unknown plot.")
    version = get_object_or_404(ModelVersion, pk=version_id)
    path = Path(version.artifact_dir) / "plots" / f"{name}.png"
    if not path.is_file():
        raise Http404("This version has no such plot.")
    return FileResponse(path.open("rb"), content_type="image/png")


@action_required("manage_models")
@require_http_methods(["GET", "POST"])
def model_promote(request: HttpRequest, version_id: int) -> HttpResponse:
    """GET: the confirmation page. POST: activate the version (the registry audits it)."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    if request.method == "POST":
        try:
            registry.version_activate(
                version=version,
                actor=request.user,
                audit=audit_context(request),
                reason="promoted from the web interface",
            )
        except registry.RegistryError as exc:
            messages.error(request, f"Not promoted: {exc}")
            return redirect("model_detail", version_id=version.pk)
        messages.success(request, f"{version} is now active; new predictions use it.")
        return redirect("model_list")
    return render(
        request,
        "training/confirm.html",
        {
            "title": f"Promote {version}?",
            "action": "Promote",
            "version": version,
            "current": registry.active_version(version.name),
            "explanation": "New predictions will use this version from their next task. "
            "Results already produced keep the version that made them.",
        },
    )


@action_required("manage_models")
@require_http_methods(["GET", "POST"])
def model_rollback(request: HttpRequest) -> HttpResponse:
    """GET: the confirmation page. POST: re-activate the previously active version."""
    if request.method == "POST":
        try:
            version = registry.version_rollback(actor=request.user, audit=audit_context(request))
        except registry.RegistryError as exc:
            messages.error(request, f"Not rolled back: {exc}")
            return redirect("model_list")
        messages.success(request, f"Rolled back: {version} is active again.")
        return redirect("model_list")
    return render(
        request,
        "training/confirm.html",
        {
            "title": "Roll back to the previous model?",
            "action": "Roll back",
            "version": None,
            "current": registry.active_version(),
            "explanation": "The version that was active before the current one becomes active again.",
        },
    )


@action_required("start_training")
@require_http_methods(["GET", "POST"])
def training_start(request: HttpRequest) -> HttpResponse:
    """Start a training run on the training queue and open its progress page."""
    form = TrainingStartForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            run = training_run_start(
                spec=form.spec(),
                datasets=list(form.cleaned_data["datasets"]),
                include_reviews=form.cleaned_data["include_reviews"],
                created_by=request_user(request),
                audit=audit_context(request),
            )
        except ValueError as exc:  # the spec validator explains what is wrong
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Training run #{run.pk} queued.")
            return redirect("training_detail", run_id=run.pk)
    return render(
        request,
        "training/training_start.html",
        {"form": form, "waiting": reviewed_images_waiting()},
        status=400 if form.errors else 200,
    )


@action_required("manage_models")
def training_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    """A run's progress bar and live loss curve (polled), its spec and its outcome."""
    run = get_object_or_404(TrainingRun.objects.select_related("model_version", "created_by"), pk=run_id)
    return render(request, "training/training_detail.html", {"run": run, "datasets": run.datasets.all()})


@action_required("manage_models")
def training_progress(request: HttpRequest, run_id: int) -> JsonResponse:
    """What the run page polls: status, the latest epoch record and, once known, the history."""
    run = get_object_or_404(TrainingRun.objects.select_related("model_version"), pk=run_id)
    version = run.model_version
    return JsonResponse(
        {
            "status": run.status,
            "status_label": run.get_status_display(),
            "progress": run.progress or {},
            "history": run.history or {},
            "error_message": run.error_message,
            "final": run.status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED),
            "promotion": run.promotion or {},
            "model_version": {"name": str(version), "url": f"/models/{version.pk}/"} if version else None,
        }
    )
