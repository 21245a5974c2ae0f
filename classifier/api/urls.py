"""API routes: /api/v1/ (REST), /api/schema/ + /api/docs/ (OpenAPI), /dicomweb/, /fhir/."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from classifier.api import errors, fhir, fhir_search
from classifier.api.dicomweb import views as dicomweb
from classifier.api.dicomweb import wado
from classifier.api.v1 import images, patients, predictions, reviews, studies, tokens, webhooks
from training import api as training_api

app_name = "api"


def _uid(level: str) -> str:
    return rf"(?P<{level}_uid>[0-9.]+)"


INSTANCE = rf"studies/{_uid('study')}/series/{_uid('series')}/instances/{_uid('sop')}"

v1 = "api/v1"
urlpatterns = [
    path(f"{v1}/patients/", patients.PatientListCreateApi.as_view(), name="patient-list"),
    path(f"{v1}/patients/<int:pk>/", patients.PatientDetailApi.as_view(), name="patient-detail"),
    path(f"{v1}/studies/", studies.StudyListCreateApi.as_view(), name="study-list"),
    path(f"{v1}/studies/<int:pk>/", studies.StudyDetailApi.as_view(), name="study-detail"),
    path(f"{v1}/studies/<int:pk>/predictions/", studies.StudyPredictionListApi.as_view(), name="study-predictions"),
    path(f"{v1}/images/", images.ImageListUploadApi.as_view(), name="image-list"),
    path(f"{v1}/images/<int:pk>/", images.ImageDetailApi.as_view(), name="image-detail"),
    path(f"{v1}/predictions/", predictions.PredictionListApi.as_view(), name="prediction-list"),
    path(f"{v1}/predictions/<int:pk>/", predictions.PredictionDetailApi.as_view(), name="prediction-detail"),
    path(f"{v1}/predictions/<int:pk>/heatmap/", predictions.PredictionHeatmapApi.as_view(), name="prediction-heatmap"),
    path(f"{v1}/predictions/<int:pk>/rerun/", predictions.PredictionRerunApi.as_view(), name="prediction-rerun"),
    path(
        f"{v1}/predictions/<int:pk>/reviews/",
        reviews.PredictionReviewListCreateApi.as_view(),
        name="prediction-reviews",
    ),
    path(f"{v1}/models/", training_api.ModelVersionListApi.as_view(), name="model-list"),
    path(f"{v1}/models/rollback/", training_api.ModelVersionRollbackApi.as_view(), name="model-rollback"),
    path(f"{v1}/models/<int:pk>/", training_api.ModelVersionDetailApi.as_view(), name="model-detail"),
    path(f"{v1}/models/<int:pk>/activate/", training_api.ModelVersionActivateApi.as_view(), name="model-activate"),
    path(
        f"{v1}/models/<int:pk>/site-threshold/",
        training_api.ModelVersionSiteThresholdApi.as_view(),
        name="model-site-threshold",
    ),
    path(
        f"{v1}/models/<int:pk>/site-threshold/retire/",
        training_api.ModelVersionSiteThresholdRetireApi.as_view(),
        name="model-site-threshold-retire",
    ),
    path(f"{v1}/training-runs/", training_api.TrainingRunListCreateApi.as_view(), name="training-run-list"),
    path(f"{v1}/training-runs/<int:pk>/", training_api.TrainingRunDetailApi.as_view(), name="training-run-detail"),
    path(f"{v1}/tokens/", tokens.ApiTokenListCreateApi.as_view(), name="token-list"),
    path(f"{v1}/tokens/<int:pk>/", tokens.ApiTokenDetailApi.as_view(), name="token-detail"),
    path(f"{v1}/tokens/<int:pk>/revoke/", tokens.ApiTokenRevokeApi.as_view(), name="token-revoke"),
    path(f"{v1}/webhooks/", webhooks.WebhookListCreateApi.as_view(), name="webhook-list"),
    path(f"{v1}/webhooks/<int:pk>/", webhooks.WebhookDetailApi.as_view(), name="webhook-detail"),
    path(f"{v1}/webhooks/<int:pk>/deliveries/", webhooks.WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from a URL: no inline script, so the CSP holds.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("dicomweb/studies", dicomweb.StowRsApi.as_view(), name="dicomweb-studies"),
    path("dicomweb/series", dicomweb.QidoSeriesApi.as_view(), name="dicomweb-series-search"),
    path("dicomweb/instances", dicomweb.QidoInstancesApi.as_view(), name="dicomweb-instance-search"),
    re_path(rf"^dicomweb/studies/{_uid('study')}$", wado.WadoStudyApi.as_view(), name="dicomweb-study"),
    re_path(
        rf"^dicomweb/studies/{_uid('study')}/metadata$", wado.WadoMetadataApi.as_view(), name="dicomweb-study-metadata"
    ),
    re_path(
        rf"^dicomweb/studies/{_uid('study')}/series$", dicomweb.QidoSeriesApi.as_view(), name="dicomweb-study-series"
    ),
    re_path(
        rf"^dicomweb/studies/{_uid('study')}/instances$",
        dicomweb.QidoInstancesApi.as_view(),
        name="dicomweb-study-instances",
    ),
    re_path(
        rf"^dicomweb/studies/{_uid('study')}/series/{_uid('series')}$",
        wado.WadoSeriesApi.as_view(),
        name="dicomweb-series",
    ),
    re_path(
        rf"^dicomweb/studies/{_uid('study')}/series/{_uid('series')}/metadata$",
        wado.WadoMetadataApi.as_view(),
        name="dicomweb-series-metadata",
    ),
    re_path(
        rf"^dicomweb/studies/{_uid('study')}/series/{_uid('series')}/instances$",
        dicomweb.QidoInstancesApi.as_view(),
        name="dicomweb-series-instances",
    ),
    re_path(rf"^dicomweb/{INSTANCE}$", wado.WadoInstanceApi.as_view(), name="dicomweb-instance"),
    re_path(rf"^dicomweb/{INSTANCE}/metadata$", wado.WadoMetadataApi.as_view(), name="dicomweb-instance-metadata"),
    re_path(rf"^dicomweb/{INSTANCE}/rendered$", wado.WadoRenderedApi.as_view(), name="dicomweb-instance-rendered"),
    re_path(
        rf"^dicomweb/{INSTANCE}/frames/(?P<frame>[0-9]+)/rendered$",
        wado.WadoRenderedApi.as_view(),
        name="dicomweb-frame-rendered",
    ),
    path("fhir/metadata", fhir_search.FhirMetadataApi.as_view(), name="fhir-metadata"),
    path("fhir/ImagingStudy", fhir_search.FhirImagingStudySearchApi.as_view(), name="fhir-imagingstudy-search"),
    path(
        "fhir/DiagnosticReport",
        fhir_search.FhirDiagnosticReportSearchApi.as_view(),
        name="fhir-diagnosticreport-search",
    ),
    path("fhir/Patient/<int:pk>", fhir.FhirPatientApi.as_view(), name="fhir-patient"),
    path("fhir/ImagingStudy/<int:pk>", fhir.FhirImagingStudyApi.as_view(), name="fhir-imagingstudy"),
    path("fhir/DiagnosticReport/<int:pk>", fhir.FhirDiagnosticReportApi.as_view(), name="fhir-diagnosticreport"),
    path("fhir/Observation/<str:observation_id>", fhir.FhirObservationApi.as_view(), name="fhir-observation"),
    # Unmatched API paths answer in the API's error format, not with the site's HTML 404 page.
    re_path(r"^fhir/", errors.fhir_not_found),
    re_path(r"^(api/v1|dicomweb)/", errors.not_found),
]
