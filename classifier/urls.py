"""Clinical pages: worklist, upload, study, review, audit."""

from django.urls import path

from classifier.views import audit, review, study, upload, worklist

urlpatterns = [
    path("", worklist.worklist, name="worklist"),
    path("worklist/poll/", worklist.worklist_poll, name="worklist_poll"),
    path("studies/upload/", upload.upload, name="upload"),
    path("studies/upload/file/", upload.upload_file, name="upload_file"),
    path("studies/upload/probe/", upload.upload_probe, name="upload_probe"),
    path("studies/<int:study_id>/", study.study_detail, name="study_detail"),
    path("studies/<int:study_id>/status/", study.study_status, name="study_status"),
    path("studies/<int:study_id>/review/", review.review_submit, name="review_submit"),
    path("images/<int:image_id>/rerun/", study.prediction_rerun, name="prediction_rerun"),
    path("images/<int:image_id>/film.u16z", study.image_film, name="image_film"),
    path("predictions/<int:prediction_id>/<str:kind>.png", study.prediction_image, name="prediction_image"),
    path("review/next/", review.review_next, name="review_next"),
    path("review/stats/", review.review_stats, name="review_stats"),
    path("audit/", audit.audit_log, name="audit_log"),
]
