from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # Incident changes are written to the outbox inside the transaction that makes them.
        from config.ops import register_scrape_collector
        from notifications import metrics, receivers  # noqa: F401
        from notifications.collectors import OUTBOX_COLLECTOR

        register_scrape_collector(OUTBOX_COLLECTOR)
