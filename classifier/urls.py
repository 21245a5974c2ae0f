"""Clinical pages: worklist, upload, study, review, audit."""
from django.urls import path

from classifier import views, views_audit, views_review, views_study, views_upload

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("worklist/poll/", views.worklist_poll, name="worklist_poll"),
    path("studies/upload/", views_upload.upload, name="upload"),
    path("studies/upload/file/", views_upload.upload_file, name="upload_file"),
    path("studies/upload/probe/", views_upload.upload_probe, name="upload_probe"),
    path("studies/<int:study_id>/", views_study.study_detail, name="study_detail"),
    path("studies/<int:study_id>/status/", views_study.study_status, name="study_status"),
    path("studies/<int:study_id>/review/", views_review.review_submit, name="review_submit"),
    path("images/<int:image_id>/rerun/", views_study.prediction_rerun, name="prediction_rerun"),
    path("predictions/<int:prediction_id>/<str:kind>.png", views_study.prediction_image, name="prediction_image"),
    path("review/next/", views_review.review_next, name="review_next"),
    path("review/stats/", views_review.review_stats, name="review_stats"),
    path("audit/", views_audit.audit_log, name="audit_log"),
]
