from django.apps import AppConfig


class CostsimConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "costsim"
    verbose_name = "CostSim"

    def ready(self) -> None:
        # Importing the metrics module creates the closed-set counters at zero in every
        # process (web, worker, beat) before anything is recorded.
        # The receivers mark breaker incidents whose Alertmanager alert was delivered.
        from config.ops import register_scrape_collector
        from costsim import metrics, receivers  # noqa: F401
        from costsim.collectors import STATE_COLLECTOR

        # Scrape-time collectors are added to the single-process and the multiprocess
        # /metrics alike; registering in the default registry too would emit them twice.
        register_scrape_collector(STATE_COLLECTOR)

        # Budget reservations (analytics) price a plan with the estimator simulate uses;
        # analytics imports no other app, so the pricer is handed to it here.
        from analytics.api.reservations import register_plan_pricer
        from costsim.api.reservation_plans import plan_cost_cents

        register_plan_pricer(plan_cost_cents)
