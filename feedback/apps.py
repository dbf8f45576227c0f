from django.apps import AppConfig


class FeedbackConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "feedback"

    def ready(self) -> None:
        # Every process (web, worker, beat) exposes the zero-valued counters from start-up,
        # not only after its first detection.
        from feedback import metrics  # noqa: F401
