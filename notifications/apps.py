from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # Incident changes are written to the outbox inside the transaction that makes them.
        from notifications import receivers  # noqa: F401
