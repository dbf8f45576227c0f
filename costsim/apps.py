from django.apps import AppConfig


class CostsimConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "costsim"
    verbose_name = "CostSim"
