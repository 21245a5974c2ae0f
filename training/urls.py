"""Model and training pages (admins)."""

from django.urls import path

from training import views

urlpatterns = [
    path("models/", views.model_list, name="model_list"),
    path("models/rollback/", views.model_rollback, name="model_rollback"),
    path("models/<int:version_id>/", views.model_detail, name="model_detail"),
    path("models/<int:version_id>/promote/", views.model_promote, name="model_promote"),
    path("models/<int:version_id>/site-threshold/", views.site_threshold_adopt_view, name="site_threshold_adopt"),
    path(
        "models/<int:version_id>/site-threshold/retire/",
        views.site_threshold_retire_view,
        name="site_threshold_retire",
    ),
    path("models/<int:version_id>/plots/<str:name>.png", views.model_plot, name="model_plot"),
    path("training/start/", views.training_start, name="training_start"),
    path("training/datasets/import/", views.dataset_import, name="dataset_import"),
    path("training/datasets/imports/<int:import_id>/", views.dataset_import_detail, name="dataset_import_detail"),
    path(
        "training/datasets/imports/<int:import_id>/progress/",
        views.dataset_import_progress,
        name="dataset_import_progress",
    ),
    path("training/<int:run_id>/", views.training_detail, name="training_detail"),
    path("training/<int:run_id>/progress/", views.training_progress, name="training_progress"),
]
