from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "predictions"

    def ready(self) -> None:
        # Every process (web, worker, beat) exposes the zero-valued counters from start-up,
        # not only after its first cycle.
        from predictions import metrics  # noqa: F401
