"""The one DRF router for every app, plus the non-viewset API routes each app exposes."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from analytics.api.urls import register as register_analytics
from costsim.api.urls import register as register_costsim
from feedback.api.urls import register as register_feedback
from notifications.api.urls import register as register_notifications
from predictions.api.urls import register as register_predictions

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False

extra_urls: list = []
for register in (
    register_analytics,
    register_costsim,
    register_feedback,
    register_predictions,
    register_notifications,
):
    extra_urls += register(router)

app_name = "api"
urlpatterns = [*extra_urls, path("", include(router.urls))]
