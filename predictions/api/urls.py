"""Routes of this app: viewsets go on the shared router, other views are returned as paths."""

from django.urls import path

from predictions.api.views import PredictionSubjectView, PredictionViewSet


def register(router) -> list:
    router.register("predictions", PredictionViewSet, basename="prediction")
    return [
        path(
            "predictions/subject/<str:subject_type>/<str:subject_id>/",
            PredictionSubjectView.as_view(),
            name="prediction-subject",
        ),
    ]
