"""Enums of the predictions app; plain enums, safe to import from engines."""

from django.db import models


class PredictionType(models.TextChoices):
    FAILURE_LIKELIHOOD = "failure_likelihood", "Failure likelihood"
    COST_OVERRUN = "cost_overrun", "Cost overrun"


class SubjectType(models.TextChoices):
    WORKER = "worker", "Worker"
    RUN = "run", "Run"
    TENANT = "tenant", "Tenant"
