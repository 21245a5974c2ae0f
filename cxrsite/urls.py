"""URL map: pages (classifier.views, training.views), the API, admin, health, metrics."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from classifier.views import health, metrics

# Any uncaught error outside DEBUG: 503 for a database outage, else 500, in the path's shape.
handler500 = "classifier.views.errors.server_error"

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("", include("classifier.api.urls")),
    path("", include("training.urls")),
    path("", include("classifier.urls")),
]
