from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import ops

urlpatterns = [
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
    path("metrics", ops.metrics, name="prometheus-metrics"),
]
