"""Model registry and training pages (admins). Thin: forms -> registry/services -> render.

Promotion and rollback are POSTs behind a confirmation page; the registry audits them.
Plots are served from the version's artifact directory through a role-checked view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from classifier.artifact_store import artifact_has, artifact_open
from classifier.http import audit_context, request_user
from classifier.roles import action_required
from classifier.services.errors import ServiceError
from training import registry
from training.models import Dataset, DatasetImport, ModelVersion, SiteThreshold, TrainingRun
from training.services.imports import ImportRefused, dataset_import_start, import_root
from training.services.progress import run_progress
from training.services.promotion import promotion_summary, version_promote
from training.services.runs import architecture_names, reviewed_images_waiting, training_run_start
from training.services.site_thresholds import site_threshold_adopt, site_threshold_retire

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
    runs = list(TrainingRun.objects.select_related("model_version", "created_by").order_by("-created_at")[:20])
    for run in runs:
        run.state = run_progress(run)  # type: ignore[attr-defined]  # for the template
    return render(
        request,
        "training/model_list.html",
        {
            "versions": versions,
            "active": registry.active_version(),
            "runs": runs,
            "schedule": _schedule(),
            "waiting": reviewed_images_waiting(),
            "form": TrainingStartForm(),
            "no_datasets": not Dataset.objects.exists(),
        },
    )


@action_required("manage_models")
def model_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    """One version: metrics, plots, model card, thresholds (this hospital's too), data snapshot."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    plots = [(name, title) for name, title in PLOTS.items() if artifact_has(version, f"plots/{name}.png")]
    snapshot = version.data_snapshot or {}
    site_thresholds = list(version.site_thresholds.select_related("adopted_by", "retired_by"))
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
            "activations": version.activations.select_related("previous", "actor").order_by("-created_at", "-pk"),
            "site_thresholds": site_thresholds,
            "site_threshold_current": next((s for s in site_thresholds if s.in_force), None),
        },
    )


class SiteThresholdForm(forms.Form):
    """Why this hospital's threshold changes; the threshold itself is recomputed from the reviews."""

    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}), label="Reason")


def _site_threshold_change(
    request: HttpRequest,
    version_id: int,
    change: Callable[..., SiteThreshold],
    done: Callable[[ModelVersion, SiteThreshold], str],
) -> HttpResponse:
    """Run ``change`` (adopt or retire) with the form's reason; say what happened and go
    back to the page the form was on (the model page unless ``return_to=stats``)."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    form = SiteThresholdForm(request.POST)
    back = (
        redirect("review_stats")
        if request.POST.get("return_to") == "stats"
        else redirect("model_detail", version_id=version.pk)
    )
    if not form.is_valid():
        messages.error(request, "Write why this hospital's threshold changes; it is kept and audited.")
        return back
    try:
        site = change(
            version=version,
            actor=request_user(request),
            reason=form.cleaned_data["reason"],
            audit=audit_context(request),
        )
    except ServiceError as exc:
        messages.error(request, f"Not changed: {exc.message}")
        return back
    messages.success(request, done(version, site))
    return back


@action_required("manage_models")
@require_POST
def site_threshold_adopt_view(request: HttpRequest, version_id: int) -> HttpResponse:
    """Adopt the threshold that met the version's target on this hospital's reviews."""
    return _site_threshold_change(
        request,
        version_id,
        site_threshold_adopt,
        lambda version, site: (
            f"{version} now flags at {site.threshold:.4f} here (its own threshold "
            f"{site.artifact_threshold:.4f}); new predictions use it, earlier ones keep theirs."
        ),
    )


@action_required("manage_models")
@require_POST
def site_threshold_retire_view(request: HttpRequest, version_id: int) -> HttpResponse:
    """Return the version to its artifact's threshold."""
    return _site_threshold_change(
        request,
        version_id,
        site_threshold_retire,
        lambda version, site: f"{version} flags at its own threshold {site.artifact_threshold:.4f} again.",
    )


@action_required("manage_models")
def model_plot(request: HttpRequest, version_id: int, name: str) -> FileResponse:
    """A plot PNG from the version's artifact directory (allow-listed names only)."""
    if name not in PLOTS:
        raise Http404("Unknown plot.")
    version = get_object_or_404(ModelVersion, pk=version_id)
    if not artifact_has(version, f"plots/{name}.png"):
        raise Http404("This version has no such plot.")
    try:
        handle = artifact_open(version, f"plots/{name}.png")
    except FileNotFoundError:
        raise Http404("This version has no such plot.") from None
    return FileResponse(handle, content_type="image/png")


class PromoteForm(forms.Form):
    """An override is needed only when the gate failed; then the reason is required."""

    override = forms.BooleanField(required=False, label="Promote although the gate failed")
    override_reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Reason for the override",
        help_text="Stored with the activation, shown on the version page and recorded in the audit log.",
    )

    def __init__(self, *args: Any, gate_passed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate_passed = gate_passed

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.gate_passed:
            data["override_reason"] = ""
        elif not data.get("override"):
            self.add_error("override", "This version failed the gate: tick the override to promote it anyway.")
        elif not (data.get("override_reason") or "").strip():
            self.add_error("override_reason", "Write why this version goes live although it failed the gate.")
        return data


@action_required("manage_models")
@require_http_methods(["GET", "POST"])
def model_promote(request: HttpRequest, version_id: int) -> HttpResponse:
    """GET: the candidate beside the active version and the gate's verdict. POST: promote
    (a version that failed the gate only with the override and a reason)."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    summary = promotion_summary(version)
    form = PromoteForm(
        request.POST if request.method == "POST" else None, gate_passed=bool(summary["gate"].get("promote"))
    )
    if request.method == "POST" and form.is_valid():
        try:
            version_promote(
                version=version,
                actor=request.user,
                audit=audit_context(request),
                reason="promoted from the web interface",
                override_reason=form.cleaned_data["override_reason"],
            )
        except registry.RegistryError as exc:
            messages.error(request, f"Not promoted: {exc}")
            return redirect("model_detail", version_id=version.pk)
        messages.success(request, f"{version} is now active; new predictions use it.")
        return redirect("model_list")
    return render(
        request,
        "training/promote.html",
        {**summary, "version": version, "form": form},
        status=400 if form.errors else 200,
    )


@action_required("manage_models")
@require_http_methods(["GET", "POST"])
def model_rollback(request: HttpRequest) -> HttpResponse:
    """GET: the confirmation page naming the target. POST: re-activate the version the
    active one's latest promotion replaced (the registry audits it)."""
    if request.method == "POST":
        try:
            version = registry.version_rollback(actor=request.user, audit=audit_context(request))
        except registry.RegistryError as exc:
            messages.error(request, f"Not rolled back: {exc}")
            return redirect("model_list")
        messages.success(request, f"Rolled back: {version} is active again.")
        return redirect("model_list")
    target = registry.rollback_target()
    return render(
        request,
        "training/confirm.html",
        {
            "title": f"Roll back to {target}?" if target else "Nothing to roll back to",
            "action": "Roll back",
            "version": target,
            "current": registry.active_version(),
            "explanation": (
                f"{target} was active before the current version was promoted; it becomes active again. "
                "Rolling back again goes further back in the activation history, never forward."
                if target
                else "The active version has no earlier version in the activation history."
            ),
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
            # No flash message: the run page says the status itself and keeps it current
            # (a "queued" message would stay on screen after the run succeeded).
            return redirect("training_detail", run_id=run.pk)
    return render(
        request,
        "training/training_start.html",
        {"form": form, "waiting": reviewed_images_waiting(), "no_datasets": not Dataset.objects.exists()},
        status=400 if form.errors else 200,
    )


class DatasetImportForm(forms.Form):
    directory = forms.CharField(
        max_length=500,
        label="Folder on the server",
        help_text="Absolute, or relative to the import folder. Layout folders: DIR/<LABEL>/files or "
        "DIR/<split>/<LABEL>/files with LABEL one of NORMAL, PNEUMONIA_BACTERIAL, PNEUMONIA_VIRAL, "
        "PNEUMONIA, COVID19 (an optional manifest.csv names patients and views).",
    )
    layout = forms.ChoiceField(choices=Dataset.Layout.choices, initial=Dataset.Layout.FOLDERS)
    name = forms.CharField(max_length=128, required=False, help_text="Dataset name (default: the folder's name).")
    default_split = forms.ChoiceField(
        required=False,
        choices=[("", "Assigned by patient at training time"), ("train", "train"), ("val", "val"), ("test", "test")],
        help_text="For images whose layout names no split.",
    )


@action_required("start_training")
@require_http_methods(["GET", "POST"])
def dataset_import(request: HttpRequest) -> HttpResponse:
    """Import a server-side folder of labelled images as a dataset (a task on the training queue)."""
    form = DatasetImportForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            job = dataset_import_start(
                directory=form.cleaned_data["directory"],
                layout=form.cleaned_data["layout"],
                name=form.cleaned_data["name"],
                default_split=form.cleaned_data["default_split"],
                created_by=request_user(request),
                audit=audit_context(request),
            )
        except ImportRefused as exc:
            form.add_error("directory", str(exc))
        else:
            return redirect("dataset_import_detail", import_id=job.pk)
    return render(
        request,
        "training/dataset_import.html",
        {
            "form": form,
            "root": import_root(),
            "datasets": Dataset.objects.annotate(n=Count("images")).order_by("name"),
            "imports": DatasetImport.objects.select_related("dataset", "created_by")[:10],
        },
        status=400 if form.errors else 200,
    )


@action_required("start_training")
def dataset_import_detail(request: HttpRequest, import_id: int) -> HttpResponse:
    job = get_object_or_404(DatasetImport.objects.select_related("dataset", "created_by"), pk=import_id)
    return render(request, "training/dataset_import_detail.html", {"job": job})


@action_required("start_training")
def dataset_import_progress(request: HttpRequest, import_id: int) -> JsonResponse:
    """What the import page polls."""
    job = get_object_or_404(DatasetImport.objects.select_related("dataset"), pk=import_id)
    progress = job.progress or {}
    total, done = progress.get("total") or 0, progress.get("done") or 0
    return JsonResponse(
        {
            "status": job.status,
            "status_label": job.get_status_display(),
            "progress": progress,
            "percent": 100 if job.status == DatasetImport.Status.SUCCEEDED else int(100 * done / total) if total else 0,
            "final": job.status in (DatasetImport.Status.SUCCEEDED, DatasetImport.Status.FAILED),
            "error_message": job.error_message,
            "dataset": job.dataset.name if job.dataset else None,
        }
    )


@action_required("manage_models")
def training_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    """A run's progress bar and live loss curve (polled), its spec and its outcome."""
    run = get_object_or_404(TrainingRun.objects.select_related("model_version", "created_by"), pk=run_id)
    return render(
        request,
        "training/training_detail.html",
        {"run": run, "datasets": run.datasets.all(), "state": run_progress(run)},
    )


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
            **run_progress(run),
            "model_version": {"name": str(version), "url": f"/models/{version.pk}/"} if version else None,
        }
    )
