"""Routes of this app: viewsets go on the shared router, other views are returned as paths."""

from feedback.api.views import FeedbackViewSet


def register(router) -> list:
    router.register("feedback", FeedbackViewSet, basename="feedback")
    return []
