from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from analytics.api import otlp
from config import ops

urlpatterns = [
    # `/` opens the operator console; temporary (302), so browsers do not remember it.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False), name="home"),
    path("admin/", admin.site.urls),
    path("api/health/", ops.health, name="health"),
    path("api/ready/", ops.ready, name="ready"),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[]
        ),
        name="docs",
    ),
    path("api/v1/", include("config.api_router")),
    # OpenTelemetry exporters post to <endpoint>/v1/traces (analytics/api/otlp.py).
    *otlp.register_urls(),
    path("metrics", ops.metrics, name="prometheus-metrics"),
]

# JSON errors under /api/, Django's pages elsewhere (analytics/api/errors.py).
handler400 = "analytics.api.errors.bad_request"
handler403 = "analytics.api.errors.permission_denied"
handler404 = "analytics.api.errors.page_not_found"
handler500 = "analytics.api.errors.server_error"
